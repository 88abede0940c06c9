"""A lead as the pages show it: contact details from the database, the live state from its
workflow's `state` query, and the database projection when the query cannot be answered.

The query can fail for ordinary reasons (no worker running, Temporal restarting, a lead
whose workflow has not run its first task): a page then still shows what the database knows,
and says so, instead of failing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nurture.adapters.database import (
    NOTIFICATION_CADENCE,
    CallTask,
    EmailSend,
    LeadRow,
    StageChange,
    Suppression,
)
from nurture.domain.events import address_key
from nurture.domain.names import QUERY_STATE, workflow_id
from nurture.domain.state import HistoryEntry, LeadView
from nurture.web.common import Services

log = logging.getLogger(__name__)

QUERY_TIMEOUT = timedelta(seconds=3)
RECENT_EMAILS = 5
NO_ANSWER = "the workflow did not answer; showing the database's copy"
WAITING_TO_START = (
    "waiting to start: recorded while the workflow service could not be reached; its "
    "workflow starts, and the events waiting for it are delivered, as soon as it can be"
)


@dataclass
class LeadInfo:
    """Everything a page shows about one lead."""

    row: LeadRow
    workflow_id: str
    workflow_url: str
    stage: str
    score: int
    grade: str | None
    owner: str | None
    cadence: str | None
    step: str | None
    next_touch_at: datetime | None
    doing: str | None = None
    paused: bool = False
    unsubscribed: bool = False
    # Why the lead's address gets no email (the suppression list), if it is on it.
    suppressed: str | None = None
    score_why: list[str] = field(default_factory=list)
    grade_why: list[str] = field(default_factory=list)
    # Newest first.
    history: list[HistoryEntry] = field(default_factory=list)
    emails: list[EmailSend] = field(default_factory=list)
    # Sent to the SDR, the owner or ops about this lead; never the lead's own emails.
    notifications: list[EmailSend] = field(default_factory=list)
    history_limit: int = 15
    live: bool = False
    live_problem: str | None = None
    # The playbook the lead lives by (content hash), known from its workflow only.
    playbook_version: str | None = None

    @property
    def name(self) -> str:
        parts = [self.row.first_name, self.row.last_name]
        return " ".join(p for p in parts if p) or "(no name)"


async def query_states(
    services: Services, lead_ids: list[str]
) -> dict[str, tuple[LeadView | None, str | None]]:
    """Each lead's workflow `state`, queried concurrently; (None, why not) where it fails."""
    if not lead_ids:
        return {}
    if services.gate.shut:
        # A request just found Temporal unreachable: do not make the page wait to learn it.
        return {lead_id: (None, NO_ANSWER) for lead_id in lead_ids}
    try:
        # Once for all: an unreachable server must cost one connect timeout, not one per lead.
        client = await services.temporal.client()
    except Exception as exc:  # noqa: BLE001 - any failure falls back to the database
        log.info("state queries skipped: %s", exc)
        return {lead_id: (None, NO_ANSWER) for lead_id in lead_ids}

    async def one(lead_id: str) -> tuple[LeadView | None, str | None]:
        try:
            handle = client.get_workflow_handle(workflow_id(lead_id))
            # rpc_timeout bounds the server call; wait_for bounds the SDK's retries too.
            view = await asyncio.wait_for(
                handle.query(QUERY_STATE, result_type=LeadView, rpc_timeout=QUERY_TIMEOUT),
                QUERY_TIMEOUT.total_seconds() + 1,
            )
            return view, None
        except Exception as exc:  # noqa: BLE001 - any failure falls back to the database
            log.info("state query for %s failed: %s", lead_id, exc)
            return None, NO_ANSWER

    answers = await asyncio.gather(*(one(lead_id) for lead_id in lead_ids))
    return dict(zip(lead_ids, answers, strict=True))


async def load_lead(
    services: Services, session: AsyncSession, lead_id: str, *, history: int = 15
) -> LeadInfo | None:
    """What the database knows of the lead (no query), or None when there is no such lead."""
    row = await session.get(LeadRow, lead_id)
    if row is None:
        return None

    async def sends(*where: Any) -> list[EmailSend]:
        query = (
            select(EmailSend)
            .where(EmailSend.lead_id == lead_id, *where)
            .order_by(EmailSend.created_at.desc(), EmailSend.id.desc())
            .limit(RECENT_EMAILS)
        )
        return list((await session.scalars(query)).all())

    # The lead's own emails apart from the notifications sent to people about the lead.
    emails = await sends(EmailSend.cadence != NOTIFICATION_CADENCE)
    notifications = await sends(EmailSend.cadence == NOTIFICATION_CADENCE)
    changes = (
        await session.scalars(
            select(StageChange)
            .where(StageChange.lead_id == lead_id)
            .order_by(StageChange.at.desc(), StageChange.id.desc())
            .limit(history)
        )
    ).all()
    suppression = await session.get(Suppression, address_key(row.email)) if row.email else None
    wf_id = workflow_id(lead_id)
    return LeadInfo(
        row=row,
        workflow_id=wf_id,
        workflow_url=services.workflow_url(wf_id),
        stage=row.stage,
        score=row.score,
        grade=row.grade,
        owner=row.owner,
        cadence=row.cadence,
        step=row.step,
        next_touch_at=row.next_touch_at,
        unsubscribed=row.unsubscribed,
        suppressed=(suppression.reason or "on the suppression list") if suppression else None,
        emails=emails,
        notifications=notifications,
        history=[
            HistoryEntry(
                at=c.at, what=f"stage {c.from_stage or '(new)'} → {c.to_stage}", why=c.reason or ""
            )
            for c in changes
        ],
        history_limit=history,
    )


def apply_state(info: LeadInfo, view: LeadView | None, problem: str | None) -> LeadInfo:
    """The workflow's live state over the database's copy (kept, and flagged, without one)."""
    if view is None:
        info.live_problem = problem
        return info
    info.live = True
    info.stage, info.score, info.grade, info.owner = view.stage, view.score, view.grade, view.owner
    info.cadence, info.step, info.next_touch_at = view.cadence, view.step, view.next_touch_at
    info.doing, info.paused, info.unsubscribed = view.doing, view.paused, view.unsubscribed
    info.playbook_version = view.playbook_version
    info.score_why, info.grade_why = list(reversed(view.score_why)), view.grade_why
    info.history = list(reversed(view.history))[: info.history_limit]
    return info


async def lead_with_state(
    services: Services, session: AsyncSession, lead_id: str, *, history: int = 15
) -> LeadInfo | None:
    """The lead from the database, with its workflow's live state when it answers."""
    info = await load_lead(services, session, lead_id, history=history)
    if info is None:
        return None
    if info.row.waiting_to_start:
        # No workflow to ask yet: say what it is waiting for instead of "did not answer".
        info.doing = "waiting to start"
        return apply_state(info, None, WAITING_TO_START)
    view, problem = (await query_states(services, [lead_id]))[lead_id]
    return apply_state(info, view, problem)


async def sdr_may_see(session: AsyncSession, sdr_id: str, lead: LeadRow) -> bool:
    """An SDR sees a lead they own now, or one they have an open call task for.

    A done or cancelled task does not keep the lead visible: a lead reassigned to a
    colleague stops being the former owner's business.
    """
    if lead.owner == sdr_id:
        return True
    task = await session.scalar(
        select(CallTask.id)
        .where(CallTask.lead_id == lead.id, CallTask.owner == sdr_id, CallTask.status == "open")
        .limit(1)
    )
    return task is not None
