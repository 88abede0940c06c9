"""`/inbox`: the SDR's call tasks as a compact list, the selected one beside it.

The list shows each task's lead, company, step and due time (in the SDR's own time, set by
the browser, and in the lead's), overdue first. The selected task (``?task=ID``; the first
by default) shows the outcome buttons at the top, then the script as readable text and the
lead's context. Keys: ``j``/``k`` move through the list, ``1``-``8`` pick an outcome,
``n`` writes a note.

An SDR sees and completes only their own tasks (someone else's is 404, to open and to
complete alike: an SDR learns nothing about colleagues' work); ops see everyone's, with a
filter by SDR. The page notices new tasks by polling `/inbox/poll`; it reloads itself only
when no outcome is being typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nurture.adapters.database import CallTask, LeadRow, User
from nurture.adapters.temporal import TemporalUnavailable
from nurture.domain.events import CALL_OUTCOMES
from nurture.domain.timing import lead_zone
from nurture.services.call_tasks import NotYourTask, TaskError, TaskNotFound, complete_task
from nurture.web.common import Services, ServicesDep, SessionDep, render
from nurture.web.leadinfo import LeadInfo, apply_state, load_lead, query_states
from nurture.web.security import Viewer, ViewerDep, check_csrf, current_viewer

router = APIRouter(include_in_schema=False)

# Each task shows its lead's live state, one query per task: keep a page to a day's work.
PAGE_TASKS = 50
POLL_SECONDS = 20


def is_overdue(task: CallTask, now: datetime) -> bool:
    """Open and past its due time.

    A task the cadence stopped waiting for (``overdue_at``: no outcome came in time) before
    its due time is not overdue yet: it is flagged "cadence moved on" instead.
    """
    return task.status == "open" and task.due_at < now


@dataclass
class Row:
    """One line of the compact list."""

    task: CallTask
    name: str
    company: str | None
    zone: ZoneInfo
    overdue: bool

    @property
    def due_local(self) -> datetime:
        """The due time in the lead's own time zone."""
        return self.task.due_at.astimezone(self.zone)


async def _rows(session: AsyncSession, tasks: list[CallTask]) -> list[Row]:
    now = datetime.now(UTC)
    ids = sorted({t.lead_id for t in tasks})
    leads = {
        row.id: row
        for row in (await session.scalars(select(LeadRow).where(LeadRow.id.in_(ids)))).all()
    }
    rows = []
    for task in tasks:
        lead = leads.get(task.lead_id)
        name = " ".join(p for p in (lead.first_name, lead.last_name) if p) if lead else ""
        rows.append(
            Row(
                task=task,
                name=name or task.lead_id,
                company=lead.company if lead else None,
                zone=lead_zone(lead.timezone, lead.country) if lead else lead_zone(None, None),
                overdue=is_overdue(task, now),
            )
        )
    # Overdue first (oldest first), then by due time: the list's order is the day's order.
    rows.sort(key=lambda r: (not r.overdue, r.task.due_at, r.task.id))
    return rows


async def _tasks(session: AsyncSession, owner: str | None, status: str) -> list[CallTask]:
    query = select(CallTask).order_by(CallTask.due_at, CallTask.id).limit(PAGE_TASKS)
    if owner:
        query = query.where(CallTask.owner == owner)
    if status != "all":
        query = query.where(CallTask.status == status)
    return list((await session.scalars(query)).all())


async def _cards(
    services: Services, session: AsyncSession, tasks: list[CallTask]
) -> list[dict[str, object]]:
    leads: dict[str, LeadInfo | None] = {}
    for task in tasks:
        if task.lead_id not in leads:
            # The database part one lead at a time (a session runs one statement at once)...
            leads[task.lead_id] = await load_lead(services, session, task.lead_id, history=8)
    # ...then every workflow's live state at once.
    found = [lead_id for lead_id, info in leads.items() if info is not None]
    for lead_id, (view, problem) in (await query_states(services, found)).items():
        info = leads[lead_id]
        assert info is not None
        apply_state(info, view, problem)
    now = datetime.now(UTC)
    cards: list[dict[str, object]] = []
    for t in tasks:
        info = leads.get(t.lead_id)
        zone = lead_zone(info.row.timezone, info.row.country) if info else lead_zone(None, None)
        cards.append({"task": t, "lead": info, "overdue": is_overdue(t, now), "zone": zone})
    return cards


async def _sdrs(session: AsyncSession) -> list[str]:
    ids = set((await session.scalars(select(User.id).where(User.role == "sdr"))).all())
    ids |= {o for o in (await session.scalars(select(CallTask.owner).distinct())).all() if o}
    return sorted(ids)


@router.get("/inbox", response_class=HTMLResponse)
async def inbox(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    services: ServicesDep,
    owner: str | None = None,
    status: str = "open",
    done: str | None = None,
    task: str | None = None,
) -> Response:
    """Tasks as a compact list, overdue first; the selected one beside it, ready to record.

    Ops may filter by SDR and status.
    """
    if status not in ("open", "done", "cancelled", "all"):
        status = "open"
    if not viewer.is_ops:
        owner = viewer.id
    tasks = await _tasks(session, owner or None, status)
    rows = await _rows(session, tasks)
    chosen = next((r.task for r in rows if r.task.id == task), rows[0].task if rows else None)
    cards = await _cards(services, session, [chosen]) if chosen is not None else []
    keep = {k: v for k, v in (("owner", owner if viewer.is_ops else ""), ("status", status)) if v}
    if keep.get("status") == "open":
        keep.pop("status")
    context = {
        "rows": rows,
        "card": cards[0] if cards else None,
        "query": "&".join(f"{k}={quote(v)}" for k, v in keep.items()),
        "owner": owner or "",
        "status": status,
        "done": done,
        "sdrs": await _sdrs(session) if viewer.is_ops else [],
        "outcomes": CALL_OUTCOMES,
        "poll_seconds": POLL_SECONDS,
        "task_ids": [t.id for t in tasks if t.status == "open"],
    }
    return render(request, "inbox.html", context)


@router.get("/inbox/poll")
async def poll(request: Request, session: SessionDep, owner: str | None = None) -> Response:
    """The open task ids the inbox would show (JSON), so the page can notice new ones."""
    viewer = await current_viewer(request, session)
    if viewer is None:
        return JSONResponse({"detail": "not signed in"}, status_code=401)
    tasks = await _tasks(
        session, owner if viewer.is_ops and owner else viewer.owner_filter(), "open"
    )
    return JSONResponse({"open": [t.id for t in tasks]})


async def _task_for(session: AsyncSession, viewer: Viewer, task_id: str) -> CallTask:
    task = await session.get(CallTask, task_id)
    # Someone else's task is "not found": an SDR learns nothing about colleagues' work.
    if task is None or (not viewer.is_ops and task.owner != viewer.id):
        raise HTTPException(status_code=404, detail="no such task")
    return task


@router.get("/inbox/tasks/{task_id}", response_class=HTMLResponse)
async def task_page(
    request: Request, task_id: str, viewer: ViewerDep, session: SessionDep, services: ServicesDep
) -> Response:
    """One task: the script, the lead and the outcome form."""
    task = await _task_for(session, viewer, task_id)
    cards = await _cards(services, session, [task])
    return render(
        request, "task.html", {"card": cards[0], "outcomes": CALL_OUTCOMES, "error": None}
    )


def task_in_inbox(task_id: str) -> str:
    """The inbox with ``task_id`` selected."""
    return f"/inbox?task={quote(task_id)}"


@router.post("/inbox/tasks/{task_id}", response_class=HTMLResponse)
async def record_outcome(
    request: Request,
    task_id: str,
    viewer: ViewerDep,
    session: SessionDep,
    services: ServicesDep,
    outcome: Annotated[str, Form()],
    notes: Annotated[str, Form(max_length=4000)] = "",
    callback: Annotated[str, Form(max_length=40)] = "",
    csrf: Annotated[str | None, Form()] = None,
) -> Response:
    """Record the call's outcome (SDRs: their own tasks only) and go back to the inbox."""
    check_csrf(viewer, csrf)
    error: str | None = None
    status_code = 400
    try:
        intake = await services.intake()
        await complete_task(
            services.sessions,
            intake,
            task_id,
            outcome,
            notes.strip() or None,
            by=None if viewer.is_ops else viewer.id,
            callback=callback,
        )
    except (TaskNotFound, NotYourTask):
        # Another SDR's task answers like a missing one: its id tells nothing.
        raise HTTPException(status_code=404, detail="no such task") from None
    except TaskError as exc:
        error, status_code = str(exc), 409
    except TemporalUnavailable:
        error, status_code = "The workflow service is unavailable; try again in a minute.", 503
    if error is None:
        return RedirectResponse(f"/inbox?done={task_id}", status_code=303)
    task = await _task_for(session, viewer, task_id)
    cards = await _cards(services, session, [task])
    context = {"card": cards[0], "outcomes": CALL_OUTCOMES, "error": error}
    return render(request, "task.html", context, status_code=status_code)
