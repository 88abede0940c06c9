"""Intake: a posted or imported lead becomes (or updates) its one workflow, `lead-<id>`.

The same path serves the CLI, the web app and `make run`'s sample leads. It is idempotent:
the personal data goes to the app database, the workflow is started with the conflict
policy "use existing" (two starts never make two workflows), and a lead posted again is
signaled as `lead.updated`.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from nurture.adapters.catalog import CadenceCatalog
from nurture.adapters.database import LeadRow, insert_or_ignore
from nurture.adapters.temporal import (
    TemporalGate,
    TemporalUnavailable,
    typed_search_attributes,
)
from nurture.domain.cadence import CadenceSet
from nurture.domain.conditions import Facts, fields_used
from nurture.domain.events import MAX_EVENT_ID, PERSONAL_FIELDS, Event, Lead, LeadFacts
from nurture.domain.events import account_key as account_of
from nurture.domain.interpreter import entry_cadence
from nurture.domain.machine import first_published
from nurture.domain.names import SIGNAL_EVENT, WORKFLOW_NAME, workflow_id
from nurture.domain.state import LeadInput
from nurture.services.ingest import EventWriter
from nurture.services.optouts import (
    apply_bounce,
    erase_personal_data,
    mark_do_not_contact,
    unsubscribe_address,
)
from nurture.settings import Settings

log = logging.getLogger(__name__)

# How stale the rule fields an event is filtered with may be (see Intake.rule_fields).
RULE_FIELDS_RECHECK_S = 1.0


@dataclass(frozen=True)
class IntakeResult:
    """What :meth:`Intake.submit` did.

    ``status``: ``created`` (its workflow started now), ``updated`` (it was running; the
    change is signaled as ``lead.updated``), ``pending_start`` (recorded, but Temporal could
    not be reached: the redelivery sweep starts it later), or ``closed`` (won or closed:
    not changed).
    """

    lead_id: str
    workflow_id: str
    status: Literal["created", "updated", "pending_start", "closed"]
    stage: str | None = None
    cadence: str | None = None


@dataclass(frozen=True)
class _Upserted:
    existed: bool
    stage: str | None
    facts_changed: bool
    # Its workflow was started before this call (leads.started_at was set).
    was_started: bool = False


def rule_fields(cadence_set: CadenceSet) -> set[str]:
    """Every lead field a rule of the playbook or a cadence reads.

    Only these of a lead's free fields travel into its workflow: the rest (which may be
    personal: a CRM posts whatever it has) stays in the app database.
    """
    from nurture.domain.cadence import BranchStep

    playbook = cadence_set.playbook
    names: set[str] = set()
    for rule in playbook.grading.rules:
        names |= fields_used(rule.when)
    for route in playbook.routing.entry:
        if route.when is not None:
            names |= fields_used(route.when)
    for cadence in cadence_set.cadences.values():
        for step in cadence.steps:
            if isinstance(step, BranchStep):
                for case in step.cases:
                    names |= fields_used(case.when)
    # `account` is computed from the email and company, never a free field: a posted or
    # imported one (a CRM's "account" may be a company name) stays in the app database.
    names.discard("account")
    return names


class Intake:
    """Creates and updates leads: database row first, then the workflow.

    Every call to Temporal goes through ``gate`` (:class:`nurture.adapters.temporal.TemporalGate`):
    the web app bounds them so a request answers within about a second while Temporal is
    down; what was not started or signaled then is recorded and handed over by the
    redelivery sweep (:mod:`nurture.services.parked`).
    """

    def __init__(
        self,
        settings: Settings,
        client: Client,
        sessions: async_sessionmaker[AsyncSession],
        catalog: CadenceCatalog,
        gate: TemporalGate | None = None,
        writer: EventWriter | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.sessions = sessions
        self.catalog = catalog
        self.gate = gate or TemporalGate()
        # The web app's group-commit writer: events' marks join its next transaction.
        self.writer = writer
        self._rule_fields: tuple[CadenceSet, set[str]] | None = None
        self._rule_fields_checked = 0.0

    def rule_fields(self) -> set[str]:
        """`rule_fields` of the current set, computed once per version (events are hot).

        The set is asked for at most once per :data:`RULE_FIELDS_RECHECK_S`: asking means
        listing and stat-ing every cadence and template file, which cost more than the rest
        of an event's handling in a webhook flood. An edit reaches events that much later.
        """
        now = time.monotonic()
        if (
            self._rule_fields is not None
            and now < self._rule_fields_checked + RULE_FIELDS_RECHECK_S
        ):
            return self._rule_fields[1]
        cadence_set = self.catalog.current()
        self._rule_fields_checked = now
        if self._rule_fields is None or self._rule_fields[0] is not cadence_set:
            self._rule_fields = (cadence_set, rule_fields(cadence_set))
        return self._rule_fields[1]

    async def submit(self, lead: Lead, *, now: datetime | None = None) -> IntakeResult:
        """Create the lead, or update it when it exists (as `lead.updated`).

        The row is written first; when Temporal cannot be reached the result is
        ``pending_start`` (a new lead, or one recorded earlier and never started) or
        ``updated`` with the `lead.updated` parked: nothing recorded is lost.

        Raises:
            CadenceSetInvalid: when the cadence files have problems (nothing is started).
        """
        now = now or datetime.now(UTC)
        self.catalog.current()  # refuse before any write when the cadence files are broken
        upserted = await self._upsert(lead)
        wf_id = workflow_id(lead.id)
        if upserted.stage in ("won", "closed"):
            return IntakeResult(lead.id, wf_id, "closed", stage=upserted.stage)
        started = await self.start(lead.id, now=now)
        if started.status == "pending_start" and upserted.was_started:
            # Running already: only the update waits (parked) for Temporal to come back.
            if upserted.facts_changed:
                await self._send_update(lead.id, now)
            return replace(started, status="updated", stage=upserted.stage)
        if started.status != "created":
            return replace(started, stage=upserted.stage)
        try:
            first_start = await self.mark_started(lead.id)
        except SQLAlchemyError as exc:
            # Recorded and started: only the note of it failed (the database stayed locked,
            # or went away, after the start). The contract answers 503 only when nothing
            # was recorded, so this is a creation; the redelivery sweep finds the row
            # unmarked, finds its workflow running, and marks it.
            log.warning("lead %s started, its start not noted yet: %s", lead.id, exc)
            first_start = not upserted.existed
        if upserted.existed and upserted.facts_changed:
            # Signaled even after a first start: a start that timed out earlier may have
            # made the workflow with the older facts.
            await self._send_update(lead.id, now)
        # Of several posts of one new lead at once (or a resend of one waiting to start),
        # the one that marks it started is its creation; the others updated it.
        return replace(
            started,
            status="created" if first_start else "updated",
            stage=upserted.stage,
        )

    async def start_inserted(self, lead: Lead, *, now: datetime | None = None) -> IntakeResult:
        """Start the workflow of a new lead whose row the caller has just inserted, exactly
        as posted (:func:`lead_row`), so its facts are the posted lead's, not read back.

        The web app's path for a new lead: its row joined the request's receipt in the
        writer's transaction (:meth:`nurture.services.ingest.EventWriter.take`). The result
        is as :meth:`submit`'s: ``created`` for the call that marks it started first.
        """
        started = await self.start(lead.id, now=now, facts=lead.facts())
        if started.status != "created":
            return started
        try:
            first_start = await self.mark_started(lead.id)
        except SQLAlchemyError as exc:
            # As in submit: started; the sweep notes it. This call inserted the row.
            log.warning("lead %s started, its start not noted yet: %s", lead.id, exc)
            first_start = True
        return replace(started, status="created" if first_start else "updated")

    async def start(
        self, lead_id: str, *, now: datetime | None = None, facts: LeadFacts | None = None
    ) -> IntakeResult:
        """Start the lead's workflow from its row (or find it running): ``created``,
        ``closed`` (it completed), or ``pending_start`` when Temporal cannot be reached.

        ``facts``: the lead's facts when the caller knows them as stored (else read from
        its row).

        Does not mark the row started: :meth:`submit` and the redelivery sweep
        (:func:`nurture.services.parked.start_waiting`) do, with :meth:`mark_started`.
        """
        now = now or datetime.now(UTC)
        cadence_set = self.catalog.current()
        wf_id = workflow_id(lead_id)
        if facts is None:
            facts = await self._facts(lead_id)
        used = self.rule_fields()
        facts = facts.model_copy(
            update={"fields": {k: v for k, v in facts.fields.items() if k in used}}
        )
        cadence_id, why = entry_cadence(cadence_set.playbook, Facts(lead=facts, now=now))
        cadence = cadence_set.cadence(cadence_id)
        summary, details = static_summary(lead_id, facts.source, cadence_id, cadence.version, why)
        input = LeadInput(
            facts=facts, playbook=cadence_set.playbook, cadence=cadence, routing_reason=why
        )
        # The search attributes the run would publish first, set at the start instead: the
        # run then skips that upsert (see nurture/workflows/lead.py), and list queries find
        # the lead before a worker has run it. Only what the workflow publishes anyway.
        try:
            first = first_published(input, now)
        except Exception:  # the run fails the same way, visibly, where ops look for it
            log.exception("lead %s: its first search attributes could not be computed", lead_id)
            first = None
        input.search_attributes_at_start = first is not None
        try:
            await self.gate.call(
                lambda: self.client.start_workflow(
                    WORKFLOW_NAME,
                    input,
                    id=wf_id,
                    static_summary=summary,
                    static_details=details,
                    search_attributes=typed_search_attributes(first) if first else None,
                    task_queue=self.settings.task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                )
            )
        except WorkflowAlreadyStartedError:
            # Its workflow completed (won or closed) before the projection caught up.
            return IntakeResult(lead_id, wf_id, "closed", stage="closed")
        except (TemporalUnavailable, RPCError) as exc:
            log.warning("lead %s recorded; its workflow is not started yet: %s", lead_id, exc)
            return IntakeResult(lead_id, wf_id, "pending_start", cadence=cadence_id)
        return IntakeResult(lead_id, wf_id, "created", cadence=cadence_id)

    def via(self, gate: TemporalGate) -> Intake:
        """The same intake with its Temporal calls through ``gate`` (the sweep's own)."""
        other = Intake(self.settings, self.client, self.sessions, self.catalog, gate, self.writer)
        other._rule_fields = self._rule_fields
        other._rule_fields_checked = self._rule_fields_checked
        return other

    async def mark_started(self, lead_id: str) -> bool:
        """Note that the lead's workflow exists; True for the call that noted it first.

        Through the web app's writer when there is one: the mark joins its next
        transaction instead of taking the database's write lock on its own.
        """
        if self.writer is not None:
            return await self.writer.started(lead_id)
        async with self.sessions() as session:
            marked = await session.execute(
                update(LeadRow)
                .where(LeadRow.id == lead_id, LeadRow.started_at.is_(None))
                .values(started_at=datetime.now(UTC))
            )
            await session.commit()
            return bool(marked.rowcount)  # type: ignore[attr-defined]

    async def _send_update(self, lead_id: str, now: datetime) -> None:
        """Record the lead's new decision facts as a `lead.updated` and signal it; when
        Temporal cannot be reached it stays parked for the redelivery sweep."""
        facts = await self._facts(lead_id)
        used = self.rule_fields()
        data: dict[str, object] = facts.model_dump(exclude={"id", "fields", "has_email"})
        data["fields"] = {k: v for k, v in facts.fields.items() if k in used}
        # Whether an address exists, never the address (`for_workflow` reads it so).
        data["email"] = facts.has_email
        event = Event(
            # Unique per update: going back to an earlier value is a change too.
            id=f"intake-{lead_id}-{secrets.token_hex(8)}",
            type="lead.updated",
            lead_id=lead_id,
            occurred_at=now,
            data=data,
        )
        fresh, _lead = await record_event(self.sessions, event)
        if fresh:
            await self.signal_recorded(event)

    async def signal_recorded(self, event: Event) -> str:
        """Signal a recorded (parked) event to its lead's workflow; returns its status now:
        ``delivered``, or ``parked`` when the workflow cannot be reached now.

        Raises:
            RPCError: NOT_FOUND when the lead has no workflow (the caller decides).
        """
        handle = self.client.get_workflow_handle(workflow_id(event.lead_id))
        signaled = await self.for_signal(event)
        try:
            await self.gate.call(lambda: handle.signal(SIGNAL_EVENT, signaled))
        except TemporalUnavailable:
            return "parked"
        await self.mark(event.id, "delivered")
        return "delivered"

    async def for_signal(self, event: Event) -> Event:
        """The event as its lead's workflow is signaled it (:func:`for_workflow`); a
        `lead.updated` that may change the account carries the account as it is now."""
        signaled = for_workflow(event, self.rule_fields())
        if event.type == "lead.updated" and ACCOUNT_SOURCES & event.data.keys():
            # The account follows the email and company, which the workflow never sees.
            signaled.data["account"] = await self._account(event.lead_id)
        return signaled

    async def _account(self, lead_id: str) -> str | None:
        async with self.sessions() as session:
            row = await session.get(LeadRow, lead_id)
            return row.account if row is not None else None

    async def mark(self, event_id: str, status: str) -> None:
        """Set a recorded event's status (through the writer when there is one)."""
        if self.writer is not None:
            await self.writer.mark(event_id, status)
        else:
            await _mark(self.sessions, event_id, status)

    async def _upsert(self, lead: Lead) -> _Upserted:
        """Write the lead's row: whether it existed, its stage, whether decision facts changed.

        Safe when the same lead is posted or imported several times at once: the row is
        created with ``INSERT ... ON CONFLICT DO NOTHING`` (one creator wins, the others
        update the row it made), then read locked, so concurrent updates of one lead apply
        one after the other instead of failing on the primary key.

        A won, closed or erased lead's row is left as it is (an erased lead's personal data
        never comes back through a re-post).
        """
        given = lead.model_dump(include=lead.model_fields_set | {"id"})
        async with self.sessions() as session:
            created = await session.scalar(
                insert_or_ignore(LeadRow, session.get_bind().dialect.name)
                .values(id=lead.id, fields={})
                .returning(LeadRow.id)
            )
            # FOR UPDATE on PostgreSQL; on SQLite the insert above already holds the
            # database's write lock until commit.
            row = await session.get(LeadRow, lead.id, with_for_update=True)
            assert row is not None
            existed = created is None
            if existed and (row.stage in ("won", "closed") or row.erased_at is not None):
                final = "closed" if row.erased_at is not None else row.stage
                await session.rollback()
                return _Upserted(existed=True, stage=final, facts_changed=False, was_started=True)
            before = _decision_view(row) if existed else None
            was_started = row.started_at is not None
            for name, value in given.items():
                if name == "fields":
                    row.fields = {**(row.fields or {}), **(value or {})}
                elif name != "id":
                    setattr(row, name, value)
            row.account = account_of(row.email, row.company)
            after = _decision_view(row)
            stage = row.stage if existed else None
            await session.commit()
        return _Upserted(
            existed=existed,
            stage=stage,
            facts_changed=before != after,
            was_started=was_started,
        )

    async def _facts(self, lead_id: str):  # type: ignore[no-untyped-def]
        async with self.sessions() as session:
            row = await session.get(LeadRow, lead_id)
            assert row is not None
            return lead_from_row(row).facts()


def lead_row(lead: Lead) -> dict[str, Any]:
    """The row of a new lead, every column a posted lead sets (unset ones empty), as
    :meth:`Intake._upsert` would write it: for an ``INSERT`` of many rows at once."""
    row: dict[str, Any] = {name: getattr(lead, name) for name in Lead.model_fields}
    row["fields"] = dict(lead.fields or {})
    row["account"] = account_of(lead.email, lead.company)
    return row


def _decision_view(row: LeadRow) -> dict[str, object]:
    return {
        "country": row.country,
        "timezone": row.timezone,
        "industry": row.industry,
        "employees": row.employees,
        "tier_account": row.tier_account,
        "source": row.source,
        "fields": dict(row.fields or {}),
        "has_email": bool(row.email),
        "account": row.account,
    }


def lead_from_row(row: LeadRow) -> Lead:
    data = {
        name: getattr(row, name)
        for name in (
            "id",
            *PERSONAL_FIELDS,
            "country",
            "timezone",
            "industry",
            "employees",
            "tier_account",
            "source",
        )
    }
    data["fields"] = dict(row.fields or {})
    # Not validated again: a row written before today's limits (a longer name, an address
    # with a display name) must still load, for pages, templates and re-posts alike.
    return Lead.model_construct(**data)


@dataclass(frozen=True)
class EventResult:
    event_id: str
    status: Literal["delivered", "duplicate", "parked", "recorded"]


async def record_event(
    sessions: async_sessionmaker[AsyncSession], event: Event
) -> tuple[bool, LeadRow | None]:
    """Store the event durably before anything else; (False, _) when its id was seen."""
    from sqlalchemy.exc import IntegrityError

    from nurture.adapters.database import EventRow

    async with sessions() as session:
        if await session.get(EventRow, event.id) is not None:
            return False, None
        lead = await session.get(LeadRow, event.lead_id)
        session.add(
            EventRow(
                id=event.id,
                lead_id=event.lead_id,
                type=event.type,
                occurred_at=event.occurred_at,
                data=dict(event.data),
                # Parked until the signal succeeds: a failure between here and there leaves
                # it for redelivery, never marked delivered while the workflow never saw it.
                status="parked",
            )
        )
        try:
            await session.commit()
        except IntegrityError:
            # The same id posted concurrently: the first one wins.
            await session.rollback()
            return False, None
        return True, lead


async def _mark(sessions: async_sessionmaker[AsyncSession], event_id: str, status: str) -> None:
    from nurture.adapters.database import EventRow, utcnow

    async with sessions() as session:
        row = await session.get(EventRow, event_id)
        if row is not None:
            row.status = status
            row.delivered_at = utcnow() if status == "delivered" else None
            await session.commit()


async def submit_event(intake: Intake, event: Event) -> EventResult:
    """Record an event, apply opt-outs at once, then signal its lead's workflow (or park it
    for an unknown lead or one waiting to start, or when the workflow cannot be reached now)."""
    fresh, lead = await record_event(intake.sessions, event)
    if not fresh:
        return EventResult(event.id, "duplicate")
    return await dispatch_event(intake, event, lead)


async def dispatch_event(intake: Intake, event: Event, lead: LeadRow | None) -> EventResult:
    """What follows the recording of a new event (``lead``: its lead's row as read then, or
    None): opt-outs applied at once, then the signal, or the event left parked; then the
    events it causes for other leads (a bounce that suppressed an address)."""
    told: list[Event] = []
    result = await _dispatch(intake, event, lead, told)
    for follow_up in told:
        await submit_event(intake, follow_up)
    return result


def suppression_event(bounce: Event, holder: str, bounced: str, reason: str) -> Event:
    """The `lead.unsubscribed` that tells ``holder``'s workflow its address is suppressed by
    ``bounce`` (on lead ``bounced``): its emails are skipped from now on, saying why."""
    data: dict[str, Any] = {"suppressed": reason}
    if holder != bounced:
        data["via"] = f"same address as {bounced}"
    event_id = f"{bounce.id}~{holder}"
    if len(event_id) > MAX_EVENT_ID:
        event_id = f"{bounce.id[:100]}~{hashlib.sha256(event_id.encode()).hexdigest()[:32]}"
    return Event(
        id=event_id,
        type="lead.unsubscribed",
        lead_id=holder,
        occurred_at=bounce.occurred_at,
        data=data,
    )


async def _dispatch(
    intake: Intake, event: Event, lead: LeadRow | None, told: list[Event]
) -> EventResult:
    if lead is None:
        return EventResult(event.id, "parked")
    now = event.occurred_at or datetime.now(UTC)
    if event.type == "lead.updated":
        await apply_update(intake.sessions, event)
    elif event.type == "lead.unsubscribed":
        # Per address: every lead with it stops getting email, told through its own event.
        others = await unsubscribe_address(intake.sessions, lead.id, "unsubscribed", now)
        for other in others:
            await submit_event(
                intake,
                Event(id=f"{event.id}~{other}", type="lead.unsubscribed", lead_id=other,
                      occurred_at=event.occurred_at, data={"via": f"same address as {lead.id}"}),
            )  # fmt: skip
    elif event.type == "email.bounced":
        # Suppressed at once (hard), or on the third soft bounce in 30 days: the email
        # activity re-checks suppressions right before each send, and every lead with the
        # address is told (after this bounce) why its emails stop.
        suppressed = await apply_bounce(intake.sessions, lead.id, event.data, now)
        if suppressed is not None:
            told.extend(
                suppression_event(event, holder, lead.id, suppressed.reason)
                for holder, already in suppressed.leads.items()
                if not already
            )
    elif event.type in ("lead.do_not_contact", "lead.erased"):
        await mark_do_not_contact(intake.sessions, lead.id)
    final = lead.stage in ("won", "closed")
    if event.type == "lead.erased" and final:
        # Its workflow has completed: erase here (erase applies in every stage).
        await erase_personal_data(intake.sessions, lead.id, now)
    if lead.waiting_to_start:
        # No workflow yet: the sweep that starts it delivers this event after.
        return EventResult(event.id, "parked")
    try:
        status = await intake.signal_recorded(event)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND and final:
            # The workflow has completed: the event is recorded, not signaled.
            await intake.mark(event.id, "recorded")
            return EventResult(event.id, "recorded")
        # Not delivered now (the workflow not started yet, or gone): the event is durable
        # and stays parked until `nurture.services.parked.redeliver` delivers it.
        return EventResult(event.id, "parked")
    # `parked` when Temporal could not be reached in time: the sweep delivers it later.
    return EventResult(event.id, status)  # type: ignore[arg-type]


# The lead fields a `lead.updated` may change the account by.
ACCOUNT_SOURCES = frozenset({"email", "company", "account"})

# What of an event's data a workflow may see, by key: everything else (form fields, notes,
# free text) may be personal and stays in the app database.
WORKFLOW_DATA_KEYS = frozenset(
    {
        "step",
        "cadence",
        "form",
        "url",
        "outcome",
        "task",
        "reason",
        "scanner",
        "via",
        "key",
        "until",
        "kind",
        "suppressed",
    }
)


def for_workflow(event: Event, used_fields: set[str]) -> Event:
    """The event as the workflow may see it: personal data stays out of Temporal.

    A `lead.updated` keeps the decision fields and the free fields rules read (and only
    whether an email address exists); other events keep the keys decisions use, a page
    URL without its query string (where addresses and tokens travel).
    """
    if event.type != "lead.updated":
        data = {k: v for k, v in event.data.items() if k in WORKFLOW_DATA_KEYS}
        if isinstance(data.get("url"), str):
            data["url"] = data["url"].split("?", 1)[0].split("#", 1)[0]
        if isinstance(data.get("reason"), str):
            data["reason"] = data["reason"][:200]
        return event.model_copy(update={"data": data})
    # `account` is computed from the email and company (Intake.signal_recorded adds it):
    # a posted one is not the lead's account.
    known = set(LeadFacts.model_fields) - {"id", "fields", "has_email", "account"}
    data: dict[str, object] = {}
    for key, value in event.data.items():
        if key != "account" and (key in known or key in used_fields):
            data[key] = value
        elif key == "fields" and isinstance(value, dict):
            kept = {k: v for k, v in value.items() if k in used_fields}
            if kept:
                data["fields"] = kept
    if "email" in event.data:
        data["email"] = bool(event.data.get("email"))  # the reducer maps it to has_email
    return event.model_copy(update={"data": data})


async def apply_update(sessions: async_sessionmaker[AsyncSession], event: Event) -> None:
    """Write a `lead.updated` event's fields to the lead's row (the projection pages read).

    Values are validated as a lead's (a posted "3000" becomes 3000); an update that makes the
    lead invalid leaves the row as it was (the webhook refuses such bodies before this).
    """
    from pydantic import ValidationError

    async with sessions() as session:
        row = await session.get(LeadRow, event.lead_id)
        if row is None or row.erased_at is not None:
            return  # an erased lead's personal data never comes back
        merged = lead_from_row(row).model_dump()
        fields = dict(merged.pop("fields") or {})
        for key, value in event.data.items():
            if key == "fields" and isinstance(value, dict):
                fields.update(value)
            elif key != "id":
                merged[key] = value
        try:
            lead = Lead.model_validate({**merged, "fields": fields})
        except ValidationError:
            return
        for name in Lead.model_fields:
            if name != "id":
                setattr(row, name, getattr(lead, name))
        row.account = account_of(row.email, row.company)
        await session.commit()


# The Temporal UI's limit for a summary, in bytes.
SUMMARY_LIMIT = 200


def static_summary(
    lead_id: str, source: str | None, cadence_id: str, cadence_version: str, why: str
) -> tuple[str, str]:
    """The one-line summary and the details the Temporal UI shows for a lead's workflow.

    Only what the workflow carries anyway (the id, the source, the entry cadence and why it
    was chosen): never a name, an address or a phone number, since Temporal stores these
    in plain text, outside the payload codec.
    """
    summary = f"lead {lead_id} · source {source or '-'} · entered {cadence_id}"
    encoded = summary.encode()
    if len(encoded) > SUMMARY_LIMIT:
        summary = encoded[: SUMMARY_LIMIT - 3].decode(errors="ignore") + "..."
    details = "\n".join(
        [
            f"**Lead** {lead_id}",
            f"**Source** {source or '(none)'}",
            f"**Entry cadence** {cadence_id} (version {cadence_version[:12]})",
            f"**Why** {why}",
            "Stage, score and step: the search attributes, and the current details below.",
        ]
    )
    return summary, details
