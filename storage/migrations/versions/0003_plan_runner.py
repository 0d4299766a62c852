"""Record which process runs a plan (`plans.runner`), so start-up only interrupts plans whose runner died.

Existing rows keep NULL: a plan left RUNNING by an older version has no recorded runner and is
treated as interrupted at the next start-up, as before.

Revision ID: 0003_plan_runner
Revises: 0002_snapshots
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_plan_runner"
down_revision: str | None = "0002_snapshots"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ONE_RUNNING = "uq_plans_one_running_per_server"


def upgrade() -> None:
    op.add_column("plans", sa.Column("runner", sa.Text(), nullable=True))


def downgrade() -> None:
    dialect = op.get_bind().dialect
    if dialect.name != "sqlite" or (dialect.server_version_info or (0,)) >= (3, 35, 0):
        op.drop_column("plans", "runner")  # ALTER TABLE ... DROP COLUMN (SQLite 3.35+)
        return
    # Older SQLite: rebuild the table, then make sure the partial unique index is the one we want
    # (its WHERE clause must survive the copy).
    with op.batch_alter_table("plans", recreate="always") as batch:
        batch.drop_column("runner")
    op.execute(f"DROP INDEX IF EXISTS {_ONE_RUNNING}")
    op.create_index(
        _ONE_RUNNING,
        "plans",
        ["server"],
        unique=True,
        sqlite_where=sa.text("state = 'RUNNING'"),
    )
