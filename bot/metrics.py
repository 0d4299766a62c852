"""Prometheus metrics (`/metrics`, DESIGN 13), in prometheus_client's text format.

The fleet series are read from the database when scraped (certificates parsed once per check), so every bot
process sharing a database reports the same fleet, and a restart loses nothing:

- `sstp_bot_checks_total{status}`: checks recorded, by status (healthy, unhealthy, error);
- `sstp_bot_fixes_total{state}`: fixes that ran, by end state (SUCCEEDED, FAILED, INTERRUPTED);
- `sstp_bot_server_healthy{server}`: 1 when the server's latest check was healthy, else 0;
- `sstp_bot_server_open_findings{server}`: its critical and warning findings;
- `sstp_bot_server_last_check_timestamp_seconds{server}`: when it was last checked;
- `sstp_bot_certificate_expiry_timestamp_seconds{server}`: its SSTP certificate's notAfter;

and, per process, `sstp_bot_slack_ack_seconds`: how long the bot took to answer (acknowledge) each
Slack request, from bolt receiving it to the response being ready.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from bot.operations import ForecastCache, alerting_ids, forecast
from storage.operations import LeaseStore
from storage.states import PlanState

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
#: Slack wants an answer within 3 s; the buckets resolve the range that matters.
#: How a fix that ran ended (DESIGN 6); rejected, expired and superseded plans never ran.
FIX_END_STATES = (PlanState.SUCCEEDED.value, PlanState.FAILED.value, PlanState.INTERRUPTED.value)
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)


class FleetCollector(Collector):
    """The database-backed series; with `ttl` > 0 reused for that many seconds (many scrapers)."""

    def __init__(self, service: Any, ttl: float = 0.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.service = service
        self.ttl = ttl
        self._monotonic = monotonic
        self._cache: tuple[float, list[Metric]] | None = None
        self._lock = threading.Lock()
        self._forecasts = ForecastCache()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = self._monotonic()
            if self._cache is None or now - self._cache[0] >= self.ttl:
                try:
                    self._cache = (now, self._read())
                except Exception:
                    # A scrape must not fail with the database: the series are left out this time.
                    log.exception("metrics: could not read the database")
                    return iter(())
            return iter(self._cache[1])

    def _read(self) -> list[Metric]:
        store = LeaseStore.for_repository(self.service.repo)
        checks = CounterMetricFamily("sstp_bot_checks", "Checks recorded, by status.", labels=["status"])
        for status, count in sorted(store.checks_by_status().items()):
            checks.add_metric([status], count)
        fixes = CounterMetricFamily("sstp_bot_fixes", "Fix plans that reached an end state, by state.", labels=["state"])
        by_state = store.plans_by_state()
        for state in FIX_END_STATES:  # always present, so rate() and increase() work from zero
            fixes.add_metric([state], by_state.get(state, 0))
        healthy = GaugeMetricFamily("sstp_bot_server_healthy", "1 when the latest check was healthy.", labels=["server"])
        findings = GaugeMetricFamily("sstp_bot_server_open_findings",
                                     "Critical and warning findings of the latest check.", labels=["server"])
        checked = GaugeMetricFamily("sstp_bot_server_last_check_timestamp_seconds",
                                    "When the server was last checked (Unix time).", labels=["server"])
        inventory = set(self.service.config.servers)
        for record in self.service.status():
            if record.server not in inventory:
                continue
            healthy.add_metric([record.server], 1.0 if record.status == "healthy" else 0.0)
            findings.add_metric([record.server], float(len(alerting_ids(record.findings))))
            checked.add_metric([record.server], record.finished_at.timestamp())
        expiry = GaugeMetricFamily("sstp_bot_certificate_expiry_timestamp_seconds",
                                   "notAfter of the server's SSTP certificate (Unix time).", labels=["server"])
        for cert in forecast(self.service, cache=self._forecasts).certificates:
            expiry.add_metric([cert.server], cert.not_after.timestamp())
        return [checks, fixes, healthy, findings, checked, expiry]


class BotMetrics:
    """One process's registry: the fleet collector and the Slack acknowledgement histogram."""

    def __init__(self, service: Any, *, ttl: float = 0.0) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.ack_seconds = Histogram("sstp_bot_slack_ack_seconds", "Time to acknowledge a Slack request.",
                                     buckets=ACK_BUCKETS, registry=self.registry)
        self.registry.register(FleetCollector(service, ttl))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def wsgi(self, start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Answer a GET /metrics."""
        data = self.render()
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(data))),
                                  ("Cache-Control", "no-store")])
        return [data]

    def wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """`/metrics` as a WSGI route: GET (and HEAD) only."""
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Content-Type", "text/plain"), ("Allow", "GET"),
                                                     ("Content-Length", "0")])
            return [b""]
        return self.wsgi(start_response)

    def timed_dispatch(self, dispatch: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Wrap bolt's `App.dispatch`: listeners ack inline (`process_before_response`) and hand the
        work to the bot's pools, so dispatch returns when the acknowledgement is ready."""

        def timed(request: Any) -> Any:
            started = time.perf_counter()
            try:
                return dispatch(request)
            finally:
                self.ack_seconds.observe(time.perf_counter() - started)

        return timed


def instrument(app: Any, service: Any) -> BotMetrics:
    """Attach metrics to a bolt app (`app.metrics`, which `/metrics` serves) and time its acks."""
    metrics = BotMetrics(service)
    # Both adapters (HTTP: bolt's WSGI handler; Socket Mode: bolt's handler) go through app.dispatch.
    setattr(app, "dispatch", metrics.timed_dispatch(app.dispatch))  # noqa: B010 (mypy: method assignment)
    app.metrics = metrics
    return metrics
