"""A dry run of one lead through a cadence on a virtual clock (`nurture cadences simulate`).

The simulator follows the lead workflow's rules (``workflows/lead.py``) step for step, with
no Temporal and no I/O: the interpreter decides each cadence step, the lifecycle reducer
applies each scripted event, and :mod:`nurture.timing` holds touches to the send window,
holidays, the gap between touches and the weekly email cap. What the workflow does through
activities (sending an email, creating a call task, handing off to sales) takes no time here
and always succeeds, so the timeline shows what the playbook and cadence decide, not what a
mail server did.

Time only moves forward, to the next instant something can happen: a wait's deadline, a
deferred touch, a decay step or a scripted event. So the run is exact to the second and
bounded: it stops at the horizon, after :data:`MAX_ENTRIES` timeline entries, when the lead
is won or closed, or when it rests with no scripted events left.

Scripts use the CLI's ``--events`` SPEC (see :func:`parse_script`)::

    day 1 email.clicked@welcome, day 3 call:no_answer, day 5 10:30 page.visited url=/pricing
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections import deque
from datetime import UTC, datetime, time, timedelta
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from nurture import interpreter, lifecycle, timing
from nurture.cadence import Cadence, CadenceSet
from nurture.durations import parse_duration
from nurture.events import CALL_OUTCOMES, EVENT_TYPES, Event, EventType, LeadFacts
from nurture.lifecycle import Transition
from nurture.state import FINAL_STAGES, TOUCH_STAGES, LeadState, Position

__all__ = [
    "DEFAULT_HORIZON",
    "MAX_ENTRIES",
    "ScriptError",
    "ScriptedEvent",
    "TimelineEntry",
    "parse_script",
    "simulate",
]

DEFAULT_HORIZON = timedelta(days=120)
MAX_ENTRIES = 500
"""A timeline never grows beyond this many entries (a cadence that loops stays readable)."""

_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # not %a: locale-free


class TimelineEntry(BaseModel):
    """One thing that happened to the simulated lead.

    Attributes:
        at: the instant, UTC.
        local: the same instant on the lead's wall clock, e.g. ``Mon 2026-11-23 09:00 EST``.
        step: the cadence step concerned, if any.
        action: what happened, e.g. ``email inbound/welcome``, ``wait until ...``,
            ``deferred: <reasons>``, ``branch engaged -> first-call``, ``stage nurturing -> mql``,
            ``cadence mql-sdr``, ``end``, ``event email.clicked@welcome``, ``stop``.
        why: the reason, in the words the lead's history would use.
    """

    at: datetime
    local: str
    step: str | None = None
    action: str
    why: str = ""


class ScriptedEvent(BaseModel):
    """An event the simulated lead does (or the CRM posts) at a scripted time.

    Attributes:
        at: when it happens (aware; UTC recommended).
        type: the event type (CONTRACT.md, "Leads and events").
        data: the event's data, e.g. ``{"step": "welcome"}`` or ``{"outcome": "no_answer"}``.
        id: the event id; default ``sim-<n>`` by position in the script. Repeating an id
            scripts a duplicate delivery, which must change nothing.
        day: with ``wall``: the event happens ``day`` days after the start on the *lead's*
            local calendar, at ``wall`` local time; :func:`simulate` resolves it in the
            lead's zone, which overrides ``at``.
        wall: the local wall time for ``day``.
    """

    at: datetime
    type: EventType
    data: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None
    day: int | None = None
    wall: time | None = None

    def label(self) -> str:
        """The event in the SPEC's own notation, e.g. ``email.clicked@welcome``."""
        data = dict(self.data)
        if self.type == "call.completed" and "outcome" in data:
            text = f"call:{data.pop('outcome')}"
        else:
            text = self.type
            if data.get("step") is not None:
                text += f"@{data.pop('step')}"
        pairs = [f"{k}={_quote(v)}" for k, v in data.items()]
        return " ".join([text, *pairs])

    def resolve(self, start: datetime, zone: ZoneInfo) -> datetime:
        """When the event happens (UTC), for a run starting at ``start`` in ``zone``."""
        if self.day is not None and self.wall is not None:
            return _wall_time(start, self.day, self.wall, zone)
        return _aware(self.at)


# --- the script --------------------------------------------------------------------------

_EXPECTED = (
    "expected 'day N [HH:MM] EVENT [key=value ...]', 'hour N EVENT ...' or "
    "'minute N EVENT ...', where EVENT is an event type (email.clicked), TYPE@STEP "
    "(email.clicked@welcome) or call:OUTCOME (call:no_answer)"
)
_UNITS = {"day": timedelta(days=1), "hour": timedelta(hours=1), "minute": timedelta(minutes=1)}
_WALL = re.compile(r"^(\d{1,2}):(\d{2})$")
_INT = re.compile(r"^-?\d+$")
_FLOAT = re.compile(r"^-?\d+\.\d+$")


class ScriptError(ValueError):
    """An ``--events`` SPEC item that cannot be read; the message names it."""


def parse_script(
    text: str, start: datetime, *, zone: ZoneInfo | None = None
) -> list[ScriptedEvent]:
    """Parse the CLI's ``--events`` SPEC into scripted events.

    Items are separated by commas (a comma inside quotes belongs to a value). Each item is
    a time, an event and optional data::

        day N [HH:MM]    N days after the start; with HH:MM, at that local wall time on the
                         lead's calendar day N (day 0 is the start's local date)
        hour N | minute N
        TYPE             an event type, e.g. page.visited
        TYPE@STEP        data.step, e.g. email.clicked@welcome
        call:OUTCOME     call.completed with data.outcome, e.g. call:no_answer
        key=value ...    data; numbers and true/false are typed; quote values with spaces
                         (reason="no budget"); id=EVT sets the event id instead

    Args:
        text: the SPEC, e.g. ``"day 1 email.clicked@welcome, hour 4 form.submitted form=demo"``.
        start: the simulation's start (aware; naive means UTC).
        zone: the zone that ``HH:MM`` wall times are read in for :attr:`ScriptedEvent.at`
            (default: UTC). :func:`simulate` re-reads them in the lead's own zone.

    Returns:
        The events in the order written (the simulator orders them by time, stably).

    Raises:
        ValueError: naming the item (by number and text) and what is expected.
    """
    start = _aware(start)
    zone = zone or ZoneInfo("UTC")
    events: list[ScriptedEvent] = []
    for number, item in enumerate(_split_items(text), start=1):
        if item.strip():
            events.append(_parse_item(number, item.strip(), start, zone))
    return events


def _split_items(text: str) -> list[str]:
    """Split on commas outside quotes, so ``reason="no, budget"`` stays one value."""
    items: list[str] = []
    current: list[str] = []
    quote: str | None = None
    for char in text:
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == ",":
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    return items


def _parse_item(number: int, item: str, start: datetime, zone: ZoneInfo) -> ScriptedEvent:
    def bad(problem: str) -> NoReturn:
        raise ScriptError(f"--events item {number} '{item}': {problem}; {_EXPECTED}")

    try:
        tokens = shlex.split(item)
    except ValueError as exc:  # an unclosed quote
        bad(str(exc).lower())
    unit = tokens[0].lower().rstrip("s") if tokens else ""
    if unit not in _UNITS:
        bad(f"starts with '{tokens[0]}', not day, hour or minute")
    if len(tokens) < 2 or not tokens[1].isdigit():
        given = f"'{tokens[1]}'" if len(tokens) > 1 else "nothing"
        bad(f"the {unit} count must be a whole number 0 or more, got {given}")
    count = int(tokens[1])
    rest = tokens[2:]
    wall: time | None = None
    if rest and _WALL.match(rest[0]):
        if unit != "day":
            bad(f"a wall time ({rest[0]}) can only follow 'day N'")
        hours, minutes = (int(part) for part in _WALL.match(rest[0]).groups())  # type: ignore[union-attr]
        if hours > 23 or minutes > 59:
            bad(f"'{rest[0]}' is not a time of day (00:00 to 23:59)")
        wall = time(hours, minutes)
        rest = rest[1:]
    if not rest:
        bad("no event after the time")
    kind, data = _parse_event(rest[0], bad)
    event_id: str | None = None
    for pair in rest[1:]:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            bad(f"'{pair}' is not key=value")
        if key == "id":
            if not value:
                bad("id= needs a value")
            event_id = value
        else:
            data[key] = _typed(value)
    if wall is not None:
        at = _wall_time(start, count, wall, zone)
        return ScriptedEvent(at=at, type=kind, data=data, id=event_id, day=count, wall=wall)  # type: ignore[arg-type]
    return ScriptedEvent(at=start + count * _UNITS[unit], type=kind, data=data, id=event_id)  # type: ignore[arg-type]


def _parse_event(token: str, bad: Any) -> tuple[str, dict[str, Any]]:
    if token.startswith("call:"):
        outcome = token.partition(":")[2].strip().lower()
        if outcome not in CALL_OUTCOMES:
            bad(f"'{outcome}' is not a call outcome ({', '.join(CALL_OUTCOMES)})")
        return "call.completed", {"outcome": outcome}
    kind, at_sign, step = token.partition("@")
    if kind not in EVENT_TYPES:
        close = difflib.get_close_matches(kind, EVENT_TYPES, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        bad(f"'{kind}' is not an event type{hint}")
    if at_sign and not step:
        bad(f"'{token}' names no step after @")
    return kind, ({"step": step} if step else {})


def _typed(value: str) -> Any:
    """Numbers and booleans as such, so ``employees=5000`` regrades like a CRM's number."""
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def _quote(value: Any) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return shlex.quote(text) if (" " in text or "," in text or not text) else text


def _aware(at: datetime) -> datetime:
    # A dry run's times come from people typing: a naive time means UTC, as the CLI says.
    if at.tzinfo is None or at.utcoffset() is None:
        return at.replace(tzinfo=UTC)
    return at.astimezone(UTC)


def _wall_time(start: datetime, day: int, wall: time, zone: ZoneInfo) -> datetime:
    local_day = _aware(start).astimezone(zone).date() + timedelta(days=day)
    return datetime.combine(local_day, wall, tzinfo=zone).astimezone(UTC)


# --- the run ---------------------------------------------------------------------------


def simulate(
    cadence_set: CadenceSet,
    cadence_id: str,
    lead: LeadFacts,
    script: list[ScriptedEvent],
    start: datetime,
    horizon: timedelta = DEFAULT_HORIZON,
    *,
    max_entries: int = MAX_ENTRIES,
) -> list[TimelineEntry]:
    """Run one lead through a cadence on a virtual clock, as the lead workflow would.

    The lead starts in ``cadence_id`` in stage ``nurturing``. Scripted events are applied at
    their times with :func:`nurture.lifecycle.apply_event`, so scoring, MQL, toss-up,
    ``exit_on`` and ``until_any`` wake-ups behave as in the workflow. Touches wait for
    :func:`nurture.timing.earliest_touch` (deferrals appear with their reasons). Stage changes
    follow the playbook: MQL switches to ``routing.mql_cadence``; a toss-up puts the lead
    with sales (no touches; the follow-up check fires after ``sales_follow_up``); won and
    closed stop; lost waits the recycle timer, then runs the recycle cadence. A call step with
    ``wait_for_outcome`` takes a scripted ``call.completed`` that arrives before its deadline,
    else times out.

    Args:
        cadence_set: the validated playbook and cadences.
        cadence_id: the cadence to start in.
        lead: the lead's decision fields (``has_email=False`` skips every email, as live).
        script: events to apply; see :func:`parse_script`.
        start: the virtual clock's start (aware; naive means UTC).
        horizon: how far the run goes.
        max_entries: the most timeline entries (the closing ``stop`` entry included).

    Returns:
        The timeline, in time order, ending with a ``stop`` entry that says why it ended.

    Raises:
        KeyError: ``cadence_id`` is not in the set.
        ValueError: a scripted event before the start; a cadence the playbook routes to is
            missing; a send window that never opens.
    """
    cadence = cadence_set.cadence(cadence_id)
    run = _Simulation(cadence_set, lead, script, _aware(start), horizon, max(2, max_entries))
    return run.run(cadence)


class _Stop(Exception):
    """The run is over: horizon, entry limit, or nothing left that could happen."""

    def __init__(self, why: str, at: datetime) -> None:
        super().__init__(why)
        self.why = why
        self.at = at


class _Simulation:
    """The lead workflow's loop with a virtual clock instead of Temporal.

    Method for method it mirrors ``LeadWorkflow``: ``_run_cadence``, ``_touch_allowed``,
    ``_call``, ``_wait``, ``_drain`` and ``_apply_pending`` follow the same rules in the same
    order, so a difference between a simulation and a live lead is a bug in one of them.
    """

    def __init__(
        self,
        cadence_set: CadenceSet,
        lead: LeadFacts,
        script: list[ScriptedEvent],
        start: datetime,
        horizon: timedelta,
        max_entries: int,
    ) -> None:
        self.cadence_set = cadence_set
        self.zone = timing.lead_zone(lead.timezone, lead.country)
        self.now = start
        self.end = start + horizon
        self.horizon = horizon
        self.max_entries = max_entries
        self.state = LeadState(facts=lead, playbook=cadence_set.playbook, created_at=start)
        self.pending: Transition | None = None
        self.woken_by: str | None = None
        self.wake_on: frozenset[str] = frozenset()
        self.timeline: list[TimelineEntry] = []
        self.script = self._schedule(script, start)

    def _schedule(
        self, script: list[ScriptedEvent], start: datetime
    ) -> deque[tuple[datetime, Event, str]]:
        timed: list[tuple[datetime, Event, str]] = []
        for n, scripted in enumerate(script, start=1):
            at = scripted.resolve(start, self.zone)
            if at < start:
                raise ValueError(
                    f"scripted event {n} ({scripted.label()}) at {at:%Y-%m-%d %H:%M} UTC is before "
                    f"the start {start:%Y-%m-%d %H:%M} UTC"
                )
            event = Event(
                id=scripted.id or f"sim-{n}",
                type=scripted.type,
                lead_id=self.state.facts.id,
                occurred_at=at,
                data=dict(scripted.data),
            )
            timed.append((at, event, scripted.label()))
        # sorted() is stable: events scripted for the same instant arrive in written order.
        return deque(sorted(timed, key=lambda item: item[0]))

    # --- the process ----------------------------------------------------------------------

    def run(self, cadence: Cadence) -> list[TimelineEntry]:
        state = self.state
        try:
            lifecycle.regrade(state, self.now)
            self._add(
                "lead created",
                f"grade {state.grade} ({'; '.join(state.grade_why)}); zone {self.zone}",
            )
            self._enter_cadence(cadence, "simulation start")
            while state.stage not in FINAL_STAGES:
                if state.pending_cadence is not None:
                    self._load_pending_cadence()
                if state.stage in TOUCH_STAGES:
                    self._run_cadence()
                elif state.stage == "sql":
                    self._with_sales()
                elif state.stage == "lost":
                    self._wait_to_recycle()
                if self.pending is not None:
                    self._apply_pending()
            stop = _Stop(f"the lead is {state.stage}: its workflow completes", self.now)
        except _Stop as raised:
            stop = raised
        self.timeline.append(self._entry("stop", stop.why, step=None, at=stop.at))
        return self.timeline

    def _run_cadence(self) -> None:
        """Run cadence steps until a stage change is pending; rest when the cadence ends."""
        state = self.state
        while self.pending is None:
            position = state.position
            if position is None or position.step is None:
                self._rest()
                return
            decision = interpreter.decide(
                position.cadence,
                position.step,
                lifecycle.facts_view(state, self.now),
                playbook=state.playbook,
                zone=self.zone,
            )
            for taken in decision.trail:
                step, _, rest = taken.partition(": ")
                why, _, target = rest.rpartition(" -> ")
                self._add(f"branch {step} -> {target}", why, step=step)
            action = decision.action
            position.step = action.step
            match action:
                case interpreter.End():
                    position.step = None
                    state.next_touch_at = None
                    self._add("end", action.reason, step=action.step)
                case interpreter.Wait():
                    until = position.resume_until or action.until
                    position.resume_until = until
                    state.next_touch_at = until
                    self._add(f"wait until {self._local(until)}", action.reason, step=action.step)
                    woke = self._wait(
                        until, frozenset(action.wake_on), f"waiting in step {action.step}"
                    )
                    if woke == "interrupted":
                        return
                    position.resume_until = None
                    if woke == "woken":
                        self._add(
                            f"wait {action.step} ended early",
                            f"{self.woken_by} arrived",
                            step=action.step,
                        )
                    position.step = interpreter.after(position.cadence, action.step)
                case interpreter.SendEmail():
                    if not self._touch_allowed("email", action.step):
                        return
                    self._send_email(action)
                    position.step = interpreter.after(position.cadence, action.step)
                case interpreter.CreateCallTask():
                    if not self._touch_allowed("call", action.step):
                        return
                    if not self._call(action):
                        return
                    position.step = interpreter.after(position.cadence, action.step)

    def _rest(self) -> None:
        """The cadence is over: the lead rests in its stage, listening for events."""
        self.state.next_touch_at = None
        self._wait(None, frozenset(), f"resting in {self.state.stage} (cadence done)")

    def _with_sales(self) -> None:
        state = self.state
        follow_up = state.playbook.thresholds.sales_follow_up
        deadline = (state.tossed_up_at or self.now) + parse_duration(follow_up).calendar
        if self.now < deadline:
            self._add(
                "with sales",
                f"no touches; sales follow-up check {self._local(deadline)}",
                step=None,
            )
            if self._wait(deadline, frozenset(), "with sales") == "interrupted":
                return
            self._add(
                "sales follow-up overdue",
                f"no outcome {follow_up} after the toss-up; owner and ops alerted",
                step=None,
            )
        self._wait(None, frozenset(), "with sales, waiting for the outcome")

    def _wait_to_recycle(self) -> None:
        state = self.state
        until = state.recycle_at or self.now
        state.next_touch_at = until
        self._add(
            f"recycle timer until {self._local(until)}", f"lost ({state.lost_reason})", step=None
        )
        result = self._wait(until, frozenset(), f"lost ({state.lost_reason}), waiting to recycle")
        if result == "timer" and self.pending is None:
            self.pending = Transition(
                to="recycling",
                why=f"recycle timer for {state.lost_reason} elapsed",
                trigger="timer",
            )

    # --- waiting --------------------------------------------------------------------------

    def _wait(self, until: datetime | None, wake_on: frozenset[str], why: str) -> str:
        """Move the clock to ``until`` while applying events; interruptible by stage changes.

        Returns "timer", "woken" (an event in ``wake_on``) or "interrupted" (a stage change
        is pending, or the cadence was stopped), exactly as the workflow's ``_wait``.

        Raises:
            _Stop: the horizon comes first, or nothing is left that could ever end the wait.
        """
        self.wake_on = wake_on
        self.woken_by = None
        in_step = self._in_cadence_step()
        try:
            while True:
                self._drain()
                if self.pending is not None or (in_step and not self._in_cadence_step()):
                    return "interrupted"
                if self.woken_by is not None:
                    return "woken"
                if until is not None and self.now >= until:
                    return "timer"
                before = self.state.score
                if lifecycle.apply_decay(self.state, self.now):
                    self.state.history.clear()
                    decay = self.state.playbook.scoring.decay
                    silence = f"no engagement for {decay.after}" if decay else "decay"
                    self._add("decay", f"score {before} -> {self.state.score}: {silence}")
                    continue
                upcoming = [until, lifecycle.next_decay_at(self.state)]
                if self.script:
                    upcoming.append(self.script[0][0])
                deadlines = [at for at in upcoming if at is not None]
                if not deadlines:
                    raise _Stop(f"{why}; no scripted events left", self.now)
                target = min(deadlines)
                if target > self.end:
                    raise _Stop(f"horizon reached ({_span(self.horizon)}) while {why}", self.end)
                self.now = max(self.now, target)
        finally:
            self.wake_on = frozenset()

    def _in_cadence_step(self) -> bool:
        position = self.state.position
        return (
            self.state.stage in TOUCH_STAGES and position is not None and position.step is not None
        )

    def _drain(self) -> None:
        """Apply every scripted event due by now, in order (the workflow's ``_drain``)."""
        state = self.state
        while self.script and self.script[0][0] <= self.now:
            _at, event, label = self.script.popleft()
            effect = lifecycle.apply_event(state, event, self.now)
            notes = self._notes()
            step = state.position.step if state.position else None
            if effect.duplicate:
                self._add(
                    f"event {label}", f"duplicate event id {event.id}: no second effect", step=step
                )
                continue
            self._add(f"event {label}", notes or "recorded", step=step)
            if effect.transition is not None and effect.transition.stronger_than(self.pending):
                self.pending = effect.transition
            if effect.exit_cadence and state.position is not None and self.pending is None:
                self._add("cadence stopped", effect.exit_cadence, step=state.position.step)
                state.position.step = None
                state.position.resume_until = None
            if effect.wake_type and effect.wake_type in self.wake_on:
                self.woken_by = effect.wake_type

    # --- touches --------------------------------------------------------------------------

    def _touch_allowed(self, channel: str, step: str) -> bool:
        """Hold a touch until it is humane; False when a stage change or a stop interrupts."""
        state = self.state
        while True:
            self._drain()
            if self.pending is not None or not self._in_cadence_step():
                return False
            state.emails_sent = timing.prune_sends(state.emails_sent, self.now)
            slot = timing.earliest_touch(
                self.now,
                self.zone,
                state.playbook.limits,
                channel=channel,  # type: ignore[arg-type]
                emails_sent=state.emails_sent,
                last_touch=state.last_touch_at,
            )
            if slot.at <= self.now:
                return True
            state.next_touch_at = slot.at
            self._add(
                f"deferred: {'; '.join(slot.reasons)}",
                f"{channel} {step} deferred to {self._local(slot.at)}",
                step=step,
            )
            if self._wait(slot.at, frozenset(), f"{channel} {step} deferred") == "interrupted":
                return False

    def _send_email(self, action: interpreter.SendEmail) -> None:
        state = self.state
        position = self._position
        visit = position.visits.get(action.step, 0) + 1
        position.visits[action.step] = visit
        if state.unsubscribed or not state.facts.has_email:
            why = "unsubscribed" if state.unsubscribed else "the lead has no email address"
            self._add(f"email {action.template} skipped", why, step=action.step)
            return
        state.emails_sent.append(self.now)
        state.last_touch_at = self.now
        again = f" (visit {visit})" if visit > 1 else ""
        self._add(f"email {action.template}", action.reason + again, step=action.step)

    def _call(self, action: interpreter.CreateCallTask) -> bool:
        """Create the SDR's call task; wait for the outcome when the step says so."""
        state = self.state
        position = self._position
        visit = position.visits.get(action.step, 0) + 1
        position.visits[action.step] = visit
        position.last_call_outcome = None
        due_at = timing.add_duration(self.now, action.due, self.zone, state.playbook.limits)
        state.last_touch_at = self.now
        why = action.reason + (f" (visit {visit})" if visit > 1 else "")
        if action.wait_for_outcome is None:
            self._add(
                f"call task {action.script} (due {self._local(due_at)})", why, step=action.step
            )
            return True
        # As live: business days count send-window days in the lead's zone.
        until = position.resume_until or timing.add_duration(
            self.now, action.wait_for_outcome, self.zone, state.playbook.limits
        )
        position.resume_until = until
        state.next_touch_at = until
        self._add(
            f"call task {action.script} (due {self._local(due_at)})",
            f"{why}; waits for the outcome until {self._local(until)}",
            step=action.step,
        )
        outcome = self._wait(
            until, frozenset({"call.completed"}), f"waiting for the outcome of {action.step}"
        )
        if outcome == "interrupted":
            return False
        position.resume_until = None
        if outcome == "timer":
            self._add(
                "no call outcome",
                f"waited {action.wait_for_outcome}; task marked overdue",
                step=action.step,
            )
        return True

    # --- transitions ----------------------------------------------------------------------

    def _apply_pending(self) -> None:
        state = self.state
        transition = self.pending
        assert transition is not None
        self.pending = None
        if transition.to == "sql" and state.stage == "nurturing":
            # Reaching toss-up straight from nurturing records the MQL passage too.
            self._add(
                "stage nurturing -> mql", f"passed on the way to sql: {transition.why}", step=None
            )
            state.stage = "mql"
        before = state.stage
        lifecycle.enter(state, transition, self.now)
        closing = [h.why for h in state.history if h.what == "closed"]
        self._notes()
        if transition.to == "lost" and state.stage == "closed":
            # A loss whose reason recycles `never`: the funnel sees the loss, then the close.
            self._add(f"stage {before} -> lost", transition.why, step=None)
            self._add("stage lost -> closed", closing[0] if closing else transition.why, step=None)
            return
        self._add(f"stage {before} -> {state.stage}", transition.why, step=None)

    def _load_pending_cadence(self) -> None:
        state = self.state
        cadence_id = state.pending_cadence
        assert cadence_id is not None
        try:
            cadence = self.cadence_set.cadence(cadence_id)
        except KeyError:
            raise ValueError(
                f"the playbook routes a {state.stage} lead to cadence '{cadence_id}', "
                "which is not in the cadence set"
            ) from None
        state.pending_cadence = None
        why = f"stage {state.stage}"
        if state.stage == "recycling" and state.lost_reason:
            why += f" (lost: {state.lost_reason})"
        self._enter_cadence(cadence, why)

    def _enter_cadence(self, cadence: Cadence, why: str) -> None:
        self.state.position = Position(
            cadence=cadence, step=interpreter.first_step(cadence), visits={}, entered_at=self.now
        )
        self._add(f"cadence {cadence.id}", f"{why} (version {cadence.version})", step=None)

    # --- the timeline ---------------------------------------------------------------------

    @property
    def _position(self) -> Position:
        assert self.state.position is not None
        return self.state.position

    def _notes(self) -> str:
        """What the reducer wrote to the lead's history since the last call, then forget it:
        the simulation reports it once, in the timeline, and the history stays small."""
        notes = "; ".join(f"{h.what}: {h.why}" if h.why else h.what for h in self.state.history)
        self.state.history.clear()
        return notes

    def _local(self, at: datetime) -> str:
        local = at.astimezone(self.zone)
        return f"{_DAY_NAMES[local.weekday()]} {local:%Y-%m-%d %H:%M} {local.tzname()}"

    def _entry(
        self, action: str, why: str, *, step: str | None, at: datetime | None = None
    ) -> TimelineEntry:
        when = at or self.now
        return TimelineEntry(at=when, local=self._local(when), step=step, action=action, why=why)

    def _add(
        self, action: str, why: str, *, step: str | None = None, at: datetime | None = None
    ) -> None:
        self.timeline.append(self._entry(action, why, step=step, at=at))
        # Keep one place for the closing `stop` entry inside the limit.
        if len(self.timeline) >= self.max_entries - 1:
            raise _Stop(f"{self.max_entries} timeline entries reached", self.now)


def _span(delta: timedelta) -> str:
    if delta % timedelta(days=1) == timedelta(0):
        days = delta // timedelta(days=1)
        return f"{days} day{'s' if days != 1 else ''}"
    return str(delta)
