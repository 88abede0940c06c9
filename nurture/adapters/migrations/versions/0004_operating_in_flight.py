"""Operating leads in flight: the live sending switch, playbook rollouts, SDRs who left.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

``sending_switch`` is an append-only log of ``ops sending pause|resume``: its newest row is
the switch (no row: sending is on). ``playbook_rollouts`` keeps each playbook delivered to
the leads in flight, so the next rollout can show the rules that changed since.
``users.deactivated_at`` marks an SDR who left (``users deactivate``);
``call_tasks.escalated_*`` an overdue task passed on (``team.escalation``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sending_switch",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
    )
    op.create_table(
        "playbook_rollouts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("playbook", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("leads", sa.Integer(), nullable=False),
    )

    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("deactivated_at", TIMESTAMP, nullable=True))
    with op.batch_alter_table("call_tasks") as batch:
        batch.add_column(sa.Column("escalated_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("escalated_from", sa.String(), nullable=True))
        batch.add_column(sa.Column("escalated_to", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("call_tasks") as batch:
        batch.drop_column("escalated_to")
        batch.drop_column("escalated_from")
        batch.drop_column("escalated_at")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("deactivated_at")
    op.drop_table("playbook_rollouts")
    op.drop_table("sending_switch")
