"""When each lead's workflow was started: a lead recorded while Temporal was down waits.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

``leads.started_at`` is empty while a lead's workflow has not been started (it was taken in
while Temporal could not be reached); the web app's redelivery sweep starts such leads when
Temporal is back, then delivers the events that waited for them.

Existing leads whose workflow recorded its first stage change have certainly been started:
they get their creation time. The others are left empty, so the sweep starts (or, with the
"use existing" start policy, simply finds) their workflow: a lead taken in half-way before
this revision is finished instead of waiting for a resend.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.add_column(sa.Column("started_at", TIMESTAMP, nullable=True))
        batch.create_index("ix_leads_started_at", ["started_at"])
    op.execute(
        "UPDATE leads SET started_at = created_at WHERE EXISTS "
        "(SELECT 1 FROM stage_changes WHERE stage_changes.lead_id = leads.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.drop_index("ix_leads_started_at")
        batch.drop_column("started_at")
