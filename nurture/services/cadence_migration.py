"""Moving leads in flight to the current version of their cadence, by step id.

By default a lead keeps the cadence version it entered with. A marketer who changed a
cadence decides to move the leads in it: each lead's current step is kept when the new
version still has it, or mapped (`--map OLD=NEW`) when it was renamed or removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio.client import Client

from nurture.domain.cadence import Cadence
from nurture.domain.names import SIGNAL_MIGRATE


@dataclass
class MigrationReport:
    signaled: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


def check_map(cadence: Cadence, step_map: dict[str, str]) -> list[str]:
    """Problems with a step map: each target must be a step of the new version (or `end`)."""
    steps = {s.id for s in cadence.steps}
    return [
        f"--map {old}={new}: '{new}' is not a step of {cadence.id} "
        f"(steps: {', '.join(sorted(steps))})"
        for old, new in step_map.items()
        if new not in steps and new != "end"
    ]


async def migrate_leads(
    client: Client, cadence: Cadence, step_map: dict[str, str]
) -> MigrationReport:
    """Signal every running lead in ``cadence.id`` to move to this version.

    A lead whose current step is neither in the new version nor in the map refuses the move
    (it stays on its version, with the reason in its history) rather than guessing.
    """
    report = MigrationReport()
    steps = {s.id for s in cadence.steps}
    query = f'Cadence = "{cadence.id}" AND ExecutionStatus = "Running"'
    async for execution in client.list_workflows(query):
        attributes = {pair.key.name: pair.value for pair in execution.typed_search_attributes}
        current = str(attributes.get("CadenceStep") or "")
        target = step_map.get(current, current)
        if current not in ("", "(done)") and target not in steps and target != "end":
            report.refused.append(
                (
                    execution.id,
                    f"step '{current}' is not in the new version; add --map {current}=NEW",
                )
            )
            continue
        await client.get_workflow_handle(execution.id).signal(
            SIGNAL_MIGRATE, args=[cadence, step_map]
        )
        report.signaled.append(execution.id)
    return report
