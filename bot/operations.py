"""Operations use cases (DESIGN 13): fleet sweeps with their changes, the certificate forecast, the
fleet view, and the periodic jobs `serve` runs (scheduled sweeps, the weekly digest).

Everything here goes through `bot.service.Service` (checks are recorded exactly as `check --all`
records them) and `storage.operations.LeaseStore` (which process runs a periodic job). Nothing here
knows about Slack: `bot.slack.alerts` renders and posts what these functions return.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.config import WEEKDAYS, Config
from bot.service import Actor, CheckOutcome, Service
from commands.diagnosis import analyse
from commands.errors import SnapshotError
from commands.model import CheckResult, as_utc, format_time
from commands.server import ServerConfig
from commands.snapshot import parse_snapshot
from storage.operations import LeaseStore, SnapshotRef, StoredSnapshot
from storage.records import CheckRecord
from storage.runner import current_runner

log = logging.getLogger(__name__)

#: Who records a scheduled sweep's checks (the `actor` of its checks and the requester of its plans).
SWEEP_ACTOR = Actor(id="system:sweep", source="schedule")
SWEEP_JOB = "sweep"
DIGEST_JOB = "digest"
ALERTING = ("critical", "warning")
#: How long a periodic job's lease lasts without renewal (renewed every quarter of it while running).
LEASE_TTL = timedelta(minutes=2)
STATUS_RANK = {"error": 0, "unhealthy": 1, None: 2, "healthy": 3}


# --- sweep ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """One server whose status or set of critical/warning finding IDs changed since its last check."""

    server: str
    before: str | None  # status of the previous check; None: never checked before
    after: str
    new: tuple[str, ...]
    resolved: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"server": self.server, "from": self.before, "to": self.after, "new": list(self.new),
                "resolved": list(self.resolved)}


@dataclass
class SweepReport:
    """The outcome of one sweep: every server's check, and the changes since each one's previous check."""

    checked_at: datetime
    outcomes: list[CheckOutcome]
    changes: list[Change]
    previous: dict[str, CheckRecord] = field(default_factory=dict)

    @property
    def results(self) -> list[CheckResult]:
        return [o.result for o in self.outcomes]

    def to_json(self) -> dict[str, Any]:
        """`sweep --json` (DESIGN 7)."""
        return {
            "checked_at": format_time(self.checked_at),
            "servers": [r.to_json() for r in self.results],
            "changes": [c.to_json() for c in self.changes],
        }


def alerting_ids(findings: Sequence[Any]) -> set[str]:
    """IDs of the critical and warning findings (Finding objects or their JSON)."""
    ids: set[str] = set()
    for finding in findings:
        severity = finding.get("severity") if isinstance(finding, dict) else finding.severity
        ident = finding.get("id") if isinstance(finding, dict) else finding.id
        if severity in ALERTING and ident:
            ids.add(str(ident))
    return ids


def change_of(previous: CheckRecord | None, result: CheckResult) -> Change | None:
    """The change from `previous` to `result`, or None when status and alerting IDs are the same."""
    now_ids = alerting_ids(result.findings)
    if previous is None:
        return Change(result.server, None, result.status, tuple(sorted(now_ids)), ())
    before_ids = alerting_ids(previous.findings)
    if previous.status == result.status and before_ids == now_ids:
        return None
    return Change(result.server, previous.status, result.status, tuple(sorted(now_ids - before_ids)),
                  tuple(sorted(before_ids - now_ids)))


def sweep(service: Service, actor: Actor = SWEEP_ACTOR,
          on_result: Callable[[CheckOutcome], None] | None = None) -> SweepReport:
    """Check every server of the inventory, record each check, and say what changed."""
    targets = service.resolve_targets(all_servers=True)
    previous = {r.server: r for r in service.status()}
    checked_at = service.clock()
    outcomes = service.check(targets, actor, on_result=on_result)
    order = {t.name: n for n, t in enumerate(targets)}
    outcomes.sort(key=lambda o: order.get(o.result.server, len(order)))
    changes = [c for o in outcomes if (c := change_of(previous.get(o.result.server), o.result)) is not None]
    return SweepReport(checked_at=checked_at, outcomes=outcomes, changes=changes, previous=previous)


# --- forecast ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CertificateForecast:
    """The SSTP certificate of one server as its latest readable check saw it."""

    server: str
    thumbprint: str
    subject: str
    not_after: datetime
    days_left: int
    renewal_in_store: bool
    warning_days: int = 30

    def to_json(self) -> dict[str, Any]:
        """One entry of `forecast --json` (DESIGN 7)."""
        return {"server": self.server, "thumbprint": self.thumbprint, "subject": self.subject,
                "not_after": format_time(self.not_after), "days_left": self.days_left,
                "renewal_in_store": self.renewal_in_store}


def certificate_of(stored: StoredSnapshot, server: ServerConfig, now: datetime) -> CertificateForecast | None:
    """The forecast entry of one stored snapshot; None when the SSTP certificate is not in it."""
    raw = dict(stored.snapshot)
    # The store drops `collected_at` (it changes on every probe); the check's end stands in for it.
    raw.setdefault("collected_at", format_time(stored.finished_at))
    raw.setdefault("vpn_connections", None)  # also volatile, and not needed here
    try:
        analysis = analyse(parse_snapshot(raw), server, now)
    except SnapshotError:
        log.warning("stored snapshot of %s (check %s) cannot be read", server.name, stored.check_id)
        return None
    cert = analysis.sstp_certificate
    if cert is None or cert.info is None:
        return None
    not_after = as_utc(cert.info.not_after)
    days_left = (not_after - as_utc(now)) // timedelta(days=1)
    return CertificateForecast(server.name, cert.thumbprint, cert.info.subject, not_after, int(days_left),
                               analysis.renewal is not None, server.cert_expiry_warning_days)


@dataclass
class Forecast:
    """Every server's SSTP certificate, soonest expiry first, and the servers it is unknown for."""

    certificates: list[CertificateForecast]
    unknown: list[str]  # never read, or no SSTP certificate found in the store


class ForecastCache:
    """Decompressing a snapshot and parsing its certificates costs milliseconds: remember the result
    per check (and hour, for days_left), so the App Home tab and `/metrics` of a large fleet stay cheap
    between sweeps."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._entries: dict[tuple[str, int, int], CertificateForecast | None] = {}
        self._lock = threading.Lock()

    def get(self, ref: SnapshotRef, server: ServerConfig, now: datetime,
            load: Callable[[SnapshotRef], StoredSnapshot | None]) -> CertificateForecast | None:
        key = (server.name, ref.check_id, int(as_utc(now).timestamp() // 3600))
        with self._lock:
            if key in self._entries:
                return self._entries[key]
        stored = load(ref)
        value = certificate_of(stored, server, now) if stored is not None else None
        with self._lock:
            if len(self._entries) >= self._size:
                self._entries.clear()
            self._entries[key] = value
        return value


def forecast(service: Service, now: datetime | None = None, days: int | None = None,
             cache: ForecastCache | None = None) -> Forecast:
    """Every inventory server's SSTP certificate from its latest readable check, soonest first.

    `days`: only certificates expiring within that many days (expired ones included)."""
    now = as_utc(now or service.clock())
    store = LeaseStore.for_repository(service.repo)
    inventory = list(service.config.servers.values())
    refs = store.latest_snapshot_refs(s.name for s in inventory)
    cache = cache or ForecastCache()
    certificates: list[CertificateForecast] = []
    unknown: list[str] = []
    for server in inventory:
        ref = refs.get(server.name)
        entry = cache.get(ref, server, now, store.snapshot_body) if ref is not None else None
        if entry is None:
            unknown.append(server.name)
        elif days is None or entry.days_left <= days:
            certificates.append(entry)
    certificates.sort(key=lambda c: (c.not_after, c.server))
    return Forecast(certificates, unknown)


# --- the fleet, worst first (App Home) ----------------------------------------------------------
@dataclass(frozen=True)
class FleetRow:
    server: str
    status: str | None  # None: never checked
    findings: tuple[str, ...]  # critical and warning IDs
    checked_at: datetime | None
    error_kind: str | None = None
    not_after: datetime | None = None
    days_left: int | None = None


def fleet_rows(service: Service, cache: ForecastCache | None = None, now: datetime | None = None) -> list[FleetRow]:
    """Every inventory server with its latest status, open findings and certificate expiry; worst first."""
    now = as_utc(now or service.clock())
    latest = {r.server: r for r in service.status()}
    certs = {c.server: c for c in forecast(service, now, cache=cache).certificates}
    rows = []
    for name in service.config.servers:
        record = latest.get(name)
        cert = certs.get(name)
        rows.append(FleetRow(
            server=name,
            status=record.status if record else None,
            findings=tuple(sorted(alerting_ids(record.findings))) if record else (),
            checked_at=record.finished_at if record else None,
            error_kind=record.error_kind if record else None,
            not_after=cert.not_after if cert else None,
            days_left=cert.days_left if cert else None,
        ))
    return sort_worst_first(rows)


def sort_worst_first(rows: Sequence[FleetRow]) -> list[FleetRow]:
    far = 10**9
    return sorted(rows, key=lambda r: (STATUS_RANK.get(r.status, 2), -len(r.findings),
                                       r.days_left if r.days_left is not None else far, r.server))


# --- periodic jobs -------------------------------------------------------------------------------
def sweep_slot(now: datetime, every_minutes: int) -> int:
    """Which interval `now` falls in: sweeps run once per slot, whichever process claims it."""
    return int(as_utc(now).timestamp() // (every_minutes * 60))


def digest_slot(now: datetime, weekday: str, hour_utc: int) -> int | None:
    """The day number (days since 1970) when the weekly digest is due now, else None."""
    now = as_utc(now)
    if WEEKDAYS[now.weekday()] != weekday.lower() or now.hour < hour_utc:
        return None
    return int(now.timestamp() // 86400)


class PeriodicJobs:
    """The scheduled sweep and weekly digest of one bot process (`serve`).

    `run_due()` runs whatever is due now, one job at a time; with several processes on one database
    each slot is claimed by exactly one of them (`LeaseStore.claim`). `on_sweep(report)` and
    `on_digest(forecast)` publish (Slack alerts in `serve`)."""

    def __init__(
        self,
        service: Service,
        *,
        on_sweep: Callable[[SweepReport], None] | None = None,
        on_digest: Callable[[Forecast], None] | None = None,
        holder: str | None = None,
        store: LeaseStore | None = None,
    ) -> None:
        self.service = service
        self.config: Config = service.config
        self.store = store or LeaseStore.for_repository(service.repo)
        self.holder = holder or current_runner()
        self.on_sweep = on_sweep
        self.on_digest = on_digest
        self._running = threading.Lock()
        self.cache = ForecastCache()

    @contextlib.contextmanager
    def _holding(self, name: str, now: datetime) -> Iterator[None]:
        """Renew the job's lease every LEASE_TTL/4 while it runs, release it at the end. A process that
        dies stops renewing: another one may run the next slot once LEASE_TTL has passed."""
        started = time.monotonic()
        done = threading.Event()

        def heartbeat() -> None:
            while not done.wait(LEASE_TTL.total_seconds() / 4):
                # The claim's clock, moved on by the time elapsed (tests pass their own `now`).
                moment = now + timedelta(seconds=time.monotonic() - started)
                try:
                    self.store.renew(name, self.holder, moment, LEASE_TTL)
                except Exception:
                    log.exception("could not renew the %s lease", name)

        thread = threading.Thread(target=heartbeat, name=f"sstp-lease-{name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=5)
            self.store.release(name, self.holder)

    def run_due(self, now: datetime | None = None) -> list[str]:
        """Run the jobs due at `now` that this process claims; returns their names."""
        if not self._running.acquire(blocking=False):
            return []  # the previous round is still running: one sweep at a time
        try:
            now = as_utc(now or datetime.now(UTC))
            ran: list[str] = []
            schedule = self.config.schedule
            if schedule.sweep_every_minutes > 0 and self.config.servers:
                slot = sweep_slot(now, schedule.sweep_every_minutes)
                if self.store.claim(SWEEP_JOB, slot, self.holder, now, LEASE_TTL):
                    with self._holding(SWEEP_JOB, now):
                        report = sweep(self.service)
                        ran.append(SWEEP_JOB)
                    if self.on_sweep is not None:
                        self.on_sweep(report)
            day = digest_slot(now, schedule.digest_weekday, schedule.digest_hour_utc)
            if (
                day is not None
                and schedule.alert_channel
                and self.config.servers
                and self.store.claim(DIGEST_JOB, day, self.holder, now, LEASE_TTL)
            ):
                with self._holding(DIGEST_JOB, now):
                    result = forecast(self.service, now, cache=self.cache)
                    ran.append(DIGEST_JOB)
                    if self.on_digest is not None:
                        self.on_digest(result)
            return ran
        finally:
            self._running.release()

    def run_forever(self, stop: threading.Event, poll_seconds: float = 15.0) -> None:
        """Look for due jobs every `poll_seconds` until `stop` is set; errors are logged, never fatal."""
        while not stop.is_set():
            try:
                self.run_due()
            except Exception:
                log.exception("scheduled job failed")
            stop.wait(poll_seconds)

    def start(self, stop: threading.Event, poll_seconds: float = 15.0) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, args=(stop, poll_seconds), name="sstp-schedule",
                                  daemon=True)
        thread.start()
        return thread
