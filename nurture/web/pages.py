"""`/leads/<id>` (a lead's state and history) and `/ops` (what needs a human)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.service import RPCError

from nurture.adapters.database import CallTask, CrmPost, CrmUnmatched, EmailSend, EventRow, LeadRow
from nurture.adapters.temporal import TemporalUnavailable
from nurture.domain.names import SIGNAL_PAUSE, SIGNAL_RESUME, WORKFLOW_NAME, workflow_id
from nurture.services import crm_outbox, sending, team
from nurture.services.reports import STUCK_AFTER
from nurture.web.common import Services, ServicesDep, SessionDep, render
from nurture.web.leadinfo import lead_with_state, sdr_may_see
from nurture.web.security import OpsDep, Viewer, ViewerDep, check_csrf

router = APIRouter(include_in_schema=False)

OPS_ROWS = 200


@router.get("/")
async def home(viewer: ViewerDep) -> Response:
    """Signed-in users start at their inbox."""
    return RedirectResponse("/inbox", status_code=303)


# What the lead page says after an action (the workflow applies it at once, from its signal).
DONE = {
    "paused": "Paused: the lead's touches wait until it is resumed; its events still count.",
    "resumed": "Resumed: the lead's touches go on, held ones planned again.",
    "reassigned": "Reassigned: the lead's open call tasks move with it, and both SDRs are told.",
}
WHY_LIMIT = 500


@router.get("/leads/{lead_id}", response_class=HTMLResponse)
async def lead_page(
    request: Request,
    lead_id: str,
    viewer: ViewerDep,
    session: SessionDep,
    services: ServicesDep,
    done: str | None = None,
) -> Response:
    """The lead's stage, score, step, next touch and history with reasons (ops or its SDR);
    ops also pause, resume and reassign it here."""
    row = await session.get(LeadRow, lead_id)
    # Another SDR's lead is "not found", like a lead that does not exist.
    if row is None or (not viewer.is_ops and not await sdr_may_see(session, viewer.id, row)):
        raise HTTPException(status_code=404, detail="no such lead")
    context = await _lead_context(services, session, viewer, lead_id)
    context["done"] = DONE.get(done or "")
    return render(request, "lead.html", context)


async def _lead_context(
    services: Services, session: AsyncSession, viewer: Viewer, lead_id: str
) -> dict[str, object]:
    info = await lead_with_state(services, session, lead_id, history=100)
    query = select(CallTask).where(CallTask.lead_id == lead_id)
    if not viewer.is_ops:
        query = query.where(CallTask.owner == viewer.id)
    tasks = (await session.scalars(query.order_by(CallTask.due_at.desc()).limit(20))).all()
    context: dict[str, object] = {"lead": info, "tasks": tasks, "done": None, "error": None}
    try:
        playbook = services.catalog.current().playbook
    except Exception:  # noqa: BLE001 - broken files: the page still shows the lead
        playbook = None
    context["current_playbook"] = playbook.version if playbook else None
    if viewer.is_ops and playbook is not None:
        context["sdrs"] = await team.active_sdrs(session, playbook)
    return context


async def _refused(
    request: Request,
    services: Services,
    session: AsyncSession,
    viewer: Viewer,
    lead_id: str,
    field: str | None,
    message: str,
    status_code: int,
) -> Response:
    """An action refused: the lead page again with the reason (JSON for scripts), nothing done."""
    if "text/html" not in request.headers.get("accept", ""):
        loc = ["body", field] if field else ["path", "lead_id"]
        detail = [{"loc": loc, "msg": message, "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=status_code)
    context = await _lead_context(services, session, viewer, lead_id)
    context["error"] = f"{field}: {message}" if field else message
    return render(request, "lead.html", context, status_code)


UNAVAILABLE = "the workflow service is unavailable; nothing was changed; try again in a minute"


async def _signal_lead(
    services: Services, lead_id: str, name: str, arg: str
) -> tuple[int, str] | None:
    """Signal the lead's workflow; None when done, else (status, why not): nothing was done."""
    try:
        client = await services.temporal.client()
        handle = client.get_workflow_handle(workflow_id(lead_id))
        await services.gate.call(lambda: handle.signal(name, arg))
    except TemporalUnavailable:
        return 503, UNAVAILABLE
    except RPCError as exc:
        return 409, f"lead {lead_id} has no running workflow ({exc.message}); nothing was changed"
    return None


async def _ops_lead(session: AsyncSession, viewer: Viewer, lead_id: str, csrf: str | None) -> None:
    check_csrf(viewer, csrf)
    if await session.get(LeadRow, lead_id) is None:
        raise HTTPException(status_code=404, detail="no such lead")


@router.post("/leads/{lead_id}/pause")
async def pause_lead(
    request: Request,
    lead_id: str,
    viewer: OpsDep,
    session: SessionDep,
    services: ServicesDep,
    why: Annotated[str, Form(max_length=WHY_LIMIT)] = "",
    csrf: Annotated[str | None, Form()] = None,
) -> Response:
    """Hold the lead's touches (events still count); the history says who paused and why."""
    await _ops_lead(session, viewer, lead_id, csrf)
    reason = f"{why.strip()} (paused by {viewer.id})" if why.strip() else f"paused by {viewer.id}"
    problem = await _signal_lead(services, lead_id, SIGNAL_PAUSE, reason)
    if problem:
        status_code, message = problem
        return await _refused(
            request, services, session, viewer, lead_id, None, message, status_code
        )
    return RedirectResponse(f"/leads/{quote(lead_id, safe='')}?done=paused", status_code=303)


@router.post("/leads/{lead_id}/resume")
async def resume_lead(
    request: Request,
    lead_id: str,
    viewer: OpsDep,
    session: SessionDep,
    services: ServicesDep,
    csrf: Annotated[str | None, Form()] = None,
) -> Response:
    """Let a paused lead's touches go on."""
    await _ops_lead(session, viewer, lead_id, csrf)
    problem = await _signal_lead(services, lead_id, SIGNAL_RESUME, f"resumed by {viewer.id}")
    if problem:
        status_code, message = problem
        return await _refused(
            request, services, session, viewer, lead_id, None, message, status_code
        )
    return RedirectResponse(f"/leads/{quote(lead_id, safe='')}?done=resumed", status_code=303)


@router.post("/leads/{lead_id}/reassign")
async def reassign_lead(
    request: Request,
    lead_id: str,
    viewer: OpsDep,
    session: SessionDep,
    services: ServicesDep,
    owner: Annotated[str, Form(max_length=200)] = "",
    csrf: Annotated[str | None, Form()] = None,
) -> Response:
    """Give the lead to another active SDR of the playbook's team (422 naming ``owner`` else)."""
    await _ops_lead(session, viewer, lead_id, csrf)
    owner = owner.strip()
    playbook = services.catalog.current().playbook
    try:
        if not owner:
            raise team.OwnerRefused("choose the SDR who takes the lead")
        # Refused before Temporal is asked anything.
        await team.check_owner(session, playbook, owner)
    except team.OwnerRefused as exc:
        return await _refused(request, services, session, viewer, lead_id, "owner", str(exc), 422)
    try:
        client = await services.temporal.client()
        await services.gate.call(lambda: team.reassign(session, client, playbook, lead_id, owner))
    except TemporalUnavailable:
        return await _refused(request, services, session, viewer, lead_id, None, UNAVAILABLE, 503)
    except RPCError as exc:
        problem = f"lead {lead_id} has no running workflow ({exc.message}); nothing was changed"
        return await _refused(request, services, session, viewer, lead_id, None, problem, 409)
    return RedirectResponse(f"/leads/{quote(lead_id, safe='')}?done=reassigned", status_code=303)


@router.get("/ops", response_class=HTMLResponse)
async def ops_page(
    request: Request, viewer: OpsDep, session: SessionDep, services: ServicesDep
) -> Response:
    """Parked events, sends whose fate is unknown, CRM posts that failed and CRM outcomes
    waiting for their lead, open work per SDR, and useful links."""
    parked = (
        await session.scalars(
            select(EventRow)
            .where(EventRow.status == "parked")
            .order_by(EventRow.received_at.desc())
            .limit(OPS_ROWS)
        )
    ).all()
    unknown = (
        await session.scalars(
            select(EmailSend)
            .where(EmailSend.status == "unknown")
            .order_by(EmailSend.created_at.desc())
            .limit(OPS_ROWS)
        )
    ).all()
    crm_failed = (
        await session.scalars(
            select(CrmPost)
            .where(CrmPost.status == "failed")
            .order_by(CrmPost.id.desc())
            .limit(OPS_ROWS)
        )
    ).all()
    crm_unmatched = (
        await session.scalars(
            select(CrmUnmatched).order_by(CrmUnmatched.received_at.desc()).limit(OPS_ROWS)
        )
    ).all()
    open_tasks = (
        await session.execute(
            select(CallTask.owner, func.count())
            .where(CallTask.status == "open")
            .group_by(CallTask.owner)
            .order_by(CallTask.owner)
        )
    ).all()
    context = {
        "sending": await sending.current(session),
        "sending_log": await sending.history(session, limit=5),
        "parked": parked,
        "unknown": unknown,
        "crm_failed": crm_failed,
        "crm_counts": await crm_outbox.counts(session),
        "crm_unmatched": crm_unmatched,
        "open_tasks": open_tasks,
        "workflows_url": services.workflows_url(),
        "ui_views": await _ui_views(services, session),
    }
    return render(request, "ops.html", context)


async def _ui_views(services: Services, session: AsyncSession) -> list[tuple[str, str]]:
    """Ready-made Temporal UI lists: running leads only (never the runs that continued as new)."""
    running = f'WorkflowType="{WORKFLOW_NAME}" AND ExecutionStatus="Running"'
    # Stuck: the next touch is more than an hour late (CONTRACT.md), as of this page's load.
    late = (datetime.now(UTC) - STUCK_AFTER).strftime("%Y-%m-%dT%H:%M:%SZ")
    views = [
        ("Running leads", running),
        ("Running MQLs", f'{running} AND LeadStage="mql"'),
        ("Stuck leads (next touch over an hour late)", f'{running} AND NextTouchAt < "{late}"'),
    ]
    try:
        sdrs = await team.active_sdrs(session, services.catalog.current().playbook)
    except Exception:  # noqa: BLE001 - broken files: no per-SDR links
        sdrs = []
    views += [(f"{s.name}'s leads", f'{running} AND LeadOwner="{s.id}"') for s in sdrs]
    return [(label, services.workflows_url(query)) for label, query in views]


@router.post("/ops/sending")
async def switch_sending(
    viewer: OpsDep,
    session: SessionDep,
    action: Annotated[str, Form(pattern="^(pause|resume)$")],
    why: Annotated[str, Form(max_length=sending.WHY_LIMIT)] = "",
    csrf: Annotated[str | None, Form()] = None,
) -> Response:
    """The kill switch: pause (with why) or resume every worker's sends, as the signed-in ops."""
    check_csrf(viewer, csrf)
    if action == "pause":
        try:
            await sending.pause(session, by=viewer.id, why=why)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=f"why: {exc}") from exc
    else:
        await sending.resume(session, by=viewer.id)
    return RedirectResponse("/ops", status_code=303)


@router.post("/ops/find")
async def find_lead(
    viewer: ViewerDep,
    session: SessionDep,
    q: Annotated[str, Form(max_length=320)] = "",
    csrf: Annotated[str | None, Form()] = None,
) -> Response:
    """Go to a lead by id, or by email address when exactly one lead has it.

    A form post, not a query string: an address in a URL ends up in access logs, proxies
    and the browser's history.
    """
    check_csrf(viewer, csrf)
    q = q.strip()
    if "@" in q:
        query = select(LeadRow.id).where(func.lower(LeadRow.email) == q.lower())
        if not viewer.is_ops:
            query = query.where(LeadRow.owner == viewer.id)
        ids = (await session.scalars(query.limit(2))).all()
        if len(ids) == 1:
            q = ids[0]
    return RedirectResponse(f"/leads/{quote(q, safe='')}" if q else "/inbox", status_code=303)
