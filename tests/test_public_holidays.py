"""Holidays per country: `limits.public_holidays` and `limits.holidays: {all: [...], JP: [...]}`.

Each lead is held on its own country's public holidays (resolved outside the workflow by
an activity, carried in its state) and on the playbook's dates for `all` and for its
country, where today's global holidays hold it: sends, call due dates, business-day waits.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest
from conftest import SKELETON_TEMPLATES, write_cadence_set
from harness import running
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from nurture.adapters.loader import load_cadence_set
from nurture.domain import calendars, timing
from nurture.domain.cadence import Limits
from nurture.domain.calendars import PublicHolidays, PublicHolidaysInput, lead_limits
from nurture.domain.events import Lead, LeadFacts
from nurture.domain.machine import LeadMachine, Perform, Sleep
from nurture.domain.messages import RESOLVE_PUBLIC_HOLIDAYS, SEND_EMAIL, SendEmailResult
from nurture.domain.state import LeadInput
from nurture.services.calendars import public_holidays
from nurture.services.simulate import simulate
from nurture.workflows.lead import LeadWorkflow

TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
# Coming of Age Day, a Monday: a public holiday in Japan, a plain working day in the US.
COMING_OF_AGE_2027 = date(2027, 1, 11)


def next_japan_only_holiday(after: date) -> date:
    """The first Japanese public holiday after ``after`` that falls on Monday to Thursday,
    is no US holiday, and is followed by a Japanese working day."""
    years = range(after.year, after.year + 3)
    japan = holidays.country_holidays("JP", years=years)
    usa = holidays.country_holidays("US", years=years)
    for day in sorted(japan):
        following = day + timedelta(days=1)
        if day > after and day.weekday() < 4 and day not in usa and following not in japan:
            return day
    raise AssertionError("no such holiday within three years")


# --- resolving them: the package, outside the workflow -----------------------------------


def test_a_countrys_public_holidays_are_resolved_with_english_names() -> None:
    japan = public_holidays(PublicHolidaysInput(country="JP", first_year=2027, last_year=2027))
    assert japan.dates["2027-01-11"] == "Coming of Age Day"
    assert japan.dates["2027-01-01"] == "New Year's Day"
    assert all(day.startswith("2027-") for day in japan.dates)
    usa = public_holidays(PublicHolidaysInput(country="US", first_year=2027, last_year=2027))
    assert "2027-01-11" not in usa.dates and "2027-07-04" in usa.dates
    # A country the package does not know has none.
    nowhere = public_holidays(PublicHolidaysInput(country="XX", first_year=2027, last_year=2027))
    assert nowhere.dates == {}


def test_what_a_lead_needs_is_bounded_and_only_with_the_switch_on() -> None:
    on = Limits(public_holidays=True)
    now = datetime(2026, 12, 3, tzinfo=UTC)
    wanted = calendars.wanted(on, "jp", now)
    assert wanted == PublicHolidaysInput(country="JP", first_year=2026, last_year=2027)
    assert calendars.wanted(Limits(), "JP", now) is None
    assert calendars.wanted(on, None, now) is None
    assert calendars.wanted(on, "XX", now) is None
    held = PublicHolidays(country="JP", first_year=2026, last_year=2027)
    assert held.covers(wanted)
    assert not held.covers(calendars.wanted(on, "JP", datetime(2027, 1, 2, tzinfo=UTC)))  # type: ignore[arg-type]
    assert not held.covers(calendars.wanted(on, "US", now))  # type: ignore[arg-type]


# --- whose holidays hold a lead, pure ----------------------------------------------------


def test_the_old_plain_list_still_means_every_lead() -> None:
    limits = Limits(holidays=["2026-12-25"])
    assert limits.holiday_dates("JP") == {"2026-12-25": "all"}
    # Nothing differs for any lead: the playbook's limits are used as they are.
    assert lead_limits(limits, "JP", None) is limits
    assert lead_limits(limits, None, None) is limits


def test_the_playbooks_dates_hold_every_lead_and_the_leads_of_their_country() -> None:
    limits = Limits(holidays={"all": ["2026-12-25"], "jp": ["2026-12-29"], "US": ["2026-11-26"]})
    assert set(limits.holidays) == {"all", "JP", "US"}
    assert set(lead_limits(limits, "JP", None).holidays) == {"2026-12-25", "2026-12-29"}
    assert set(lead_limits(limits, "us", None).holidays) == {"2026-12-25", "2026-11-26"}
    assert set(lead_limits(limits, None, None).holidays) == {"2026-12-25"}
    # Timed with the lead's own dates: a Japanese lead waits over its 29th, a US lead not.
    tuesday = datetime(2026, 12, 29, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo
    slot = timing.earliest_touch(
        tuesday,
        TOKYO,
        lead_limits(limits, "JP", None),
        channel="email",
        emails_sent=[],
        last_touch=None,
    )
    assert slot.at.astimezone(TOKYO).date() == date(2026, 12, 30)
    assert slot.reasons[0].startswith("holiday 2026-12-29 in JP; next opening")
    assert timing.hold_kinds(slot.reasons) == ["holiday"]
    us_slot = timing.earliest_touch(
        tuesday.replace(hour=15),
        NEW_YORK,
        lead_limits(limits, "US", None),
        channel="email",
        emails_sent=[],
        last_touch=None,
    )
    assert not us_slot.deferred
    # The raw playbook's map: only `all` holds when no lead is known.
    assert timing.in_window(tuesday, TOKYO, limits)


def test_a_public_holiday_holds_the_touch_and_is_named() -> None:
    limits = Limits(public_holidays=True)
    japan = public_holidays(PublicHolidaysInput(country="JP", first_year=2027, last_year=2028))
    morning = datetime(2027, 1, 11, 0, 30, tzinfo=UTC)  # 09:30 in Tokyo, the holiday
    slot = timing.earliest_touch(
        morning,
        TOKYO,
        lead_limits(limits, "JP", japan),
        channel="call",
        emails_sent=[],
        last_touch=None,
    )
    assert slot.at == datetime(2027, 1, 12, 0, 0, tzinfo=UTC)  # Tuesday 09:00 in Tokyo
    assert slot.reasons == [
        "public holiday in JP (Coming of Age Day, 2027-01-11); next opening Tue 09:00"
    ]
    # Business days skip it too: Friday + 1 business day is Tuesday.
    friday = datetime(2027, 1, 8, 1, 0, tzinfo=UTC)
    landed = timing.add_duration(friday, "1 business day", TOKYO, lead_limits(limits, "JP", japan))
    assert landed.astimezone(TOKYO).date() == date(2027, 1, 12)
    # Another country's holidays never hold the lead.
    assert lead_limits(limits, "US", japan) == Limits(public_holidays=True)


# --- the lead machine: behind a patch -----------------------------------------------------


def test_a_run_recorded_before_the_patch_never_asks_for_public_holidays(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cadence_set = load_cadence_set(holiday_set(tmp_path)[0])
    lead = LeadFacts(id="M-1", country="JP", has_email=True)
    cadence = cadence_set.cadence("welcome")
    start = LeadInput(facts=lead, playbook=cadence_set.playbook, cadence=cadence)
    now = datetime(2027, 1, 11, 0, 0, tzinfo=UTC)

    def activities(patched: bool) -> list[str]:
        life = LeadMachine(start, patched=lambda patch: patched or patch != "public-holidays")
        command, asked = life.start(now), []
        while not isinstance(command, Sleep):
            answer = None
            if isinstance(command, Perform):
                asked.append(command.activity)
                if command.activity == RESOLVE_PUBLIC_HOLIDAYS:
                    answer = public_holidays(command.input)  # type: ignore[arg-type]
                elif command.activity == SEND_EMAIL:
                    answer = SendEmailResult(status="sent")
            command = life.resume(answer, now=now)
        return asked

    # Patched, the welcome is held for the holiday; a run recorded before sends it at once.
    assert activities(patched=True) == ["record_transition", RESOLVE_PUBLIC_HOLIDAYS]
    assert activities(patched=False)[:2] == ["record_transition", SEND_EMAIL]


# --- the simulator --------------------------------------------------------------------------

PLAYBOOK = """
    thresholds:
      mql: {score: 40}
      toss_up: {score: 80}
    routing:
      entry:
        - cadence: welcome
      mql_cadence: welcome
    limits:
      send_window: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "18:00"}
      public_holidays: true
      holidays: {all: [2026-12-25], US: [2027-01-12]}
    sender:
      from: "Acme <hello@acme.example>"
      postal_address: "Acme Inc., 1 Main St, Springfield"
"""

CADENCE = """
    id: welcome
    name: Welcome
    steps:
      - {id: hello, type: email, template: welcome/hello}
      - {id: pause, type: wait, duration: 1 business day}
      - {id: follow-up, type: email, template: welcome/follow-up}
"""


def holiday_set(root, playbook: str = PLAYBOOK):  # type: ignore[no-untyped-def]
    return write_cadence_set(root / "set", playbook, {"welcome": CADENCE}, SKELETON_TEMPLATES)


def test_the_simulator_holds_a_japanese_lead_on_its_holiday_and_not_a_us_lead(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cadence_set = load_cadence_set(holiday_set(tmp_path)[0])
    start = datetime(2027, 1, 11, 0, 0, tzinfo=UTC)  # 09:00 Monday in Tokyo; Sunday night in NY
    japan = simulate(
        cadence_set, "welcome", Lead(id="J-1", email="j@x.example", country="JP"), [], start
    )
    held = next(e for e in japan if e.what.startswith("email hello deferred"))
    assert (
        held.why == "public holiday in JP (Coming of Age Day, 2027-01-11); next opening Tue 09:00"
    )
    sent = next(e for e in japan if e.what == "email hello: sent")
    assert sent.at == datetime(2027, 1, 12, 0, 0, tzinfo=UTC)

    usa = simulate(
        cadence_set, "welcome", Lead(id="U-1", email="u@x.example", country="US"), [], start
    )
    held = next(e for e in usa if e.what.startswith("email hello deferred"))
    assert "public holiday" not in held.why and "outside the send window" in held.why
    sent = next(e for e in usa if e.what == "email hello: sent")
    assert sent.at.astimezone(NEW_YORK) == datetime(2027, 1, 11, 9, 0, tzinfo=NEW_YORK)
    # The playbook's US date makes the business-day wait skip Tuesday the 12th.
    follow_up = next(e for e in usa if e.what == "email follow-up: sent")
    assert follow_up.at.astimezone(NEW_YORK).date() == date(2027, 1, 13)


# --- live, on the time-skipping server -----------------------------------------------------


async def test_a_japanese_lead_is_held_on_a_japanese_holiday_and_a_us_lead_is_not(
    time_env, make_settings, smtp_sink, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    now = await time_env.get_current_time()
    holiday = next_japan_only_holiday(now.astimezone(TOKYO).date() + timedelta(days=1))
    # 09:00 in Tokyo on the holiday; 19:00 the evening before in New York.
    created = datetime.combine(holiday, datetime.min.time(), tzinfo=UTC)
    await time_env.sleep(created - now)
    cadences_dir, templates_dir = holiday_set(tmp_path, PLAYBOOK.replace(", US: [2027-01-12]", ""))
    settings = make_settings(cadences_dir=cadences_dir, templates_dir=templates_dir)
    async with running(time_env.client, settings) as stack:
        await stack.add_lead(id="H-JP", email="jun@example.jp", country="JP")
        await stack.add_lead(id="H-US", email="nia@example.com", country="US")
        name = holidays.country_holidays("JP", years=holiday.year, language="en_US")[holiday]
        japan = await stack.until("H-JP", lambda v: v.next_touch_at is not None)
        tuesday = datetime.combine(holiday + timedelta(days=1), datetime.min.time(), tzinfo=TOKYO)
        assert japan.next_touch_at == tuesday.replace(hour=9).astimezone(UTC)
        [held] = [h for h in japan.history if h.what.startswith("email hello deferred")]
        assert held.why.startswith(f"public holiday in JP ({name}, {holiday.isoformat()})")
        usa = await stack.until("H-US", lambda v: v.next_touch_at is not None)
        monday = datetime.combine(holiday, datetime.min.time(), tzinfo=NEW_YORK)
        assert usa.next_touch_at == monday.replace(hour=9).astimezone(UTC)
        assert not any("public holiday" in h.why for h in usa.history)

        await time_env.sleep(
            tuesday.replace(hour=9).astimezone(UTC) - created + timedelta(minutes=5)
        )
        await smtp_sink.wait_for(2)
        sent = {
            rcpts[0]: email.utils.parsedate_to_datetime(str(message["Date"]))
            for message, (_, rcpts) in zip(smtp_sink.messages, smtp_sink.envelopes, strict=True)
        }
        assert sent["nia@example.com"].astimezone(NEW_YORK).date() == holiday
        assert sent["jun@example.jp"].astimezone(TOKYO).date() == holiday + timedelta(days=1)

        # The run replays without the package: its dates come from the recorded activity.
        history = await time_env.client.get_workflow_handle("lead-H-JP").fetch_history()
        assert "resolve_public_holidays" in history.to_json()

    def no_package(*args: object, **kwargs: object) -> object:
        raise AssertionError("the workflow asked the holidays package")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(holidays, "country_holidays", no_package)
        replayer = Replayer(
            workflows=[LeadWorkflow],
            data_converter=pydantic_data_converter,
            workflow_runner=UnsandboxedWorkflowRunner(),
        )
        await replayer.replay_workflow(history)


@pytest.mark.parametrize("country", ["JP", "US", None])
def test_a_lead_without_the_switch_is_timed_as_before(country: str | None) -> None:
    limits = Limits(holidays=["2027-01-11"])
    japan = PublicHolidays(country="JP", first_year=2027, last_year=2028, dates={"2027-01-12": "x"})
    assert lead_limits(limits, country, japan) is limits
