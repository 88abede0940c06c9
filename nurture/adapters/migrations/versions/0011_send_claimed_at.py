"""When an outbox row was claimed: a retry tells a hand-over in progress from a dead one.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

A retry that found a row ``sending`` made it ``unknown`` at once. With the send's
heartbeat, a live but late worker's attempt can be retried while it still hands the
message over; the retry then recorded ``unknown`` (and alerted) although the message went
out. ``claimed_at`` lets a retry wait for a fresh claim's outcome and call only a stale one
``unknown``. Rows claimed before this revision have none and are treated as stale.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("email_sends") as batch:
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("email_sends") as batch:
        batch.drop_column("claimed_at")
