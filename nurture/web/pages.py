"""`/leads/<id>` (a lead's state and history) and `/ops` (what needs a human)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select

from nurture.adapters.database import CallTask, CrmPost, CrmUnmatched, EmailSend, EventRow, LeadRow
from nurture.services import crm_outbox, sending
from nurture.web.common import ServicesDep, SessionDep, render
from nurture.web.leadinfo import lead_with_state, sdr_may_see
from nurture.web.security import OpsDep, ViewerDep, check_csrf

router = APIRouter(include_in_schema=False)

OPS_ROWS = 200


@router.get("/")
async def home(viewer: ViewerDep) -> Response:
    """Signed-in users start at their inbox."""
    return RedirectResponse("/inbox", status_code=303)


@router.get("/leads/{lead_id}", response_class=HTMLResponse)
async def lead_page(
    request: Request, lead_id: str, viewer: ViewerDep, session: SessionDep, services: ServicesDep
) -> Response:
    """The lead's stage, score, step, next touch and history with reasons (ops or its SDR)."""
    row = await session.get(LeadRow, lead_id)
    # Another SDR's lead is "not found", like a lead that does not exist.
    if row is None or (not viewer.is_ops and not await sdr_may_see(session, viewer.id, row)):
        raise HTTPException(status_code=404, detail="no such lead")
    info = await lead_with_state(services, session, lead_id, history=100)
    query = select(CallTask).where(CallTask.lead_id == lead_id)
    if not viewer.is_ops:
        query = query.where(CallTask.owner == viewer.id)
    tasks = (await session.scalars(query.order_by(CallTask.due_at.desc()).limit(20))).all()
    return render(request, "lead.html", {"lead": info, "tasks": tasks})


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
    ui = services.temporal_ui_url.rstrip("/")
    namespace = services.settings.temporal_namespace
    context = {
        "sending": await sending.current(session),
        "sending_log": await sending.history(session, limit=5),
        "parked": parked,
        "unknown": unknown,
        "crm_failed": crm_failed,
        "crm_counts": await crm_outbox.counts(session),
        "crm_unmatched": crm_unmatched,
        "open_tasks": open_tasks,
        "workflows_url": f"{ui}/namespaces/{namespace}/workflows",
    }
    return render(request, "ops.html", context)


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
