"""Alembic environment for sstp-bot's shipped migrations.

Normally run through `storage.migrate` (which passes its own connection in `config.attributes`);
a `sqlalchemy.url` main option works too, for running Alembic by hand.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from storage.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    dbapi = connection.connection.dbapi_connection if sqlite else None
    if dbapi is not None:
        # Table rebuilds (SQLite's way to alter a table) would trip the foreign keys that point at the
        # rebuilt table; the pragma is ignored inside a transaction, so switch it off before and
        # verify the keys afterwards.
        dbapi.execute("PRAGMA foreign_keys=OFF")
    try:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=sqlite)
        with context.begin_transaction():
            context.run_migrations()
        if dbapi is not None:
            problems = dbapi.execute("PRAGMA foreign_key_check").fetchall()
            if problems:
                raise RuntimeError(f"foreign key violations after migration: {problems[:5]}")
    finally:
        if dbapi is not None:
            dbapi.execute("PRAGMA foreign_keys=ON")


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass a connection in config.attributes or set sqlalchemy.url")
    from storage.engine import build_engine  # the same pragmas as the bot

    engine = build_engine(url) if url.startswith("sqlite") else create_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) mode is not supported; run `sstp-bot db upgrade`")
run_migrations_online()
