"""The lead machine on its own: commands out, results in, no server and no clock.

What Temporal replays is the order of the machine's commands, so these tests pin it where
it matters, and check the rules that only the machine applies (an erase merged into a
do-not-contact, a paused touch, what a continue-as-new carries).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import write_cadence_set

from nurture.adapters.loader import load_cadence_set
from nurture.domain import messages as am
from nurture.domain.cadence import CadenceSet
from nurture.domain.events import Event, LeadFacts
from nurture.domain.machine import (
    Command,
    ContinueAsNew,
    Control,
    Finish,
    LeadMachine,
    Perform,
    Publish,
    Sleep,
)
from nurture.domain.state import LeadInput

START = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
LEAD = LeadFacts(id="L-1", country="US", timezone="America/New_York", has_email=True)


@pytest.fixture(scope="module")
def cadence_set(tmp_path_factory: pytest.TempPathFactory) -> CadenceSet:
    return load_cadence_set(*write_cadence_set(Path(tmp_path_factory.mktemp("set"))))


class Driver:
    """Drives a machine as a driver must: every activity answered, time moved by sleeps."""

    def __init__(self, cadence_set: CadenceSet) -> None:
        self.cadence_set = cadence_set
        self.now = START
        self.machine = LeadMachine(
            LeadInput(
                facts=LEAD,
                playbook=cadence_set.playbook,
                cadence=cadence_set.cadence("welcome"),
                routing_reason="routing: default entry",
            )
        )
        self.log: list[Command] = []
        self.on_perform: Callable[[Perform], None] | None = None
        self.command = self.machine.start(self.now)

    def until_sleep(self, *, history_long: bool = False) -> Sleep | ContinueAsNew | Finish:
        """Answer commands until the machine sleeps (or its run ends)."""
        while True:
            command = self.command
            self.log.append(command)
            match command:
                case Sleep() | ContinueAsNew() | Finish():
                    return command
                case Perform():
                    result = self.answer(command)
                case _:
                    result = None
            self.command = self.machine.resume(result, now=self.now, history_long=history_long)

    def wake(self, at: datetime, *, history_long: bool = False) -> None:
        self.now = at
        self.command = self.machine.resume(now=at, history_long=history_long)

    def answer(self, command: Perform) -> object:
        if self.on_perform is not None:
            self.on_perform(command)
        match command.activity:
            case am.SEND_EMAIL:
                return am.SendEmailResult(status="sent")
            case am.HANDOFF:
                return am.HandoffResult(opportunity_key="k", created=True)
        return None

    def activities(self) -> list[str]:
        return [c.activity for c in self.log if isinstance(c, Perform)]


def test_a_new_lead_records_sends_and_sleeps_in_this_order(cadence_set: CadenceSet) -> None:
    driver = Driver(cadence_set)
    sleep = driver.until_sleep()
    # The order of activities and publishes is what recorded histories replay.
    assert [type(c).__name__ if not isinstance(c, Perform) else c.activity for c in driver.log] == [
        "Publish",  # the cadence entered
        am.RECORD_TRANSITION,
        "Publish",  # doing: sending
        am.SEND_EMAIL,
        "Publish",  # doing: waiting
        "Publish",  # the wait begins
        "Sleep",
    ]
    assert sleep == Sleep(START + timedelta(days=2), "step pause: wait 2d")
    assert sleep.timeout(START) == timedelta(days=2)
    email = next(c for c in driver.log if isinstance(c, Perform) and c.activity == am.SEND_EMAIL)
    assert email.input.key == "L-1|0|welcome|hello|1"  # type: ignore[attr-defined]
    assert email.summary == "email welcome/hello (step hello, visit 1)"


def test_a_sleep_never_asks_for_less_than_a_second() -> None:
    assert Sleep(START, "due").timeout(START + timedelta(hours=1)) == timedelta(seconds=1)
    assert Sleep(None, "resting").timeout(START) is None


def test_an_erase_after_a_do_not_contact_still_erases(cadence_set: CadenceSet) -> None:
    driver = Driver(cadence_set)
    driver.until_sleep()
    for kind in ("lead.do_not_contact", "lead.erased"):
        driver.machine.receive_event(Event(id=kind, type=kind, lead_id="L-1"))
    assert driver.machine.has_input()
    driver.wake(START + timedelta(hours=1))
    assert driver.until_sleep() == Finish("closed")
    assert am.ERASE_LEAD in driver.activities()
    assert driver.machine.view().stage == "closed"  # type: ignore[union-attr]


def test_a_paused_lead_holds_its_touch_until_resumed(cadence_set: CadenceSet) -> None:
    driver = Driver(cadence_set)
    driver.until_sleep()
    driver.machine.control(Control.PAUSE, "holiday")
    driver.wake(START + timedelta(hours=1))
    assert driver.until_sleep() == Sleep(START + timedelta(days=2), "step pause: wait 2d")
    driver.wake(START + timedelta(days=2))
    held = driver.until_sleep()
    assert held == Sleep(None, "paused before follow-up")
    assert driver.activities().count(am.SEND_EMAIL) == 1
    driver.machine.control(Control.RESUME, "back")
    driver.wake(START + timedelta(days=3))
    driver.until_sleep()
    assert driver.activities().count(am.SEND_EMAIL) == 2
    whats = [h.what for h in driver.machine.view().history]  # type: ignore[union-attr]
    assert whats[-3:] == ["resumed", "email follow-up: sent", "cadence ended"]


def test_a_long_history_applies_what_came_then_continues_as_new(cadence_set: CadenceSet) -> None:
    driver = Driver(cadence_set)
    driver.until_sleep()
    driver.machine.receive_event(Event(id="e-1", type="email.opened", lead_id="L-1"))
    driver.machine.control(Control.REASSIGN, "ben")
    driver.wake(START + timedelta(hours=1), history_long=True)
    carried = driver.until_sleep(history_long=True)
    assert isinstance(carried, ContinueAsNew)
    state = carried.input.state
    assert state is not None and state.owner == "ben" and state.score == 1
    assert not state.inbox and state.migration is None
    # The next run starts from exactly this, and goes on waiting until the same time.
    next_run = LeadMachine(LeadInput.model_validate_json(carried.input.model_dump_json()))
    command = next_run.start(START + timedelta(hours=1))
    while isinstance(command, Publish):
        command = next_run.resume(now=START + timedelta(hours=1))
    assert command == Sleep(START + timedelta(days=2), "step pause: wait 2d")


def test_what_arrives_during_a_stage_change_travels_to_the_next_run(
    cadence_set: CadenceSet,
) -> None:
    driver = Driver(cadence_set)
    driver.until_sleep()
    late = Event(id="e-2", type="email.opened", lead_id="L-1")
    new_version = cadence_set.cadence("welcome").model_copy(update={"name": "Welcome v2"})

    def meanwhile(command: Perform) -> None:
        if command.activity == am.HANDOFF:  # input given while the toss-up is performed
            driver.machine.receive_event(late)
            driver.machine.control(Control.PAUSE, "holiday")
            driver.machine.migrate(new_version, {})

    driver.on_perform = meanwhile
    driver.machine.receive_event(Event(id="e-1", type="meeting.booked", lead_id="L-1"))
    driver.wake(START + timedelta(hours=1))
    carried = driver.until_sleep()
    assert isinstance(carried, ContinueAsNew)
    assert driver.activities()[-4:] == [
        am.RECORD_TRANSITION,  # nurturing -> mql, passed on the way
        am.RECORD_TRANSITION,  # mql -> sql
        am.CLOSE_CALL_TASKS,
        am.HANDOFF,
    ]
    state = carried.input.state
    assert state is not None and state.stage == "sql"
    # Events travel as they are, controls are applied, a migration travels as a request.
    assert state.inbox == [late] and state.paused
    assert state.migration is not None and state.migration.cadence == new_version


def _reply(driver: Driver, event_id: str, owner: str) -> list[Perform]:
    """The lead (now owned by ``owner``) replies to its welcome; the notices it caused."""
    driver.machine.control(Control.REASSIGN, owner)
    driver.wake(driver.now + timedelta(minutes=1))
    driver.until_sleep()
    driver.machine.receive_event(
        Event(id=event_id, type="email.replied", lead_id="L-1", data={"step": "hello"})
    )
    before = len(driver.log)
    driver.wake(driver.now + timedelta(hours=1))
    driver.until_sleep()
    return [c for c in driver.log[before:] if isinstance(c, Perform) and c.activity == am.NOTIFY]


def test_a_reply_tells_the_owner_once_with_ids_only(cadence_set: CadenceSet) -> None:
    driver = Driver(cadence_set)
    driver.until_sleep()
    [notice] = _reply(driver, "r-1", "ben")
    sent = notice.input
    assert isinstance(sent, am.NotifyInput)
    assert (sent.key, sent.to, sent.name_the_lead) == ("L-1|replied|r-1", ["ben"], True)
    assert sent.subject == "Lead L-1 replied" and "replied to email hello" in sent.text
    assert notice.summary == "tell ben: lead replied to hello"
    history = driver.machine.view().history  # type: ignore[union-attr]
    assert [(h.what, h.why) for h in history if h.what.startswith("told")] == [
        ("told ben: the lead replied to hello", "event r-1")
    ]
    # The same event again (a redelivery): applied once, told once.
    assert _reply(driver, "r-1", "ben") == []


def test_a_reply_to_an_owner_without_an_address_is_noted(cadence_set: CadenceSet) -> None:
    driver = Driver(cadence_set)
    driver.until_sleep()
    assert _reply(driver, "r-2", "zed") == []  # not in team.sdrs: no address
    whats = [h.what for h in driver.machine.view().history]  # type: ignore[union-attr]
    assert "the lead replied to hello; nobody told" in whats


def test_a_run_recorded_before_the_patch_replays_without_the_notice(
    cadence_set: CadenceSet,
) -> None:
    driver = Driver(cadence_set)
    driver.machine.patched = lambda patch: patch != "notify-owner-on-reply"
    driver.until_sleep()
    assert _reply(driver, "r-3", "ben") == []
    whats = [h.what for h in driver.machine.view().history]  # type: ignore[union-attr]
    assert "email.replied" in whats and not any(w.startswith("told") for w in whats)
