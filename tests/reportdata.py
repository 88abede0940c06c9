"""A small, hand-countable history of leads for the report tests (and the report page).

March 2026 is the period under test. Each lead's story, as the workflow would have
recorded it (stage changes, sends, call tasks, events, opportunities):

- L-1 webinar, aiko: cycle 0 nurturing -> mql -> sql -> lost (competitor); recycled in
  cycle 1 -> sql straight from recycling (no mql row) -> won. Counts once per cycle.
- L-2 ads, ben: nurturing -> mql and sql at one instant (toss-up straight from
  nurturing) -> won. Its lead row now says source "partner": reports keep "ads".
- L-3 ads, ben: nurturing, a cadence exit (a same-stage row), next touch 3 h overdue: stuck.
- L-4 ads, aiko: nurturing -> mql -> closed, then erased (personal fields empty).
- L-5 seo, no owner: nurturing -> mql -> sql -> lost, sales rejected it (no budget).
- L-6 seo: February only (outside the period); in mql, next touch 30 min overdue: not stuck.
- L-7 webinar, ben: nurturing -> mql -> sql -> lost (competitor), no CRM outcome yet.

The expected numbers are worked out by hand in tests/test_reports.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nurture.adapters.database import (
    CallTask,
    EmailSend,
    EventRow,
    LeadRow,
    Opportunity,
    StageChange,
)
from nurture.domain import keys

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MARCH = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
NOW = datetime(2026, 4, 2, 12, 0, tzinfo=UTC)
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
FEB = datetime(2026, 2, 10, 9, 0, tzinfo=UTC)

_ids = count(1)


def _lead(lead_id: str, source: str, owner: str | None, **extra: Any) -> LeadRow:
    values: dict[str, Any] = {
        "email": f"{lead_id.lower()}@example.com",
        "first_name": "Test",
        "company": "Example",
        "country": "US",
    }
    values.update(extra)
    return LeadRow(id=lead_id, source=source, owner=owner, **values)


def _rows(lead_id: str, source: str, cycle: int, *changes: tuple[Any, ...]) -> list[StageChange]:
    """Stage changes from (at, to_stage, cadence, step[, reason]); from_stage is chained."""
    rows, before = [], "lost" if cycle else None
    for at, to_stage, cadence, step, *reason in changes:
        rows.append(
            StageChange(
                lead_id=lead_id,
                cycle=cycle,
                from_stage=before,
                to_stage=to_stage,
                at=at,
                reason=reason[0] if reason else f"to {to_stage}",
                source=source,
                cadence=cadence,
                step=step,
            )
        )
        before = to_stage
    return rows


def _send(
    lead_id: str,
    cycle: int,
    cadence: str,
    step: str,
    at: datetime,
    status: str = "sent",
    to: str | None = "x@example.com",
) -> EmailSend:
    return EmailSend(
        key=keys.touch(lead_id, cycle, cadence, step, 1),
        lead_id=lead_id,
        cycle=cycle,
        cadence=cadence,
        step=step,
        visit=1,
        template=f"{cadence}/{step}",
        to_address=to,
        status=status,
        created_at=at,
        sent_at=at if status == "sent" else None,
    )


def _task(
    lead_id: str,
    cycle: int,
    cadence: str,
    step: str,
    owner: str | None,
    created: datetime,
    due: datetime,
    status: str = "open",
    completed: datetime | None = None,
    outcome: str | None = None,
    overdue_at: datetime | None = None,
    visit: int = 1,
) -> CallTask:
    return CallTask(
        key=keys.touch(lead_id, cycle, cadence, step, visit),
        lead_id=lead_id,
        cycle=cycle,
        cadence=cadence,
        step=step,
        visit=visit,
        owner=owner,
        status=status,
        due_at=due,
        created_at=created,
        completed_at=completed,
        outcome=outcome,
        overdue_at=overdue_at,
    )


def _event(lead_id: str, kind: str, at: datetime, **data: Any) -> EventRow:
    return EventRow(
        id=f"evt-{next(_ids)}",
        lead_id=lead_id,
        type=kind,
        occurred_at=at,
        received_at=at,
        data=data,
        status="delivered",
    )


def _opportunity(
    lead_id: str,
    cycle: int,
    owner: str | None,
    at: datetime,
    outcome: str | None = None,
    reason: str | None = None,
) -> Opportunity:
    return Opportunity(
        key=keys.opportunity(lead_id, cycle),
        lead_id=lead_id,
        cycle=cycle,
        owner=owner,
        trigger="threshold",
        created_at=at,
        outcome=outcome,
        outcome_reason=reason,
        closed_at=at + DAY if outcome else None,
    )


def history() -> list[Any]:
    """Every row of the data set, leads first (stage changes need their lead)."""
    wf, inbound, recycle, sdr = "webinar-follow-up", "inbound", "recycle-competitor", "mql-sdr"
    leads = [
        _lead("L-1", "webinar", "aiko", stage="won"),
        # The CRM changed the source later; the funnel must keep the one recorded at the time.
        _lead("L-2", "partner", "ben", stage="won"),
        _lead(
            "L-3",
            "ads",
            "ben",
            stage="nurturing",
            cadence=inbound,
            step="nudge",
            next_touch_at=NOW - 3 * HOUR,
        ),
        _lead(
            "L-4",
            "ads",
            "aiko",
            stage="closed",
            email=None,
            first_name=None,
            company=None,
            erased_at=T0 + 6 * DAY,
            do_not_contact=True,
        ),
        _lead("L-5", "seo", None, stage="lost", next_touch_at=NOW - 10 * DAY),
        _lead(
            "L-6",
            "seo",
            "aiko",
            stage="mql",
            cadence=sdr,
            step="intro",
            next_touch_at=NOW - 30 * timedelta(minutes=1),
        ),
        _lead("L-7", "webinar", "ben", stage="lost"),
    ]
    changes = [
        *_rows(
            "L-1",
            "webinar",
            0,
            (T0, "nurturing", wf, "thanks"),
            (T0 + 2 * DAY, "mql", wf, "call"),
            (T0 + 3 * DAY, "sql", None, None),
            (T0 + 10 * DAY, "lost", None, None, "opportunity lost: competitor"),
        ),
        *_rows(
            "L-1",
            "webinar",
            1,
            (T0 + 20 * DAY, "recycling", recycle, None),
            (T0 + 22 * DAY, "sql", None, None),
            (T0 + 25 * DAY, "won", None, None),
        ),
        *_rows(
            "L-2",
            "ads",
            0,
            (T0 + DAY, "nurturing", inbound, "welcome"),
            (T0 + 4 * DAY, "mql", inbound, "welcome", "passed on the way to sql"),
            (T0 + 4 * DAY, "sql", inbound, "welcome"),
            (T0 + 9 * DAY, "won", None, None),
        ),
        *_rows(
            "L-3",
            "ads",
            0,
            (T0 + DAY, "nurturing", inbound, "welcome"),
            (T0 + 4 * DAY, "nurturing", inbound, "nudge", "exit: step 'give-up': no engagement"),
        ),
        *_rows(
            "L-4",
            "ads",
            0,
            (T0 + 2 * DAY, "nurturing", inbound, "welcome"),
            (T0 + 5 * DAY, "mql", None, None),
            (T0 + 6 * DAY, "closed", sdr, "qualify-call", "personal data erased on request"),
        ),
        *_rows(
            "L-5",
            "seo",
            0,
            (T0 + 3 * DAY, "nurturing", inbound, None),
            (T0 + 4 * DAY, "mql", None, None),
            (T0 + 5 * DAY, "sql", None, None),
            (T0 + 8 * DAY, "lost", None, None, "sales rejected the handoff: no budget"),
        ),
        *_rows(
            "L-6",
            "seo",
            0,
            (FEB, "nurturing", inbound, "welcome"),
            (FEB + 2 * DAY, "mql", None, None),
        ),
        *_rows(
            "L-7",
            "webinar",
            0,
            (T0 + 5 * DAY, "nurturing", wf, None),
            (T0 + 6 * DAY, "mql", wf, "call"),
            (T0 + 7 * DAY, "sql", None, None),
            (T0 + 12 * DAY, "lost", None, None, "opportunity lost: Competitor"),
        ),
    ]
    sends = [
        _send("L-1", 0, wf, "thanks", T0 + HOUR),
        _send("L-1", 0, sdr, "intro", T0 + 2 * DAY + HOUR),
        _send("L-1", 1, recycle, "check-in", T0 + 21 * DAY),
        _send("L-2", 0, inbound, "welcome", T0 + DAY + HOUR),
        # An internal notification (to the SDR) about L-2: never in a step's open rate.
        _send("L-2", 0, "-", "notify", T0 + DAY + 2 * HOUR, to="aiko@example.com"),
        _send("L-3", 0, inbound, "welcome", T0 + DAY + HOUR),
        _send("L-3", 0, inbound, "nudge", T0 + 3 * DAY),
        _send("L-3", 0, inbound, "nudge-2", T0 + 4 * DAY, status="failed"),
        _send("L-4", 0, inbound, "welcome", T0 + 2 * DAY + HOUR, to=None),  # erased
        _send("L-6", 0, inbound, "welcome", FEB + HOUR),
    ]
    tasks = [
        _task(
            "L-1",
            0,
            wf,
            "call",
            "aiko",
            T0 + DAY,
            T0 + 2 * DAY,
            "done",
            T0 + DAY + 5 * HOUR,
            "connected",
        ),
        _task(
            "L-1",
            0,
            sdr,
            "qualify-call",
            "aiko",
            T0 + 2 * DAY + 2 * HOUR,
            T0 + 3 * DAY,
            "done",
            T0 + 3 * DAY + 2 * HOUR,
            "qualified",
        ),
        _task("L-3", 0, inbound, "first-call", "ben", T0 + 2 * DAY, T0 + 3 * DAY),
        _task(
            "L-7",
            0,
            wf,
            "call",
            "ben",
            T0 + 5 * DAY,
            T0 + 6 * DAY,
            "done",
            T0 + 6 * DAY + HOUR,
            "no_answer",
            overdue_at=T0 + 6 * DAY + HOUR / 2,
        ),
        _task(
            "L-4", 0, inbound, "first-call", "aiko", T0 + 5 * DAY + HOUR, T0 + 6 * DAY, "cancelled"
        ),
        _task(
            "L-3",
            0,
            inbound,
            "first-call",
            None,
            T0 + 4 * DAY,
            datetime(2026, 5, 1, tzinfo=UTC),
            visit=2,
        ),
    ]
    events = [
        _event("L-2", "email.opened", T0 + DAY + 2 * HOUR, step="welcome", cadence=inbound),
        _event("L-2", "email.opened", T0 + DAY + 3 * HOUR, step="welcome", cadence=inbound),
        _event("L-2", "email.clicked", T0 + DAY + 4 * HOUR, step="welcome"),
        _event("L-2", "email.opened", T0 + DAY + 5 * HOUR),  # names no step: not attributable
        _event(
            "L-3",
            "email.clicked",
            T0 + DAY + HOUR + timedelta(seconds=5),
            step="welcome",
            cadence=inbound,
            scanner=True,
        ),
        _event(  # Apple's proxy fetched the pixel on delivery: not an open
            "L-3",
            "email.opened",
            T0 + DAY + HOUR + timedelta(seconds=2),
            step="welcome",
            cadence=inbound,
            scanner=True,
        ),
        _event("L-3", "email.opened", T0 + 3 * DAY + HOUR, step="nudge"),
        _event("L-4", "email.opened", T0 + 2 * DAY + 2 * HOUR, step="welcome", cadence=inbound),
        _event("L-4", "email.replied", T0 + 2 * DAY + 3 * HOUR, step="welcome"),
        _event("L-1", "email.opened", T0 + 2 * HOUR, step="thanks", cadence="another-cadence"),
        _event("L-1", "email.clicked", T0 + 21 * DAY + HOUR, step="check-in", cadence=recycle),
        _event("L-5", "page.visited", T0 + 3 * DAY, url="/pricing"),
    ]
    opportunities = [
        _opportunity("L-1", 0, "aiko", T0 + 3 * DAY, "lost", "Competitor"),
        _opportunity("L-1", 1, "aiko", T0 + 22 * DAY, "won"),
        # No outcome written back by the CRM: the stage change to won still counts it.
        _opportunity("L-2", 0, "ben", T0 + 4 * DAY),
        _opportunity("L-5", 0, None, T0 + 5 * DAY, "rejected", "No Budget"),
        _opportunity("L-7", 0, "ben", T0 + 7 * DAY),
    ]
    return [*leads, *changes, *sends, *tasks, *events, *opportunities]


async def seed(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Insert :func:`history` into a migrated database."""
    async with sessions() as session, session.begin():
        rows = history()
        session.add_all([r for r in rows if isinstance(r, LeadRow)])
        await session.flush()
        session.add_all([r for r in rows if not isinstance(r, LeadRow)])
