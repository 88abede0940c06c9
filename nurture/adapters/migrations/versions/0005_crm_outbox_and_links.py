"""Real CRMs: the outbound CRM outbox, and what the inbound adapters learn and keep.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

``crm_posts`` is the outbox of signed posts to ``NURTURE_CRM_WEBHOOK_URL`` (toss-ups and
stage changes), sent by the worker's background sender with bounded retries instead of
inside the lead's activity. ``crm_links`` ties a CRM record to the lead it is about (a
HubSpot deal to its contact, a Salesforce opportunity to its converted lead);
``crm_unmatched`` keeps a deal outcome whose lead is not known yet, until a link arrives.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "crm_posts",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("status", sa.String(), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TIMESTAMP, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("sent_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'failed')", name=op.f("ck_crm_posts_status")
        ),
        sa.UniqueConstraint("key", name=op.f("uq_crm_posts_key")),
    )
    op.create_index(
        "ix_crm_posts_status_next_attempt_at", "crm_posts", ["status", "next_attempt_at"]
    )
    op.create_index("ix_crm_posts_lead_id_status", "crm_posts", ["lead_id", "status"])
    op.create_table(
        "crm_links",
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("object_type", sa.String(32), nullable=False),
        sa.Column("object_id", sa.String(200), nullable=False),
        sa.Column("lead_id", sa.String(200), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint(
            "source", "object_type", "object_id", "lead_id", name=op.f("pk_crm_links")
        ),
    )
    op.create_index("ix_crm_links_lead_id", "crm_links", ["lead_id"])
    op.create_table(
        "crm_unmatched",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("object_type", sa.String(32), nullable=False),
        sa.Column("object_id", sa.String(200), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("occurred_at", TIMESTAMP, nullable=True),
        sa.Column("data", JSON, nullable=False),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_unmatched")),
    )
    op.create_index(
        "ix_crm_unmatched_object", "crm_unmatched", ["source", "object_type", "object_id"]
    )


def downgrade() -> None:
    op.drop_table("crm_unmatched")
    op.drop_table("crm_links")
    op.drop_table("crm_posts")
