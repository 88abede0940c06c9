"""SDR call tasks as the inbox and the CLI act on them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nurture.adapters.database import CallTask
from nurture.domain.events import CALL_OUTCOMES, Event
from nurture.services.intake import Intake, submit_event


class TaskError(ValueError):
    """A task that cannot be completed as asked (unknown outcome, already done)."""


class TaskNotFound(LookupError):
    pass


class NotYourTask(PermissionError):
    pass


async def complete_task(
    sessions: async_sessionmaker[AsyncSession],
    intake: Intake,
    task_id: str,
    outcome: str,
    notes: str | None,
    by: str | None = None,
) -> str:
    """Record an SDR's outcome on a task, then signal the lead as `call.completed`.

    Args:
        by: the SDR completing it; None for ops (who may complete any task).

    Returns:
        The event's delivery status (delivered, recorded, ...).
    """
    if outcome not in CALL_OUTCOMES:
        raise TaskError(f"unknown outcome '{outcome}': use one of {', '.join(CALL_OUTCOMES)}")
    async with sessions() as session:
        task = await session.get(CallTask, task_id)
        if task is None:
            raise TaskNotFound(f"no task {task_id}")
        if by is not None and task.owner != by:
            raise NotYourTask(f"task {task_id} belongs to another SDR")
        if task.status != "open":
            raise TaskError(f"task {task_id} is {task.status}")
        task.status = "done"
        task.outcome = outcome
        task.notes = notes
        task.completed_at = datetime.now(UTC)
        lead_id, step, cadence = task.lead_id, task.step, task.cadence
        await session.commit()
    data: dict[str, object] = {
        "outcome": outcome,
        "task": task_id,
        "step": step,
        "cadence": cadence,
    }
    if notes:
        data["notes"] = notes
    event = Event(
        id=f"task-{task_id}-done",
        type="call.completed",
        lead_id=lead_id,
        occurred_at=datetime.now(UTC),
        data=data,
    )
    return (await submit_event(intake, event)).status
