"""The lead's whole life, written once, as a pure machine that two drivers run.

Stages, cadence steps, humane holds, waits that wake early, events applied in order, the
sales follow-up, the recycle timer, ops controls, migrations, decay and the points where a
run continues as new: all of it is here, and none of it does I/O or reads a clock. The
machine is a generator that yields commands and is sent their results (the "sans-I/O"
style):

- :class:`Perform`: run this activity with this input; the driver sends back its result;
- :class:`Sleep`: wait until ``until`` or until new input arrives (an event, a control, a
  migration), whichever comes first;
- :class:`Publish`: make the search attributes and current details match the state;
- :class:`ContinueAsNew`: start a fresh run with this input;
- :class:`Finish`: the lead is won or closed; its life is over.

``nurture/workflows/lead.py`` drives it with Temporal, ``nurture/services/simulate.py`` with a
virtual clock and scripted events. Before every resume the driver tells the machine the time
and whether the run's history has grown long (:meth:`LeadMachine.resume`).

The order of the commands is what Temporal replays: a :class:`Publish` that upserts search
attributes is a command in the workflow's history just like an activity or a timer, so the
points where the machine publishes must not move.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from nurture.domain import calendars, governor, interpreter, keys, lifecycle, timing
from nurture.domain import messages as am
from nurture.domain.cadence import Cadence, Limits, Playbook
from nurture.domain.durations import parse_duration
from nurture.domain.events import Event
from nurture.domain.lifecycle import Transition
from nurture.domain.state import (
    FINAL_STAGES,
    TOUCH_STAGES,
    LeadInput,
    LeadState,
    LeadView,
    MigrationRequest,
    Position,
    TaskWatch,
)

__all__ = [
    "ACCOUNT_GOVERNOR",
    "SENDING_PAUSED_RETRY",
    "Command",
    "ContinueAsNew",
    "Control",
    "Finish",
    "LeadMachine",
    "Perform",
    "Publish",
    "Sleep",
    "Wake",
    "first_published",
    "search_attribute_values",
    "step_label",
]

# While the kill switch (NURTURE_SENDING_PAUSED) is on, a held email asks again this often.
SENDING_PAUSED_RETRY = timedelta(minutes=10)
# The patch of the account governor (limits.account, per-person caps across lead ids):
# touches ask for a slot (an activity) before they go.
ACCOUNT_GOVERNOR = "account-governor"
# A sleep is never shorter than this, so a deadline that is due already cannot spin.
SLEEP_FLOOR = timedelta(seconds=1)
# Activity and timer summaries are limited to 200 bytes in Temporal.
SUMMARY_LIMIT = 190


class Wake(enum.Enum):
    """Why a wait ended."""

    TIMER = "timer"  # its deadline passed
    WOKEN = "woken"  # an event it listens for arrived (or what it waited for happened)
    INTERRUPTED = "interrupted"  # a stage change is pending, the cadence stopped, or a move


class Control(enum.Enum):
    """Ops controls of a lead in flight (CLI `leads pause|resume|reassign`)."""

    PAUSE = "pause"
    RESUME = "resume"
    REASSIGN = "reassign"


@dataclass(frozen=True, slots=True)
class Perform:
    """Run activity ``activity`` with ``input``; the result (of ``result_type``) is sent back."""

    activity: str
    input: BaseModel
    summary: str
    result_type: type[BaseModel] | None = None


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait until ``until`` (None: no deadline) or until the machine is given input."""

    until: datetime | None
    why: str

    def timeout(self, now: datetime) -> timedelta | None:
        """How long to wait from ``now``: never less than a second, None without a deadline."""
        return max(self.until - now, SLEEP_FLOOR) if self.until is not None else None


@dataclass(frozen=True, slots=True)
class Publish:
    """Search attributes and current details should show the state now (if they changed)."""


@dataclass(frozen=True, slots=True)
class ContinueAsNew:
    """End this run and start the next with ``input`` (history long, or a stage boundary)."""

    input: LeadInput


@dataclass(frozen=True, slots=True)
class Finish:
    """The lead's life is over (won or closed); ``stage`` is the run's result."""

    stage: str


Command = Perform | Sleep | Publish | ContinueAsNew | Finish
_T = TypeVar("_T")
Steps = Generator[Command, Any, _T]
_PUBLISH = Publish()


class _Restart(Exception):
    """Raised inside a stage to continue as new; caught where the run ends."""


def step_label(state: LeadState) -> str:
    """The step the lead is at: its id, ``(done)`` after the last one, empty outside a cadence."""
    if state.position is None:
        return ""
    return state.position.step or "(done)"


def search_attribute_values(state: LeadState) -> dict[str, str | int | datetime]:
    """The contract's search attributes for ``state``, by name (no PII: ids, stage, numbers).

    ``NextTouchAt`` is left out when there is no next touch (the driver unsets it).
    """
    position = state.position
    values: dict[str, str | int | datetime] = {
        "LeadStage": state.stage,
        "LeadScore": state.score,
        "LeadGrade": state.grade or "",
        "Cadence": position.cadence.id if position else "",
        "CadenceStep": step_label(state),
        "LeadOwner": state.owner or "",
        "LeadSource": state.facts.source or "",
    }
    if state.next_touch_at is not None:
        values["NextTouchAt"] = state.next_touch_at
    return values


def first_published(input: LeadInput, now: datetime) -> dict[str, str | int | datetime] | None:
    """The search attributes a new lead's run publishes before it does anything else.

    A start that carries them spares the run that first upsert (a history event and a
    visibility write on the server) and shows the lead in list queries from its start.
    None when the run's first command is not a publish.
    """
    machine = LeadMachine(input)
    command = machine.start(now)
    if isinstance(command, Publish) and machine.state is not None:
        return search_attribute_values(machine.state)
    return None


class LeadMachine:
    """One lead's life, as a generator of commands.

    A driver makes one machine per run from the run's input, gives it input as it arrives
    (:meth:`receive_event`, :meth:`control`, :meth:`migrate`), and loops::

        command = machine.start(now)
        while not isinstance(command, Finish):
            result = <perform command>
            command = machine.resume(result, now=now, history_long=...)

    Signal handlers only hand input over; the machine applies it, in arrival order, at the
    points where the lead's life looks at its input.
    """

    def __init__(self, input: LeadInput, *, patched: Callable[[str], bool] | None = None) -> None:
        """Make the machine of one run.

        Args:
            input: the run's input (a new lead, or the state a continued run carries).
            patched: whether a versioned change named by its patch id is in effect for this
                run. The workflow passes ``workflow.patched``, so a change that alters the
                commands a recorded history expects can keep old runs on the old path (see
                README, "Upgrading"); by default every change is in effect (the simulator).
        """
        self.input = input
        self.patched = patched or _in_effect
        self.state: LeadState | None = input.state
        self.inbox: list[Event] = (
            list(input.state.inbox) if input.state and input.state.inbox else []
        )
        self.controls: list[tuple[Control, str]] = []
        self.control_changed = False
        self.migration: tuple[Cadence, dict[str, str]] | None = None
        self.rollout: Playbook | None = None
        self.replan = False  # a rollout arrived: holds are planned again
        self.pending: Transition | None = None
        self.woken_by: str | None = None
        self.wake_on: frozenset[str] = frozenset()
        self.now = datetime.min
        # Why touches were held back during the last start()/resume() (timing.HOLD_KINDS):
        # the workflow counts them as metrics; nothing decides on it, nothing replays it.
        self.held: list[str] = []
        self.history_long = False
        # The account governor: a conversation of the account ended (a signal), and whether
        # a touch is waiting for that now (only then does the signal wake a sleep).
        self.account_released = False
        self.account_hold = False
        self._life = self._run()

    # --- the driver's side ----------------------------------------------------------------

    def start(self, now: datetime, *, history_long: bool = False) -> Command:
        """Begin (or continue) the lead's life at ``now``; returns the first command."""
        self.now = now
        self.history_long = history_long
        self.held = []
        return next(self._life)

    def resume(self, result: Any = None, *, now: datetime, history_long: bool = False) -> Command:
        """Hand back the last command's result (None for sleeps and publishes).

        Args:
            result: the activity's result, for a :class:`Perform`.
            now: the time now (workflow time, or the virtual clock).
            history_long: the run's history is long enough to continue as new.
        """
        self.now = now
        self.history_long = history_long
        self.held = []
        return self._life.send(result)

    def receive_event(self, event: Event) -> None:
        self.inbox.append(event)

    def control(self, kind: Control, value: str) -> None:
        self.controls.append((kind, value))

    def migrate(self, cadence: Cadence, step_map: dict[str, str]) -> None:
        self.migration = (cadence, step_map)
        self.control_changed = True

    def release_account(self) -> None:
        """A lead of this lead's account left mql/sql: a touch held for it asks again."""
        self.account_released = True

    def receive_playbook(self, playbook: Playbook) -> None:
        """A playbook rolled out to leads in flight; the newest one given wins."""
        self.rollout = playbook

    def has_input(self) -> bool:
        """Whether input arrived that a sleep should wake up for."""
        return (
            bool(self.inbox)
            or bool(self.controls)
            or self.control_changed
            or self.rollout is not None
            or (self.account_hold and self.account_released)
        )

    def view(self) -> LeadView | None:
        """What the `state` query returns; None while the lead is starting."""
        state = self.state
        if state is None:
            return None
        return LeadView(
            lead_id=state.facts.id,
            stage=state.stage,
            score=state.score,
            grade=state.grade,
            cadence=state.position.cadence.id if state.position else None,
            cadence_version=state.position.cadence.version if state.position else None,
            step=step_label(state) or None,
            owner=state.owner,
            next_touch_at=state.next_touch_at,
            paused=state.paused,
            unsubscribed=state.unsubscribed,
            cycle=state.cycle,
            playbook_version=state.playbook.version,
            doing=state.doing,
            score_why=[f"{c.delta:+d} {c.why}" for c in state.score_log[-20:]],
            grade_why=state.grade_why,
            history=state.history,
        )

    # --- the process ----------------------------------------------------------------------

    def _run(self) -> Steps[None]:
        input = self.input
        if self.state is None:
            now = self.now
            self.state = LeadState(facts=input.facts, playbook=input.playbook, created_at=now)
            lifecycle.regrade(self.state, now)
            lifecycle.note(self.state, now, "lead created", "; ".join(self.state.grade_why))
            if input.cadence is not None:
                yield from self._enter_cadence(input.cadence, input.routing_reason or "routing")
            yield from self._record(None, "nurturing", "lead created")
        state = self.state
        state.inbox = []
        if state.migration is not None:
            self.migration = (state.migration.cadence, state.migration.step_map)
            state.migration = None
        if state.pending_playbook is not None:
            self.rollout = state.pending_playbook
            state.pending_playbook = None
        try:
            while state.stage not in FINAL_STAGES:
                if state.pending_cadence is not None:
                    yield from self._load_pending_cadence()
                if state.stage in TOUCH_STAGES:
                    yield from self._run_cadence()
                elif state.stage == "sql":
                    yield from self._with_sales()
                elif state.stage == "lost":
                    yield from self._wait_to_recycle()
                if self.pending is not None:
                    boundary = yield from self._apply_pending()
                    if boundary and state.stage not in FINAL_STAGES:
                        raise _Restart()
        except _Restart:
            # Everything given and not yet applied travels to the next run: events as they
            # are, ops controls applied now (pure state), a migration as a request. Handlers
            # only hand input over, so nothing can arrive between this and the new run.
            state.inbox = list(self.inbox)
            while self.controls:
                kind, value = self.controls.pop(0)
                yield from self._control(kind, value)
            if self.migration is not None:
                state.migration = MigrationRequest(
                    cadence=self.migration[0], step_map=self.migration[1]
                )
            state.pending_playbook = self.rollout
            yield ContinueAsNew(LeadInput(facts=state.facts, playbook=state.playbook, state=state))
            return
        yield from self._erase_if_asked_late()
        yield from self._set_doing(f"{state.stage}: the lead's workflow is complete")
        yield _PUBLISH
        yield Finish(state.stage)

    def _erase_if_asked_late(self) -> Steps[None]:
        """An erase given while the lead was closing still erases (never silently lost)."""
        state = self._state
        asked = [e for e in self.inbox if e.type == "lead.erased"]
        if not asked:
            return
        lifecycle.note(state, self.now, "personal data erased", f"event {asked[0].id}")
        yield from self._erase()

    def _run_cadence(self) -> Steps[None]:
        """Run cadence steps until a stage change is pending; rest when the cadence ends."""
        state = self._state
        while self.pending is None:
            if self.migration is not None:
                yield from self._apply_migration()
            position = state.position
            if position is None or position.step is None:
                yield from self._rest()
                return
            yield from self._resolve_public_holidays()
            now = self.now
            decision = interpreter.decide(
                position.cadence,
                position.step,
                lifecycle.facts_view(state, now),
                playbook=state.playbook,
                zone=self._zone,
                limits=self._limits,
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
                    yield _PUBLISH
                case interpreter.Wait():
                    until = position.resume_until or action.until
                    position.resume_until = until
                    state.next_touch_at = until
                    yield from self._set_doing(f"waiting until {_fmt(until)} ({action.reason})")
                    woke = yield from self._wait(until, frozenset(action.wake_on), action.reason)
                    if woke is Wake.INTERRUPTED:
                        return
                    position.resume_until = None
                    if woke is Wake.WOKEN:
                        lifecycle.note(
                            state,
                            self.now,
                            f"wait {action.step} ended early",
                            f"{self.woken_by} arrived",
                        )
                    position.step = interpreter.after(position.cadence, action.step)
                case interpreter.SendEmail():
                    if state.unsubscribed or not state.facts.has_email:
                        # Nothing to hold for the window: the step is skipped now, visibly.
                        why = (
                            lifecycle.opted_out(state) if state.unsubscribed else "no email address"
                        )
                        lifecycle.note(state, now, f"email {action.step} skipped", why)
                    else:
                        if not (yield from self._touch_allowed("email", action.step)):
                            return
                        if not (yield from self._send_email(action)):
                            return
                    position.step = interpreter.after(position.cadence, action.step)
                case interpreter.CreateCallTask():
                    # A call step resumed after continue-as-new already has its task: it goes
                    # straight back to waiting for the outcome, with no new touch to hold.
                    resuming = position.resume_until is not None
                    if not resuming and not (yield from self._touch_allowed("call", action.step)):
                        return
                    if not (yield from self._call(action, resuming=resuming)):
                        return
                    position.step = interpreter.after(position.cadence, action.step)

    def _rest(self) -> Steps[None]:
        """The cadence is over: the lead rests in its stage, listening (a rest is not stuck)."""
        state = self._state
        state.next_touch_at = None
        yield from self._set_doing(f"resting in {state.stage}: cadence done, listening for events")
        yield from self._wait(None, frozenset(), "resting")

    def _with_sales(self) -> Steps[None]:
        state = self._state
        follow_up = state.playbook.thresholds.sales_follow_up
        deadline = (state.tossed_up_at or self.now) + parse_duration(follow_up).calendar
        alerted = [state.owner or "ops", "ops"]
        told = self._told(alerted)
        if self.now < deadline:
            yield from self._set_doing(
                f"with sales since {_fmt(state.tossed_up_at)}; follow-up check {_fmt(deadline)}"
            )
            self.replan = False
            result = yield from self._wait(
                deadline, frozenset(), "sales follow-up check", done=self._replanned
            )
            if result is not Wake.TIMER:
                return  # a stage change, or a new playbook: the check is planned again
            lifecycle.note(
                state,
                self.now,
                "sales follow-up overdue",
                f"no outcome {follow_up} after the toss-up; told {told}",
            )
            yield from self._notify(
                keys.sales_follow_up(state.facts.id, state.cycle),
                alerted,
                f"Lead {state.facts.id}: no sales outcome yet",
                f"Lead {state.facts.id} was tossed up on {_fmt(state.tossed_up_at)} "
                f"and has no outcome after {follow_up}.",
            )
        yield from self._set_doing(
            f"with sales since {_fmt(state.tossed_up_at)}; follow-up overdue, told {told}"
        )
        yield from self._wait(None, frozenset(), "waiting for the sales outcome")

    def _wait_to_recycle(self) -> Steps[None]:
        state = self._state
        until = state.recycle_at or self.now
        state.next_touch_at = until
        yield from self._set_doing(f"lost ({state.lost_reason}); recycles {_fmt(until)}")
        result = yield from self._wait(until, frozenset(), f"recycle timer ({state.lost_reason})")
        if result is Wake.TIMER and self.pending is None:
            self.pending = Transition(
                to="recycling",
                why=f"recycle timer for {state.lost_reason} elapsed",
                trigger="timer",
            )

    # --- waiting --------------------------------------------------------------------------

    def _wait(
        self,
        until: datetime | None,
        wake_on: frozenset[str],
        why: str,
        *,
        migratable: bool = True,
        done: Callable[[], bool] | None = None,
    ) -> Steps[Wake]:
        """Wait for ``until`` while applying input; interruptible by stage changes.

        Returns TIMER, WOKEN (an event in ``wake_on``, or ``done()`` holds) or INTERRUPTED
        (a stage change is pending, the cadence must stop, or a migration arrived and the
        wait is ``migratable``).
        """
        state = self._state
        self.wake_on = wake_on
        self.woken_by = None
        in_step = self._in_cadence_step()
        yield _PUBLISH
        try:
            while True:
                yield from self._drain()
                if self.pending is not None or (in_step and not self._in_cadence_step()):
                    return Wake.INTERRUPTED
                if self.woken_by is not None or (done is not None and done()):
                    return Wake.WOKEN
                if self.migration is not None and migratable:
                    if in_step or state.stage in TOUCH_STAGES:
                        return Wake.INTERRUPTED
                    yield from self._apply_migration()
                now = self.now
                if until is not None and now >= until:
                    return Wake.TIMER
                if lifecycle.apply_decay(state, now):
                    yield _PUBLISH
                    continue
                due = [w for w in state.watches if w.escalate_at <= now]
                if due:
                    yield from self._escalate(due[0])
                    continue
                if self.history_long:
                    raise _Restart()
                deadline = _earliest(until, lifecycle.next_decay_at(state))
                if state.watches:
                    deadline = _earliest(deadline, min(w.escalate_at for w in state.watches))
                yield Sleep(deadline, why[:SUMMARY_LIMIT])
                self.control_changed = False
        finally:
            self.wake_on = frozenset()

    def _replanned(self) -> bool:
        """Whether a playbook arrived during a hold, so the hold is planned again."""
        return self.replan

    def _in_cadence_step(self) -> bool:
        state = self._state
        return (
            state.stage in TOUCH_STAGES
            and state.position is not None
            and state.position.step is not None
        )

    def _drain(self) -> Steps[None]:
        """Apply every queued event, then every control, in arrival order."""
        state = self._state
        changed = False
        while self.inbox:
            event = self.inbox.pop(0)
            now = self.now
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
            if event.type == "call.completed" and state.watches:
                self._unwatch(event)
            if (
                event.type == "email.replied"
                and state.owner
                and state.stage not in FINAL_STAGES
                and self.patched("notify-owner-on-reply")
            ):
                yield from self._tell_owner_of_reply(event)
        while self.controls:
            kind, value = self.controls.pop(0)
            yield from self._control(kind, value)
            changed = True
        if self.rollout is not None:
            playbook, self.rollout = self.rollout, None
            transition = lifecycle.apply_playbook(state, playbook, self.now)
            if transition is not None and transition.stronger_than(self.pending):
                self.pending = transition
            self.replan = True
            changed = True
        if changed:
            yield _PUBLISH

    def _control(self, control: Control, value: str) -> Steps[None]:
        """Apply an ops control; a reassignment takes the lead's open call tasks along."""
        state = self._state
        before = state.owner
        self._apply_control(control, value)
        if state.owner == before or not self.patched("reassign-moves-tasks"):
            return
        yield Perform(
            am.MOVE_CALL_TASKS,
            am.MoveCallTasksInput(
                key=keys.reassignment(state.facts.id, state.cycle, self.now, state.owner),
                lead_id=state.facts.id,
                from_owner=before,
                to_owner=state.owner,
                now=self.now,
            ),
            f"open call tasks to {state.owner or 'nobody'}; {before or 'nobody'} and "
            f"{state.owner or 'nobody'} told",
        )

    def _apply_control(self, control: Control, value: str) -> None:
        state = self._state
        now = self.now
        if control is Control.PAUSE and not state.paused:
            state.paused = True
            lifecycle.note(state, now, "paused", value)
        elif control is Control.RESUME and state.paused:
            state.paused = False
            lifecycle.note(state, now, "resumed", value)
        elif control is Control.REASSIGN:
            owner = value or None
            lifecycle.note(
                state, now, f"owner {owner}", f"reassigned from {state.owner or 'nobody'}"
            )
            state.owner = owner

    # --- touches --------------------------------------------------------------------------

    def _touch_allowed(self, channel: str, step: str) -> Steps[bool]:
        """Hold a touch until it is humane: not paused, inside the send window, under caps.

        Returns False when a stage change or a stop interrupted the hold (the touch is not
        dropped: the step stays current and runs when the lead comes back to it).
        """
        state = self._state
        while True:
            yield from self._drain()
            if self.pending is not None or not self._in_cadence_step():
                return False
            now = self.now
            if state.paused:
                state.next_touch_at = None
                self.held.append("paused")
                yield from self._set_doing(f"paused before {step}")
                result = yield from self._wait(
                    None, frozenset(), f"paused before {step}", done=lambda: not state.paused
                )
                if result is Wake.INTERRUPTED:
                    return False
                continue
            away = state.away_until
            if away is not None and away > now and self.patched("out-of-office"):
                day = away.astimezone(self._zone).date().isoformat()
                held = f"{channel} {step} held: out of office until {day}"
                self.held.append("out_of_office")
                lifecycle.note(state, now, held, "an auto-reply said so; touches resume then")
                state.next_touch_at = away
                yield from self._set_doing(held)
                result = yield from self._wait(
                    away,
                    frozenset(),
                    f"out of office: {channel} {step}",
                    # A later auto-reply moves the return, a reply ends the hold.
                    done=lambda held_until=away: state.away_until != held_until,
                )
                if result is Wake.INTERRUPTED:
                    return False
                continue
            yield from self._resolve_public_holidays()
            now = self.now
            state.emails_sent = timing.prune_sends(state.emails_sent, now)
            slot = timing.earliest_touch(
                now,
                self._zone,
                self._limits,
                channel=channel,  # type: ignore[arg-type]
                emails_sent=state.emails_sent,
                last_touch=state.last_touch_at,
            )
            if slot.at <= now:
                if not (
                    governor.governed(state.playbook.limits) and self.patched(ACCOUNT_GOVERNOR)
                ):
                    return True
                held = yield from self._account_slot(channel, step)
                if held is None:
                    return True
                if held is Wake.INTERRUPTED:
                    return False
                continue
            reasons = "; ".join(slot.reasons)
            self.held.extend(timing.hold_kinds(slot.reasons))
            lifecycle.note(state, now, f"{channel} {step} deferred to {_fmt(slot.at)}", reasons)
            state.next_touch_at = slot.at
            yield from self._set_doing(f"{channel} {step} deferred to {_fmt(slot.at)}: {reasons}")
            self.replan = False
            result = yield from self._wait(
                slot.at, frozenset(), f"deferred {channel} {step}", done=self._replanned
            )
            if result is Wake.INTERRUPTED:
                return False

    def _resolve_public_holidays(self) -> Steps[None]:
        """Resolve the public holidays of the lead's country when it needs them and does
        not hold them for the years ahead (``limits.public_holidays``): an activity, so a
        replay reads the dates recorded then, whatever the holidays package says now."""
        state = self._state
        wanted = calendars.wanted(state.playbook.limits, state.facts.country, self.now)
        held = state.public_holidays
        if wanted is None or (held is not None and held.covers(wanted)):
            return
        if not self.patched("public-holidays"):
            return
        state.public_holidays = yield Perform(
            am.RESOLVE_PUBLIC_HOLIDAYS, wanted, wanted.label(), am.PublicHolidays
        )

    def _account_slot(self, channel: str, step: str) -> Steps[Wake | None]:
        """Ask the account governor for the touch's slot; None when it may go now, else
        hold until the answer's time (or until the conversation that held it ends) and
        return how the hold ended (the caller then checks every limit again)."""
        state = self._state
        visit = self._visit(step) + 1
        # A release that arrives after this point is about a conversation this answer saw.
        self.account_released = False
        answer: am.ReserveTouchResult = yield Perform(
            am.RESERVE_TOUCH,
            am.ReserveTouchInput(
                key=self._touch(step, visit)["key"],
                lead_id=state.facts.id,
                stage=state.stage,
                channel=channel,  # type: ignore[arg-type]
                limits=self._limits,  # the lead's own holidays (where a cap reopens)
                zone=self._zone.key,
                now=self.now,
            ),
            f"account slot for {channel} {step}",
            am.ReserveTouchResult,
        )
        if answer.granted:
            return None
        now = self.now
        reasons = "; ".join(answer.reasons)
        self.held.append("account")
        if answer.conversation:
            what = f"{channel} {step} held"
            doing = f"held: {reasons} (asks again when it ends, at the latest {_fmt(answer.at)})"
        else:
            what = f"{channel} {step} deferred to {_fmt(answer.at)}"
            doing = f"{what}: {reasons}"
        last = state.history[-1] if state.history else None
        if last is None or (last.what, last.why) != (what, reasons):
            # A backstop re-check that finds the same conversation adds nothing new.
            lifecycle.note(state, now, what, reasons)
        state.next_touch_at = answer.at
        yield from self._set_doing(doing)
        self.replan = False
        self.account_hold = answer.conversation
        try:
            result = yield from self._wait(
                answer.at,
                frozenset(),
                f"account hold: {channel} {step}",
                done=lambda: self.replan or (answer.conversation and self.account_released),
            )
        finally:
            self.account_hold = False
        if result is Wake.WOKEN and self.account_released:
            lifecycle.note(
                state, self.now, f"{channel} {step} hold ended", "the account's conversation ended"
            )
        return result

    def _release_account(self, before: str) -> Steps[None]:
        """The lead left mql/sql: its account's leads holding a touch for it ask again."""
        state = self._state
        shared = state.playbook.limits.account
        if (
            before not in governor.CONVERSATION_STAGES
            or state.stage in governor.CONVERSATION_STAGES
            or shared is None
            or not shared.one_conversation
            or not self.patched(ACCOUNT_GOVERNOR)
        ):
            return
        yield Perform(
            am.RELEASE_ACCOUNT,
            am.ReleaseAccountInput(lead_id=state.facts.id, stage=state.stage, now=self.now),
            f"{before} -> {state.stage}: the account's other leads may be touched again",
            am.ReleaseAccountResult,
        )

    def _send_email(self, action: interpreter.SendEmail) -> Steps[bool]:
        """Send the step's email once; False when a stage change interrupted a paused send.

        The visit (and so the idempotency key) is only used up once the activity has acted:
        a send held by the kill switch and then interrupted keeps its key for the next try.
        """
        state = self._state
        visit = self._visit(action.step) + 1
        told_paused = False
        while True:
            if state.unsubscribed:
                lifecycle.note(
                    state, self.now, f"email {action.step} skipped", lifecycle.opted_out(state)
                )
                return True
            yield from self._set_doing(f"sending {action.template} ({action.reason})")
            result: am.SendEmailResult = yield Perform(
                am.SEND_EMAIL,
                am.SendEmailInput(
                    **self._touch(action.step, visit),
                    template=action.template,
                    owner=state.owner,
                    now=self.now,
                ),
                f"email {action.template} (step {action.step}, visit {visit})",
                am.SendEmailResult,
            )
            if result.status != "paused":
                break
            # The kill switch is on: wait, applying events (an opt-out meanwhile wins).
            if not told_paused:
                self.held.append("sending_paused")
                lifecycle.note(state, self.now, f"email {action.step} held", result.detail)
                told_paused = True
            retry_at = self.now + SENDING_PAUSED_RETRY
            state.next_touch_at = retry_at
            waited = yield from self._wait(retry_at, frozenset(), "sending paused")
            if waited is Wake.INTERRUPTED:
                return False
        self._use_visit(action.step, visit)
        now = self.now
        if result.status in ("sent", "unknown"):
            # An `unknown` delivery counts as a touch too, so caps stay humane.
            state.emails_sent.append(now)
            state.last_touch_at = now
        lifecycle.note(
            state, now, f"email {action.step}: {result.status}", result.detail or action.reason
        )
        if result.status == "unknown" and self.patched("alert-unknown-send"):
            # Nobody can tell whether it went out: a person must look before anyone resends.
            alerted = [state.owner or "ops", "ops"]
            lifecycle.note(
                state,
                now,
                f"alert: email {action.step} may not have gone out",
                f"told {self._told(alerted)}",
            )
            touch = keys.touch(
                state.facts.id, state.cycle, self._position.cadence.id, action.step, visit
            )
            yield from self._notify(
                keys.unknown_send(touch),
                alerted,
                f"Lead {state.facts.id}: email {action.step} may not have gone out",
                f"The mail server's answer to email {action.step} of lead {state.facts.id} was "
                f"lost ({result.detail or 'no detail'}). Check the outbox (`nurture sends list "
                "--status unknown`) before anyone resends it.",
            )
        return True

    def _visit(self, step: str) -> int:
        """How many times ``step`` of the current cadence ran in this cycle."""
        return self._state.visits.get(keys.visit_counter(self._position.cadence.id, step), 0)

    def _use_visit(self, step: str, visit: int) -> None:
        self._state.visits[keys.visit_counter(self._position.cadence.id, step)] = visit

    def _touch(self, step: str, visit: int) -> dict[str, Any]:
        """What every touch's input names: where it is, and its idempotency key."""
        state = self._state
        cadence = self._position.cadence.id
        return {
            "key": keys.touch(state.facts.id, state.cycle, cadence, step, visit),
            "lead_id": state.facts.id,
            "cycle": state.cycle,
            "cadence": cadence,
            "step": step,
            "visit": visit,
        }

    def _call(
        self,
        action: interpreter.CreateCallTask,
        *,
        resuming: bool = False,
        due_at: datetime | None = None,
    ) -> Steps[bool]:
        """Create the SDR's call task; wait for the outcome when the step says so.

        ``resuming``: the step was waiting for its outcome when the run continued as new;
        the same visit finds the same task (the activity is idempotent by key) and an
        outcome that arrived meanwhile is kept. ``due_at``: a callback's time (the task is
        due then, and its outcome is waited for from then).
        """
        state = self._state
        position = self._position
        now = self.now
        visit = max(self._visit(action.step), 1) if resuming else self._visit(action.step) + 1
        self._use_visit(action.step, visit)
        if not resuming:
            position.last_call_outcome = None
        calling_back = due_at is not None
        if due_at is None:
            due_at = timing.add_duration(now, action.due, self._zone, self._limits)
        result: am.CallTaskResult = yield Perform(
            am.CREATE_CALL_TASK,
            am.CallTaskInput(
                **self._touch(action.step, visit),
                script=action.script,
                due_at=due_at,
                owner=state.owner,
                now=now,
            ),
            f"call task {action.script} (step {action.step}), due {_fmt(due_at)}",
            am.CallTaskResult,
        )
        now = self.now
        if result.owner and result.owner != state.owner:
            state.owner = result.owner
        escalation = state.playbook.team.escalation
        if (
            escalation is not None
            and not resuming
            and result.created
            and self.patched("escalation")
        ):
            # Every call task is watched, with or without wait_for_outcome; a new task of a
            # step supersedes the step's older open one (the activity cancels it).
            state.watches = [w for w in state.watches if w.step != action.step]
            state.watches.append(
                TaskWatch(
                    task_id=result.task_id,
                    step=action.step,
                    escalate_at=timing.add_duration(
                        due_at, escalation.after, self._zone, self._limits
                    ),
                )
            )
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
        # A callback's outcome is due after its call, not after the task was made.
        since = due_at if calling_back else now
        until = position.resume_until or timing.add_duration(
            since, action.wait_for_outcome, self._zone, self._limits
        )
        position.resume_until = until
        state.next_touch_at = until
        yield from self._set_doing(
            f"waiting for {result.owner or 'the SDR'}'s call outcome until {_fmt(until)}"
        )
        if resuming and position.last_call_outcome is not None:
            position.resume_until = None
            return True  # the outcome came in just before the run continued as new
        # A migration waits until the outcome is in: moving now would create a second task.
        outcome = yield from self._wait(
            until,
            frozenset({"call.completed"}),
            f"call outcome for {action.step}",
            migratable=False,
        )
        if outcome is Wake.INTERRUPTED:
            return False
        position.resume_until = None
        if outcome is Wake.TIMER:
            lifecycle.note(
                state,
                self.now,
                f"no call outcome for {action.step}",
                f"waited {action.wait_for_outcome}; task marked overdue",
            )
            yield from self._close_tasks(
                "overdue", f"no outcome within {action.wait_for_outcome}", result.task_id
            )
        callback = position.callback_at
        if (
            outcome is Wake.WOKEN
            and position.last_call_outcome == "call_back_later"
            and callback is not None
            and self.patched("call-back-later")
        ):
            return (yield from self._call_back(action, callback))
        return True

    def _call_back(self, action: interpreter.CreateCallTask, asked: datetime) -> Steps[bool]:
        """The lead asked to be called back at ``asked``: a new task of the same step, due
        then (or at the lead's next window opening), and its outcome waited for again."""
        state = self._state
        self._position.callback_at = None
        due_at = timing.earliest_touch(
            max(asked, self.now),
            self._zone,
            self._limits,
            channel="call",
            emails_sent=[],
            last_touch=None,
        ).at
        lifecycle.note(
            state,
            self.now,
            f"call back {action.step} at {_fmt(due_at)}",
            f"the lead asked to be called back at {_fmt(asked)}",
        )
        return (yield from self._call(action, due_at=due_at))

    # --- transitions ----------------------------------------------------------------------

    def _apply_pending(self) -> Steps[bool]:
        """Perform the pending stage change; True when it is a stage boundary (continue-as-new)."""
        state = self._state
        transition = self.pending
        assert transition is not None
        self.pending = None
        before = was = state.stage
        now = self.now
        # The funnel credits the cadence step a lead left from (step performance).
        left = (state.position.cadence.id, step_label(state)) if state.position else (None, None)
        if transition.to == "sql" and state.stage == "nurturing":
            # Reaching toss-up straight from nurturing records the MQL passage too.
            lifecycle.note(
                state, now, "stage nurturing -> mql", f"passed on the way to sql: {transition.why}"
            )
            yield from self._record(
                "nurturing", "mql", f"passed on the way to sql: {transition.why}", at=left
            )
            before = "mql"
            state.stage = "mql"
        lifecycle.enter(state, transition, now)
        yield from self._set_doing(f"entering {state.stage}: {transition.why}")
        if transition.to == "lost" and state.stage == "closed":
            # A loss whose reason recycles `never`: the funnel still sees the loss.
            yield from self._record(before, "lost", transition.why, at=left, cause=transition)
            before = "lost"
        # A new cycle's first row names the cadence it enters (the funnel's entry cadence).
        entered = (state.pending_cadence, None) if state.stage == "recycling" else left
        yield from self._record(before, state.stage, transition.why, at=entered, cause=transition)
        if state.stage == "won":
            yield from self._close_tasks("cancelled", "opportunity won")
        if state.stage == "sql":
            yield from self._close_tasks("cancelled", "tossed up to sales")
            yield from self._handoff(transition)
        elif state.stage == "closed":
            yield from self._close_tasks("cancelled", transition.why)
            if transition.erase:
                yield from self._erase()
            if before == "sql":
                yield from self._notify(
                    keys.closed_with_sales(state.facts.id, state.cycle),
                    [state.owner or "ops", "ops"],
                    f"Lead {state.facts.id} closed",
                    f"Lead {state.facts.id} was with sales and is now closed: {transition.why}.",
                )
        yield from self._release_account(was)
        yield _PUBLISH
        return True

    def _handoff(self, transition: Transition) -> Steps[None]:
        state = self._state
        result: am.HandoffResult = yield Perform(
            am.HANDOFF,
            am.HandoffInput(
                key=keys.opportunity(state.facts.id, state.cycle),
                lead_id=state.facts.id,
                cycle=state.cycle,
                owner=state.owner,
                trigger=transition.trigger,
                reason=transition.why,
                score=state.score,
                grade=state.grade,
                now=self.now,
            ),
            f"toss-up to sales: {transition.why}",
            am.HandoffResult,
        )
        # A lead with no owner gets one at toss-up (the activity applies the playbook's
        # assignment rule); publishing it is a new command, so runs recorded before keep
        # replaying without it.
        if result.owner and result.owner != state.owner and self.patched("owner-at-toss-up"):
            lifecycle.take_owner(
                state, result.owner, self.now, "assigned at toss-up by the playbook's rule"
            )

    def _close_tasks(self, status: str, reason: str, task_id: str | None = None) -> Steps[None]:
        if status == "cancelled" and task_id is None:
            self._state.watches = []  # nothing open is left to escalate
        yield Perform(
            am.CLOSE_CALL_TASKS,
            am.CloseCallTasksInput(
                lead_id=self._state.facts.id,
                status=status,  # type: ignore[arg-type]
                reason=reason,
                task_id=task_id,
                now=self.now,
            ),
            f"{status} call tasks: {reason}",
        )

    def _unwatch(self, event: Event) -> None:
        """A call outcome ends the watch of its task: the one named, else the oldest of its
        step, else the oldest (an outcome posted without its task)."""
        state = self._state
        named = event.data.get("task")
        step = event.data.get("step")
        for match in (
            lambda w: w.task_id == named,
            lambda w: w.step == step,
            lambda w: named is None and step is None,
        ):
            found = next((w for w in state.watches if match(w)), None)
            if found is not None:
                state.watches.remove(found)
                return

    def _escalate(self, watch: TaskWatch) -> Steps[None]:
        """A call task still open ``team.escalation.after`` past due goes on, visibly."""
        state = self._state
        state.watches.remove(watch)
        team = state.playbook.team
        escalation = team.escalation
        assert escalation is not None
        before = state.owner
        manager = team.manager_of(before)
        to = escalation.to
        target: str | None = None
        if to == "next_sdr":
            nxt = team.next_sdr(before, state.facts.country)
            target = nxt.id if nxt else None
        elif to == "manager":
            target = manager.id if manager else None
        if target is None and to != "ops":
            to = "ops"  # nobody to pass it to: ops hear of it
        told = self._told(
            [n for n in (before, target, manager.id if manager else None) if n]
            + (["ops"] if to == "ops" else [])
        )
        lifecycle.note(
            state,
            self.now,
            f"call task {watch.task_id} escalated to {target or 'ops'}",
            f"still open {escalation.after} past due with {before or 'nobody'}; told {told}",
        )
        yield Perform(
            am.ESCALATE_CALL_TASK,
            am.EscalateCallTaskInput(
                key=keys.escalation(watch.task_id),
                task_id=watch.task_id,
                lead_id=state.facts.id,
                from_owner=before,
                to=to,
                to_id=target,
                manager=manager.id if manager else None,
                now=self.now,
            ),
            f"escalate call task {watch.task_id} to {target or 'ops'}",
        )
        if to == "next_sdr" and target is not None and target != before:
            lifecycle.take_owner(state, target, self.now, f"call task {watch.task_id} escalated")
        yield _PUBLISH

    def _tell_owner_of_reply(self, event: Event) -> Steps[None]:
        """A lead that answers is the owner's to pick up: they hear of it at once, once.

        Only ids and the step travel: the reply itself (sender, subject, body) stays in the
        app database; the notification activity names the lead from there.
        """
        state = self._state
        owner = state.owner
        assert owner is not None
        step = event.data.get("step")
        replied = f"the lead replied to {step}" if step else "the lead replied"
        if not state.playbook.team.contacts([owner]):
            lifecycle.note(
                state, self.now, f"{replied}; nobody told", f"owner {owner} has no address"
            )
            return
        lifecycle.note(state, self.now, f"told {owner}: {replied}", f"event {event.id}")
        about = f"email {step}" if step else "an email"
        yield Perform(
            am.NOTIFY,
            am.NotifyInput(
                key=keys.reply_notice(state.facts.id, event.id),
                lead_id=state.facts.id,
                to=[owner],
                subject=f"Lead {state.facts.id} replied",
                text=(
                    f"Lead {state.facts.id} replied to {about}: a person is waiting for "
                    "an answer. The reply is in the mailbox it was sent to."
                ),
                now=self.now,
                name_the_lead=True,
            ),
            f"tell {owner}: lead replied to {step or 'an email'}",
        )

    def _told(self, names: list[str]) -> str:
        """Who an alert to ``names`` reaches, for the history (ids, never addresses)."""
        people = self._state.playbook.team.contacts(names)
        return ", ".join(pid for pid, _ in people) or "nobody (no owner's address, no team.ops)"

    def _notify(self, key: str, to: list[str], subject: str, text: str) -> Steps[None]:
        yield Perform(
            am.NOTIFY,
            am.NotifyInput(
                key=key,
                lead_id=self._state.facts.id,
                to=to,
                subject=subject,
                text=text,
                now=self.now,
            ),
            subject,
        )

    def _erase(self) -> Steps[None]:
        yield Perform(
            am.ERASE_LEAD,
            am.EraseInput(lead_id=self._state.facts.id, now=self.now),
            "erase the lead's personal data",
        )

    def _record(
        self,
        before: str | None,
        after: str,
        why: str,
        at: tuple[str | None, str | None] | None = None,
        cause: Transition | None = None,
    ) -> Steps[None]:
        """Log a stage change; ``at`` is the (cadence, step) it happened at (default: now's)."""
        state = self._state
        current = (
            state.position.cadence.id if state.position else state.pending_cadence,
            step_label(state) or None,
        )
        cadence, step = at if at is not None else current
        yield Perform(
            am.RECORD_TRANSITION,
            am.TransitionInput(
                lead_id=state.facts.id,
                cycle=state.cycle,
                from_stage=before,
                to_stage=after,
                at=self.now,
                reason=why,
                source=state.facts.source,
                cadence=cadence,
                step=step,
                score=state.score,
                grade=state.grade,
                current_cadence=current[0],
                current_step=current[1],
                trigger=cause.trigger if cause else None,
                loss_reason=cause.loss_reason if cause else None,
                owner=state.owner,
                next_touch_at=state.next_touch_at,
            ),
            f"record {before or 'new'} -> {after}",
        )

    def _load_pending_cadence(self) -> Steps[None]:
        state = self._state
        cadence_id = state.pending_cadence
        assert cadence_id is not None
        snapshot: am.CadenceSnapshot = yield Perform(
            am.LOAD_CADENCE,
            am.LoadCadenceInput(cadence_id=cadence_id),
            f"load cadence {cadence_id}",
            am.CadenceSnapshot,
        )
        state.playbook = snapshot.playbook
        state.pending_cadence = None
        yield from self._enter_cadence(snapshot.cadence, f"stage {state.stage}")

    def _enter_cadence(self, cadence: Cadence, why: str) -> Steps[None]:
        state = self._state
        now = self.now
        state.position = Position(
            cadence=cadence, step=interpreter.first_step(cadence), visits={}, entered_at=now
        )
        lifecycle.note(state, now, f"cadence {cadence.id} (version {cadence.version})", why)
        yield _PUBLISH

    def _apply_migration(self) -> Steps[None]:
        assert self.migration is not None
        cadence, step_map = self.migration
        self.migration = None
        state = self._state
        position = state.position
        now = self.now
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
        yield _PUBLISH

    # --- visibility -----------------------------------------------------------------------

    def _set_doing(self, text: str) -> Steps[None]:
        self._state.doing = text
        yield _PUBLISH

    @property
    def _state(self) -> LeadState:
        assert self.state is not None
        return self.state

    @property
    def _position(self) -> Position:
        assert self._state.position is not None
        return self._state.position

    @property
    def _limits(self) -> Limits:
        """The playbook's limits as they hold for this lead (its own holidays)."""
        return lifecycle.limits_of(self._state)

    @property
    def _zone(self) -> ZoneInfo:
        facts = self._state.facts
        return timing.lead_zone(facts.timezone, facts.country)


def _in_effect(patch_id: str) -> bool:
    return True


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _fmt(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "-"
