"""Replay memory for signed Slack requests (`slack_requests`) and the state each plan's card shows
(`plans.card_state`).

Existing plans are taken as shown: their cards are not revisited after the upgrade.

Revision ID: 0005_hardening
Revises: 0004_operations
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_hardening"
down_revision: str | None = "0004_operations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "slack_requests",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_slack_requests")),
    )
    op.create_index("ix_slack_requests_expires", "slack_requests", ["expires_at"])
    op.add_column("plans", sa.Column("card_state", sa.String(16), nullable=True))
    op.execute("UPDATE plans SET card_state = state")


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+; 0003's downgrade shows the rebuild older SQLite needs)
    op.drop_column("plans", "card_state")
    op.drop_index("ix_slack_requests_expires", table_name="slack_requests")
    op.drop_table("slack_requests")
