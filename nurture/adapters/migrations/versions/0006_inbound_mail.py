"""Mail that comes back: one row per received message, read once.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

``inbound_mail`` holds each message the mailbox reader or ``POST /inbound/email`` took in,
unique by its Message-ID: what it was, which lead and event it became, or that it waits for
a person (``unmatched``, with a bounded excerpt).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "inbound_mail",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("message_key", sa.String(500), nullable=False),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("lead_id", sa.String(), nullable=True),
        sa.Column("event_id", sa.String(), nullable=True),
        sa.Column("sender", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("excerpt", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('matched', 'unmatched', 'ignored')",
            name=op.f("ck_inbound_mail_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_mail")),
        sa.UniqueConstraint("message_key", name=op.f("uq_inbound_mail_message_key")),
    )
    op.create_index("ix_inbound_mail_status_received_at", "inbound_mail", ["status", "received_at"])
    op.create_index("ix_inbound_mail_lead_id", "inbound_mail", ["lead_id"])


def downgrade() -> None:
    op.drop_table("inbound_mail")
