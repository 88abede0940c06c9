"""The lead workflow: one durable workflow per lead, for the lead's whole life.

It reads like the process: run the cadence of the current stage; hand the lead to sales when
an event or threshold says so; wait for the outcome; after a loss wait the recycle timer and
run the recycle cadence. The interpreter (`nurture.interpreter`) decides the next cadence
step and the reducer (`nurture.lifecycle`) decides what an event does; this class performs.
Signal handlers only record events; the run loop applies them in order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import (
    RetryPolicy,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)

with workflow.unsafe.imports_passed_through():
    from nurture import (
        QUERY_STATE,
        SIGNAL_EVENT,
        SIGNAL_MIGRATE,
        SIGNAL_PAUSE,
        SIGNAL_REASSIGN,
        SIGNAL_RESUME,
        WORKFLOW_NAME,
        interpreter,
        lifecycle,
        timing,
    )
    from nurture import activity_models as am
    from nurture.cadence import Cadence
    from nurture.durations import parse_duration
    from nurture.events import Event
    from nurture.lifecycle import Transition
    from nurture.state import (
        FINAL_STAGES,
        TOUCH_STAGES,
        LeadInput,
        LeadState,
        LeadView,
        MigrationRequest,
        Position,
    )

LEAD_STAGE = SearchAttributeKey.for_keyword("LeadStage")
LEAD_SCORE = SearchAttributeKey.for_int("LeadScore")
LEAD_GRADE = SearchAttributeKey.for_keyword("LeadGrade")
CADENCE = SearchAttributeKey.for_keyword("Cadence")
CADENCE_STEP = SearchAttributeKey.for_keyword("CadenceStep")
LEAD_OWNER = SearchAttributeKey.for_keyword("LeadOwner")
LEAD_SOURCE = SearchAttributeKey.for_keyword("LeadSource")
NEXT_TOUCH_AT = SearchAttributeKey.for_datetime("NextTouchAt")

# Continue-as-new well before the server's 4,096-event suggestion (the test server never
# suggests it), so a wake-up of a parked lead replays a short history.
HISTORY_LIMIT = 1500
# While the kill switch (NURTURE_SENDING_PAUSED) is on, a held email asks again this often.
SENDING_PAUSED_RETRY = timedelta(minutes=10)

ACTIVITY_TIMEOUT = timedelta(minutes=2)
DEFAULT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    # Nothing here is non-retryable: a failing activity leaves the lead visibly waiting on it
    # (with the error in the UI) until ops fix the cause, instead of failing the lead.
)


def search_attributes(state: LeadState) -> TypedSearchAttributes:
    """The contract's search attributes for ``state`` (no PII: ids, stage, numbers)."""
    position = state.position
    pairs: list[SearchAttributePair] = [
        SearchAttributePair(LEAD_STAGE, state.stage),
        SearchAttributePair(LEAD_SCORE, state.score),
        SearchAttributePair(LEAD_GRADE, state.grade or ""),
        SearchAttributePair(CADENCE, position.cadence.id if position else ""),
        SearchAttributePair(CADENCE_STEP, _step_label(state)),
        SearchAttributePair(LEAD_OWNER, state.owner or ""),
        SearchAttributePair(LEAD_SOURCE, state.facts.source or ""),
    ]
    if state.next_touch_at is not None:
        pairs.append(SearchAttributePair(NEXT_TOUCH_AT, state.next_touch_at))
    return TypedSearchAttributes(pairs)


def _step_label(state: LeadState) -> str:
    if state.position is None:
        return ""
    return state.position.step or "(done)"


class _Restart(Exception):
    """Raised inside a stage to continue-as-new (history long, or a stage boundary)."""


@workflow.defn(name=WORKFLOW_NAME)
class LeadWorkflow:
    @workflow.init
    def __init__(self, input: LeadInput) -> None:
        self.inbox: list[Event] = (
            list(input.state.inbox) if input.state and input.state.inbox else []
        )
        self.state: LeadState | None = input.state
        self.pending: Transition | None = None
        self.woken_by: str | None = None
        self.wake_on: frozenset[str] = frozenset()
        self.controls: list[tuple[str, str]] = []
        self.control_changed = False
        self.migration: tuple[Cadence, dict[str, str]] | None = None
        self.published: dict[str, object] = {}

    # --- handlers: record only ------------------------------------------------------------

    @workflow.signal(name=SIGNAL_EVENT)
    def event(self, event: Event) -> None:
        self.inbox.append(event)

    @workflow.signal(name=SIGNAL_PAUSE)
    def pause(self, why: str = "paused by ops") -> None:
        self.controls.append(("pause", why))

    @workflow.signal(name=SIGNAL_RESUME)
    def resume(self, why: str = "resumed by ops") -> None:
        self.controls.append(("resume", why))

    @workflow.signal(name=SIGNAL_REASSIGN)
    def reassign(self, owner: str) -> None:
        self.controls.append(("reassign", owner))

    @workflow.signal(name=SIGNAL_MIGRATE)
    def migrate(self, cadence: Cadence, step_map: dict[str, str]) -> None:
        self.migration = (cadence, step_map)
        self.control_changed = True

    @workflow.query(name=QUERY_STATE)
    def view(self) -> LeadView:
        state = self.state
        if state is None:
            raise RuntimeError("the lead is starting")
        return LeadView(
            lead_id=state.facts.id,
            stage=state.stage,
            score=state.score,
            grade=state.grade,
            cadence=state.position.cadence.id if state.position else None,
            cadence_version=state.position.cadence.version if state.position else None,
            step=_step_label(state) or None,
            owner=state.owner,
            next_touch_at=state.next_touch_at,
            paused=state.paused,
            unsubscribed=state.unsubscribed,
            cycle=state.cycle,
            doing=state.doing,
            score_why=[f"{c.delta:+d} {c.why}" for c in state.score_log[-20:]],
            grade_why=state.grade_why,
            history=state.history,
        )

    @property
    def _lead_id(self) -> str:
        assert self.state is not None
        return self.state.facts.id

    # --- the process ----------------------------------------------------------------------

    @workflow.run
    async def run(self, input: LeadInput) -> str:
        now = workflow.now()
        if self.state is None:
            self.state = LeadState(facts=input.facts, playbook=input.playbook, created_at=now)
            lifecycle.regrade(self.state, now)
            lifecycle.note(self.state, now, "lead created", "; ".join(self.state.grade_why))
            if input.cadence is not None:
                self._enter_cadence(input.cadence, input.routing_reason or "routing")
            await self._record(None, "nurturing", "lead created")
        state = self.state
        state.inbox = []
        if state.migration is not None:
            self.migration = (state.migration.cadence, state.migration.step_map)
            state.migration = None
        try:
            while state.stage not in FINAL_STAGES:
                if state.pending_cadence is not None:
                    await self._load_pending_cadence()
                if state.stage in TOUCH_STAGES:
                    await self._run_cadence()
                elif state.stage == "sql":
                    await self._with_sales()
                elif state.stage == "lost":
                    await self._wait_to_recycle()
                if self.pending is not None:
                    boundary = await self._apply_pending()
                    if boundary and state.stage not in FINAL_STAGES:
                        raise _Restart()
        except _Restart:
            await workflow.wait_condition(workflow.all_handlers_finished)
            # Everything signaled and not yet applied travels to the next run: events as
            # they are, ops controls applied now (pure state), a migration as a request.
            state.inbox = list(self.inbox)
            while self.controls:
                kind, value = self.controls.pop(0)
                self._apply_control(kind, value, workflow.now())
            if self.migration is not None:
                state.migration = MigrationRequest(
                    cadence=self.migration[0], step_map=self.migration[1]
                )
            workflow.continue_as_new(
                LeadInput(facts=state.facts, playbook=state.playbook, state=state)
            )
        await self._erase_if_asked_late()
        self._set_doing(f"{state.stage}: the lead's workflow is complete")
        self._publish()
        return state.stage

    async def _erase_if_asked_late(self) -> None:
        """An erase signaled while the lead was closing still erases (never silently lost)."""
        state = self._state
        asked = [e for e in self.inbox if e.type == "lead.erased"]
        if not asked:
            return
        await workflow.wait_condition(workflow.all_handlers_finished)
        lifecycle.note(state, workflow.now(), "personal data erased", f"event {asked[0].id}")
        await workflow.execute_activity(
            am.ERASE_LEAD,
            am.EraseInput(lead_id=state.facts.id, now=workflow.now()),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=DEFAULT_RETRY,
            summary="erase the lead's personal data",
        )

    async def _run_cadence(self) -> None:
        """Run cadence steps until a stage change is pending; rest when the cadence ends."""
        state = self._state
        while self.pending is None:
            if self.migration is not None:
                self._apply_migration()
            position = state.position
            if position is None or position.step is None:
                await self._rest()
                return
            now = workflow.now()
            decision = interpreter.decide(
                position.cadence,
                position.step,
                lifecycle.facts_view(state, now),
                playbook=state.playbook,
                zone=self._zone,
            )
            for taken in decision.trail:
                lifecycle.note(state, now, "branch", taken)
            action = decision.action
            position.step = action.step
            match action:
                case interpreter.End():
                    position.step = None
                    state.next_touch_at = None
                    lifecycle.note(state, now, "cadence ended", action.reason)
                    self._publish()
                case interpreter.Wait():
                    until = position.resume_until or action.until
                    position.resume_until = until
                    state.next_touch_at = until
                    self._set_doing(f"waiting until {_fmt(until)} ({action.reason})")
                    woke = await self._wait(until, frozenset(action.wake_on), action.reason)
                    if woke == "interrupted":
                        return
                    position.resume_until = None
                    if woke == "woken":
                        lifecycle.note(
                            state,
                            workflow.now(),
                            f"wait {action.step} ended early",
                            f"{self.woken_by} arrived",
                        )
                    position.step = interpreter.after(position.cadence, action.step)
                case interpreter.SendEmail():
                    if state.unsubscribed or not state.facts.has_email:
                        # Nothing to hold for the window: the step is skipped now, visibly.
                        why = "unsubscribed" if state.unsubscribed else "no email address"
                        lifecycle.note(state, now, f"email {action.step} skipped", why)
                    else:
                        if not await self._touch_allowed("email", action.step):
                            return
                        if not await self._send_email(action):
                            return
                    position.step = interpreter.after(position.cadence, action.step)
                case interpreter.CreateCallTask():
                    # A call step resumed after continue-as-new already has its task: it goes
                    # straight back to waiting for the outcome, with no new touch to hold.
                    resuming = position.resume_until is not None
                    if not resuming and not await self._touch_allowed("call", action.step):
                        return
                    if not await self._call(action, resuming=resuming):
                        return
                    position.step = interpreter.after(position.cadence, action.step)

    async def _rest(self) -> None:
        """The cadence is over: the lead rests in its stage, listening (a rest is not stuck)."""
        state = self._state
        state.next_touch_at = None
        self._set_doing(f"resting in {state.stage}: cadence done, listening for events")
        await self._wait(None, frozenset(), "resting")

    async def _with_sales(self) -> None:
        state = self._state
        follow_up = parse_duration(state.playbook.thresholds.sales_follow_up).calendar
        deadline = (state.tossed_up_at or workflow.now()) + follow_up
        if workflow.now() < deadline:
            self._set_doing(
                f"with sales since {_fmt(state.tossed_up_at)}; follow-up check {_fmt(deadline)}"
            )
            result = await self._wait(deadline, frozenset(), "sales follow-up check")
            if result == "interrupted":
                return
            lifecycle.note(
                state,
                workflow.now(),
                "sales follow-up overdue",
                f"no outcome {state.playbook.thresholds.sales_follow_up} after the toss-up; "
                "owner and ops alerted",
            )
            await self._notify(
                f"{state.facts.id}|{state.cycle}|follow-up",
                [state.owner or "ops", "ops"],
                f"Lead {state.facts.id}: no sales outcome yet",
                f"Lead {state.facts.id} was tossed up on {_fmt(state.tossed_up_at)} "
                "and has no outcome after "
                f"{state.playbook.thresholds.sales_follow_up}.",
            )
        self._set_doing(
            f"with sales since {_fmt(state.tossed_up_at)}; follow-up overdue, owner and ops alerted"
        )
        await self._wait(None, frozenset(), "waiting for the sales outcome")

    async def _wait_to_recycle(self) -> None:
        state = self._state
        until = state.recycle_at or workflow.now()
        state.next_touch_at = until
        self._set_doing(f"lost ({state.lost_reason}); recycles {_fmt(until)}")
        result = await self._wait(until, frozenset(), f"recycle timer ({state.lost_reason})")
        if result == "timer" and self.pending is None:
            self.pending = Transition(
                to="recycling",
                why=f"recycle timer for {state.lost_reason} elapsed",
                trigger="timer",
            )

    # --- waiting --------------------------------------------------------------------------

    async def _wait(
        self,
        until: datetime | None,
        wake_on: frozenset[str],
        why: str,
        *,
        migratable: bool = True,
        done: Callable[[], bool] | None = None,
    ) -> str:
        """Wait for ``until`` while applying events; interruptible by stage changes.

        Returns "timer", "woken" (an event in ``wake_on``) or "interrupted" (a stage change
        is pending, the cadence must stop, or a migration arrived and ``migratable``).
        """
        self.wake_on = wake_on
        self.woken_by = None
        in_step = self._in_cadence_step()
        self._publish()
        try:
            while True:
                self._drain()
                if self.pending is not None or (in_step and not self._in_cadence_step()):
                    return "interrupted"
                if self.woken_by is not None or (done is not None and done()):
                    return "woken"
                if self.migration is not None and migratable:
                    if in_step or self._state.stage in TOUCH_STAGES:
                        return "interrupted"
                    self._apply_migration()
                now = workflow.now()
                if until is not None and now >= until:
                    return "timer"
                if lifecycle.apply_decay(self._state, now):
                    self._publish()
                    continue
                if self._history_long():
                    raise _Restart()
                deadline = _earliest(until, lifecycle.next_decay_at(self._state))
                timeout = max(deadline - now, timedelta(seconds=1)) if deadline else None
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: bool(self.inbox) or bool(self.controls) or self.control_changed,
                        timeout=timeout,
                        timeout_summary=why[:190],
                    )
                self.control_changed = False
        finally:
            self.wake_on = frozenset()

    def _in_cadence_step(self) -> bool:
        position = self._state.position
        return (
            self._state.stage in TOUCH_STAGES and position is not None and position.step is not None
        )

    def _drain(self) -> None:
        """Apply every queued event in arrival order."""
        state = self._state
        changed = False
        while self.inbox:
            event = self.inbox.pop(0)
            now = workflow.now()
            effect = lifecycle.apply_event(state, event, now)
            if effect.duplicate:
                continue
            changed = True
            if effect.transition is not None:
                if effect.transition.stronger_than(self.pending):
                    self.pending = effect.transition
                elif self.pending is not None and effect.transition.erase:
                    # An erase after a do-not-contact (both close): the erase must not be lost.
                    self.pending.erase = True
            if effect.exit_cadence and state.position is not None and self.pending is None:
                lifecycle.note(state, now, "cadence stopped", effect.exit_cadence)
                state.position.step = None
                state.position.resume_until = None
            if effect.wake_type and effect.wake_type in self.wake_on:
                self.woken_by = effect.wake_type
        while self.controls:
            kind, value = self.controls.pop(0)
            self._apply_control(kind, value, workflow.now())
            changed = True
        if changed:
            self._publish()

    def _apply_control(self, control: str, value: str, now: datetime) -> None:
        state = self._state
        if control == "pause" and not state.paused:
            state.paused = True
            lifecycle.note(state, now, "paused", value)
        elif control == "resume" and state.paused:
            state.paused = False
            lifecycle.note(state, now, "resumed", value)
        elif control == "reassign":
            owner = value or None
            lifecycle.note(
                state, now, f"owner {owner}", f"reassigned from {state.owner or 'nobody'}"
            )
            state.owner = owner

    # --- touches --------------------------------------------------------------------------

    async def _touch_allowed(self, channel: str, step: str) -> bool:
        """Hold a touch until it is humane: not paused, inside the send window, under caps.

        Returns False when a stage change or a stop interrupted the hold (the touch is not
        dropped: the step stays current and runs when the lead comes back to it).
        """
        state = self._state
        while True:
            self._drain()
            if self.pending is not None or not self._in_cadence_step():
                return False
            now = workflow.now()
            if state.paused:
                state.next_touch_at = None
                self._set_doing(f"paused before {step}")
                result = await self._wait(
                    None, frozenset(), f"paused before {step}", done=lambda: not state.paused
                )
                if result == "interrupted":
                    return False
                continue
            state.emails_sent = timing.prune_sends(state.emails_sent, now)
            slot = timing.earliest_touch(
                now,
                self._zone,
                state.playbook.limits,
                channel=channel,  # type: ignore[arg-type]
                emails_sent=state.emails_sent,
                last_touch=state.last_touch_at,
            )
            if slot.at <= now:
                return True
            reasons = "; ".join(slot.reasons)
            lifecycle.note(state, now, f"{channel} {step} deferred to {_fmt(slot.at)}", reasons)
            state.next_touch_at = slot.at
            self._set_doing(f"{channel} {step} deferred to {_fmt(slot.at)}: {reasons}")
            result = await self._wait(slot.at, frozenset(), f"deferred {channel} {step}"[:190])
            if result == "interrupted":
                return False

    async def _send_email(self, action: interpreter.SendEmail) -> bool:
        """Send the step's email once; False when a stage change interrupted a paused send.

        The visit (and so the idempotency key) is only used up once the activity has acted:
        a send held by the kill switch and then interrupted keeps its key for the next try.
        """
        state = self._state
        position = self._position
        visit = self._visit(action.step) + 1
        key = am.side_effect_key(
            state.facts.id, state.cycle, position.cadence.id, action.step, visit
        )
        told_paused = False
        while True:
            if state.unsubscribed:
                lifecycle.note(
                    state, workflow.now(), f"email {action.step} skipped", "unsubscribed"
                )
                return True
            self._set_doing(f"sending {action.template} ({action.reason})")
            result: am.SendEmailResult = await workflow.execute_activity(
                am.SEND_EMAIL,
                am.SendEmailInput(
                    key=key,
                    lead_id=state.facts.id,
                    cycle=state.cycle,
                    cadence=position.cadence.id,
                    step=action.step,
                    visit=visit,
                    template=action.template,
                    owner=state.owner,
                    now=workflow.now(),
                ),
                result_type=am.SendEmailResult,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=DEFAULT_RETRY,
                summary=f"email {action.template} (step {action.step}, visit {visit})"[:190],
            )
            if result.status != "paused":
                break
            # The kill switch is on: wait, applying events (an opt-out meanwhile wins).
            if not told_paused:
                lifecycle.note(state, workflow.now(), f"email {action.step} held", result.detail)
                told_paused = True
            retry_at = workflow.now() + SENDING_PAUSED_RETRY
            state.next_touch_at = retry_at
            if await self._wait(retry_at, frozenset(), "sending paused") == "interrupted":
                return False
        self._use_visit(action.step, visit)
        now = workflow.now()
        if result.status in ("sent", "unknown"):
            # An `unknown` delivery counts as a touch too, so caps stay humane.
            state.emails_sent.append(now)
            state.last_touch_at = now
        lifecycle.note(
            state, now, f"email {action.step}: {result.status}", result.detail or action.reason
        )
        return True

    def _visit(self, step: str) -> int:
        """How many times ``step`` of the current cadence ran in this cycle."""
        return self._state.visits.get(f"{self._position.cadence.id}|{step}", 0)

    def _use_visit(self, step: str, visit: int) -> None:
        self._state.visits[f"{self._position.cadence.id}|{step}"] = visit

    async def _call(self, action: interpreter.CreateCallTask, *, resuming: bool = False) -> bool:
        """Create the SDR's call task; wait for the outcome when the step says so.

        ``resuming``: the step was waiting for its outcome when the run continued as new;
        the same visit finds the same task (the activity is idempotent by key) and an
        outcome that arrived meanwhile is kept.
        """
        state = self._state
        position = self._position
        now = workflow.now()
        visit = max(self._visit(action.step), 1) if resuming else self._visit(action.step) + 1
        self._use_visit(action.step, visit)
        if not resuming:
            position.last_call_outcome = None
        key = am.side_effect_key(
            state.facts.id, state.cycle, position.cadence.id, action.step, visit
        )
        due_at = timing.add_duration(now, action.due, self._zone, state.playbook.limits)
        result: am.CallTaskResult = await workflow.execute_activity(
            am.CREATE_CALL_TASK,
            am.CallTaskInput(
                key=key,
                lead_id=state.facts.id,
                cycle=state.cycle,
                cadence=position.cadence.id,
                step=action.step,
                visit=visit,
                script=action.script,
                due_at=due_at,
                owner=state.owner,
                now=now,
            ),
            result_type=am.CallTaskResult,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=DEFAULT_RETRY,
            summary=f"call task {action.script} (step {action.step}), due {_fmt(due_at)}"[:190],
        )
        now = workflow.now()
        if result.owner and result.owner != state.owner:
            state.owner = result.owner
        if not resuming:
            state.last_touch_at = now
            lifecycle.note(
                state,
                now,
                f"call task {result.task_id} for {result.owner or 'unassigned'}",
                action.reason,
            )
        if action.wait_for_outcome is None:
            return True
        until = position.resume_until or timing.add_duration(
            now, action.wait_for_outcome, self._zone, state.playbook.limits
        )
        position.resume_until = until
        state.next_touch_at = until
        self._set_doing(
            f"waiting for {result.owner or 'the SDR'}'s call outcome until {_fmt(until)}"
        )
        if resuming and position.last_call_outcome is not None:
            position.resume_until = None
            return True  # the outcome came in just before the run continued as new
        # A migration waits until the outcome is in: moving now would create a second task.
        outcome = await self._wait(
            until,
            frozenset({"call.completed"}),
            f"call outcome for {action.step}",
            migratable=False,
        )
        if outcome == "interrupted":
            return False
        position.resume_until = None
        if outcome == "timer":
            lifecycle.note(
                state,
                workflow.now(),
                f"no call outcome for {action.step}",
                f"waited {action.wait_for_outcome}; task marked overdue",
            )
            await self._close_tasks(
                "overdue", f"no outcome within {action.wait_for_outcome}", result.task_id
            )
        return True

    # --- transitions ----------------------------------------------------------------------

    async def _apply_pending(self) -> bool:
        """Perform the pending stage change; True when it is a stage boundary (continue-as-new)."""
        state = self._state
        transition = self.pending
        assert transition is not None
        self.pending = None
        before = state.stage
        now = workflow.now()
        # The funnel credits the cadence step a lead left from (step performance).
        left = (state.position.cadence.id, _step_label(state)) if state.position else (None, None)
        if transition.to == "sql" and state.stage == "nurturing":
            # Reaching toss-up straight from nurturing records the MQL passage too.
            lifecycle.note(
                state, now, "stage nurturing -> mql", f"passed on the way to sql: {transition.why}"
            )
            await self._record(
                "nurturing", "mql", f"passed on the way to sql: {transition.why}", at=left
            )
            before = "mql"
            state.stage = "mql"
        lifecycle.enter(state, transition, now)
        self._set_doing(f"entering {state.stage}: {transition.why}")
        if transition.to == "lost" and state.stage == "closed":
            # A loss whose reason recycles `never`: the funnel still sees the loss.
            await self._record(before, "lost", transition.why, at=left, cause=transition)
            before = "lost"
        # A new cycle's first row names the cadence it enters (the funnel's entry cadence).
        entered = (state.pending_cadence, None) if state.stage == "recycling" else left
        await self._record(before, state.stage, transition.why, at=entered, cause=transition)
        if state.stage == "won":
            await self._close_tasks("cancelled", "opportunity won")
        if state.stage == "sql":
            await self._close_tasks("cancelled", "tossed up to sales")
            await self._handoff(transition)
        elif state.stage == "closed":
            await self._close_tasks("cancelled", transition.why)
            if transition.erase:
                await workflow.execute_activity(
                    am.ERASE_LEAD,
                    am.EraseInput(lead_id=state.facts.id, now=now),
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=DEFAULT_RETRY,
                    summary="erase the lead's personal data",
                )
            if before == "sql":
                await self._notify(
                    f"{state.facts.id}|{state.cycle}|closed",
                    [state.owner or "ops", "ops"],
                    f"Lead {state.facts.id} closed",
                    f"Lead {state.facts.id} was with sales and is now closed: {transition.why}.",
                )
        self._publish()
        return True

    async def _handoff(self, transition: Transition) -> None:
        state = self._state
        result: am.HandoffResult = await workflow.execute_activity(
            am.HANDOFF,
            am.HandoffInput(
                key=f"{state.facts.id}|{state.cycle}",
                lead_id=state.facts.id,
                cycle=state.cycle,
                owner=state.owner,
                trigger=transition.trigger,
                reason=transition.why,
                score=state.score,
                grade=state.grade,
                now=workflow.now(),
            ),
            result_type=am.HandoffResult,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=DEFAULT_RETRY,
            summary=f"toss-up to sales: {transition.why}"[:190],
        )
        # A lead with no owner gets one at toss-up (the activity applies the playbook's
        # assignment rule); publishing it is a new command, so runs recorded before keep
        # replaying without it.
        if result.owner and result.owner != state.owner and workflow.patched("owner-at-toss-up"):
            lifecycle.take_owner(
                state, result.owner, workflow.now(), "assigned at toss-up by the playbook's rule"
            )

    async def _close_tasks(self, status: str, reason: str, task_id: str | None = None) -> None:
        await workflow.execute_activity(
            am.CLOSE_CALL_TASKS,
            am.CloseCallTasksInput(
                lead_id=self._lead_id,
                status=status,
                reason=reason,
                task_id=task_id,
                now=workflow.now(),  # type: ignore[arg-type]
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=DEFAULT_RETRY,
            summary=f"{status} call tasks: {reason}"[:190],
        )

    async def _notify(self, key: str, to: list[str], subject: str, text: str) -> None:
        await workflow.execute_activity(
            am.NOTIFY,
            am.NotifyInput(
                key=key,
                lead_id=self._lead_id,
                to=to,
                subject=subject,
                text=text,
                now=workflow.now(),
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=DEFAULT_RETRY,
            summary=subject[:190],
        )

    async def _record(
        self,
        before: str | None,
        after: str,
        why: str,
        at: tuple[str | None, str | None] | None = None,
        cause: Transition | None = None,
    ) -> None:
        """Log a stage change; ``at`` is the (cadence, step) it happened at (default: now's)."""
        state = self._state
        cadence, step = (
            at
            if at is not None
            else (
                state.position.cadence.id if state.position else state.pending_cadence,
                _step_label(state) or None,
            )
        )
        await workflow.execute_activity(
            am.RECORD_TRANSITION,
            am.TransitionInput(
                lead_id=state.facts.id,
                cycle=state.cycle,
                from_stage=before,
                to_stage=after,
                at=workflow.now(),
                reason=why,
                source=state.facts.source,
                cadence=cadence,
                step=step,
                score=state.score,
                grade=state.grade,
                current_cadence=state.position.cadence.id
                if state.position
                else state.pending_cadence,
                current_step=_step_label(state) or None,
                trigger=cause.trigger if cause else None,
                loss_reason=cause.loss_reason if cause else None,
                owner=state.owner,
                next_touch_at=state.next_touch_at,
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=DEFAULT_RETRY,
            summary=f"record {before or 'new'} -> {after}"[:190],
        )

    async def _load_pending_cadence(self) -> None:
        state = self._state
        cadence_id = state.pending_cadence
        assert cadence_id is not None
        snapshot: am.CadenceSnapshot = await workflow.execute_activity(
            am.LOAD_CADENCE,
            am.LoadCadenceInput(cadence_id=cadence_id),
            result_type=am.CadenceSnapshot,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=DEFAULT_RETRY,
            summary=f"load cadence {cadence_id}",
        )
        state.playbook = snapshot.playbook
        state.pending_cadence = None
        self._enter_cadence(snapshot.cadence, f"stage {state.stage}")

    def _enter_cadence(self, cadence: Cadence, why: str) -> None:
        state = self._state
        now = workflow.now()
        state.position = Position(
            cadence=cadence, step=interpreter.first_step(cadence), visits={}, entered_at=now
        )
        lifecycle.note(state, now, f"cadence {cadence.id} (version {cadence.version})", why)
        self._publish()

    def _apply_migration(self) -> None:
        assert self.migration is not None
        cadence, step_map = self.migration
        self.migration = None
        state = self._state
        position = state.position
        now = workflow.now()
        if position is None or position.cadence.id != cadence.id:
            lifecycle.note(
                state, now, f"migration to {cadence.id} ignored", "the lead is not in that cadence"
            )
            return
        old_step = position.step
        new_step = step_map.get(old_step, old_step) if old_step else None
        step_ids = {s.id for s in cadence.steps}
        if new_step is not None and new_step not in step_ids:
            lifecycle.note(
                state,
                now,
                "migration refused",
                f"step {new_step} is not in version {cadence.version}",
            )
            return
        lifecycle.note(
            state,
            now,
            f"migrated to {cadence.id} version {cadence.version}",
            f"from version {position.cadence.version}, step {old_step} -> {new_step}",
        )
        position.cadence = cadence
        position.step = new_step
        if new_step is None or cadence.step(new_step).type != "wait":
            position.resume_until = None  # a wait keeps its wake-up time; other steps run now
        self._publish()

    # --- visibility -----------------------------------------------------------------------

    def _set_doing(self, text: str) -> None:
        state = self._state
        state.doing = text
        self._publish()

    def _publish(self) -> None:
        """Keep search attributes and current details in step with the state."""
        state = self._state
        attributes = search_attributes(state)
        values = {pair.key.name: pair.value for pair in attributes}
        if values != self.published:
            updates = [pair.key.value_set(pair.value) for pair in attributes]
            if "NextTouchAt" not in values and "NextTouchAt" in self.published:
                updates.append(NEXT_TOUCH_AT.value_unset())
            workflow.upsert_search_attributes(updates)
            self.published = values
        position = state.position
        lines = [
            f"**{state.stage}** · score {state.score} · grade {state.grade or '-'}"
            f" · owner {state.owner or '-'}",
            f"cadence {position.cadence.id if position else '-'} · step {_step_label(state) or '-'}"
            f" · next touch {_fmt(state.next_touch_at) if state.next_touch_at else '-'}",
            f"now: {state.doing}",
        ]
        if state.paused:
            lines.append("PAUSED by ops: touches wait")
        if state.unsubscribed:
            lines.append("unsubscribed: no email")
        if state.history:
            last = state.history[-1]
            lines.append(f"last: {last.what} ({last.why})")
        workflow.set_current_details("\n\n".join(lines))

    def _history_long(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested() or info.get_current_history_length() > HISTORY_LIMIT
        )

    @property
    def _state(self) -> LeadState:
        assert self.state is not None
        return self.state

    @property
    def _position(self) -> Position:
        assert self._state.position is not None
        return self._state.position

    @property
    def _zone(self):  # type: ignore[no-untyped-def]
        facts = self._state.facts
        return timing.lead_zone(facts.timezone, facts.country)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _fmt(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "-"
