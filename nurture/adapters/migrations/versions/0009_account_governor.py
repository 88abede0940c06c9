"""The account governor: lock rows per account and person, and the touches it granted.

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-03

``governor_locks`` holds one row per account (``account:<key>``) and per person
(``person:<keyed hash of the address>``), locked while a touch's slot is decided and while
an account's SDR is chosen. ``touch_grants`` holds each granted touch, unique by the
touch's idempotency key.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "governor_locks",
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_governor_locks")),
    )
    op.create_table(
        "touch_grants",
        sa.Column("key", sa.String(500), nullable=False),
        sa.Column("lead_id", sa.String(), nullable=False),
        sa.Column("account", sa.String(), nullable=True),
        sa.Column("person", sa.String(64), nullable=True),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_touch_grants")),
    )
    op.create_index("ix_touch_grants_account_at", "touch_grants", ["account", "at"])
    op.create_index("ix_touch_grants_person_at", "touch_grants", ["person", "at"])
    op.create_index("ix_touch_grants_lead_id", "touch_grants", ["lead_id"])


def downgrade() -> None:
    op.drop_table("touch_grants")
    op.drop_table("governor_locks")
