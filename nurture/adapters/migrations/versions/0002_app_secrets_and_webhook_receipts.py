"""App-private secrets and the webhook replay guard.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

``app_secrets`` holds the random secret the app makes for itself when
``NURTURE_APP_SECRET`` is not set (session cookies and email link tokens are keyed from
it, never from the webhook secret the CRM also holds). ``webhook_receipts`` remembers the
signed webhook requests already taken in, so a captured one replayed inside its signature
window has no second effect.

Types are spelled out here, as in 0001, so the migration keeps its meaning.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "app_secrets",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_app_secrets")),
    )
    op.create_table(
        "webhook_receipts",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("seen_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_webhook_receipts")),
    )
    op.create_index("ix_webhook_receipts_seen_at", "webhook_receipts", ["seen_at"])


def downgrade() -> None:
    op.drop_table("webhook_receipts")
    op.drop_table("app_secrets")
