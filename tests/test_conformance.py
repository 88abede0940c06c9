"""The simulator and the live workflow agree: the same journeys give the same history.

Each journey is a script of steps (let time pass, send an event, an ops control, a
migration). It runs through the real workflow on the time-skipping server, with the real
worker, database and SMTP sink; then the simulator runs the same script and the two
histories (``{at, what, why}``) must be equal entry for entry, times included.

Live, a step lands when the workflow receives it, and activities and workflow tasks take a
few real milliseconds each; the simulator's clock takes none by itself. So the simulator
is handed what only the live run can know, read back from the run's own Temporal history:
when each input arrived, how long each activity took, how late each timer fired, how long
a continue-as-new took to start the next run. Everything the lead machine decides (what
to do, when to wait until, what to write) is left to each driver, and compared.

Two things are the activities' own words, not the machine's, and are compared by kind: the
mail server's reply to a sent email, and the id the database gives a call task.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import write_cadence_set
from harness import running
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from test_journeys import CADENCES as JOURNEY_CADENCES
from test_journeys import PLAYBOOK, TEMPLATES
from test_public_holidays import next_japan_only_holiday

from nurture.adapters.loader import load_cadence_set
from nurture.domain.cadence import Cadence, CadenceSet, Playbook
from nurture.domain.events import Event, Lead
from nurture.domain.machine import Command, ContinueAsNew, Perform, Sleep
from nurture.domain.names import (
    SIGNAL_EVENT,
    SIGNAL_MIGRATE,
    SIGNAL_PAUSE,
    SIGNAL_PLAYBOOK,
    SIGNAL_REASSIGN,
    SIGNAL_RESUME,
    workflow_id,
)
from nurture.domain.rendering import Renderer
from nurture.domain.state import HistoryEntry, LeadInput
from nurture.services.simulate import (
    ScriptedEvent,
    ScriptedMigration,
    ScriptedPlaybook,
    TimelineEntry,
    simulate,
)

# The journeys' set, with an inbound cadence that also branches on a click.
CADENCES = {
    **JOURNEY_CADENCES,
    "inbound": """
        id: inbound
        name: Inbound
        exit_on: [email.replied]
        steps:
          - {id: welcome, type: email, template: welcome/hello}
          - {id: pause, type: wait, duration: 2d, until_any: [email.clicked]}
          - id: engaged
            type: branch
            cases:
              - when: {event: email.clicked, step: welcome}
                goto: thanks
            default: nudge
          - {id: nudge, type: email, template: welcome/follow-up}
          - {id: rest, type: wait, duration: 10d}
          - {id: last, type: email, template: welcome/last, next: end}
          - {id: thanks, type: email, template: welcome/renewal}
    """,
}

_ids = itertools.count(1)


def send(lead_id: str, kind: str, **data: object) -> tuple[str, list[Any]]:
    event = Event(id=f"conf-{next(_ids)}", type=kind, lead_id=lead_id, data=data)  # type: ignore[arg-type]
    return (SIGNAL_EVENT, [event])


# --- the live run, and what only it can know ------------------------------------------------


async def parked(client: Client, lead_id: str, timeout: float = 60.0) -> None:
    """Wait (real time) until the lead's workflow has nothing in progress: no workflow task
    and no activity pending, or its run closed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    request = DescribeWorkflowExecutionRequest(
        namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id(lead_id))
    )
    while True:
        raw = await client.workflow_service.describe_workflow_execution(request)
        running_now = (
            raw.workflow_execution_info.status
            == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
        )
        if not running_now or (
            not raw.pending_activities and not raw.HasField("pending_workflow_task")
        ):
            return
        if loop.time() > deadline:
            raise AssertionError(f"lead {lead_id} is still busy: {raw.pending_activities}")
        await asyncio.sleep(0.05)


async def runs_of(client: Client, lead_id: str) -> list[WorkflowHistory]:
    """Every run of the lead's workflow, oldest first."""
    runs = []
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(
            workflow_id(lead_id), run_id=run_id
        ).fetch_history()
        runs.append(history)
        started = history.events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            return list(reversed(runs))
        run_id = started.continued_execution_run_id


@dataclass
class LiveTimings:
    """What the live run's Temporal history says about time, in the machine's terms."""

    start: datetime
    inputs: list[tuple[datetime, str, list[Any]]] = field(default_factory=list)
    activities: deque[tuple[str, timedelta]] = field(default_factory=deque)
    timers: deque[timedelta] = field(default_factory=deque)
    restarts: deque[timedelta] = field(default_factory=deque)

    def latency(self, command: Command) -> timedelta:
        """The simulator's ``latency``: the live run's, in order."""
        match command:
            case Perform():
                assert self.activities, f"the live run performed no more activities: {command}"
                activity, took = self.activities.popleft()
                assert activity == command.activity, (activity, command.activity)
                return took
            case Sleep():
                return self.timers.popleft() if self.timers else timedelta(0)
            case ContinueAsNew():
                return self.restarts.popleft() if self.restarts else timedelta(0)
        return timedelta(0)


_SIGNAL_TYPES: dict[str, list[type]] = {
    SIGNAL_EVENT: [Event],
    SIGNAL_PAUSE: [str],
    SIGNAL_RESUME: [str],
    SIGNAL_REASSIGN: [str],
    SIGNAL_MIGRATE: [Cadence, dict],
    SIGNAL_PLAYBOOK: [Playbook],
}


def _decode(payloads: Any, types: list[type]) -> list[Any]:
    return pydantic_data_converter.payload_converter.from_payloads(list(payloads), types)


def live_timings(runs: list[WorkflowHistory]) -> LiveTimings:
    """Read the times the machine saw out of the runs' histories.

    The machine's clock is the start of the workflow task it runs in; so an input arrives
    at the first workflow task after its signal, an activity takes from the task that
    scheduled it to the first task after it completed, a timer is late by what passes
    beyond its timeout between the task that started it and the first task after it fired.
    """
    first_task = next(e for e in runs[0].events if e.HasField(_TASK_STARTED))
    timings = LiveTimings(start=_time(first_task))
    continued_at: datetime | None = None
    for history in runs:
        given = history.events[0].workflow_execution_started_event_attributes.input
        state = _lead_input(given).state
        stage_before = state.stage if state else "nurturing"
        started: datetime | None = None  # the machine's "now": its task's start
        due: list[tuple[str, Any]] = []  # what the next task's start settles
        scheduled: dict[int, tuple[int, datetime]] = {}
        timers: dict[str, tuple[datetime, timedelta]] = {}
        for event in history.events:
            kind = event.WhichOneof("attributes")
            if kind == _TASK_STARTED:
                at = _time(event)
                if started is None and continued_at is not None:
                    timings.restarts.append(at - continued_at)
                    continued_at = None
                for what, value in due:
                    if what == "activity":
                        slot, since = value
                        timings.activities[slot] = (timings.activities[slot][0], at - since)
                    elif what == "timer":
                        since, timeout = value
                        timings.timers.append(at - since - timeout)
                    else:
                        timings.inputs.append((at, *value))
                due.clear()
                started = at
            elif kind == "activity_task_scheduled_event_attributes":
                assert started is not None
                name = event.activity_task_scheduled_event_attributes.activity_type.name
                timings.activities.append((name, timedelta(0)))
                scheduled[event.event_id] = (len(timings.activities) - 1, started)
            elif kind == "activity_task_completed_event_attributes":
                done = event.activity_task_completed_event_attributes
                due.append(("activity", scheduled[done.scheduled_event_id]))
            elif kind == "timer_started_event_attributes":
                assert started is not None
                timer = event.timer_started_event_attributes
                timers[timer.timer_id] = (started, timer.start_to_fire_timeout.ToTimedelta())
            elif kind == "timer_fired_event_attributes":
                due.append(("timer", timers[event.timer_fired_event_attributes.timer_id]))
            elif kind == "workflow_execution_signaled_event_attributes":
                signal = event.workflow_execution_signaled_event_attributes
                args = _decode(signal.input.payloads, _SIGNAL_TYPES[signal.signal_name])
                due.append(("input", (signal.signal_name, args)))
            elif kind == "workflow_execution_continued_as_new_event_attributes":
                carried = _lead_input(
                    event.workflow_execution_continued_as_new_event_attributes.input
                )
                # Only a stage boundary continues as new in the simulator too; a run that grew
                # long does so only live, and the lead's history does not show it.
                if carried.state is not None and carried.state.stage != stage_before:
                    continued_at = started
    return timings


_TASK_STARTED = "workflow_task_started_event_attributes"


def _time(event: Any) -> datetime:
    return event.event_time.ToDatetime().replace(tzinfo=UTC)


def _lead_input(payloads: Any) -> LeadInput:
    return _decode(payloads.payloads, [LeadInput])[0]


def scripted(
    inputs: list[tuple[datetime, str, list[Any]]],
) -> list[ScriptedEvent | ScriptedMigration | ScriptedPlaybook]:
    """The live run's inputs, at the times it received them, as a simulator script."""
    script: list[ScriptedEvent | ScriptedMigration | ScriptedPlaybook] = []
    for at, name, args in inputs:
        if name == SIGNAL_EVENT:
            event: Event = args[0]
            script.append(ScriptedEvent(at=at, type=event.type, data=event.data, id=event.id))
        elif name == SIGNAL_MIGRATE:
            script.append(ScriptedMigration(at=at, cadence=args[0], step_map=args[1]))
        elif name == SIGNAL_PLAYBOOK:
            script.append(ScriptedPlaybook(at=at, playbook=args[0]))
        elif name == SIGNAL_REASSIGN:
            script.append(ScriptedEvent(at=at, type="reassign", data={"owner": args[0]}))
        else:
            script.append(ScriptedEvent(at=at, type=name, data={"why": args[0]}))  # type: ignore[arg-type]
    return script


# --- comparing ------------------------------------------------------------------------------

_TASK_ID = re.compile(r"\bT-(?:sim\d+|[0-9a-f]{10})\b")
_MAIL_REPLY = "(the mail server's reply)"


def comparable(entries: list[HistoryEntry] | list[TimelineEntry]) -> list[tuple[str, str, str]]:
    """Entries as (at, what, why), with task ids numbered by first appearance and the mail
    server's reply to a sent email set aside (the activities' words, not the machine's)."""
    tasks: dict[str, str] = {}

    def numbered(text: str) -> str:
        return _TASK_ID.sub(lambda m: tasks.setdefault(m.group(), f"task#{len(tasks) + 1}"), text)

    rows = []
    for entry in entries:
        what, why = numbered(entry.what), numbered(entry.why)
        if what.endswith(": sent"):
            why = _MAIL_REPLY
        rows.append((entry.at.astimezone(UTC).isoformat(timespec="milliseconds"), what, why))
    return rows


@dataclass
class Both:
    """A journey's two histories, comparable, and what the live run was made of."""

    live: list[tuple[str, str, str]]
    simulated: list[tuple[str, str, str]]
    runs: int

    def whats(self) -> list[str]:
        return [what for _, what, _ in self.live]


# A step of a journey: let time pass; send one signal (name, arguments); or drive the lead
# with a coroutine that is given a function to send signals with.
Signal = Callable[[str, list[Any]], Awaitable[None]]
Step = timedelta | tuple[str, list[Any]] | Callable[[WorkflowHandle, Signal], Awaitable[None]]


async def through_both(
    time_env: Any,
    stack: Any,
    cadence_set: CadenceSet,
    renderer: Renderer,
    lead: Lead,
    steps: list[Step],
) -> Both:
    """Run ``steps`` live, then the same inputs in the simulator; returns both histories."""
    client = time_env.client
    lead_id = lead.id
    handle = await stack.add_lead(**lead.model_dump(exclude_none=True))
    sent: list[tuple[str, list[Any]]] = []

    async def signal(name: str, args: list[Any]) -> None:
        await handle.signal(name, args=args)
        sent.append((name, args))

    await parked(client, lead_id)
    for step in steps:
        if isinstance(step, timedelta):
            await time_env.sleep(step)
        elif isinstance(step, tuple):
            await signal(*step)
        else:
            await step(handle, signal)
        await parked(client, lead_id)
    end = await time_env.get_current_time()
    live = (await stack.view(lead_id)).history
    runs = await runs_of(client, lead_id)
    timings = live_timings(runs)
    assert [(name, args) for _, name, args in timings.inputs] == sent
    simulated = simulate(
        cadence_set,
        cadence_set.playbook.routing.entry[0].cadence,
        lead,
        scripted(timings.inputs),
        timings.start,
        end - timings.start,
        renderer=renderer,
        latency=timings.latency,
    )
    assert simulated[-1].what == "stop"
    assert not timings.activities, f"activities the simulator never asked for: {timings.activities}"
    return Both(comparable(live), comparable(simulated[:-1]), len(runs))


@pytest.fixture
def journey(time_env, make_settings, smtp_sink, tmp_path):  # type: ignore[no-untyped-def]
    """Run a journey of a lead through both drivers: ``await journey(lead, steps)``."""

    async def run(
        lead: Lead, steps: list[Step], playbook: str = PLAYBOOK, cadences: dict[str, str] = CADENCES
    ) -> Both:
        folders = write_cadence_set(tmp_path / "set", playbook, cadences, TEMPLATES)
        settings = make_settings(cadences_dir=folders[0], templates_dir=folders[1])
        cadence_set, renderer = load_cadence_set(*folders), Renderer(folders[1])
        async with running(time_env.client, settings) as stack:
            return await through_both(time_env, stack, cadence_set, renderer, lead, steps)

    return run


# --- the journeys ---------------------------------------------------------------------------


async def test_the_default_path(journey):
    lead = Lead(id="CF-1", email="ada@example.com", first_name="Ada", country="US")
    both = await journey(lead, [timedelta(days=2, hours=1), timedelta(days=11)])
    assert both.whats()[2:] == [
        "email welcome: sent",
        "branch",
        "email nudge: sent",
        "email last: sent",
        "cadence ended",
    ]
    assert both.live == both.simulated


async def test_an_early_wake_up_and_a_branch_on_the_click(journey):
    lead = Lead(id="CF-2", email="bo@example.com", first_name="Bo", country="JP")
    both = await journey(
        lead,
        [timedelta(hours=5), send(lead.id, "email.clicked", step="welcome"), timedelta(days=1)],
    )
    assert both.whats()[3:] == [
        "score 5",
        "wait pause ended early",
        "branch",  # engaged: email.clicked on welcome -> thanks
        "email thanks: sent",
        "cadence ended",
    ]
    assert both.live == both.simulated


async def test_unsubscribe_mid_cadence(journey, smtp_sink):
    lead = Lead(id="CF-3", email="cy@example.com", country="US")
    both = await journey(
        lead,
        [
            timedelta(hours=3),
            send(lead.id, "lead.unsubscribed"),
            timedelta(days=2),
            timedelta(days=11),
        ],
    )
    assert both.whats()[3:] == [
        "unsubscribed",
        "branch",
        "email nudge skipped",
        "email last skipped",
        "cadence ended",
    ]
    assert len(smtp_sink.messages) == 1
    assert both.live == both.simulated


async def test_mql_call_outcome_toss_up_loss_decay_and_recycle(journey):
    lead = Lead(
        id="CF-4", email="di@bigco.example", country="US", employees=5000, industry="finance"
    )
    both = await journey(
        lead,
        [
            timedelta(hours=2),
            send(lead.id, "page.visited", url="/pricing"),  # 12 points: MQL
            timedelta(hours=3),
            send(lead.id, "call.completed", outcome="no_answer"),
            timedelta(days=1),
            send(lead.id, "call.completed", outcome="qualified"),  # toss-up
            timedelta(days=15),  # the sales follow-up is overdue after 14 days
            send(lead.id, "opportunity.lost", reason="Competitor"),
            timedelta(days=181),  # decay on the way; recycles after 180 days
            timedelta(days=8),
        ],
    )
    whats = both.whats()
    for expected in (
        "stage nurturing -> mql",
        "call task task#1 for ben",
        "call outcome: no_answer",
        "email missed: sent",
        "stage mql -> sql",
        "sales follow-up overdue",
        "stage sql -> lost",
        "score 2",  # decay: 12 -> 2 -> 0
        "stage lost -> recycling",
        "email renewal: sent",
    ):
        assert expected in whats, (expected, whats)
    assert both.runs == 5  # continued as new at mql, sql, lost and recycling
    assert both.live == both.simulated


async def test_a_hand_raiser_reaches_sales_and_gets_an_owner(journey):
    lead = Lead(id="CF-9", email="fe@example.com", country="JP")
    both = await journey(
        lead,
        [
            timedelta(hours=2),
            send(lead.id, "form.submitted", form="demo"),  # a hand-raiser: no call task first
            timedelta(days=15),  # the sales follow-up is overdue after 14 days
        ],
    )
    whats = both.whats()
    for expected in ("stage nurturing -> mql", "stage mql -> sql", "owner aiko"):
        assert expected in whats, (expected, whats)
    assert whats.index("owner aiko") > whats.index("stage mql -> sql")
    assert both.live == both.simulated


async def test_pause_reassign_and_resume(journey):
    lead = Lead(id="CF-5", email="ed@example.com", country="US")
    both = await journey(
        lead,
        [
            timedelta(hours=1),
            (SIGNAL_PAUSE, ["customer asked for a break"]),
            timedelta(days=3),  # the wait ends; the paused lead's email waits
            send(lead.id, "email.opened"),
            (SIGNAL_REASSIGN, ["aiko"]),
            (SIGNAL_RESUME, ["break over"]),
            timedelta(days=1),
        ],
    )
    assert both.whats()[3:8] == ["paused", "branch", "score 1", "owner aiko", "resumed"]
    assert "email nudge: sent" in both.whats()
    assert both.live == both.simulated


async def test_a_migration(journey, tmp_path):
    lead = Lead(id="CF-6", email="fay@example.com", country="US")
    old = load_cadence_set(*write_cadence_set(tmp_path / "v1", PLAYBOOK, CADENCES, TEMPLATES))
    body = old.cadence("inbound").model_dump(mode="json", by_alias=True)
    for step in body["steps"]:
        if step["id"] == "pause":
            step["id"] = "breather"
    renamed = Cadence.model_validate(body)
    both = await journey(
        lead,
        [
            timedelta(hours=1),
            (SIGNAL_MIGRATE, [renamed, {"pause": "breather"}]),
            timedelta(days=3),
        ],
    )
    assert both.whats()[3] == f"migrated to inbound version {renamed.version}"
    assert "email nudge: sent" in both.whats()
    assert both.live == both.simulated


LOOP = """
    id: loop
    name: A touch every hour, for ever
    steps:
      - {id: tick, type: email, template: welcome/follow-up}
      - {id: gap, type: wait, duration: 1h, next: tick}
"""


async def test_continue_as_new_on_a_long_history_changes_nothing(journey, smtp_sink):
    lead = Lead(id="CF-7", email="gus@example.com", country="US")
    playbook = PLAYBOOK.replace("- cadence: inbound", "- cadence: loop")
    # Hourly touches lengthen the history until the run continues as new on its own count,
    # in the middle of the cadence, with its visits carried over.
    both = await journey(lead, [timedelta(hours=150)], playbook, {**CADENCES, "loop": LOOP})
    assert both.runs >= 2
    sent = [what for what in both.whats() if what == "email tick: sent"]
    # One an hour (each hour starts after the last send, so the 151st is a moment too late).
    assert len(sent) == len(smtp_sink.messages) >= 140
    assert len({m["Message-ID"] for m in smtp_sink.messages}) == len(sent)  # a key a visit
    assert both.live == both.simulated


WINDOWED = PLAYBOOK.replace(
    'send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}',
    'send_window: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:00"}\n'
    "      min_gap_between_touches: 20h",
)


async def test_humane_holds_in_the_leads_zone(journey, time_env):
    assert WINDOWED != PLAYBOOK
    # From a Saturday noon UTC, whatever the hour the suite runs at: the first email waits
    # for Monday morning in Tokyo.
    now = await time_env.get_current_time()
    days = (5 - now.weekday()) % 7 or 7
    saturday = (now + timedelta(days=days)).replace(hour=12, minute=0, second=0, microsecond=0)
    await time_env.sleep(saturday - now)
    lead = Lead(id="CF-8", email="hana@example.jp", country="JP")
    both = await journey(lead, [timedelta(days=3), timedelta(days=3), timedelta(days=11)], WINDOWED)
    whats = both.whats()
    assert whats[2].startswith("email welcome deferred to ")
    assert "email welcome: sent" in whats and "email last: sent" in whats
    assert both.live == both.simulated


async def test_a_playbook_rollout_regrades_and_replans_a_held_touch(journey, time_env, tmp_path):
    # The welcome waits for Monday morning in Tokyo under the weekday window; two hours in,
    # ops roll out a playbook that opens every day and weighs company size more.
    now = await time_env.get_current_time()
    days = (5 - now.weekday()) % 7 or 7
    saturday = (now + timedelta(days=days)).replace(hour=12, minute=0, second=0, microsecond=0)
    await time_env.sleep(saturday - now)
    rolled = PLAYBOOK.replace(
        "- when: {field: employees, at_least: 1000}\n          points: 30",
        "- when: {field: employees, at_least: 1000}\n          points: 50",
    )
    assert rolled != PLAYBOOK
    playbook = load_cadence_set(
        *write_cadence_set(tmp_path / "rolled", rolled, JOURNEY_CADENCES, TEMPLATES)
    ).playbook
    lead = Lead(id="CF-10", email="rin@example.jp", country="JP", employees=2000)
    both = await journey(
        lead, [timedelta(hours=2), (SIGNAL_PLAYBOOK, [playbook]), timedelta(hours=1)], WINDOWED
    )
    whats = both.whats()
    assert whats[2].startswith("email welcome deferred to ")
    applied = whats.index(f"playbook {playbook.version} applied")
    assert whats[applied + 1] == "email welcome: sent"  # at once: the hold was planned again
    why = both.live[applied][2]
    assert "grading.rules changed" in why and "grade C -> B" in why
    assert "limits.send_window.days changed" in why
    assert both.live == both.simulated


async def test_call_back_later_makes_a_new_task_due_then(journey, time_env):
    lead = Lead(id="CF-11", email="eli@bigco.example", country="US", timezone="America/Chicago")
    start = await time_env.get_current_time()
    # Two days on, 10:00 in Chicago (the lead's own time: no offset given).
    day = (start + timedelta(days=2)).astimezone(ZoneInfo("America/Chicago")).date()
    asked = f"{day.isoformat()}T10:00"
    both = await journey(
        lead,
        [
            timedelta(hours=2),
            send(lead.id, "page.visited", url="/pricing"),  # MQL: a call task
            timedelta(hours=1),
            send(lead.id, "call.completed", outcome="call_back_later", callback=asked),
            timedelta(days=5),  # the callback's outcome never comes
        ],
    )
    whats = both.whats()
    called_back = [w for w in whats if w.startswith("call back first-call at ")]
    assert len(called_back) == 1
    ten_in_chicago = datetime.fromisoformat(asked).replace(tzinfo=ZoneInfo("America/Chicago"))
    assert called_back[0].endswith(ten_in_chicago.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    after = whats[whats.index(called_back[0]) + 1 :]
    assert after[0].startswith("call task task#2 for ben")
    assert "no call outcome for first-call" in after
    assert both.live == both.simulated


ESCALATING = PLAYBOOK.replace(
    "      call_due: 1d\n",
    "      call_due: 1d\n      escalation: {after: 4h, to: next_sdr}\n",
)


async def test_an_overdue_call_task_is_escalated_to_the_next_sdr(journey):
    assert ESCALATING != PLAYBOOK
    lead = Lead(id="CF-12", email="flo@bigco.example", country="US")
    both = await journey(
        lead,
        [
            timedelta(hours=2),
            send(lead.id, "page.visited", url="/pricing"),  # MQL: a call task for ben
            timedelta(days=3),  # due after 1 day; still open 4 hours later
        ],
        ESCALATING,
    )
    whats = both.whats()
    assert "call task task#1 for ben" in whats
    escalated = whats.index("call task task#1 escalated to aiko")
    assert whats[escalated + 1] == "owner aiko"
    assert "still open 4h past due with ben; told ben, aiko" in both.live[escalated][2]
    assert "no call outcome for first-call" in whats[escalated:]
    assert both.live == both.simulated


async def test_an_out_of_office_holds_touches_until_the_stated_day(journey, time_env):
    lead = Lead(id="CF-13", email="oof@example.jp", country="JP")
    start = await time_env.get_current_time()
    back = (start + timedelta(days=5)).astimezone(ZoneInfo("Asia/Tokyo")).date()
    both = await journey(
        lead,
        [
            timedelta(hours=3),
            send(lead.id, "email.auto_replied", step="welcome", until=back.isoformat()),
            timedelta(days=2, hours=1),  # the pause ends: the nudge waits for the return
            timedelta(days=11),
        ],
    )
    whats = both.whats()
    assert f"out of office until {back.isoformat()}" in whats
    held = f"email nudge held: out of office until {back.isoformat()}"
    assert held in whats
    assert whats.index(held) < whats.index("email nudge: sent")
    sent_at = both.live[whats.index("email nudge: sent")][0]
    back_start = datetime(back.year, back.month, back.day, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert datetime.fromisoformat(str(sent_at)) >= back_start
    # Not a reply and not engagement: no points, the cadence goes on.
    assert not any(w.startswith("score") for w in whats)
    assert "cadence stopped" not in whats
    assert both.live == both.simulated


async def test_a_reply_tells_the_owner(journey):
    lead = Lead(id="CF-14", email="ivy@bigco.example", country="US")
    both = await journey(
        lead,
        [
            timedelta(hours=2),
            send(lead.id, "page.visited", url="/pricing"),  # MQL: a call task for ben
            timedelta(hours=1),
            send(lead.id, "email.replied", step="welcome", cadence="inbound"),
            timedelta(days=3),
        ],
    )
    whats = both.whats()
    told = whats.index("told ben: the lead replied to welcome")
    assert whats.index("call task task#1 for ben") < told
    assert whats[told - 1].startswith("score ")  # scored first, then the owner is told
    assert both.live == both.simulated


async def test_a_public_holiday_of_the_leads_country_holds_its_touch(journey, time_env):
    # From 09:00 in Tokyo on a Japanese public holiday: the welcome waits for the next day,
    # and both drivers name the holiday (resolved by an activity live, by the same service
    # function in the simulator).
    now = await time_env.get_current_time()
    holiday = next_japan_only_holiday(now.astimezone(ZoneInfo("Asia/Tokyo")).date())
    start = datetime.combine(holiday, datetime.min.time(), tzinfo=UTC)
    await time_env.sleep(start - now)
    playbook = WINDOWED.replace(
        "min_gap_between_touches: 20h", "min_gap_between_touches: 20h\n      public_holidays: true"
    )
    assert playbook != WINDOWED
    lead = Lead(id="CF-24", email="aki@example.jp", country="JP")
    both = await journey(lead, [timedelta(days=2), timedelta(days=5)], playbook)
    whats = both.whats()
    held = next(i for i, what in enumerate(whats) if what.startswith("email welcome deferred"))
    assert (
        both.live[held][2].startswith("public holiday in JP (")
        and holiday.isoformat() in (both.live[held][2])
    )
    assert "email welcome: sent" in whats
    assert both.live == both.simulated


ACCOUNT_PLAYBOOK = PLAYBOOK.replace(
    "    limits:\n",
    "    limits:\n      account:\n        min_gap_between_touches: 3d\n        one_conversation: true\n",
)


async def test_a_lead_under_the_account_governor(journey):
    # The account's gap (3 days) holds the nudge past the cadence's 2-day pause; leaving
    # sales tells the account's other leads (none here) that the conversation is over.
    assert ACCOUNT_PLAYBOOK != PLAYBOOK
    lead = Lead(id="CF-20", email="ann@initech.example", country="US")
    both = await journey(
        lead,
        [
            timedelta(days=4),
            send("CF-20", "form.submitted", form="demo"),
            send("CF-20", "opportunity.lost", reason="no budget"),
            timedelta(days=1),
        ],
        ACCOUNT_PLAYBOOK,
    )
    whats = both.whats()
    deferred = next(w for w in whats if w.startswith("email nudge deferred to "))
    assert whats.index(deferred) < whats.index("email nudge: sent")
    nudge = next(row for row in both.live if row[1] == deferred)
    assert nudge[2].startswith("initech.example: last touch 2d ago; minimum gap 3d")
    assert "stage sql -> lost" in whats
    assert both.live == both.simulated
