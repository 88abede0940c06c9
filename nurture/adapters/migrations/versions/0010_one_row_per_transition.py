"""One stage-change row per transition, whatever the activity's attempts.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

``record_transition`` looked for the row before inserting it, which keeps a retried
attempt from writing it twice, but not two attempts running at once (a worker frozen past
the activity's timeout finishes after its retry did): both found nothing and both inserted,
and the funnel counted the transition twice. Duplicates already stored are removed (the
first row of each transition is kept), then a unique constraint makes the insert an
``ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ["lead_id", "cycle", "to_stage", "at"]


def upgrade() -> None:
    op.execute(
        """
        DELETE FROM stage_changes
        WHERE id NOT IN (
            SELECT MIN(id) FROM stage_changes GROUP BY lead_id, cycle, to_stage, at
        )
        """
    )
    with op.batch_alter_table("stage_changes") as batch:
        batch.create_unique_constraint(op.f("uq_stage_changes_lead_id_cycle_to_stage_at"), COLUMNS)


def downgrade() -> None:
    with op.batch_alter_table("stage_changes") as batch:
        batch.drop_constraint(op.f("uq_stage_changes_lead_id_cycle_to_stage_at"), type_="unique")
