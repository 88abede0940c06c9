"""Reports: the funnel, cadence step performance, SDR activity, and the capacity planner.

PRODUCT.md asks the product to *measure every stage*: conversion per stage, per channel
and per cadence step, loss reasons, and SDR activity, and to plan capacity backwards from
a revenue target. Everything here reads the app database (portable SQLAlchemy: SQLite and
PostgreSQL) and returns pydantic models that the CLI (``nurture report``) and the web
pages (``/reports``) only format.

Two ways of looking at a period are used, each where managers expect it:

- **The funnel is a cohort**: every passage, i.e. a lead in one cycle (the first pass is
  cycle 0, each recycle starts a new one), whose cycle *began* in the period, followed to
  every stage it has reached so far. A recycled lead is therefore counted once per cycle,
  and conversion rates never exceed 100%. Recent cohorts have had less time to convert.
- **Step performance and SDR activity are activity**: emails sent, tasks created and stage
  changes made in the period.

Periods are half-open, ``since <= t < until``, in UTC. Erased leads keep their anonymous
rows (stage changes, sends, tasks) and count like any other: nothing here reads personal
fields, and lead ids carry no personal data (CONTRACT.md).
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, computed_field
from sqlalchemy import Select, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nurture.adapters.database import (
    NOTIFICATION_CADENCE,
    CallTask,
    EmailSend,
    EventRow,
    LeadRow,
    Opportunity,
    StageChange,
)
from nurture.domain.vocabulary import TOUCH_STAGES, Stage

GroupBy = Literal["source", "cadence", "step", "owner", "cycle"]
GROUPINGS: tuple[str, ...] = get_args(GroupBy)
FUNNEL_STAGES: tuple[str, ...] = ("lead", "mql", "sql", "won")
# CONTRACT.md: "a lead is stuck when its next touch is overdue by more than an hour".
STUCK_AFTER = timedelta(hours=1)
# Stages a lead stays in for a while, in the order a lead meets them (time-in-stage rows).
DWELL_STAGES: tuple[Stage, ...] = ("nurturing", "recycling", "mql", "sql", "lost")
EMAIL_EVENTS: tuple[str, ...] = ("email.opened", "email.clicked", "email.replied")
# The label of a missing group value, so it stays visible rather than silently dropped.
NONE_LABEL = "(none)"
NO_TOUCH_LABEL = "(no touch)"
NO_REASON = "(none given)"
FIRST_PASS, RECYCLED = "first pass", "recycled"
# Why a lead left a cadence step, by the stage it went to (step performance).
LEFT_LABELS: dict[str, str] = {
    "mql": "mql",
    "sql": "toss-up",
    "won": "won",
    "lost": "lost",
    "closed": "closed",
    "recycling": "recycled",
}
# A clock difference between the sender of an event and this app must not detach an open
# from the email it belongs to.
EVENT_CLOCK_SKEW = timedelta(minutes=5)
MONTHS_PER_YEAR = 12
DEFAULT_TASKS_PER_SDR_PER_DAY = 40.0
# Used only when neither given nor measurable: call tasks spent for one SQL.
DEFAULT_CALLS_PER_SQL = 10.0
# Stage conversion rates used only when none is given and the funnel has nothing to measure
# yet: commonly quoted B2B benchmarks (a quarter of leads qualify as MQL, about one MQL in
# eight becomes an SQL, one SQL in five is won). Every plan says which rates were defaults.
DEFAULT_RATES: dict[str, float] = {"lead_to_mql": 0.25, "mql_to_sql": 0.13, "sql_to_won": 0.2}
DEFAULT_WORKING_DAYS_PER_MONTH = 21
RATE_NAMES: tuple[str, ...] = ("lead_to_mql", "mql_to_sql", "sql_to_won")


class ReportError(ValueError):
    """A report was asked for with invalid arguments; the message says which and why."""


class PlanError(ReportError):
    """The planner's input is invalid; the message names the input."""


# --- models -------------------------------------------------------------------------------


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


class FunnelRow(BaseModel):
    """Passages reaching each stage, for all leads or one group, and the conversions."""

    key: str
    lead: int = 0
    mql: int = 0
    sql: int = 0
    won: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def lead_to_mql(self) -> float | None:
        return _ratio(self.mql, self.lead)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def mql_to_sql(self) -> float | None:
        return _ratio(self.sql, self.mql)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def sql_to_won(self) -> float | None:
        return _ratio(self.won, self.sql)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def lead_to_won(self) -> float | None:
        return _ratio(self.won, self.lead)

    def count(self, stage: str) -> int:
        """The count of one of :data:`FUNNEL_STAGES`."""
        return int(getattr(self, stage))


class StageTime(BaseModel):
    """How long passages stayed in a stage before the next one (completed stays only)."""

    stage: str
    median_seconds: float | None
    samples: int


class LossReason(BaseModel):
    """How often sales lost (or rejected) a toss-up for one reason."""

    outcome: Literal["lost", "rejected"]
    reason: str
    count: int


class StuckLead(BaseModel):
    """A lead whose next touch is overdue by more than :data:`STUCK_AFTER`."""

    lead_id: str
    stage: str
    cadence: str | None
    step: str | None
    owner: str | None
    next_touch_at: datetime
    overdue_seconds: float


class Funnel(BaseModel):
    """The funnel report (see the module docstring for what the period selects)."""

    since: datetime | None
    until: datetime | None
    by: GroupBy | None
    generated_at: datetime
    total: FunnelRow
    groups: list[FunnelRow]
    time_in_stage: list[StageTime]
    loss_reasons: list[LossReason]
    stuck: list[StuckLead]
    # Distinct leads behind ``total.lead`` passages: fewer when a lead was recycled.
    leads: int = 0

    def counted(self) -> str:
        """What the counts count, in words: ``9 passages of 8 leads (a recycled lead counts
        once per cycle)``, or ``8 leads`` when no lead was counted twice."""
        passages = self.total.lead
        if passages == self.leads:
            return f"{plural(self.leads, 'lead')}"
        return (
            f"{plural(passages, 'passage')} of {plural(self.leads, 'lead')} "
            "(a recycled lead counts once per cycle)"
        )

    def thin_rates(self) -> list[str]:
        """The conversions measured on fewer than :data:`MIN_SAMPLE` passages."""
        return thin_rates(self.total)


class StepRow(BaseModel):
    """One cadence step's touches and the leads that left the cadence there."""

    cadence: str
    step: str
    emails_sent: int = 0
    opened: int = 0
    clicked: int = 0
    replied: int = 0
    calls: int = 0
    calls_done: int = 0
    call_outcomes: dict[str, int] = {}
    left: dict[str, int] = {}

    @computed_field  # type: ignore[prop-decorator]
    @property
    def open_rate(self) -> float | None:
        return _ratio(self.opened, self.emails_sent)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def click_rate(self) -> float | None:
        return _ratio(self.clicked, self.emails_sent)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reply_rate(self) -> float | None:
        return _ratio(self.replied, self.emails_sent)


class StepReport(BaseModel):
    """Cadence step performance in a period."""

    since: datetime | None
    until: datetime | None
    steps: list[StepRow]


class SdrRow(BaseModel):
    """One SDR's call tasks created in the period, and the toss-ups they made."""

    owner: str
    tasks: int = 0
    done: int = 0
    done_on_time: int = 0
    overdue: int = 0
    escalated: int = 0  # tasks of theirs passed on by team.escalation
    open: int = 0
    cancelled: int = 0
    outcomes: dict[str, int] = {}
    toss_ups: int = 0
    won: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def on_time_rate(self) -> float | None:
        return _ratio(self.done_on_time, self.done)


class SdrReport(BaseModel):
    """SDR activity in a period."""

    since: datetime | None
    until: datetime | None
    generated_at: datetime
    sdrs: list[SdrRow]


class Rates(BaseModel):
    """Stage conversion rates; ``None`` where not given (or not measurable)."""

    lead_to_mql: float | None = None
    mql_to_sql: float | None = None
    sql_to_won: float | None = None


class Measured(BaseModel):
    """What the planner can take from the data instead of a guess."""

    rates: Rates
    calls_per_sql: float | None = None
    # The conversions measured on too few passages to trust (see :func:`thin_rates`).
    thin: list[str] = Field(default_factory=list)


# Below this many passages, a measured conversion rate is mostly noise.
MIN_SAMPLE = 30


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def thin_rates(row: FunnelRow) -> list[str]:
    """``lead → MQL from 8 passages`` for each conversion measured on fewer than
    :data:`MIN_SAMPLE` passages (and at least one)."""
    bases = (("lead → MQL", row.lead), ("MQL → SQL", row.mql), ("SQL → won", row.sql))
    return [f"{name} from {plural(n, 'passage')}" for name, n in bases if 0 < n < MIN_SAMPLE]


class Plan(BaseModel):
    """Capacity planned backwards from a revenue target (PRODUCT.md, worked example)."""

    target_revenue: float
    deal_size: float
    renewal_rate: float
    customers: int
    renewing_customers: float
    existing_revenue: float
    new_business_revenue: float
    new_customers: int
    new_customers_per_month: int
    sqls_per_month: int
    mqls_per_month: int
    leads_per_month: int
    rates: Rates
    # "given", "measured" or "default", for each rate and for calls_per_sql.
    sources: dict[str, str]
    calls_per_sql: float
    call_tasks_per_month: int
    tasks_per_sdr_per_day: float
    working_days_per_month: int
    tasks_per_sdr_per_month: float
    sdrs_needed: float
    sdr_headcount: int


# --- shared helpers -----------------------------------------------------------------------


def grouping(text: str | None) -> GroupBy | None:
    """A ``by`` value from a user (CLI option, query string), checked.

    Raises:
        ReportError: Not one of :data:`GROUPINGS`.
    """
    if text is None or text in GROUPINGS:
        return text  # type: ignore[return-value]
    raise ReportError(f"by must be one of {', '.join(GROUPINGS)}, not {text!r}")


def _check_period(since: datetime | None, until: datetime | None) -> None:
    for name, value in (("since", since), ("until", until)):
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise ReportError(f"{name} must be an aware datetime (UTC), not {value!r}")
    if since is not None and until is not None and until <= since:
        raise ReportError(f"until ({until.isoformat()}) must be after since ({since.isoformat()})")


def _in_period(column: Any, since: datetime | None, until: datetime | None) -> list[Any]:
    conditions = []
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column < until)
    return conditions


def reason_key(text: str | None) -> str:
    """A loss or rejection reason as a key: lower case, spaces and hyphens as ``_``.

    The same spelling rule as the playbook's recycle keys (CONTRACT.md), so "No Budget",
    "no-budget" and "no_budget" count together.
    """
    key = re.sub(r"[\s\-]+", "_", (text or "").strip().lower()).strip("_")
    return key if key and key != "no_reason_given" else NO_REASON


def _reason_from_stage_change(text: str | None) -> tuple[Literal["lost", "rejected"], str]:
    # The workflow writes "opportunity lost: <reason>" or "sales rejected the handoff: <reason>"
    # (nurture/domain/lifecycle.py); read back leniently, as older rows may say it differently.
    text = (text or "").strip()
    outcome: Literal["lost", "rejected"] = (
        "rejected" if text.lower().startswith("sales rejected") else "lost"
    )
    head, sep, tail = text.partition(":")
    return outcome, reason_key(tail if sep else head)


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


# --- the funnel ---------------------------------------------------------------------------


@dataclass
class _Passage:
    """One lead in one cycle, with its stage changes in order."""

    lead_id: str
    cycle: int
    owner: str | None
    lead_source: str | None
    rows: list[Any] = field(default_factory=list)

    def reached(self) -> set[str]:
        # Reaching a later stage implies the earlier ones: a recycled lead tossed up straight
        # from `recycling` has no mql row, yet it did pass the MQL bar, and a funnel whose
        # conversion exceeds 100% would mislead.
        stages = {row.to_stage for row in self.rows}
        reached = {"lead"}
        for index, stage in enumerate(FUNNEL_STAGES[1:], start=1):
            if stages & set(FUNNEL_STAGES[index:]):
                reached.add(stage)
        return reached

    def stays(self) -> list[tuple[str, float]]:
        """(stage, seconds) of each completed stay: from entering a stage to leaving it.

        A row that keeps the stage (a cadence exit recorded as a stage row) does not end
        the stay; the last stage of a cycle has not ended and gives no stay.
        """
        stays: list[tuple[str, float]] = []
        stage, entered = self.rows[0].to_stage, self.rows[0].at
        for row in self.rows[1:]:
            if row.to_stage != stage:
                stays.append((stage, (row.at - entered).total_seconds()))
                stage, entered = row.to_stage, row.at
        return stays

    def advanced_at(self) -> datetime | None:
        """When the passage first went past nurture (mql or beyond)."""
        for row in self.rows:
            if row.to_stage in ("mql", "sql", "won"):
                return row.at  # type: ignore[no-any-return]
        return None


def _cohort(since: datetime | None, until: datetime | None) -> Any:
    """(lead_id, cycle) of every passage whose cycle began in the period."""
    start = func.min(StageChange.at)
    query = select(StageChange.lead_id, StageChange.cycle).group_by(
        StageChange.lead_id, StageChange.cycle
    )
    conditions = _in_period(start, since, until)
    if conditions:
        query = query.having(and_(*conditions))
    return query.subquery("cohort")


def _joined_to(cohort: Any, lead_column: Any, cycle_column: Any) -> Any:
    return and_(cohort.c.lead_id == lead_column, cohort.c.cycle == cycle_column)


async def _passages(session: AsyncSession, cohort: Any) -> list[_Passage]:
    query = (
        select(
            StageChange.lead_id,
            StageChange.cycle,
            StageChange.from_stage,
            StageChange.to_stage,
            StageChange.at,
            StageChange.reason,
            StageChange.source,
            StageChange.cadence,
            StageChange.step,
            LeadRow.owner,
            LeadRow.source.label("lead_source"),
        )
        .join(cohort, _joined_to(cohort, StageChange.lead_id, StageChange.cycle))
        .join(LeadRow, LeadRow.id == StageChange.lead_id)
        # id breaks ties: a toss-up straight from nurturing writes mql and sql at one instant.
        .order_by(StageChange.lead_id, StageChange.cycle, StageChange.at, StageChange.id)
    )
    passages: list[_Passage] = []
    for row in (await session.execute(query)).all():
        if not passages or (passages[-1].lead_id, passages[-1].cycle) != (row.lead_id, row.cycle):
            passages.append(_Passage(row.lead_id, row.cycle, row.owner, row.lead_source))
        passages[-1].rows.append(row)
    return passages


async def _last_touches(
    session: AsyncSession, cohort: Any
) -> dict[tuple[str, int], list[tuple[datetime, str]]]:
    """Every touch (email sent, call task made) of the cohort, by passage, in time order."""
    emails = (
        select(
            EmailSend.lead_id,
            EmailSend.cycle,
            EmailSend.cadence,
            EmailSend.step,
            EmailSend.sent_at.label("at"),
        )
        .join(cohort, _joined_to(cohort, EmailSend.lead_id, EmailSend.cycle))
        .where(
            EmailSend.status == "sent",
            EmailSend.sent_at.is_not(None),
            EmailSend.cadence != NOTIFICATION_CADENCE,  # a notification is no touch of the lead
        )
    )
    calls = select(
        CallTask.lead_id,
        CallTask.cycle,
        CallTask.cadence,
        CallTask.step,
        CallTask.created_at.label("at"),
    ).join(cohort, _joined_to(cohort, CallTask.lead_id, CallTask.cycle))
    touches: dict[tuple[str, int], list[tuple[datetime, str]]] = defaultdict(list)
    for query in (emails, calls):
        for row in (await session.execute(query)).all():
            touches[(row.lead_id, row.cycle)].append((row.at, f"{row.cadence}/{row.step}"))
    for items in touches.values():
        items.sort()
    return touches


def _group_key(
    by: str, passage: _Passage, touches: Mapping[tuple[str, int], list[tuple[datetime, str]]]
) -> str:
    first = passage.rows[0]
    if by == "source":
        # The source recorded with the stage change: a later CRM update must not rewrite history.
        return first.source or passage.lead_source or NONE_LABEL
    if by == "cadence":
        # The first row of a cycle names the cadence it entered: the entry or recycle cadence.
        return first.cadence or NONE_LABEL
    if by == "owner":
        return passage.owner or NONE_LABEL
    if by == "cycle":
        return FIRST_PASS if passage.cycle == 0 else RECYCLED
    # step: last-touch attribution: the last step that touched the lead before it became an
    # MQL (or so far, when it has not), which is where it converted, or where it stalled.
    limit = passage.advanced_at()
    label = NO_TOUCH_LABEL
    for at, step in touches.get((passage.lead_id, passage.cycle), ()):
        if limit is not None and at > limit:
            break
        label = step
    return label


async def funnel(
    session: AsyncSession,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    by: GroupBy | None = None,
    now: datetime | None = None,
) -> Funnel:
    """The funnel of the passages that began in ``[since, until)``.

    Args:
        session: A database session.
        since: Start of the period (aware); ``None``: from the beginning.
        until: End of the period, excluded (aware); ``None``: up to now.
        by: Also break the funnel down by channel (``source``), entry ``cadence``, SDR
            (``owner``), ``cycle`` (first pass or recycled) or last-touch ``step``.
        now: The current time (stuck leads are measured against it).

    Returns:
        Stage counts and conversions (in total and per group, largest group first), the
        median time in each stage, loss and rejection reasons, and the stuck leads.

    Raises:
        ReportError: An unknown ``by`` or an empty or naive period.
    """
    by = grouping(by)
    _check_period(since, until)
    now = now or datetime.now(UTC)
    cohort = _cohort(since, until)
    passages = await _passages(session, cohort)
    touches = await _last_touches(session, cohort) if by == "step" else {}

    total = FunnelRow(key="all")
    groups: dict[str, FunnelRow] = {}
    dwell: dict[str, list[float]] = defaultdict(list)
    for passage in passages:
        targets = [total]
        if by is not None:
            key = _group_key(by, passage, touches)
            targets.append(groups.setdefault(key, FunnelRow(key=key)))
        for stage in passage.reached():
            for row in targets:
                setattr(row, stage, row.count(stage) + 1)
        for stage, seconds in passage.stays():
            dwell[stage].append(seconds)

    stages = [s for s in DWELL_STAGES if s in dwell] + sorted(set(dwell) - set(DWELL_STAGES))
    return Funnel(
        since=since,
        until=until,
        by=by,
        generated_at=now,
        total=total,
        groups=sorted(groups.values(), key=lambda g: (-g.lead, g.key)),
        time_in_stage=[
            StageTime(stage=s, median_seconds=_median(dwell[s]), samples=len(dwell[s]))
            for s in stages
        ],
        loss_reasons=await _loss_reasons(session, cohort, passages),
        stuck=await stuck_leads(session, now=now),
        leads=len({p.lead_id for p in passages}),
    )


async def _loss_reasons(
    session: AsyncSession, cohort: Any, passages: Iterable[_Passage]
) -> list[LossReason]:
    # The opportunity's outcome is what sales said in the CRM; the stage change's reason is
    # the workflow's account of it. One count per passage from the first, else per loss row.
    query = (
        select(
            Opportunity.lead_id, Opportunity.cycle, Opportunity.outcome, Opportunity.outcome_reason
        )
        .join(cohort, _joined_to(cohort, Opportunity.lead_id, Opportunity.cycle))
        .where(Opportunity.outcome.in_(("lost", "rejected")))
    )
    closed = {
        (r.lead_id, r.cycle): (r.outcome, reason_key(r.outcome_reason))
        for r in (await session.execute(query)).all()
    }
    counts: Counter[tuple[str, str]] = Counter(closed.values())
    for passage in passages:
        if (passage.lead_id, passage.cycle) in closed:
            continue
        for row in passage.rows:
            if row.to_stage == "lost":
                counts[_reason_from_stage_change(row.reason)] += 1
    return [
        LossReason(outcome=outcome, reason=reason, count=count)  # type: ignore[arg-type]
        for (outcome, reason), count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


async def stuck_leads(session: AsyncSession, *, now: datetime | None = None) -> list[StuckLead]:
    """Leads in a touch stage whose next touch is overdue by more than an hour, oldest first.

    There should be none: each one is a lead in a gap (a worker down, an activity failing).
    """
    now = now or datetime.now(UTC)
    query = (
        select(
            LeadRow.id,
            LeadRow.stage,
            LeadRow.cadence,
            LeadRow.step,
            LeadRow.owner,
            LeadRow.next_touch_at,
        )
        .where(LeadRow.stage.in_(sorted(TOUCH_STAGES)), LeadRow.next_touch_at < now - STUCK_AFTER)
        .order_by(LeadRow.next_touch_at, LeadRow.id)
    )
    return [
        StuckLead(
            lead_id=row.id,
            stage=row.stage,
            cadence=row.cadence,
            step=row.step,
            owner=row.owner,
            next_touch_at=row.next_touch_at,
            overdue_seconds=(now - row.next_touch_at).total_seconds(),
        )
        for row in (await session.execute(query)).all()
    ]


# --- cadence step performance -------------------------------------------------------------


def _event_step(data: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    data = data or {}
    step, cadence = data.get("step"), data.get("cadence")
    return (str(step) if step else None, str(cadence) if cadence else None)


async def step_performance(
    session: AsyncSession, *, since: datetime | None = None, until: datetime | None = None
) -> StepReport:
    """Per cadence step: emails and their engagement, calls and outcomes, leads that left.

    An open, click or reply counts for an email when an event of the lead names the email's
    step (``data.step``) and, if it names one, its cadence; each event is given to the
    latest matching email sent before it, so an email is opened at most once however many
    open events arrive. A machine's clicks and opens (``data.scanner``: link scanners, image
    proxies that fetch every message) are not counted.

    Args:
        session: A database session.
        since: Start of the period (aware); emails by ``sent_at``, tasks by ``created_at``,
            leaving by the stage change's time.
        until: End of the period, excluded.

    Returns:
        One row per step with any activity, by cadence, then in the order steps first ran.
    """
    _check_period(since, until)
    steps: dict[tuple[str, str], StepRow] = {}
    first_seen: dict[tuple[str, str], datetime] = {}

    def row_for(cadence: str, step: str, at: datetime | None) -> StepRow:
        key = (cadence, step)
        if at is not None and (key not in first_seen or at < first_seen[key]):
            first_seen[key] = at
        return steps.setdefault(key, StepRow(cadence=cadence, step=step))

    await _email_performance(session, since, until, row_for)

    task_query = select(
        CallTask.cadence,
        CallTask.step,
        CallTask.status,
        CallTask.outcome,
        func.count().label("n"),
        func.min(CallTask.created_at).label("first"),
    ).where(*_in_period(CallTask.created_at, since, until))
    task_query = task_query.group_by(
        CallTask.cadence, CallTask.step, CallTask.status, CallTask.outcome
    )
    for row in (await session.execute(task_query)).all():
        target = row_for(row.cadence, row.step, row.first)
        target.calls += row.n
        if row.status == "done":
            target.calls_done += row.n
            outcome = row.outcome or NONE_LABEL
            target.call_outcomes[outcome] = target.call_outcomes.get(outcome, 0) + row.n

    left_query = (
        select(
            StageChange.cadence,
            StageChange.step,
            StageChange.from_stage,
            StageChange.to_stage,
            StageChange.reason,
            func.min(StageChange.at).label("first"),
            func.count().label("n"),
        )
        .where(
            StageChange.step.is_not(None),
            StageChange.cadence.is_not(None),
            *_in_period(StageChange.at, since, until),
        )
        .group_by(
            StageChange.cadence,
            StageChange.step,
            StageChange.from_stage,
            StageChange.to_stage,
            StageChange.reason,
        )
    )
    for change in (await session.execute(left_query)).all():
        if change.from_stage is None:
            continue  # the lead's creation is where it entered, not where it left
        why = LEFT_LABELS.get(change.to_stage) if change.to_stage != change.from_stage else None
        # A row that keeps the stage (a cadence exit, an unsubscribe) says why in its reason.
        why = why or (change.reason or change.to_stage).split(":")[0].strip()[:40]
        target = row_for(change.cadence, change.step, change.first)
        target.left[why] = target.left.get(why, 0) + change.n

    ordered = sorted(
        steps, key=lambda k: (k[0], first_seen.get(k, datetime.max.replace(tzinfo=UTC)), k[1])
    )
    return StepReport(since=since, until=until, steps=[steps[k] for k in ordered])


async def _email_performance(
    session: AsyncSession,
    since: datetime | None,
    until: datetime | None,
    row_for: Callable[[str, str, datetime | None], StepRow],
) -> None:
    sent_query = (
        select(
            EmailSend.id, EmailSend.lead_id, EmailSend.cadence, EmailSend.step, EmailSend.sent_at
        )
        .where(
            EmailSend.status == "sent",
            EmailSend.sent_at.is_not(None),
            # Notifications to the SDR or owner are not the lead's emails: no open rate.
            EmailSend.cadence != NOTIFICATION_CADENCE,
            *_in_period(EmailSend.sent_at, since, until),
        )
        .order_by(EmailSend.sent_at, EmailSend.id)
    )
    sends = (await session.execute(sent_query)).all()
    by_lead: dict[str, list[Any]] = defaultdict(list)
    for send in sends:
        row_for(send.cadence, send.step, send.sent_at).emails_sent += 1
        by_lead[send.lead_id].append(send)
    if not sends:
        return

    event_query: Select[Any] = select(
        EventRow.lead_id,
        EventRow.type,
        EventRow.data,
        func.coalesce(EventRow.occurred_at, EventRow.received_at).label("at"),
    ).where(
        EventRow.type.in_(EMAIL_EVENTS),
        EventRow.lead_id.in_(
            sent_query.with_only_columns(EmailSend.lead_id).order_by(None).distinct()
        ),
    )
    engaged: dict[str, set[int]] = {kind: set() for kind in EMAIL_EVENTS}
    for event in (await session.execute(event_query)).all():
        step, cadence = _event_step(event.data)
        if step is None or (event.data or {}).get("scanner"):
            continue
        candidates = [
            s for s in by_lead[event.lead_id] if s.step == step and cadence in (None, s.cadence)
        ]
        # The latest email sent before the event: an open belongs to the email it opens.
        before = [s for s in candidates if s.sent_at <= event.at + EVENT_CLOCK_SKEW]
        if before:
            engaged[event.type].add(before[-1].id)
    for send in sends:
        target = row_for(send.cadence, send.step, None)
        target.opened += send.id in engaged["email.opened"]
        target.clicked += send.id in engaged["email.clicked"]
        target.replied += send.id in engaged["email.replied"]


# --- SDR activity -------------------------------------------------------------------------


async def sdr_activity(
    session: AsyncSession,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> SdrReport:
    """Per SDR: call tasks created in the period, how they were done, and toss-ups.

    A task is done on time when completed by its due time; it is overdue when still open
    past its due time, or when the cadence marked it overdue (no outcome in time), even if
    it was done later. Toss-ups are the opportunities of the SDR's leads created in the period.

    Args:
        session: A database session.
        since: Start of the period (aware).
        until: End of the period, excluded.
        now: The current time (what "past due" is measured against).
    """
    _check_period(since, until)
    now = now or datetime.now(UTC)
    done = CallTask.status == "done"
    overdue = (CallTask.overdue_at.is_not(None)) | (
        (CallTask.status == "open") & (CallTask.due_at < now)
    )
    on_time = done & CallTask.completed_at.is_not(None) & (CallTask.completed_at <= CallTask.due_at)

    def total(condition: Any) -> Any:
        return func.sum(case((condition, 1), else_=0))

    rows: dict[str, SdrRow] = {}

    def row_for(owner: str | None) -> SdrRow:
        key = owner or NONE_LABEL
        return rows.setdefault(key, SdrRow(owner=key))

    period = _in_period(CallTask.created_at, since, until)
    task_query = (
        select(
            CallTask.owner,
            func.count().label("tasks"),
            total(done).label("done"),
            total(on_time).label("on_time"),
            total(overdue).label("overdue"),
            total(CallTask.status == "open").label("open"),
            total(CallTask.status == "cancelled").label("cancelled"),
        )
        .where(*period)
        .group_by(CallTask.owner)
    )
    for row in (await session.execute(task_query)).all():
        target = row_for(row.owner)
        target.tasks, target.done, target.done_on_time = row.tasks, int(row.done), int(row.on_time)
        target.overdue, target.open, target.cancelled = (
            int(row.overdue),
            int(row.open),
            int(row.cancelled),
        )

    escalated_query = (
        select(CallTask.escalated_from, func.count().label("n"))
        .where(CallTask.escalated_at.is_not(None), *period)
        .group_by(CallTask.escalated_from)
    )
    for row in (await session.execute(escalated_query)).all():
        row_for(row.escalated_from).escalated = row.n

    outcome_query = (
        select(CallTask.owner, CallTask.outcome, func.count().label("n"))
        .where(done, *period)
        .group_by(CallTask.owner, CallTask.outcome)
    )
    for row in (await session.execute(outcome_query)).all():
        row_for(row.owner).outcomes[row.outcome or NONE_LABEL] = row.n

    # Won by the CRM's outcome on the opportunity, or by the lead's stage change to won in
    # that cycle: either record alone is enough (the outcome may not be written back).
    won_stage = (
        select(StageChange.id)
        .where(
            StageChange.lead_id == Opportunity.lead_id,
            StageChange.cycle == Opportunity.cycle,
            StageChange.to_stage == "won",
        )
        .exists()
    )
    toss_query = (
        select(
            Opportunity.owner,
            func.count().label("n"),
            total((Opportunity.outcome == "won") | won_stage).label("won"),
        )
        .where(*_in_period(Opportunity.created_at, since, until))
        .group_by(Opportunity.owner)
    )
    for row in (await session.execute(toss_query)).all():
        target = row_for(row.owner)
        target.toss_ups, target.won = row.n, int(row.won)

    ordered = sorted(rows.values(), key=lambda r: (r.owner == NONE_LABEL, r.owner))
    return SdrReport(since=since, until=until, generated_at=now, sdrs=ordered)


# --- the planner --------------------------------------------------------------------------


async def measure(
    session: AsyncSession, *, since: datetime | None = None, until: datetime | None = None
) -> Measured:
    """The conversion rates and call tasks per SQL measured in the data, for :func:`plan`.

    Rates come from the funnel of the period (``None`` where a stage had no passages, or
    none converted: a zero rate cannot plan anything). Calls per SQL are the call tasks
    created in the period over the SQL passages of the period's funnel.
    """
    measured = await funnel(session, since=since, until=until)
    total = measured.total
    rates = Rates(**{name: getattr(total, name) or None for name in RATE_NAMES})
    calls = await session.scalar(
        select(func.count())
        .select_from(CallTask)
        .where(*_in_period(CallTask.created_at, since, until))
    )
    calls_per_sql = round(calls / total.sql, 2) if total.sql and calls else None
    return Measured(rates=rates, calls_per_sql=calls_per_sql, thin=thin_rates(total))


def _decimal(name: str, value: Any) -> Decimal:
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as exc:
        raise PlanError(f"{name} must be a number, not {value!r}") from exc
    if not number.is_finite():
        raise PlanError(f"{name} must be a finite number, not {value!r}")
    return number


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def _rate_value(name: str, value: Any) -> Decimal:
    rate = _decimal(name, value)
    if not 0 < rate <= 1:
        raise PlanError(
            f"{name} must be more than 0 and at most 1 (a share, e.g. 0.25), not {value}"
        )
    return rate


def plan(
    target_revenue: float | int | Decimal | str,
    deal_size: float | int | Decimal | str,
    renewal_rate: float | Decimal | str,
    customers: int,
    rates: Rates | Mapping[str, float | None] | None = None,
    *,
    tasks_per_sdr_per_day: float = DEFAULT_TASKS_PER_SDR_PER_DAY,
    calls_per_sql: float | None = None,
    working_days_per_month: int = DEFAULT_WORKING_DAYS_PER_MONTH,
    measured: Measured | None = None,
) -> Plan:
    """Plan the monthly funnel and SDR capacity that a yearly revenue target needs.

    Existing customers bring ``customers × renewal_rate × deal_size``; the rest is new
    business, ``ceil(rest / deal_size)`` new customers a year, a twelfth of them (rounded
    up) each month. Each earlier stage then needs ``ceil(next stage / rate)``: SQLs from
    wins, MQLs from SQLs, leads from MQLs. SDRs make ``ceil(SQLs × calls_per_sql)`` call
    tasks a month, and one SDR does ``tasks_per_sdr_per_day × working_days_per_month``.
    Money is computed in decimal, so the worked example of PRODUCT.md comes out exactly.

    Args:
        target_revenue: Next year's revenue target (currency units).
        deal_size: The average yearly deal.
        renewal_rate: The share of current customers that renew, in [0, 1].
        customers: Current paying customers.
        rates: ``lead_to_mql``, ``mql_to_sql``, ``sql_to_won`` in (0, 1]; a missing or
            ``None`` rate is taken from ``measured``.
        tasks_per_sdr_per_day: Call tasks one SDR completes a working day.
        calls_per_sql: Call tasks spent for one SQL; ``None``: measured, else a default.
        working_days_per_month: Working days in a month.
        measured: What :func:`measure` found in the data.

    Raises:
        PlanError: An input out of range, or a rate neither given nor measurable.
    """
    target = _decimal("target revenue", target_revenue)
    deal = _decimal("deal size", deal_size)
    renewal = _decimal("renewal rate", renewal_rate)
    count = _decimal("customers", customers)
    if target < 0:
        raise PlanError(f"target revenue must not be negative, not {target_revenue}")
    if deal <= 0:
        raise PlanError(f"deal size must be more than 0, not {deal_size}")
    if not 0 <= renewal <= 1:
        raise PlanError(
            f"renewal rate must be between 0 and 1 (a share, e.g. 0.5), not {renewal_rate}"
        )
    if count < 0 or count != count.to_integral_value():
        raise PlanError(f"customers must be a whole number, not negative, not {customers}")
    per_day = _decimal("tasks per SDR per day", tasks_per_sdr_per_day)
    if per_day <= 0:
        raise PlanError(f"tasks per SDR per day must be more than 0, not {tasks_per_sdr_per_day}")
    if isinstance(working_days_per_month, bool) or not 1 <= int(working_days_per_month) <= 31:
        raise PlanError(
            f"working days per month must be between 1 and 31, not {working_days_per_month}"
        )

    given = rates.model_dump() if isinstance(rates, Rates) else dict(rates or {})
    unknown = set(given) - set(RATE_NAMES)
    if unknown:
        raise PlanError(
            f"unknown rate {', '.join(sorted(unknown))}: rates are {', '.join(RATE_NAMES)}"
        )
    from_data = measured.rates.model_dump() if measured else {}
    chosen: dict[str, Decimal] = {}
    sources: dict[str, str] = {}
    for name in RATE_NAMES:
        if given.get(name) is not None:
            chosen[name], sources[name] = _rate_value(name, given[name]), "given"
        elif from_data.get(name) is not None:
            chosen[name], sources[name] = (
                _rate_value(f"measured {name}", from_data[name]),
                "measured",
            )
        else:
            # No data yet (a new installation): a common B2B benchmark, labelled as such, so
            # the plan still answers; give your own or let the funnel measure it.
            chosen[name], sources[name] = Decimal(str(DEFAULT_RATES[name])), "default"

    if calls_per_sql is not None:
        calls, sources["calls_per_sql"] = _decimal("calls per SQL", calls_per_sql), "given"
    elif measured is not None and measured.calls_per_sql is not None:
        calls, sources["calls_per_sql"] = (
            _decimal("measured calls per SQL", measured.calls_per_sql),
            "measured",
        )
    else:
        calls, sources["calls_per_sql"] = Decimal(str(DEFAULT_CALLS_PER_SQL)), "default"
    if calls < 0:
        raise PlanError(f"calls per SQL must not be negative, not {calls_per_sql}")

    renewing = count * renewal
    existing = renewing * deal
    new_business = max(target - existing, Decimal(0))
    new_customers = _ceil(new_business / deal)
    wins = _ceil(Decimal(new_customers) / MONTHS_PER_YEAR)
    sqls = _ceil(wins / chosen["sql_to_won"])
    mqls = _ceil(sqls / chosen["mql_to_sql"])
    leads = _ceil(mqls / chosen["lead_to_mql"])
    tasks = _ceil(sqls * calls)
    per_sdr = per_day * int(working_days_per_month)
    sdrs = Decimal(tasks) / per_sdr
    return Plan(
        target_revenue=float(target),
        deal_size=float(deal),
        renewal_rate=float(renewal),
        customers=int(count),
        renewing_customers=float(renewing),
        existing_revenue=float(existing),
        new_business_revenue=float(new_business),
        new_customers=new_customers,
        new_customers_per_month=wins,
        sqls_per_month=sqls,
        mqls_per_month=mqls,
        leads_per_month=leads,
        rates=Rates(**{name: float(value) for name, value in chosen.items()}),
        sources=sources,
        calls_per_sql=float(calls),
        call_tasks_per_month=tasks,
        tasks_per_sdr_per_day=float(per_day),
        working_days_per_month=int(working_days_per_month),
        tasks_per_sdr_per_month=float(per_sdr),
        sdrs_needed=round(float(sdrs), 2),
        sdr_headcount=_ceil(sdrs),
    )


def plan_lines(result: Plan) -> list[tuple[str, str]]:
    """The plan as (what, how much) lines, each saying how it was derived.

    The CLI table and the web page print the same lines, so a manager can check the
    arithmetic by hand, as in PRODUCT.md's worked example.
    """
    rates, src = result.rates, result.sources
    return [
        ("target revenue", _amount(result.target_revenue)),
        (
            "existing customers renewing",
            f"{_amount(result.renewing_customers)} = {result.customers:,}"
            f" × {result.renewal_rate:g}",
        ),
        (
            "revenue from existing customers",
            f"{_amount(result.existing_revenue)} = {_amount(result.renewing_customers)}"
            f" × {_amount(result.deal_size)}",
        ),
        ("new business needed", f"{_amount(result.new_business_revenue)} = target − existing"),
        (
            "new customers a year",
            f"{result.new_customers:,} = {_amount(result.new_business_revenue)}"
            f" / {_amount(result.deal_size)}, rounded up",
        ),
        (
            "new customers a month",
            f"{result.new_customers_per_month:,} = {result.new_customers:,} / 12, rounded up",
        ),
        (
            "SQLs a month",
            f"{result.sqls_per_month:,} (SQL → won {rates.sql_to_won:g}, {src['sql_to_won']})",
        ),
        (
            "MQLs a month",
            f"{result.mqls_per_month:,} (MQL → SQL {rates.mql_to_sql:g}, {src['mql_to_sql']})",
        ),
        (
            "leads a month",
            f"{result.leads_per_month:,} (lead → MQL {rates.lead_to_mql:g}, {src['lead_to_mql']})",
        ),
        (
            "call tasks a month",
            f"{result.call_tasks_per_month:,}"
            f" ({result.calls_per_sql:g} per SQL, {src['calls_per_sql']})",
        ),
        (
            "one SDR's call tasks a month",
            f"{_amount(result.tasks_per_sdr_per_month)} = {result.tasks_per_sdr_per_day:g} a day × "
            f"{result.working_days_per_month} working days",
        ),
        (
            "SDRs needed",
            f"{result.sdrs_needed:g} → {result.sdr_headcount} "
            + ("person" if result.sdr_headcount == 1 else "people"),
        ),
    ]


def _amount(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def human_duration(seconds: float | None) -> str:
    """``seconds`` as a short readable duration: ``40s``, ``45m``, ``3.5h``, ``1.5d``; ``-`` for
    none."""
    if seconds is None or math.isnan(seconds):
        return "-"
    if seconds < 1:
        return "under 1s"
    if seconds < 60:
        # Not "0m": a stay of seconds (the demo's waits, an instant toss-up) is real.
        return f"{round(seconds)}s"
    if seconds < 3600:
        return f"{round(seconds / 60)}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
