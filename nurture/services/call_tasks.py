"""SDR call tasks as the inbox and the CLI act on them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nurture.adapters.database import CallTask
from nurture.domain.events import CALL_OUTCOMES, Event, check_callback
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
    callback: str | None = None,
) -> str:
    """Record an SDR's outcome on a task, then signal the lead as `call.completed`.

    Args:
        by: the SDR completing it; None for ops (who may complete any task).
        callback: with ``call_back_later``, when to call back (ISO 8601; without an offset,
            the lead's local time): the lead's cadence makes a new task due then.

    Returns:
        The event's delivery status (delivered, recorded, ...).
    """
    if outcome not in CALL_OUTCOMES:
        raise TaskError(f"unknown outcome '{outcome}': use one of {', '.join(CALL_OUTCOMES)}")
    callback = (callback or "").strip() or None
    if callback is not None:
        if outcome != "call_back_later":
            raise TaskError("a callback time goes with the outcome call_back_later only")
        try:
            check_callback(callback, datetime.now(UTC))
        except ValueError as exc:
            raise TaskError(str(exc)) from None
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
    if callback:
        data["callback"] = callback
    event = Event(
        id=f"task-{task_id}-done",
        type="call.completed",
        lead_id=lead_id,
        occurred_at=datetime.now(UTC),
        data=data,
    )
    return (await submit_event(intake, event)).status
