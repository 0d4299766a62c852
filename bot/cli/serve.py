"""`sstp-bot serve`: run the Slack bot in Socket Mode (default) or HTTP mode (`[slack] mode`).

Tokens come only from the environment and are never printed; every log handler gets a filter that
redacts anything looking like a secret (`bot.slack.redact`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from slack_bolt.error import BoltError
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.errors import SlackApiError, SlackRequestError

from bot.cli import Environment, ExitStatus, require_database_folder
from bot.config import Config, load_config
from bot.slack.redact import RedactSecrets, redact
from commands.errors import ConfigError

logger = logging.getLogger("bot.serve")


def required_secrets(config: Config) -> tuple[str, ...]:
    if config.slack.mode == "http":
        return ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")
    return ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN")


def read_secrets(config: Config, environ: Mapping[str, str]) -> dict[str, str]:
    """The secrets the chosen mode needs; ConfigError naming the first missing variable."""
    secrets = {}
    for name in required_secrets(config):
        value = environ.get(name, "").strip()
        if not value:
            raise ConfigError(f"environment variable {name} is not set (needed in slack.mode = {config.slack.mode!r})")
        secrets[name] = value
    if not secrets["SLACK_BOT_TOKEN"].startswith("xoxb-"):
        raise ConfigError("SLACK_BOT_TOKEN does not look like a bot token (it should start with xoxb-)")
    if "SLACK_APP_TOKEN" in secrets and not secrets["SLACK_APP_TOKEN"].startswith("xapp-"):
        raise ConfigError("SLACK_APP_TOKEN does not look like an app-level token (it should start with xapp-)")
    return secrets


class QuietStart(logging.Filter):
    """Drops start-up noise an admin cannot act on: bolt's notice that the token of SLACK_BOT_TOKEN is
    unused because the app was given its client (it is the same token)."""

    NOTICES = frozenset({warning_client_prioritized_and_token_skipped()})

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self.NOTICES


def configure_logging(env: Environment) -> None:
    handler = logging.StreamHandler(env.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets())
    handler.addFilter(QuietStart())
    # Alembic reports each migration step at INFO ("Context impl SQLiteImpl", "Will assume
    # transactional DDL"): only its warnings matter at start.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    handler.set_name("sstp-bot-serve")
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == "sstp-bot-serve":
            root.removeHandler(existing)  # serve run again in the same process (tests)
        else:
            existing.addFilter(RedactSecrets())
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def run(args: argparse.Namespace, env: Environment, *, stop: threading.Event | None = None) -> int:
    config = load_config(args.config, env.environ)
    require_database_folder(config.database.url)
    secrets = read_secrets(config, env.environ)
    configure_logging(env)

    from bot.service import build_service  # the use-case layer; imported here so the CLI starts fast
    from bot.slack.app import create_app, make_web_client
    from bot.slack.server import http_server, run_socket_mode, socket_mode_handler

    service = build_service(config, env.environ, env.clock)
    client = make_web_client(secrets["SLACK_BOT_TOKEN"], config.slack.api_url)
    stop = stop or threading.Event()
    _stop_on_sigterm(stop)
    if config.slack.mode == "http":
        with _slack_errors("SLACK_BOT_TOKEN"):
            app = create_app(service, config, client=client, signing_secret=secrets["SLACK_SIGNING_SECRET"])
        try:
            server = http_server(app, service, config.slack.http_host, config.slack.http_port)
        except OSError as exc:
            app.sstp.close()
            raise ConfigError(
                f"cannot listen on {config.slack.http_host}:{config.slack.http_port} (slack.http_host/http_port): {exc.strerror}"
            ) from None
        print(f"sstp-bot: HTTP mode, events on {server.url}/slack/events, health on {server.url}/healthz", file=env.stdout)
        server.start()
        operations = _start_operations(app, service, config, stop, env, health=False)
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            operations.close()
            server.stop()
            app.sstp.close()
    else:
        with _slack_errors("SLACK_BOT_TOKEN"):
            app = create_app(service, config, client=client)
        handler = socket_mode_handler(app, secrets["SLACK_APP_TOKEN"])
        print("sstp-bot: Socket Mode, connecting to Slack", file=env.stdout)
        operations = _start_operations(app, service, config, stop, env, health=True)
        try:
            with _slack_errors("SLACK_APP_TOKEN"):
                run_socket_mode(handler, stop)
        except KeyboardInterrupt:
            pass
        finally:
            operations.close()
            app.sstp.close()
    service.close()
    print("sstp-bot: stopped", file=env.stdout)
    return ExitStatus.OK


def _start_operations(
    app: Any, service: Any, config: Config, stop: threading.Event, env: Environment, *, health: bool
) -> contextlib.ExitStack:
    """Scheduled sweeps and the digest (`[schedule]`), and in Socket Mode `/healthz` and `/metrics` on
    `[service] health_port` (DESIGN 13). Closing the returned stack stops them."""
    from bot.slack.alerts import start_schedule
    from bot.slack.server import health_server

    cleanup = contextlib.ExitStack()
    if health and config.service.health_port:
        try:
            server = health_server(app, service, config.service.health_host, config.service.health_port)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {config.service.health_host}:{config.service.health_port} "
                f"(service.health_host/health_port): {exc.strerror}"
            ) from None
        server.start()
        cleanup.callback(server.stop)
        print(f"sstp-bot: health on {server.url}/healthz, metrics on {server.url}/metrics", file=env.stdout)
    jobs_stop = threading.Event()
    if any(server.keep_alive_minutes > 0 for server in config.servers.values()):
        from commands.pools import WarmPools

        pools = WarmPools()
        service.session_factory = pools  # checks reuse a warm runspace pool per server (DESIGN 13)
        pools.start_reaper(jobs_stop)  # closes the pools idle for keep_alive_minutes
        cleanup.callback(pools.close)  # runs after jobs_stop.set (an ExitStack unwinds last-in first)
    if start_schedule(app.client, service, jobs_stop) is not None:
        every = config.schedule.sweep_every_minutes
        print(f"sstp-bot: scheduled sweeps every {every} minute(s)" if every else "sstp-bot: weekly digest scheduled",
              file=env.stdout)
    cleanup.callback(jobs_stop.set)
    return cleanup


@contextlib.contextmanager
def _slack_errors(variable: str) -> Iterator[None]:
    """Slack refusing a token, or not answering, becomes a ConfigError naming the variable (never its value)."""
    try:
        yield
    except SlackApiError as exc:
        raise ConfigError(f"Slack refused {variable}: {exc.response.get('error', 'error')}") from None
    except BoltError as exc:
        raise ConfigError(f"Slack refused {variable}: {redact(str(exc))}") from None
    except (SlackRequestError, OSError) as exc:
        raise ConfigError(f"cannot reach the Slack Web API ({type(exc).__name__}): check slack.api_url and the network") from None


def _stop_on_sigterm(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread (tests run serve in a thread)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
