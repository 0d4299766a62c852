"""Content-addressed, compressed snapshots: move each check's inline snapshot into `snapshots`.

Identical snapshots (ignoring `collected_at` and `vpn_connections`, which change on every probe)
are stored once, zlib-compressed, keyed by the SHA-256 of their canonical JSON.

Revision ID: 0002_snapshots
Revises: 0001_initial
Create Date: 2026-11-25
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002_snapshots"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A copy of storage.snapshots as of this revision: a migration must not change when the code does.
_VOLATILE = ("collected_at", "vpn_connections")


def _encode(snapshot: dict[str, Any]) -> tuple[str, bytes, int]:
    stable = {k: v for k, v in snapshot.items() if k not in _VOLATILE}
    raw = json.dumps(stable, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(raw).hexdigest(), zlib.compress(raw, 6), len(raw)


_checks_v1 = sa.table(
    "checks",
    sa.column("id", sa.Integer()),
    sa.column("finished_at", sa.DateTime()),
    sa.column("snapshot", sa.JSON()),
    sa.column("snapshot_hash", sa.String(64)),
)
_snapshots = sa.table(
    "snapshots",
    sa.column("hash", sa.String(64)),
    sa.column("body", sa.LargeBinary()),
    sa.column("raw_size", sa.Integer()),
    sa.column("created_at", sa.DateTime()),
    sa.column("pruned_at", sa.DateTime()),
)


def upgrade() -> None:
    op.create_table(
        "snapshots",
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("raw_size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("pruned_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("hash", name="pk_snapshots"),
    )
    op.add_column("checks", sa.Column("snapshot_hash", sa.String(64), nullable=True))

    bind = op.get_bind()
    seen: set[str] = set()
    rows = bind.execute(
        sa.select(_checks_v1.c.id, _checks_v1.c.finished_at, _checks_v1.c.snapshot)
        .where(_checks_v1.c.snapshot.is_not(None))
        .order_by(_checks_v1.c.id)
    ).all()
    for check_id, finished_at, snapshot in rows:
        if not isinstance(snapshot, dict):
            continue
        digest, body, raw_size = _encode(snapshot)
        if digest not in seen:
            seen.add(digest)
            bind.execute(
                _snapshots.insert().values(hash=digest, body=body, raw_size=raw_size, created_at=finished_at)
            )
        bind.execute(_checks_v1.update().where(_checks_v1.c.id == check_id).values(snapshot_hash=digest))

    with op.batch_alter_table("checks") as batch:
        batch.drop_column("snapshot")
        batch.create_foreign_key("fk_checks_snapshot_hash_snapshots", "snapshots", ["snapshot_hash"], ["hash"])


def downgrade() -> None:
    op.add_column("checks", sa.Column("snapshot", sa.JSON(), nullable=True))
    bind = op.get_bind()
    bodies = {
        digest: json.loads(zlib.decompress(body))
        for digest, body in bind.execute(sa.select(_snapshots.c.hash, _snapshots.c.body)).all()
        if body is not None
    }
    for check_id, digest in bind.execute(sa.select(_checks_v1.c.id, _checks_v1.c.snapshot_hash)).all():
        if digest in bodies:
            bind.execute(_checks_v1.update().where(_checks_v1.c.id == check_id).values(snapshot=bodies[digest]))
    with op.batch_alter_table("checks") as batch:
        batch.drop_constraint("fk_checks_snapshot_hash_snapshots", type_="foreignkey")
        batch.drop_column("snapshot_hash")
    op.drop_table("snapshots")
