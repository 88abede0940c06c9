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

from nurture.domain import machine, timing
from nurture.domain import messages as am
from nurture.domain.cadence import Cadence, CadenceSet, Playbook
from nurture.domain.conditions import Facts
from nurture.domain.events import CALL_OUTCOMES, EVENT_TYPES, Event, EventType, Lead, LeadFacts
from nurture.domain.interpreter import entry_cadence
from nurture.domain.rendering import Renderer, TemplateProblem, sdr_context, sender_context
from nurture.domain.state import HistoryEntry, LeadInput
from nurture.services.calendars import public_holidays

__all__ = [
    "CONTROLS",
    "DEFAULT_HORIZON",
    "MAX_ENTRIES",
    "MAX_STEPS",
    "ScriptError",
    "ScriptedEvent",
    "ScriptedMigration",
    "ScriptedPlaybook",
    "TimelineEntry",
    "parse_script",
    "simulate",
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
    """

    at: datetime
    local: str
    what: str
    why: str = ""


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
        playbook = self.cadence_set.playbook
        routed, why = entry_cadence(playbook, Facts(lead=self.facts, now=self.now))
        if routed != cadence.id:
            why = f"chosen for the simulation (routing would choose {routed})"
        self.life = machine.LeadMachine(
            LeadInput(facts=self.facts, playbook=playbook, cadence=cadence, routing_reason=why)
        )
        try:
            self._deliver()
            command: machine.Command = self.life.start(self.now)
            for _ in range(MAX_STEPS):
                self._collect()
                command = self._perform(command)
            raise _Stop(f"{MAX_STEPS} steps of the lead's life reached", self.now)
        except _Stop as stop:
            self._collect(limit=False)
            self.timeline.append(self._entry("stop", stop.why, stop.at))
        return self.timeline

    def _perform(self, command: machine.Command) -> machine.Command:
        """Carry out one command; returns the machine's next."""
        life = self.life
        match command:
            case machine.Perform():
                result = self._answer(command)
                self._pass(command)
                return life.resume(result, now=self.now)
            case machine.Sleep():
                self._sleep(command)
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

    def _sleep(self, sleep: machine.Sleep) -> None:
        """Move the clock to the sleep's deadline or the next scripted input, and deliver."""
        if self.life.has_input():
            return  # as live: a wait for input that is already there returns at once
        timeout = sleep.timeout(self.now)
        fires = self.now + timeout if timeout is not None else None
        arrives = self.script[0][0] if self.script else None
        doing = self.life.state.doing if self.life.state else "starting"
        if fires is None and arrives is None:
            raise _Stop(f"{doing}; no scripted events left", self.now)
        target = min(t for t in (fires, arrives) if t is not None)
        if target > self.end:
            raise _Stop(f"horizon reached ({_span(self.horizon)}) while {doing}", self.end)
        self.now = max(self.now, target)
        if target == fires:
            self._pass(sleep)  # the timer fired
        else:
            self._deliver()

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
                return am.HandoffResult(opportunity_key=request.key, created=True, owner=owner)
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
        return TimelineEntry(at=at, local=stamp, what=what, why=why)


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
