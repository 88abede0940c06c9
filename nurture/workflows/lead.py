"""The lead workflow: one durable workflow per lead, for the lead's whole life.

The lead's life is written once, as a pure machine (`nurture.domain.machine`); this class only
drives it with Temporal. The machine yields commands and this driver performs them: an
activity through `workflow.execute_activity`, a sleep through `workflow.wait_condition`
(cut short by any new input), a publish as search attributes and current details, and
continue-as-new. Signal handlers only hand input to the machine. The simulator
(`nurture.services.simulate`) drives the same machine on a virtual clock.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from nurture.domain import messages as am
    from nurture.domain.cadence import Cadence, Playbook
    from nurture.domain.events import Event
    from nurture.domain.machine import (
        SUMMARY_LIMIT,
        ContinueAsNew,
        Control,
        Finish,
        LeadMachine,
        Perform,
        Publish,
        Sleep,
        search_attribute_values,
        step_label,
    )
    from nurture.domain.names import (
        QUERY_STATE,
        SIGNAL_ACCOUNT_RELEASED,
        SIGNAL_EVENT,
        SIGNAL_MIGRATE,
        SIGNAL_PAUSE,
        SIGNAL_PLAYBOOK,
        SIGNAL_REASSIGN,
        SIGNAL_RESUME,
        WORKFLOW_NAME,
    )
    from nurture.domain.state import LeadInput, LeadState, LeadView

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

ACTIVITY_TIMEOUT = timedelta(minutes=2)
# The activities that heartbeat while they run (nurture.activities.heartbeat): an attempt
# whose worker died is retried once a heartbeat is this late, not after ACTIVITY_TIMEOUT.
# Under a busy event loop a heartbeat can be late with the worker alive; the retry then
# overlaps the attempt, which the outbox's compare-and-set makes safe (one send at most).
# Replay-safe without a patch: timeouts are not part of Temporal's determinism check
# (tests/test_replay.py replays histories recorded before this was set).
HEARTBEAT_TIMEOUT = timedelta(seconds=30)
HEARTBEATING = frozenset({am.SEND_EMAIL, am.NOTIFY})
DEFAULT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    # Nothing here is non-retryable: a failing activity leaves the lead visibly waiting on it
    # (with the error in the UI) until ops fix the cause, instead of failing the lead.
)


# The contract's search attributes by name (no PII: ids, stage, numbers); their values are
# the domain's (`search_attribute_values`).
KEYS: dict[str, SearchAttributeKey[Any]] = {
    key.name: key
    for key in (
        LEAD_STAGE, LEAD_SCORE, LEAD_GRADE, CADENCE, CADENCE_STEP, LEAD_OWNER, LEAD_SOURCE,
        NEXT_TOUCH_AT,
    )
}  # fmt: skip


def current_details(state: LeadState) -> str:
    """What the Temporal UI shows of the lead, in words (markdown)."""
    position = state.position
    lines = [
        f"**{state.stage}** · score {state.score} · grade {state.grade or '-'}"
        f" · owner {state.owner or '-'}",
        f"cadence {position.cadence.id if position else '-'} · step {step_label(state) or '-'}"
        f" · next touch {_fmt(state.next_touch_at)}",
        f"now: {state.doing}",
    ]
    if state.paused:
        lines.append("PAUSED by ops: touches wait")
    if state.unsubscribed:
        lines.append("unsubscribed: no email")
    if state.history:
        last = state.history[-1]
        lines.append(f"last: {last.what} ({last.why})")
    return "\n\n".join(lines)


@workflow.defn(name=WORKFLOW_NAME)
class LeadWorkflow:
    @workflow.init
    def __init__(self, input: LeadInput) -> None:
        self.machine = LeadMachine(input, patched=workflow.patched)
        self.published: dict[str, object] = {}
        # A run whose start carries its search attributes as published (intake sets what the
        # run publishes first; a continued run carries the last run's) upserts only what
        # differs: its first publish is no upsert when it would only repeat them. One
        # history event and one visibility write fewer per lead and per continued run
        # (docs/benchmarks.md, "Where the server's CPU per lead goes"). Decided by the input,
        # not by `workflow.patched`, whose marker costs an upsert of its own; runs recorded
        # before this lack the flag and upsert as they did.
        self.start_published = input.search_attributes_at_start

    # --- handlers: hand input to the machine ----------------------------------------------

    @workflow.signal(name=SIGNAL_EVENT)
    def event(self, event: Event) -> None:
        self.machine.receive_event(event)

    @workflow.signal(name=SIGNAL_PAUSE)
    def pause(self, why: str = "paused by ops") -> None:
        self.machine.control(Control.PAUSE, why)

    @workflow.signal(name=SIGNAL_RESUME)
    def resume(self, why: str = "resumed by ops") -> None:
        self.machine.control(Control.RESUME, why)

    @workflow.signal(name=SIGNAL_REASSIGN)
    def reassign(self, owner: str) -> None:
        self.machine.control(Control.REASSIGN, owner)

    @workflow.signal(name=SIGNAL_MIGRATE)
    def migrate(self, cadence: Cadence, step_map: dict[str, str]) -> None:
        self.machine.migrate(cadence, step_map)

    @workflow.signal(name=SIGNAL_PLAYBOOK)
    def playbook(self, playbook: Playbook) -> None:
        self.machine.receive_playbook(playbook)

    @workflow.signal(name=SIGNAL_ACCOUNT_RELEASED)
    def account_released(self, lead_id: str = "") -> None:
        self.machine.release_account()

    @workflow.query(name=QUERY_STATE)
    def view(self) -> LeadView:
        view = self.machine.view()
        if view is None:
            raise RuntimeError("the lead is starting")
        return view

    # --- the driver -----------------------------------------------------------------------

    @workflow.run
    async def run(self, input: LeadInput) -> str:
        machine = self.machine
        command = machine.start(workflow.now(), history_long=_history_long())
        while True:
            _count_holds(machine.held)
            result: Any = None
            match command:
                case Perform():
                    result = await workflow.execute_activity(
                        command.activity,
                        command.input,
                        result_type=command.result_type,
                        start_to_close_timeout=ACTIVITY_TIMEOUT,
                        heartbeat_timeout=(
                            HEARTBEAT_TIMEOUT if command.activity in HEARTBEATING else None
                        ),
                        retry_policy=DEFAULT_RETRY,
                        summary=command.summary[:SUMMARY_LIMIT],
                    )
                case Sleep():
                    with contextlib.suppress(TimeoutError):
                        await workflow.wait_condition(
                            machine.has_input,
                            timeout=command.timeout(workflow.now()),
                            timeout_summary=command.why,
                        )
                case Publish():
                    self._publish()
                case ContinueAsNew():
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    workflow.continue_as_new(
                        command.input.model_copy(update={"search_attributes_at_start": True})
                    )
                case Finish():
                    return command.stage
            command = machine.resume(result, now=workflow.now(), history_long=_history_long())

    def _publish(self) -> None:
        """Keep search attributes (upserted only when they change) and details in step."""
        state = self.machine.state
        assert state is not None
        values: dict[str, object] = dict(search_attribute_values(state))
        if values != self.published:
            if not self.published and self.start_published and values == _started_with():
                self.published = values  # the run's first publish, already there
            else:
                updates = [KEYS[name].value_set(value) for name, value in values.items()]
                if "NextTouchAt" not in values and "NextTouchAt" in self.published:
                    updates.append(NEXT_TOUCH_AT.value_unset())
                workflow.upsert_search_attributes(updates)
                self.published = values
        workflow.set_current_details(current_details(state))


def _started_with() -> dict[str, object]:
    """The contract's search attributes this run has now (before its first upsert: those it
    was started with)."""
    return {
        pair.key.name: pair.value
        for pair in workflow.info().typed_search_attributes
        if pair.key.name in KEYS
    }


def _count_holds(kinds: list[str]) -> None:
    """Count held touches by reason; the SDK's workflow meter records nothing on replay."""
    if not kinds:
        return
    counter = workflow.metric_meter().create_counter(
        "nurture_touches_held", "Touches held back, by reason (send window, caps, pauses...)"
    )
    for kind in kinds:
        counter.add(1, {"reason": kind})


def _history_long() -> bool:
    info = workflow.info()
    return info.is_continue_as_new_suggested() or info.get_current_history_length() > HISTORY_LIMIT


def _fmt(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "-"
