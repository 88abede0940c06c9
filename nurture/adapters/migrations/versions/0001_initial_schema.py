"""Initial schema: leads, their history and touches, events, suppressions, users, mail.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Types are spelled out here rather than imported from ``nurture.adapters.database``: a migration must
keep meaning what it meant when written, whatever the models become. Constraint names
are final (``op.f``): env.py's metadata carries a naming convention that would otherwise
prefix them a second time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Timestamps are UTC: timestamptz on PostgreSQL, naive UTC text on SQLite.
TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id() -> sa.Column:
    return sa.Column("id", AUTO_ID, primary_key=True, autoincrement=True)


def _lead_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["lead_id"], ["leads.id"], name=op.f(f"fk_{table}_lead_id_leads"), ondelete="CASCADE"
    )


def _touch_columns() -> list[sa.Column]:
    """The key and business position shared by email sends and call tasks."""
    return [
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("cadence", sa.String(), nullable=False),
        sa.Column("step", sa.String(), nullable=False),
        sa.Column("visit", sa.Integer(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "leads",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=True),
        sa.Column("first_name", sa.String(), nullable=True),
        sa.Column("last_name", sa.String(), nullable=True),
        sa.Column("company", sa.String(), nullable=True),
        sa.Column("title", sa.String(), nullable=True),
        sa.Column("phone", sa.String(), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("timezone", sa.String(), nullable=True),
        sa.Column("industry", sa.String(), nullable=True),
        sa.Column("employees", sa.Integer(), nullable=True),
        sa.Column("tier_account", sa.Boolean(), nullable=True),
        sa.Column("source", sa.String(), nullable=True),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("account", sa.String(), nullable=True),
        sa.Column("stage", sa.String(), server_default="nurturing", nullable=False),
        sa.Column("score", sa.Integer(), server_default="0", nullable=False),
        sa.Column("grade", sa.String(), nullable=True),
        sa.Column("owner", sa.String(), nullable=True),
        sa.Column("cadence", sa.String(), nullable=True),
        sa.Column("step", sa.String(), nullable=True),
        sa.Column("next_touch_at", TIMESTAMP, nullable=True),
        sa.Column("unsubscribed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("do_not_contact", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("erased_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leads")),
    )
    op.create_index("ix_leads_email", "leads", ["email"])
    op.create_index("ix_leads_account", "leads", ["account"])
    op.create_index("ix_leads_owner_stage", "leads", ["owner", "stage"])
    op.create_index("ix_leads_stage", "leads", ["stage"])
    op.create_index("ix_leads_next_touch_at", "leads", ["next_touch_at"])

    op.create_table(
        "stage_changes",
        _id(),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("from_stage", sa.String(), nullable=True),
        sa.Column("to_stage", sa.String(), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("source", sa.String(), nullable=True),
        sa.Column("cadence", sa.String(), nullable=True),
        sa.Column("step", sa.String(), nullable=True),
        _lead_fk("stage_changes"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stage_changes")),
    )
    op.create_index("ix_stage_changes_lead_id_at", "stage_changes", ["lead_id", "at"])
    op.create_index("ix_stage_changes_to_stage_at", "stage_changes", ["to_stage", "at"])

    op.create_table(
        "email_sends",
        _id(),
        *_touch_columns(),
        sa.Column("template", sa.String(), nullable=False),
        sa.Column("to_address", sa.String(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("status", sa.String(), server_default="queued", nullable=False),
        sa.Column("smtp_reply", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("sent_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'failed', 'unknown', 'skipped')",
            name=op.f("ck_email_sends_status"),
        ),
        _lead_fk("email_sends"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_sends")),
        sa.UniqueConstraint("key", name=op.f("uq_email_sends_key")),
    )
    op.create_index("ix_email_sends_lead_id_sent_at", "email_sends", ["lead_id", "sent_at"])
    op.create_index("ix_email_sends_status_created_at", "email_sends", ["status", "created_at"])

    op.create_table(
        "call_tasks",
        sa.Column("id", sa.String(length=16), nullable=False),
        *_touch_columns(),
        sa.Column("owner", sa.String(), nullable=True),
        sa.Column("status", sa.String(), server_default="open", nullable=False),
        sa.Column("due_at", TIMESTAMP, nullable=False),
        sa.Column("script", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("overdue_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("completed_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'done', 'cancelled')", name=op.f("ck_call_tasks_status")
        ),
        _lead_fk("call_tasks"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_tasks")),
        sa.UniqueConstraint("key", name=op.f("uq_call_tasks_key")),
    )
    op.create_index(
        "ix_call_tasks_owner_status_due_at", "call_tasks", ["owner", "status", "due_at"]
    )
    op.create_index("ix_call_tasks_status_due_at", "call_tasks", ["status", "due_at"])
    op.create_index("ix_call_tasks_lead_id_status", "call_tasks", ["lead_id", "status"])

    op.create_table(
        "events",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("occurred_at", TIMESTAMP, nullable=True),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("delivered_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "status IN ('delivered', 'parked', 'recorded')", name=op.f("ck_events_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_lead_id_occurred_at", "events", ["lead_id", "occurred_at"])
    op.create_index("ix_events_status_received_at", "events", ["status", "received_at"])

    op.create_table(
        "suppressions",
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("email = lower(email)", name=op.f("ck_suppressions_email_lower")),
        sa.PrimaryKeyConstraint("email", name=op.f("pk_suppressions")),
    )

    op.create_table(
        "opportunities",
        _id(),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(), nullable=True),
        sa.Column("trigger", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("grade", sa.String(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("outcome", sa.String(), nullable=True),
        sa.Column("outcome_reason", sa.Text(), nullable=True),
        sa.Column("closed_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('won', 'lost', 'rejected')",
            name=op.f("ck_opportunities_outcome"),
        ),
        _lead_fk("opportunities"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_opportunities")),
        sa.UniqueConstraint("key", name=op.f("uq_opportunities_key")),
    )
    op.create_index("ix_opportunities_lead_id", "opportunities", ["lead_id"])
    op.create_index("ix_opportunities_owner_closed_at", "opportunities", ["owner", "closed_at"])
    op.create_index("ix_opportunities_created_at", "opportunities", ["created_at"])

    op.create_table(
        "users",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("password_hash", sa.String(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("role IN ('sdr', 'ops')", name=op.f("ck_users_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )

    op.create_table(
        "received_mail",
        _id(),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.Column("mail_from", sa.String(), nullable=True),
        sa.Column("rcpt_tos", JSON, nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_received_mail")),
    )
    op.create_index("ix_received_mail_received_at", "received_mail", ["received_at"])


def downgrade() -> None:
    # Children before their parent (leads); dropping a table drops its indexes.
    for table in (
        "received_mail",
        "users",
        "opportunities",
        "suppressions",
        "events",
        "call_tasks",
        "email_sends",
        "stage_changes",
        "leads",
    ):
        op.drop_table(table)
