"""Alembic, run programmatically: the migrations ship inside the package (`storage/migrations`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from commands.errors import ConfigError

from .engine import IMMEDIATE, display_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


@dataclass(frozen=True)
class UpgradeResult:
    from_revision: str | None
    to_revision: str

    @property
    def changed(self) -> bool:
        return self.from_revision != self.to_revision


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the shipped migrations; `connection` is used by env.py."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_known(engine: Engine, revision: str | None) -> None:
    if revision is not None and revision not in known_revisions():
        raise ConfigError(
            f"the database {display_url(engine.url)} is at revision {revision}, which this version of "
            "sstp-bot does not know (was it upgraded by a newer version?)"
        )


def upgrade(engine: Engine, target: str = "head") -> UpgradeResult:
    """Apply migrations up to `target`. Safe to run concurrently: SQLite serialises on the write lock."""
    before = current_revision(engine)
    check_known(engine, before)
    with engine.connect() as conn:
        conn.execution_options(**{IMMEDIATE: True})
        command.upgrade(alembic_config(conn), target)
    after = current_revision(engine)
    assert after is not None
    return UpgradeResult(before, after)


def downgrade(engine: Engine, target: str) -> None:
    with engine.connect() as conn:
        conn.execution_options(**{IMMEDIATE: True})
        command.downgrade(alembic_config(conn), target)


def require_head(engine: Engine) -> None:
    """ConfigError unless the database is at the head revision (used when auto_upgrade is off)."""
    current = current_revision(engine)
    check_known(engine, current)
    head = head_revision()
    if current != head:
        raise ConfigError(
            f"the database {display_url(engine.url)} is at revision {current or '(empty)'} but this "
            f"version of sstp-bot needs {head}: it needs an upgrade: run `sstp-bot db upgrade`"
        )


def upgrade_database(url: str) -> UpgradeResult:
    """`sstp-bot db upgrade`: open `url`, migrate it to head, report the revisions before and after."""
    from sqlalchemy.exc import SQLAlchemyError

    from .engine import build_engine

    try:
        engine = build_engine(url)
    except (SQLAlchemyError, OSError, ValueError) as exc:
        raise ConfigError(f"cannot open the database {url!r}: {exc}") from None
    try:
        return upgrade(engine)
    except (SQLAlchemyError, OSError) as exc:
        # Like every other command: a database that cannot be opened is a one-line configuration error.
        reason = getattr(exc, "orig", None) or exc
        raise ConfigError(f"cannot open the database {display_url(engine.url)}: {reason}") from None
    finally:
        engine.dispose()
