"""A dry run of one lead through a cadence on a virtual clock (`nurture cadences simulate`).

The simulator is the second driver of the lead machine (:mod:`nurture.domain.machine`), the one the
lead workflow runs: the same code decides every step, hold, wait, event and stage change,
so a dry run and a live lead agree (``tests/test_conformance.py`` checks that they do). Only
the edges differ:

- the clock is virtual: a sleep moves it to its deadline or to the next scripted input,
  whichever comes first, and activities take no time;
- activities are answered here: an email is "sent" once its template renders for the
  simulated lead (with its owner, so with no ``sdr`` before the first call task, as live),
  and "failed" with the template's problem when it would fail at send time; a call task
  gets an id and the owner the playbook's assignment gives a lone lead; handoffs, records,
  notifications, closing tasks and erasure succeed; a cadence loads from the set;
- scripted events are handed to the machine as signals are, and so are ops controls
  (pause, resume, reassign) and migrations.

The timeline is the lead's history as the live lead records it (``leads show``), each entry
with the lead's local time too, ending with a ``stop`` entry that says why the run ended:
the lead is won or closed, the horizon is reached, :data:`MAX_ENTRIES` entries or
:data:`MAX_STEPS` steps, or it waits with no scripted input left. A continue-as-new is
followed, as live, by a fresh run of the machine from the carried state.

Scripts use the CLI's ``--events`` SPEC (see :func:`parse_script`)::

    day 1 email.clicked@welcome, day 3 call:no_answer, day 5 10:30 page.visited url=/pricing
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal, NoReturn
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from nurture.domain import governor, machine, timing
from nurture.domain import messages as am
from nurture.domain.cadence import Cadence, CadenceSet, Playbook
from nurture.domain.conditions import Facts
from nurture.domain.events import (
    CALL_OUTCOMES,
    EVENT_TYPES,
    Event,
    EventType,
    Lead,
    LeadFacts,
    address_key,
)
from nurture.domain.interpreter import entry_cadence
from nurture.domain.rendering import Renderer, TemplateProblem, sdr_context, sender_context
from nurture.domain.state import TOUCH_STAGES, HistoryEntry, LeadInput
from nurture.services.calendars import public_holidays
from nurture.services.intake import account_of

__all__ = [
    "CONTROLS",
    "DEFAULT_HORIZON",
    "MAX_ENTRIES",
    "MAX_STEPS",
    "ScriptError",
    "ScriptedEvent",
    "ScriptedMigration",
    "ScriptedPlaybook",
    "SimulatedLead",
    "TimelineEntry",
    "parse_script",
    "simulate",
    "simulate_leads",
]

DEFAULT_HORIZON = timedelta(days=120)
MAX_ENTRIES = 500
"""A timeline never grows beyond this many entries (a cadence that loops stays readable)."""
MAX_STEPS = 20_000
"""A run never takes more machine steps than this: a cadence that loops without leaving a
trace in the history (a wait that only goes back to itself) still ends, quickly."""

_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # not %a: locale-free


class TimelineEntry(BaseModel):
    """One entry of the simulated lead's history.

    Attributes:
        at: the instant, UTC.
        local: the same instant on the lead's wall clock, e.g. ``Mon 2026-11-23 09:00 EST``.
        what: what happened, in the live history's words: ``email hello: sent``,
            ``branch``, ``stage nurturing -> mql``, ``email follow-up deferred to ...``;
            the last entry is ``stop``.
        why: the reason, as the live history gives it.
        lead_id: whose entry it is, in a run of several leads (:func:`simulate_leads`);
            None in a run of one.
    """

    at: datetime
    local: str
    what: str
    why: str = ""
    lead_id: str | None = None


ControlType = Literal["pause", "resume", "reassign"]
CONTROLS: tuple[str, ...] = ("pause", "resume", "reassign")
"""Ops controls a script can give, as `leads pause|resume|reassign` would."""


class ScriptedEvent(BaseModel):
    """An event the simulated lead does (or the CRM posts), or an ops control, at a time.

    Attributes:
        at: when it happens (aware; UTC recommended).
        type: the event type (CONTRACT.md, "Leads and events"), or a control: ``pause``,
            ``resume`` (data ``why``) or ``reassign`` (data ``owner``).
        data: the event's data, e.g. ``{"step": "welcome"}`` or ``{"outcome": "no_answer"}``.
        id: the event id; default ``sim-<n>`` by position in the script. Repeating an id
            scripts a duplicate delivery, which must change nothing.
        day: with ``wall``: the event happens ``day`` days after the start on the *lead's*
            local calendar, at ``wall`` local time; :func:`simulate` resolves it in the
            lead's zone, which overrides ``at``.
        wall: the local wall time for ``day``.
    """

    at: datetime
    type: EventType | ControlType
    data: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None
    day: int | None = None
    wall: time | None = None

    def label(self) -> str:
        """The event in the SPEC's own notation, e.g. ``email.clicked@welcome``."""
        data = dict(self.data)
        if self.type == "call.completed" and "outcome" in data:
            text = f"call:{data.pop('outcome')}"
        elif self.type == "reassign" and "owner" in data:
            text = f"reassign:{data.pop('owner')}"
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


class ScriptedMigration(BaseModel):
    """Ops move the lead to another version of its cadence (`cadences migrate`) at ``at``."""

    at: datetime
    cadence: Cadence
    step_map: dict[str, str] = Field(default_factory=dict)

    def label(self) -> str:
        return f"migrate to {self.cadence.id} version {self.cadence.version}"

    def resolve(self, start: datetime, zone: ZoneInfo) -> datetime:
        return _aware(self.at)


class ScriptedPlaybook(BaseModel):
    """Ops roll a playbook out to the leads in flight (`playbook rollout`) at ``at``."""

    at: datetime
    playbook: Playbook

    def label(self) -> str:
        return f"playbook {self.playbook.version} rolled out"

    def resolve(self, start: datetime, zone: ZoneInfo) -> datetime:
        return _aware(self.at)


# --- the script --------------------------------------------------------------------------

_EXPECTED = (
    "expected 'day N [HH:MM] EVENT [key=value ...]', 'hour N EVENT ...' or "
    "'minute N EVENT ...', where EVENT is an event type (email.clicked), TYPE@STEP "
    "(email.clicked@welcome), call:OUTCOME (call:no_answer), or a control: pause, resume, "
    "reassign:OWNER"
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
        pause | resume   ops pause or resume the lead (why="..." says why)
        reassign:OWNER   ops give the lead to an SDR, e.g. reassign:ben
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
    if token in ("pause", "resume"):
        return token, {}
    if token.startswith("reassign:"):
        owner = token.partition(":")[2].strip()
        if not owner:
            bad("'reassign:' names no owner (reassign:OWNER)")
        return "reassign", {"owner": owner}
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

Scripted = ScriptedEvent | ScriptedMigration | ScriptedPlaybook
Latency = Callable[[machine.Command], timedelta]


def simulate(
    cadence_set: CadenceSet,
    cadence_id: str,
    lead: Lead | LeadFacts,
    script: list[ScriptedEvent] | list[Scripted],
    start: datetime,
    horizon: timedelta = DEFAULT_HORIZON,
    *,
    max_entries: int = MAX_ENTRIES,
    renderer: Renderer | None = None,
    latency: Latency | None = None,
) -> list[TimelineEntry]:
    """Run one lead through a cadence on a virtual clock, as the lead workflow would.

    The lead starts in ``cadence_id`` in stage ``nurturing`` and lives by the lead machine:
    scoring, MQL, toss-up, ``exit_on`` and ``until_any`` wake-ups, send windows, holidays
    and caps, the sales follow-up, loss and recycle, pause and migration, decay.

    Args:
        cadence_set: the validated playbook and cadences.
        cadence_id: the cadence to start in.
        lead: the lead; its decision fields drive the rules (``has_email=False``, or no
            address, skips every email, as live), and a full :class:`Lead` also gives the
            names its templates print.
        script: events, controls and migrations to give the lead; see :func:`parse_script`.
        start: the virtual clock's start (aware; naive means UTC).
        horizon: how far the run goes.
        max_entries: the most timeline entries (the closing ``stop`` entry included).
        renderer: renders each email and call script as the activities would; without
            one, templates are not checked.
        latency: how long a command takes live: an activity's run (a :class:`Perform`),
            how late a timer fires (a :class:`Sleep` that ends by its deadline), the start
            of the next run (a :class:`ContinueAsNew`). None: no time at all, the dry
            run's view. The conformance test passes a live run's own latencies, so the
            simulated history can be compared with the live one to the millisecond.

    Returns:
        The lead's history, in time order, ending with a ``stop`` entry that says why.

    Raises:
        KeyError: ``cadence_id`` is not in the set.
        ValueError: a scripted input before the start; a cadence the playbook routes to is
            missing; a send window that never opens.
    """
    cadence = cadence_set.cadence(cadence_id)
    run = _Simulation(
        cadence_set,
        lead,
        list(script),
        _aware(start),
        horizon,
        max(2, max_entries),
        renderer,
        latency,
    )
    return run.run(cadence)


class _Stop(Exception):
    """The run is over: horizon, entry limit, or nothing left that could happen."""

    def __init__(self, why: str, at: datetime) -> None:
        super().__init__(why)
        self.why = why
        self.at = at


# The links a simulated email carries: nothing is signed, nothing is sent.
_SIMULATED_BASE = "https://simulation.invalid"


class _Simulation:
    """The lead machine driven by a virtual clock, a script and simulated activities."""

    def __init__(
        self,
        cadence_set: CadenceSet,
        lead: Lead | LeadFacts,
        script: list[Scripted],
        start: datetime,
        horizon: timedelta,
        max_entries: int,
        renderer: Renderer | None,
        latency: Latency | None,
        accounts: SimulatedGovernor | None = None,
    ) -> None:
        self.cadence_set = cadence_set
        self.person = lead if isinstance(lead, Lead) else None
        self.facts = lead.facts() if isinstance(lead, Lead) else lead
        self.zone = timing.lead_zone(self.facts.timezone, self.facts.country)
        self.renderer = renderer
        self.now = start
        self.end = start + horizon
        self.horizon = horizon
        self.max_entries = max_entries
        self.script = self._schedule(script, start)
        self.timeline: list[TimelineEntry] = []
        self.latency = latency
        self.tasks: dict[str, str] = {}  # call task key -> id, so a retry finds its task
        self.seen: HistoryEntry | None = None  # the last history entry put in the timeline
        self.lead_id: str | None = None  # set in a run of several leads: stamped on entries
        self.accounts = accounts or SimulatedGovernor()
        self.accounts.join(self)
        self.steps = 0

    def _schedule(
        self, script: list[Scripted], start: datetime
    ) -> deque[tuple[datetime, int, Scripted]]:
        timed: list[tuple[datetime, int, Scripted]] = []
        for n, scripted in enumerate(script, start=1):
            at = scripted.resolve(start, self.zone)
            if at < start:
                raise ValueError(
                    f"scripted event {n} ({scripted.label()}) at {at:%Y-%m-%d %H:%M} UTC is before "
                    f"the start {start:%Y-%m-%d %H:%M} UTC"
                )
            timed.append((at, n, scripted))
        # sorted() is stable: inputs scripted for the same instant arrive in written order.
        return deque(sorted(timed, key=lambda item: item[0]))

    # --- the driver -----------------------------------------------------------------------

    def run(self, cadence: Cadence) -> list[TimelineEntry]:
        try:
            self.begin(cadence)
            while True:
                target = self.advance()
                if target is None:
                    raise _Stop(f"{self._doing()}; no scripted events left", self.now)
                if target > self.end:
                    raise _Stop(
                        f"horizon reached ({_span(self.horizon)}) while {self._doing()}", self.end
                    )
                self.wake(target)
        except _Stop as stop:
            self.stop(stop)
        return self.timeline

    def begin(self, cadence: Cadence) -> None:
        """Make the lead's machine and take its first command."""
        playbook = self.cadence_set.playbook
        routed, why = entry_cadence(playbook, Facts(lead=self.facts, now=self.now))
        if routed != cadence.id:
            why = f"chosen for the simulation (routing would choose {routed})"
        self.life = machine.LeadMachine(
            LeadInput(facts=self.facts, playbook=playbook, cadence=cadence, routing_reason=why)
        )
        self._deliver()
        self.command: machine.Command = self.life.start(self.now)

    def advance(self) -> datetime | None:
        """Carry out commands until the lead must wait for time to pass.

        Returns:
            When it wakes by itself: its sleep's deadline or its next scripted input,
            whichever comes first; None when neither exists.

        Raises:
            _Stop: the lead's life is over, or a limit is reached.
        """
        while True:
            self._collect()
            command = self.command
            if isinstance(command, machine.Sleep) and not self.life.has_input():
                timeout = command.timeout(self.now)
                fires = self.now + timeout if timeout is not None else None
                arrives = self.script[0][0] if self.script else None
                return min((t for t in (fires, arrives) if t is not None), default=None)
            self.steps += 1
            if self.steps > MAX_STEPS:
                raise _Stop(f"{MAX_STEPS} steps of the lead's life reached", self.now)
            self.command = self._perform(command)

    def wake(self, target: datetime) -> None:
        """Time passed to ``target``: the sleep's timer fired, or scripted input arrived."""
        sleep = self.command
        assert isinstance(sleep, machine.Sleep)
        timeout = sleep.timeout(self.now)
        fires = self.now + timeout if timeout is not None else None
        self.now = max(self.now, target)
        if target == fires:
            self._pass(sleep)  # the timer fired
        else:
            self._deliver()
        self.command = self.life.resume(now=self.now)

    def stop(self, stop: _Stop) -> None:
        """End the timeline with a ``stop`` entry saying why."""
        self._collect(limit=False)
        self.timeline.append(self._entry("stop", stop.why, stop.at))

    def _doing(self) -> str:
        return self.life.state.doing if self.life.state else "starting"

    def _perform(self, command: machine.Command) -> machine.Command:
        """Carry out one command; returns the machine's next."""
        life = self.life
        match command:
            case machine.Perform():
                result = self._answer(command)
                self._pass(command)
                return life.resume(result, now=self.now)
            case machine.Sleep():
                # Only reached with input already there: as live, such a wait returns at once.
                return life.resume(now=self.now)
            case machine.Publish():
                return life.resume(now=self.now)
            case machine.ContinueAsNew():
                # As live: the next run starts from the carried input, as serialized.
                carried = LeadInput.model_validate_json(command.input.model_dump_json())
                self.life = machine.LeadMachine(carried)
                self.seen = (
                    carried.state.history[-1] if carried.state and carried.state.history else None
                )
                self._pass(command)
                return self.life.start(self.now)
            case machine.Finish():
                raise _Stop(f"the lead is {command.stage}: its workflow completes", self.now)
        raise AssertionError(f"unknown command {command!r}")  # pragma: no cover

    def _pass(self, command: machine.Command) -> None:
        """Let the time the command takes pass, then hand over what arrived meanwhile."""
        if self.latency is not None:
            self.now += self.latency(command)
        self._deliver()

    def _deliver(self) -> None:
        """Hand every scripted input due by now to the machine, as signals are."""
        while self.script and self.script[0][0] <= self.now:
            at, n, scripted = self.script.popleft()
            if isinstance(scripted, ScriptedMigration):
                self.life.migrate(scripted.cadence, dict(scripted.step_map))
            elif isinstance(scripted, ScriptedPlaybook):
                self.life.receive_playbook(scripted.playbook)
            elif scripted.type in CONTROLS:
                self.life.control(machine.Control(scripted.type), _control_value(scripted))
            else:
                self.life.receive_event(
                    Event(
                        id=scripted.id or f"sim-{n}",
                        type=scripted.type,  # type: ignore[arg-type]
                        lead_id=self.facts.id,
                        occurred_at=at,
                        data=dict(scripted.data),
                    )
                )

    # --- simulated activities -------------------------------------------------------------

    def _answer(self, command: machine.Perform) -> Any:
        request: Any = command.input
        match command.activity:
            case am.SEND_EMAIL:
                return self._send_email(request)
            case am.CREATE_CALL_TASK:
                return self._create_call_task(request)
            case am.RESOLVE_PUBLIC_HOLIDAYS:
                return public_holidays(request)
            case am.LOAD_CADENCE:
                return self._load_cadence(request)
            case am.HANDOFF:
                # As live: a lead reaching sales without an owner gets one by the rule.
                owner = request.owner or _lone_lead_owner(self._playbook, self.facts.country)
                self.accounts.owned(request.lead_id, owner)
                return am.HandoffResult(opportunity_key=request.key, created=True, owner=owner)
            case am.RESERVE_TOUCH:
                return self.accounts.reserve(self, request)
            case am.RELEASE_ACCOUNT:
                return am.ReleaseAccountResult(told=self.accounts.release(self))
            case am.RECORD_TRANSITION:
                self.accounts.record(self, request)
        return None  # record, notify, close tasks, erase: they succeed and return nothing

    def _send_email(self, request: am.SendEmailInput) -> am.SendEmailResult:
        if self.renderer is not None:
            try:
                self.renderer.render_email(request.template, self._context(request.owner))
            except TemplateProblem as exc:
                # What the email activity records for such a send: failed, never retried.
                return am.SendEmailResult(status="failed", detail=f"template problem: {exc}")
        return am.SendEmailResult(status="sent")

    def _create_call_task(self, request: am.CallTaskInput) -> am.CallTaskResult:
        owner = request.owner or _lone_lead_owner(self._playbook, self.facts.country)
        if self.renderer is not None:
            try:
                self.renderer.render_call_script(request.script, self._context(owner))
            except TemplateProblem as exc:
                raise _Stop(
                    f"the call script of step {request.step} fails to render: {exc}; the live "
                    "lead would wait on its call task until the template is fixed",
                    self.now,
                ) from None
        task_id = self.tasks.setdefault(request.key, f"T-sim{len(self.tasks) + 1}")
        self.accounts.owned(request.lead_id, owner)
        return am.CallTaskResult(task_id=task_id, owner=owner, created=True)

    def _load_cadence(self, request: am.LoadCadenceInput) -> am.CadenceSnapshot:
        try:
            cadence = self.cadence_set.cadence(request.cadence_id)
        except KeyError:
            stage = self.life.state.stage if self.life.state else "new"
            raise ValueError(
                f"the playbook routes a {stage} lead to cadence '{request.cadence_id}', "
                "which is not in the cadence set"
            ) from None
        return am.CadenceSnapshot(cadence=cadence, playbook=self.cadence_set.playbook)

    def _context(self, owner: str | None) -> dict[str, Any]:
        """The template context the activities build, for the simulated lead as it is now."""
        state = self.life.state
        facts = state.facts if state else self.facts
        lead: dict[str, Any] = (
            self.person.model_dump()
            if self.person is not None
            else {"email": "lead@example.com" if facts.has_email else None}
        )
        lead.update(facts.model_dump(exclude={"has_email", "fields", "account"}))
        lead["fields"] = {**lead.get("fields", {}), **facts.fields}
        return {
            "lead": lead,
            "sdr": sdr_context(self._playbook, owner),
            "sender": sender_context(self._playbook),
            "unsubscribe_url": f"{_SIMULATED_BASE}/u/simulated",
            "link": lambda url: f"{_SIMULATED_BASE}/c/simulated?to={url}",
        }

    @property
    def _playbook(self) -> Playbook:
        state = self.life.state
        return state.playbook if state else self.cadence_set.playbook

    # --- the timeline ---------------------------------------------------------------------

    def _collect(self, *, limit: bool = True) -> None:
        """Put the history entries the machine wrote since the last look into the timeline."""
        state = self.life.state
        history = state.history if state else []
        first = 0
        if self.seen is not None:
            # Identity, not position: the history is bounded and drops its oldest entries.
            first = next(
                (i + 1 for i in range(len(history) - 1, -1, -1) if history[i] is self.seen), 0
            )
        for entry in history[first:]:
            if len(self.timeline) >= self.max_entries - 1:
                if limit:
                    raise _Stop(f"{self.max_entries} timeline entries reached", self.now)
                break
            self.timeline.append(self._entry(entry.what, entry.why, entry.at))
        if history:
            self.seen = history[-1]

    def _entry(self, what: str, why: str, at: datetime) -> TimelineEntry:
        local = at.astimezone(self.zone)
        stamp = f"{_DAY_NAMES[local.weekday()]} {local:%Y-%m-%d %H:%M} {local.tzname()}"
        return TimelineEntry(at=at, local=stamp, what=what, why=why, lead_id=self.lead_id)


class SimulatedGovernor:
    """The account governor of a dry run: the live reservation's facts kept in memory.

    The same pure decision (:func:`nurture.domain.governor.decide`) as the live governor
    (``nurture/services/accounts.py``), on what the leads of the run did: the touches it
    granted, per account and per person (address), and each lead's stage and owner as its
    stage changes are recorded. A lead leaving mql/sql tells its account's other leads, as
    the live release signal does.
    """

    def __init__(self) -> None:
        self.members: list[_Simulation] = []
        self.grants: dict[str, tuple[str | None, str | None, governor.Granted]] = {}
        self.stages: dict[str, tuple[str, str | None]] = {}

    def join(self, member: _Simulation) -> None:
        self.members.append(member)

    @staticmethod
    def account(member: _Simulation) -> str | None:
        person = member.person
        if person is None:
            return None
        return account_of(person.email, person.company)

    @staticmethod
    def address(member: _Simulation) -> str | None:
        person = member.person
        if person is None or not person.email:
            return None
        return address_key(person.email)

    def reserve(self, member: _Simulation, request: am.ReserveTouchInput) -> am.ReserveTouchResult:
        found = self.grants.get(request.key)
        if found is not None:
            return am.ReserveTouchResult(at=found[2].at)
        account, person = self.account(member), self.address(member)
        account_touches = [g for a, _p, g in self.grants.values() if account and a == account]
        person_touches = [g for _a, p, g in self.grants.values() if person and p == person]
        conversations = [
            governor.Conversation(lead_id=other.facts.id, stage=stage, owner=owner)
            for other in self.members
            if other is not member and account and self.account(other) == account
            for stage, owner in [self.stages.get(other.facts.id, ("nurturing", None))]
            if stage in governor.CONVERSATION_STAGES
        ]
        verdict = governor.decide(
            request.now,
            lead_id=request.lead_id,
            stage=request.stage,
            channel=request.channel,
            limits=request.limits,
            zone=timing.lead_zone(request.zone, None),
            account=account,
            account_touches=account_touches,
            person_touches=person_touches,
            conversations=conversations,
        )
        if verdict.granted:
            granted = governor.Granted(
                lead_id=request.lead_id, at=request.now, channel=request.channel
            )
            self.grants[request.key] = (account, person, granted)
        return am.ReserveTouchResult(
            at=verdict.at, reasons=verdict.reasons, conversation=verdict.conversation
        )

    def record(self, member: _Simulation, request: am.TransitionInput) -> None:
        before = self.stages.get(request.lead_id, ("nurturing", None))[1]
        self.stages[request.lead_id] = (request.to_stage, request.owner or before)

    def owned(self, lead_id: str, owner: str | None) -> None:
        """As live: a call task or a toss-up keeps the owner it gave the lead."""
        stage, before = self.stages.get(lead_id, ("nurturing", None))
        self.stages[lead_id] = (stage, owner or before)

    def release(self, member: _Simulation) -> int:
        """Tell the account's other leads in a touch stage; how many were told."""
        account = self.account(member)
        told = 0
        for other in self.members:
            if other is member or account is None or self.account(other) != account:
                continue
            stage = self.stages.get(other.facts.id, ("nurturing", None))[0]
            if stage in TOUCH_STAGES:
                other.life.release_account()
                told += 1
        return told


class SimulatedLead(BaseModel):
    """One lead of a run of several (:func:`simulate_leads`).

    Attributes:
        lead: the lead (its address and company give its account, as intake computes it).
        cadence: the cadence it starts in; None: the one the playbook's routing chooses.
        script: its own scripted events and controls.
        start: when it arrives; None: the run's start.
    """

    lead: Lead
    cadence: str | None = None
    script: list[ScriptedEvent] = Field(default_factory=list)
    start: datetime | None = None


def simulate_leads(
    cadence_set: CadenceSet,
    leads: list[SimulatedLead],
    start: datetime,
    horizon: timedelta = DEFAULT_HORIZON,
    *,
    max_entries: int = MAX_ENTRIES,
    renderer: Renderer | None = None,
) -> list[TimelineEntry]:
    """Run several leads on one virtual clock, sharing one account governor.

    What one company sees: leads of one account (the email domain, or the company for
    free-mail addresses) share ``limits.account``'s caps and gap, wait while another of
    them is in conversation (``one_conversation``), and two lead ids with one address
    count as one person. Each lead otherwise lives exactly as :func:`simulate` runs it.

    Args:
        cadence_set: the validated playbook and cadences.
        leads: the leads, each with its cadence, script and arrival.
        start: the run's start (aware; naive means UTC).
        horizon: how far the run goes.
        max_entries: the most timeline entries per lead (its ``stop`` entry included).
        renderer: renders each email and call script as the activities would.

    Returns:
        Every lead's history merged in time order (ties in the leads' order), each entry
        naming its lead (``lead_id``); each lead's last entry is its ``stop``.

    Raises:
        KeyError: a cadence is not in the set.
        ValueError: two leads share an id; a scripted input before its lead's arrival.
    """
    begin = _aware(start)
    end = begin + horizon
    ids = [item.lead.id for item in leads]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ValueError(f"lead ids must differ in one run; given twice: {', '.join(twice)}")
    accounts = SimulatedGovernor()
    waiting: list[tuple[datetime, int, _Simulation, Cadence]] = []
    for order, item in enumerate(leads):
        arrives = _aware(item.start) if item.start is not None else begin
        facts = item.lead.facts()
        if item.cadence is not None:
            cadence = cadence_set.cadence(item.cadence)
        else:
            routed, _why = entry_cadence(cadence_set.playbook, Facts(lead=facts, now=arrives))
            cadence = cadence_set.cadence(routed)
        sim = _Simulation(
            cadence_set,
            item.lead,
            list(item.script),
            arrives,
            end - arrives,
            max(2, max_entries),
            renderer,
            None,
            accounts,
        )
        sim.lead_id = item.lead.id
        waiting.append((arrives, order, sim, cadence))
    # Each lead: (when it wakes next, its order); None: it waits for input only.
    awake: dict[int, _Simulation] = {}
    clock = begin
    done: list[_Simulation] = []

    def finish(sim: _Simulation, stop: _Stop) -> None:
        sim.stop(stop)
        done.append(sim)

    while waiting or awake:
        targets: list[tuple[datetime, int]] = []
        for order, sim in list(awake.items()):
            if sim.life.has_input():
                # Woken by another lead's input (a release): it goes on at the shared clock.
                sim.now = max(sim.now, clock)
            try:
                target = sim.advance()
            except _Stop as stop:
                del awake[order]
                finish(sim, stop)
                continue
            if target is not None:
                targets.append((target, order))
        arrivals = [(at, order) for at, order, _sim, _cadence in waiting]
        nxt = min(targets + arrivals, default=None)
        if nxt is None:
            for _key, sim in sorted(awake.items(), key=lambda kv: kv[0]):
                finish(sim, _Stop(f"{sim._doing()}; no scripted events left", sim.now))
            awake.clear()
            break
        at, order = nxt
        if at > end:
            for _key, sim in sorted(awake.items(), key=lambda kv: kv[0]):
                finish(sim, _Stop(f"horizon reached ({_span(horizon)}) while {sim._doing()}", end))
            for _at, _order, sim, _cadence in waiting:
                done.append(sim)  # never arrived: nothing to show
            break
        clock = max(clock, at)
        arrived = next((w for w in waiting if w[1] == order and w[0] == at), None)
        if arrived is not None:
            waiting.remove(arrived)
            sim, cadence = arrived[2], arrived[3]
            try:
                sim.begin(cadence)
            except _Stop as stop:
                finish(sim, stop)
                continue
            awake[order] = sim
        else:
            awake[order].wake(at)
    merged = [
        (entry.at, n, i, entry)
        for n, sim in enumerate(sorted(done, key=lambda d: ids.index(d.facts.id)))
        for i, entry in enumerate(sim.timeline)
    ]
    return [entry for _at, _n, _i, entry in sorted(merged, key=lambda m: (m[0], m[1], m[2]))]


def _control_value(scripted: ScriptedEvent) -> str:
    """What the control's signal carries: the new owner, or why (the CLI's defaults)."""
    if scripted.type == "reassign":
        return str(scripted.data.get("owner") or "")
    default = "paused by ops" if scripted.type == "pause" else "resumed by ops"
    return str(scripted.data.get("why") or default)


def _lone_lead_owner(playbook: Playbook, country: str | None) -> str | None:
    """The SDR the assignment rule gives a lead with no account and no owner yet.

    Round robin in the lead's territory (``nurture.services.team.choose_owner``): with no other
    leads counted, the first SDR covering its country, else the first of the team.
    """
    pool = playbook.team.covering(country) or playbook.team.sdrs
    return pool[0].id if pool else None


def _span(delta: timedelta) -> str:
    if delta % timedelta(days=1) == timedelta(0):
        days = delta // timedelta(days=1)
        return f"{days} day{'s' if days != 1 else ''}"
    return str(delta)
