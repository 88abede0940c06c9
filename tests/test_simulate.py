"""nurture.services.simulate and `cadences simulate`: known cadences and scripts give known timelines.

The set below has a weekday 09:00-18:00 send window, a holiday on Friday 2026-12-25, a 20h
gap between touches and at most 3 emails a week. Times in comments are the lead's own.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import typer
from conftest import SKELETON_TEMPLATES, write_cadence_set
from typer.testing import CliRunner

from nurture.adapters.loader import load_cadence_set
from nurture.cli.simulate import next_monday_morning
from nurture.cli.simulate import simulate as simulate_command
from nurture.domain.cadence import Cadence, CadenceSet
from nurture.domain.events import Lead, LeadFacts
from nurture.domain.rendering import Renderer
from nurture.services.simulate import (
    MAX_STEPS,
    ScriptedEvent,
    ScriptedMigration,
    TimelineEntry,
    parse_script,
    simulate,
)

PLAYBOOK = """
    scoring:
      points:
        {email.opened: 1, email.clicked: 5, email.replied: 15, page.visited: 2, form.submitted: 10}
      page_points: {/pricing: 10}
      decay: {after: 30d, points: 10}
    grading:
      rules:
        - when: {field: employees, at_least: 1000}
          points: 30
        - when: {field: industry, in: [manufacturing, finance]}
          points: 20
      bands: {A: 70, B: 40, C: 20, D: 0}
    thresholds:
      mql: {score: 20}
      toss_up: {score: 40, grades: [A, B]}
      sales_follow_up: 14d
      hand_raisers: [meeting.booked, form.submitted:demo]
    routing:
      entry:
        - cadence: welcome
      mql_cadence: sdr
      recycle:
        competitor: {after: 60d, cadence: welcome}
        default: {after: 30d, cadence: welcome}
        bad_fit: never
    limits:
      max_emails_per_week: 3
      min_gap_between_touches: 20h
      send_window: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "18:00"}
      holidays: ["2026-12-25"]
    team:
      sdrs:
        - {id: aiko, name: Aiko Sato, email: aiko@example.com, territories: [JP]}
        - {id: ben, name: Ben Carter, email: ben@example.com, territories: [US]}
      ops:
        - {id: olga, email: ops@acme.example}
      call_due: 1 business day
    sender:
      from: "Acme <hello@acme.example>"
      postal_address: "Acme Inc., 1 Main St, Springfield"
"""

CADENCES = {
    "welcome": """
        id: welcome
        name: Welcome
        exit_on: [email.replied]
        steps:
          - id: hello
            type: email
            template: welcome/hello
          - id: pause
            type: wait
            duration: 2d
            until_any: [email.clicked]
          - id: engaged
            type: branch
            cases:
              - when: {event: email.clicked, step: hello}
                goto: intro-call
            default: follow-up
          - id: follow-up
            type: email
            template: welcome/follow-up
            next: end
          - id: intro-call
            type: call
            script: welcome/intro
            wait_for_outcome: 2d
          - id: after-call
            type: branch
            cases:
              - when: {call_outcome: [no_answer, voicemail]}
                goto: follow-up
            default: end
    """,
    "sdr": """
        id: sdr
        name: SDR outreach
        steps:
          - id: sdr-call
            type: call
            script: welcome/intro
            due: 4h
          - id: sdr-wait
            type: wait
            duration: 1 business day
          - id: sdr-email
            type: email
            template: welcome/follow-up
    """,
    "burst": """
        id: burst
        name: Four emails on four days
        steps:
          - {id: e1, type: email, template: welcome/hello}
          - {id: w1, type: wait, duration: 1d}
          - {id: e2, type: email, template: welcome/hello}
          - {id: w2, type: wait, duration: 1d}
          - {id: e3, type: email, template: welcome/hello}
          - {id: w3, type: wait, duration: 1d}
          - {id: e4, type: email, template: welcome/hello}
    """,
    "personal": """
        id: personal
        name: An email from the owner before there is one
        steps:
          - {id: intro, type: email, template: welcome/personal}
          - {id: call, type: call, script: welcome/intro}
          - {id: again, type: email, template: welcome/personal}
    """,
    "ticker": """
        id: ticker
        name: Waits forever
        steps:
          - {id: tick, type: wait, duration: 1m, next: tick}
    """,
    "chatter": """
        id: chatter
        name: Waits forever, deciding every minute
        steps:
          - {id: tick, type: wait, duration: 1m}
          - id: again
            type: branch
            cases:
              - when: {event: email.replied}
                goto: end
            default: tick
    """,
}

TEMPLATES = {
    **SKELETON_TEMPLATES,
    "call/welcome/intro.j2": "Call {{ lead.first_name or 'the lead' }} about their interest.",
    "email/welcome/personal.j2": "{% block subject %}From {{ sdr.name }}{% endblock %}"
    "{% block text %}This is {{ sdr.name }}. {{ unsubscribe_url }} {{ sender.postal_address }}"
    "{% endblock %}",
}

MON = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # Mon 09:00 in New York, 23:00 in Tokyo
NEW_YORK = LeadFacts(
    id="L-NY",
    country="US",
    timezone="America/New_York",
    employees=250,
    industry="software",
    has_email=True,
)
TOKYO = NEW_YORK.model_copy(update={"id": "L-JP", "country": "JP", "timezone": "Asia/Tokyo"})


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_cadence_set(
        tmp_path_factory.mktemp("set"), PLAYBOOK, cadences=CADENCES, templates=TEMPLATES
    )


@pytest.fixture(scope="module")
def cadence_set(folders: tuple[Path, Path]) -> CadenceSet:
    return load_cadence_set(*folders)


@pytest.fixture(scope="module")
def run(cadence_set: CadenceSet, folders: tuple[Path, Path]):  # type: ignore[no-untyped-def]
    """Simulate the set's lead with a SPEC, rendering templates as the CLI does."""
    renderer = Renderer(folders[1])

    def simulated(
        spec: str = "",
        *,
        lead: LeadFacts | Lead = NEW_YORK,
        start: datetime = MON,
        cadence: str = "welcome",
        days: int = 120,
        script: list | None = None,
    ) -> list[TimelineEntry]:
        return simulate(
            cadence_set,
            cadence,
            lead,
            script if script is not None else parse_script(spec, start),
            start,
            timedelta(days=days),
            renderer=renderer,
        )

    return simulated


def rows(timeline: list[TimelineEntry]) -> list[tuple[str, str]]:
    return [(f"{e.at:%Y-%m-%d %H:%M}", e.what) for e in timeline]


def entry(timeline: list[TimelineEntry], what: str) -> TimelineEntry:
    return next(e for e in timeline if e.what.startswith(what))


# --- known timelines ---------------------------------------------------------------------


def test_a_known_journey_from_welcome_through_mql_toss_up_loss_and_recycle(
    run, cadence_set: CadenceSet
) -> None:
    version = {key: cadence.version for key, cadence in cadence_set.cadences.items()}
    spec = (
        "day 1 email.clicked@hello, day 2 10:00 call:no_answer, day 3 page.visited url=/pricing, "
        "day 4 page.visited url=/pricing, day 8 call:qualified, "
        "day 10 opportunity.lost reason=Competitor"
    )
    timeline = run(spec)
    assert rows(timeline) == [
        ("2026-11-23 14:00", "lead created"),
        ("2026-11-23 14:00", f"cadence welcome (version {version['welcome']})"),
        ("2026-11-23 14:00", "email hello: sent"),
        ("2026-11-24 14:00", "score 5"),  # the click
        ("2026-11-24 14:00", "wait pause ended early"),
        ("2026-11-24 14:00", "branch"),
        ("2026-11-24 14:00", "call task T-sim1 for ben"),  # US territory
        ("2026-11-25 15:00", "call outcome: no_answer"),  # day 2 at 10:00 New York time
        ("2026-11-25 15:00", "branch"),
        ("2026-11-25 15:00", "email follow-up: sent"),
        ("2026-11-25 15:00", "cadence ended"),
        ("2026-11-26 14:00", "score 17"),
        ("2026-11-27 14:00", "score 29"),
        ("2026-11-27 14:00", "stage nurturing -> mql"),
        ("2026-11-27 14:00", f"cadence sdr (version {version['sdr']})"),
        ("2026-11-27 14:00", "call task T-sim2 for ben"),
        ("2026-11-30 14:00", "email sdr-email: sent"),  # after 1 business day
        ("2026-11-30 14:00", "cadence ended"),
        ("2026-12-01 14:00", "call outcome: qualified"),
        ("2026-12-01 14:00", "stage mql -> sql"),
        ("2026-12-03 14:00", "stage sql -> lost"),
        ("2026-12-27 14:00", "score 19"),  # decay, 30 days after the last visit
        ("2027-01-26 14:00", "score 9"),
        ("2027-02-01 14:00", "stage lost -> recycling"),
        ("2027-02-01 14:00", f"cadence welcome (version {version['welcome']})"),
        ("2027-02-01 14:00", "email hello: sent"),
        # The click on `hello` was in the last cycle: interest must be earned again.
        ("2027-02-03 14:00", "branch"),
        ("2027-02-03 14:00", "email follow-up: sent"),
        ("2027-02-03 14:00", "cadence ended"),
        ("2027-02-03 14:00", "stop"),
    ]
    branches = [e.why for e in timeline if e.what == "branch"]
    assert branches == [
        "engaged: email.clicked on hello -> intro-call",
        "after-call: outcome no_answer/voicemail -> follow-up",
        "engaged: no case matched (default) -> follow-up",
    ]
    assert entry(timeline, "call task T-sim1").why == (
        "step intro-call: call task (welcome/intro), due in 1 business day"
    )
    assert entry(timeline, "stage nurturing -> mql").why == "score 29 >= 20"
    assert entry(timeline, "stage mql -> sql").why == "SDR call outcome qualified"
    assert entry(timeline, "stage sql -> lost").why == "opportunity lost: Competitor"
    assert entry(timeline, "stage lost -> recycling").why == "recycle timer for competitor elapsed"
    assert [e.why for e in timeline if e.what in ("score 19", "score 9")] == [
        "decay: -10 after silence",
        "decay: -10 after silence",
    ]
    assert timeline[-1].why == (
        "resting in recycling: cadence done, listening for events; no scripted events left"
    )
    assert timeline[2].local == "Mon 2026-11-23 09:00 EST"


def test_a_weekend_defers_the_touch_to_monday(run) -> None:
    friday = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)  # Fri 16:00 New York
    timeline = run(start=friday)
    assert rows(timeline)[2:] == [
        ("2026-11-27 21:00", "email hello: sent"),
        ("2026-11-29 21:00", "branch"),
        ("2026-11-29 21:00", "email follow-up deferred to 2026-11-30 14:00 UTC"),
        ("2026-11-30 14:00", "email follow-up: sent"),
        ("2026-11-30 14:00", "cadence ended"),
        ("2026-11-30 14:00", "stop"),
    ]
    deferred = entry(timeline, "email follow-up deferred")
    assert deferred.why == (
        "outside the send window (Sun 16:00 America/New_York); next opening Mon 09:00"
    )
    assert deferred.local == "Sun 2026-11-29 16:00 EST"


def test_the_same_start_sends_at_different_times_in_tokyo_and_new_york(run) -> None:
    christmas_eve = datetime(2026, 12, 24, 23, 0, tzinfo=UTC)
    # New York: Thu 18:00, the window just closed; Fri 25th is a holiday; then the weekend.
    new_york = run(lead=NEW_YORK, start=christmas_eve)
    assert rows(new_york)[2:] == [
        ("2026-12-24 23:00", "email hello deferred to 2026-12-28 14:00 UTC"),
        ("2026-12-28 14:00", "email hello: sent"),
        ("2026-12-30 14:00", "branch"),
        ("2026-12-30 14:00", "email follow-up: sent"),
        ("2026-12-30 14:00", "cadence ended"),
        ("2026-12-30 14:00", "stop"),
    ]
    assert new_york[2].why == (
        "outside the send window (Thu 18:00 America/New_York); next opening Mon 09:00; "
        "holiday 2026-12-25 in America/New_York"
    )
    # Tokyo: it is already Fri 25th 08:00, the holiday itself.
    tokyo = run(lead=TOKYO, start=christmas_eve)
    assert rows(tokyo)[2:] == [
        ("2026-12-24 23:00", "email hello deferred to 2026-12-28 00:00 UTC"),
        ("2026-12-28 00:00", "email hello: sent"),
        ("2026-12-30 00:00", "branch"),
        ("2026-12-30 00:00", "email follow-up: sent"),
        ("2026-12-30 00:00", "cadence ended"),
        ("2026-12-30 00:00", "stop"),
    ]
    assert tokyo[2].why == "holiday 2026-12-25 in Asia/Tokyo; next opening Mon 09:00"
    assert tokyo[0].local == "Fri 2026-12-25 08:00 JST"
    assert new_york[0].local == "Thu 2026-12-24 18:00 EST"


def test_the_weekly_cap_holds_the_fourth_email(run) -> None:
    timeline = run(cadence="burst")
    sent = [e for e in timeline if e.what.endswith(": sent")]
    assert [f"{e.at:%a %m-%d %H:%M}" for e in sent] == [
        "Mon 11-23 14:00",
        "Tue 11-24 14:00",
        "Wed 11-25 14:00",
        "Mon 11-30 14:00",  # the first send is seven days old
    ]
    deferred = entry(timeline, "email e4 deferred")
    assert deferred.at == datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
    assert deferred.why == "3 emails in the last 7 days (max 3); next allowed Mon 09:00"
    # A cadence the routing would not choose says so where it is entered.
    assert timeline[1].why == "chosen for the simulation (routing would choose welcome)"


def test_a_call_without_an_outcome_times_out(run) -> None:
    timeline = run("day 1 email.clicked@hello")
    assert rows(timeline)[6:] == [
        ("2026-11-24 14:00", "call task T-sim1 for ben"),
        ("2026-11-26 14:00", "no call outcome for intro-call"),
        ("2026-11-26 14:00", "branch"),
        ("2026-11-26 14:00", "cadence ended"),
        ("2026-12-24 14:00", "score 0"),  # decay, 30 days after the click
        ("2026-12-24 14:00", "stop"),
    ]
    assert entry(timeline, "no call outcome").why == "waited 2d; task marked overdue"


def test_exit_on_stops_the_cadence_and_duplicates_change_nothing(run) -> None:
    spec = "hour 2 email.opened id=o-1, hour 3 email.opened id=o-1, hour 5 email.replied"
    timeline = run(spec, days=20)
    assert rows(timeline)[2:] == [
        ("2026-11-23 14:00", "email hello: sent"),
        ("2026-11-23 16:00", "score 1"),
        # The duplicate delivery at 17:00 leaves no trace.
        ("2026-11-23 19:00", "score 16"),
        ("2026-11-23 19:00", "cadence stopped"),
        ("2026-12-13 14:00", "stop"),
    ]
    assert timeline[4].why == "email.replied +15 (event sim-3)"
    assert timeline[5].why == "email.replied (exit_on of welcome)"
    assert timeline[-1].why == (
        "horizon reached (20 days) while resting in nurturing: cadence done, listening for events"
    )


def test_a_hand_raiser_tosses_up_from_nurturing_through_mql(run) -> None:
    timeline = run("hour 1 form.submitted form=demo")
    assert rows(timeline)[3:] == [
        ("2026-11-23 15:00", "score 10"),
        ("2026-11-23 15:00", "stage nurturing -> mql"),
        ("2026-11-23 15:00", "stage mql -> sql"),
        # A lead reaching sales without an owner gets one by the assignment rule, as live.
        ("2026-11-23 15:00", "owner ben"),
        ("2026-12-07 15:00", "sales follow-up overdue"),
        ("2026-12-23 15:00", "score 0"),
        ("2026-12-23 15:00", "stop"),
    ]
    assert timeline[4].why == "passed on the way to sql: hand-raiser form.submitted (demo)"
    assert timeline[6].why == "assigned at toss-up by the playbook's rule"
    assert timeline[7].why == "no outcome 14d after the toss-up; told ben, olga"
    assert timeline[-1].why.endswith("follow-up overdue, told ben, olga; no scripted events left")


def test_won_and_closed_leads_stop(run) -> None:
    won = run("day 1 opportunity.won")
    assert rows(won)[-2:] == [
        ("2026-11-24 14:00", "stage nurturing -> won"),
        ("2026-11-24 14:00", "stop"),
    ]
    assert won[-1].why == "the lead is won: its workflow completes"

    bad_fit = run("hour 1 meeting.booked, day 2 opportunity.lost reason=bad-fit")
    assert [e.what for e in bad_fit[-5:]] == [
        "stage nurturing -> mql",
        "stage mql -> sql",
        "owner ben",
        "closed",
        "stop",
    ]
    assert bad_fit[-2].why == "lost (bad_fit): the playbook recycles it never"
    assert bad_fit[-1].why == "the lead is closed: its workflow completes"


def test_unsubscribed_leads_get_no_email_but_calls_go_on(run) -> None:
    spec = "minute 1 lead.unsubscribed, day 1 email.clicked@hello, day 2 10:00 call:voicemail"
    timeline = run(spec)
    whats = [e.what for e in timeline]
    assert "unsubscribed" in whats and "call task T-sim1 for ben" in whats
    assert entry(timeline, "email follow-up").what == "email follow-up skipped"
    assert entry(timeline, "email follow-up").why == "unsubscribed"


def test_a_lead_without_email_skips_emails_at_once(run) -> None:
    no_email = NEW_YORK.model_copy(update={"has_email": False})
    friday = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)  # the follow-up falls on a Sunday
    timeline = run(lead=no_email, start=friday)
    skipped = [e for e in timeline if e.what.endswith("skipped")]
    assert [(e.what, e.why, e.local) for e in skipped] == [
        ("email hello skipped", "no email address", "Fri 2026-11-27 16:00 EST"),
        # Skipped on Sunday itself: nothing is held to a send window that it never uses.
        ("email follow-up skipped", "no email address", "Sun 2026-11-29 16:00 EST"),
    ]
    assert not any("deferred" in e.what for e in timeline)


def test_wall_times_are_read_in_the_leads_zone(cadence_set: CadenceSet) -> None:
    script = parse_script("day 1 10:00 page.visited", MON)
    for lead, expected in [
        (NEW_YORK, datetime(2026, 11, 24, 15, 0, tzinfo=UTC)),  # Tue 10:00 EST
        (TOKYO, datetime(2026, 11, 24, 1, 0, tzinfo=UTC)),  # Mon 23:00 JST + 1 -> Tue 10:00 JST
    ]:
        timeline = simulate(cadence_set, "welcome", lead, script, MON, timedelta(days=3))
        visit = next(e for e in timeline if e.why == "page.visited +2 (event sim-1)")
        assert visit.at == expected


def test_the_run_is_bounded(run, cadence_set: CadenceSet) -> None:
    timeline = run(cadence="chatter")
    assert len(timeline) == 500
    assert timeline[-1].what == "stop"
    assert timeline[-1].why == "500 timeline entries reached"
    short = simulate(cadence_set, "chatter", NEW_YORK, [], MON, timedelta(days=1), max_entries=10)
    assert len(short) == 10
    # A loop that leaves no trace in the history still ends, long before the horizon.
    silent = run(cadence="ticker")
    assert silent[-1].why == f"{MAX_STEPS} steps of the lead's life reached"
    assert silent[-1].at < MON + timedelta(days=30)

    horizon = run(days=1)
    assert rows(horizon)[-1] == ("2026-11-24 14:00", "stop")
    assert horizon[-1].why == (
        "horizon reached (1 day) while waiting until 2026-11-25 14:00 UTC "
        "(step pause: wait 2d; wakes early on email.clicked)"
    )


def test_events_before_the_start_and_unknown_cadences_are_refused(run) -> None:
    with pytest.raises(
        ValueError, match=r"scripted event 1 \(email.opened\) .* is before the start"
    ):
        run("day 0 05:00 email.opened")  # 05:00 New York, before 09:00
    with pytest.raises(KeyError, match="no cadence 'nope'"):
        run(cadence="nope")


def test_scripted_events_can_be_built_directly(run) -> None:
    script = [
        ScriptedEvent(at=MON + timedelta(hours=1), type="email.clicked", data={"step": "hello"}),
        ScriptedEvent(at=MON + timedelta(hours=2), type="email.clicked", id="sim-1"),
    ]
    timeline = run(script=script, days=1)
    assert [(e.what, e.why) for e in timeline if e.what.startswith("score")] == [
        ("score 5", "email.clicked +5 (event sim-1)"),  # the repeated id scores nothing
    ]
    assert script[0].label() == "email.clicked@hello"


# --- what only rendering shows, controls, migrations -------------------------------------


def test_a_template_that_fails_for_a_lead_without_owner_is_reported(run) -> None:
    timeline = run(cadence="personal", lead=Lead(id="L-P", email="pat@example.com", country="US"))
    emails = [(e.what, e.why) for e in timeline if e.what.split(": ")[-1] in ("sent", "failed")]
    (first, why), second = emails
    # Before the first call task the lead has no owner, so `sdr.name` prints nothing, as live;
    # `cadences validate` renders with a sample owner and cannot see it.
    assert first == "email intro: failed"
    assert why.startswith("template problem: ") and "personal.j2:1: prints an empty value" in why
    assert second == ("email again: sent", "step again: email welcome/personal")
    assert entry(timeline, "call task").what == "call task T-sim1 for ben"


def test_ops_controls_can_be_scripted(run) -> None:
    spec = "day 1 pause why=holiday, day 3 reassign:aiko, day 3 resume"
    timeline = run(spec, days=10)
    assert rows(timeline)[2:] == [
        ("2026-11-23 14:00", "email hello: sent"),
        ("2026-11-24 14:00", "paused"),
        ("2026-11-25 14:00", "branch"),  # the wait ends; the follow-up is held
        ("2026-11-26 14:00", "owner aiko"),
        ("2026-11-26 14:00", "resumed"),
        ("2026-11-26 14:00", "email follow-up: sent"),
        ("2026-11-26 14:00", "cadence ended"),
        ("2026-11-26 14:00", "stop"),
    ]
    assert (timeline[3].why, timeline[6].why) == ("holiday", "resumed by ops")
    assert timeline[5].why == "reassigned from nobody"


def test_erase_and_do_not_contact_can_be_scripted(run) -> None:
    timeline = run("hour 1 lead.do_not_contact, hour 1 lead.erased")
    assert rows(timeline)[-2:] == [
        ("2026-11-23 15:00", "stage nurturing -> closed"),
        ("2026-11-23 15:00", "stop"),
    ]
    assert timeline[-2].why == "do not contact"


def test_a_migration_can_be_scripted(run, cadence_set: CadenceSet) -> None:
    old = cadence_set.cadence("welcome")
    body = old.model_dump(mode="json", by_alias=True)
    for step in body["steps"]:
        if step["id"] == "pause":
            step["id"] = "breather"
    renamed = Cadence.model_validate(body)
    at = MON + timedelta(hours=1)
    script = [ScriptedMigration(at=at, cadence=renamed, step_map={"pause": "breather"})]
    timeline = run(script=script, days=1)
    moved = entry(timeline, f"migrated to welcome version {renamed.version}")
    assert (moved.at, moved.why) == (at, f"from version {old.version}, step pause -> breather")
    assert timeline[-1].why.startswith(
        "horizon reached (1 day) while waiting until 2026-11-25 14:00"
    )


# --- the spec parser ------------------------------------------------------------------------

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)

SPECS = [
    (
        "day 1 email.clicked@welcome",
        START + timedelta(days=1),
        "email.clicked",
        {"step": "welcome"},
        None,
    ),
    (
        "day 3 call:no_answer",
        START + timedelta(days=3),
        "call.completed",
        {"outcome": "no_answer"},
        None,
    ),
    (
        "day 1 call:Qualified",
        START + timedelta(days=1),
        "call.completed",
        {"outcome": "qualified"},
        None,
    ),
    (
        "day 5 10:30 page.visited url=/pricing",
        datetime(2026, 11, 28, 15, 30, tzinfo=UTC),  # Sat 10:30 in New York
        "page.visited",
        {"url": "/pricing"},
        None,
    ),
    (
        "hour 4 form.submitted form=demo",
        START + timedelta(hours=4),
        "form.submitted",
        {"form": "demo"},
        None,
    ),
    ("minute 90 email.opened", START + timedelta(minutes=90), "email.opened", {}, None),
    ("day 0 email.opened", START, "email.opened", {}, None),
    ("DAYS 2 email.opened", START + timedelta(days=2), "email.opened", {}, None),
    (
        "day 40 lead.updated employees=5000 tier_account=true score=1.5 industry=finance",
        START + timedelta(days=40),
        "lead.updated",
        {"employees": 5000, "tier_account": True, "score": 1.5, "industry": "finance"},
        None,
    ),
    (
        'day 2 opportunity.lost reason="no, budget"',
        START + timedelta(days=2),
        "opportunity.lost",
        {"reason": "no, budget"},
        None,
    ),
    ("day 1 email.clicked id=evt-7", START + timedelta(days=1), "email.clicked", {}, "evt-7"),
    (
        'day 1 pause why="on holiday"',
        START + timedelta(days=1),
        "pause",
        {"why": "on holiday"},
        None,
    ),
    ("hour 2 resume", START + timedelta(hours=2), "resume", {}, None),
    ("day 2 reassign:ben", START + timedelta(days=2), "reassign", {"owner": "ben"}, None),
]


@pytest.mark.parametrize(("spec", "at", "kind", "data", "event_id"), SPECS)
def test_parse_script(spec: str, at: datetime, kind: str, data: dict, event_id: str | None) -> None:
    (event,) = parse_script(spec, START, zone=ZoneInfo("America/New_York"))
    assert (event.at, event.type, event.data, event.id) == (at, kind, data, event_id)


def test_parse_script_keeps_order_skips_blanks_and_remembers_wall_times() -> None:
    events = parse_script(
        "day 1 email.clicked@welcome, day 3 call:no_answer, day 5 10:30 page.visited "
        "url=/pricing, hour 4 form.submitted form=demo, day 40 lead.updated employees=5000, ",
        START,
    )
    assert [e.label() for e in events] == [
        "email.clicked@welcome",
        "call:no_answer",
        "page.visited url=/pricing",
        "form.submitted form=demo",
        "lead.updated employees=5000",
    ]
    assert (events[2].day, events[2].wall) == (5, time(10, 30))
    assert events[2].at == datetime(2026, 11, 28, 10, 30, tzinfo=UTC)  # no zone given: UTC
    assert parse_script("", START) == [] and parse_script(" , ", START) == []


BAD_SPECS = [
    ("week 1 email.clicked", "item 1 'week 1 email.clicked': starts with 'week'"),
    ("day x email.clicked", "the day count must be a whole number 0 or more, got 'x'"),
    ("day -1 email.clicked", "got '-1'"),
    ("day", "got nothing"),
    ("day 1", "no event after the time"),
    ("day 1 10:30", "no event after the time"),
    ("day 1 email.clickd", "'email.clickd' is not an event type (did you mean email.clicked?)"),
    ("day 1 call:maybe", "'maybe' is not a call outcome (connected, qualified"),
    ("hour 2 10:30 email.clicked", "a wall time (10:30) can only follow 'day N'"),
    ("day 1 25:00 email.clicked", "'25:00' is not a time of day"),
    ("day 1 email.clicked@", "names no step after @"),
    ("day 1 page.visited /pricing", "'/pricing' is not key=value"),
    ('day 1 opportunity.lost reason="no budget', "no closing quotation"),
    ("day 1 email.clicked id=", "id= needs a value"),
    ("day 1 reassign:", "'reassign:' names no owner"),
    ("day 1 email.opened, hour two email.clicked", "item 2 'hour two email.clicked'"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS)
def test_bad_specs_name_the_item_and_what_is_expected(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_script(spec, START)
    text = str(raised.value)
    assert message in text
    assert "expected 'day N [HH:MM] EVENT [key=value ...]'" in text


# --- the command ----------------------------------------------------------------------------


@pytest.fixture
def cli(folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch):
    cadences_dir, templates_dir = folders
    app = typer.Typer()
    app.command("simulate")(simulate_command)

    @app.callback()
    def main() -> None:
        """A one-command app, as `nurture cadences` registers it."""

    runner = CliRunner()
    env = {
        "NURTURE_CADENCES_DIR": str(cadences_dir),
        "NURTURE_TEMPLATES_DIR": str(templates_dir),
    }

    def invoke(*args: str, env_overrides: dict[str, str] | None = None):
        return runner.invoke(app, ["simulate", *args], env={**env, **(env_overrides or {})})

    return invoke


def test_the_command_prints_json(cli) -> None:
    result = cli(
        "welcome",
        "--start",
        "2026-11-23T14:00:00Z",
        "--events",
        "day 1 email.clicked@hello",
        "--json",
    )
    assert result.exit_code == 0, result.output
    timeline = json.loads(result.stdout)
    # The entries of the lead's history, as `leads show` prints them, with the local time.
    assert set(timeline[0]) == {"at", "local", "what", "why"}
    assert (timeline[0]["what"], timeline[0]["why"]) == ("lead created", "0 fit points")
    hello = next(e for e in timeline if e["what"] == "email hello: sent")
    # The default lead: US, America/New_York, 250 employees, software, with an address.
    assert (hello["at"], hello["local"]) == ("2026-11-23T14:00:00Z", "Mon 2026-11-23 09:00 EST")
    assert {"what": "branch", "why": "engaged: email.clicked on hello -> intro-call"}.items() <= (
        next(e for e in timeline if e["what"] == "branch").items()
    )
    assert timeline[-1]["what"] == "stop"


def test_the_command_prints_a_table(cli) -> None:
    result = cli("welcome", "--start", "2026-11-23T14:00", "--days", "3")
    assert result.exit_code == 0, result.output
    assert (
        "welcome: lead sample-lead (America/New_York), from 2026-11-23 14:00 UTC for 3 days"
        in result.stdout
    )
    for text in (
        "UTC",
        "lead time",
        "what",
        "why",
        "email hello: sent",
        "Mon 2026-11-23 09:00 EST",
    ):
        assert text in result.stdout


def test_the_command_reads_a_lead_file(cli, tmp_path: Path) -> None:
    yaml_lead = tmp_path / "lead.yaml"
    yaml_lead.write_text("id: L-JP\ncountry: JP\nemployees: 40\n")  # Tokyo from the country
    result = cli("welcome", "--lead", str(yaml_lead), "--start", "2026-11-23T14:00:00Z", "--json")
    assert result.exit_code == 0, result.output
    hello = next(e for e in json.loads(result.stdout) if e["what"] == "email hello: sent")
    assert (hello["at"], hello["local"]) == ("2026-11-24T00:00:00Z", "Tue 2026-11-24 09:00 JST")

    json_lead = tmp_path / "lead.json"
    json_lead.write_text(json.dumps({"id": "L-2", "email": None, "timezone": "Europe/Berlin"}))
    result = cli("welcome", "--lead", str(json_lead), "--start", "2026-11-23T14:00:00Z", "--json")
    assert result.exit_code == 0, result.output
    whats = [e["what"] for e in json.loads(result.stdout)]
    assert "email hello skipped" in whats


def plain(output: str) -> str:
    """Command output without Rich's box drawing, on one line (error boxes wrap text)."""
    return " ".join(output.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["nope"], 1, "no cadence 'nope'"),
        (["welcome", "--events", "day x email.clicked"], 2, "--events item 1"),
        (["welcome", "--start", "soon"], 2, "not an ISO 8601 date-time"),
        (["welcome", "--days", "0"], 2, "--days"),
    ],
)
def test_the_command_refuses_bad_input(cli, args: list[str], code: int, message: str) -> None:
    result = cli(*args)
    assert result.exit_code == code
    assert message in plain(result.output)


def test_the_command_refuses_a_bad_lead_file(cli, tmp_path: Path) -> None:
    bad = tmp_path / "lead.yaml"
    bad.write_text("- just\n- a list\n")
    result = cli("welcome", "--lead", str(bad))
    assert result.exit_code == 2
    assert "must hold a mapping of lead fields" in plain(result.output)
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"employees": -5}))
    result = cli("welcome", "--lead", str(invalid))
    assert result.exit_code == 2
    assert "employees" in result.output


def test_the_command_lists_the_problems_of_an_invalid_set(cli, tmp_path: Path) -> None:
    broken = dict(
        CADENCES, welcome=CADENCES["welcome"].replace("goto: intro-call", "goto: intro-cal")
    )
    cadences_dir, templates_dir = write_cadence_set(
        tmp_path / "broken", PLAYBOOK, cadences=broken, templates=TEMPLATES
    )
    result = cli(
        "welcome",
        env_overrides={
            "NURTURE_CADENCES_DIR": str(cadences_dir),
            "NURTURE_TEMPLATES_DIR": str(templates_dir),
        },
    )
    assert result.exit_code == 1
    assert "goto 'intro-cal' names no step (did you mean 'intro-call'?)" in result.output
    assert "welcome.yaml:" in result.output


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 25, 12, 0, tzinfo=UTC), datetime(2026, 11, 30, 8, 0, tzinfo=UTC)),
        (datetime(2026, 11, 23, 7, 59, tzinfo=UTC), datetime(2026, 11, 23, 8, 0, tzinfo=UTC)),
        (datetime(2026, 11, 23, 8, 0, tzinfo=UTC), datetime(2026, 11, 30, 8, 0, tzinfo=UTC)),
        (datetime(2026, 11, 29, 23, 0, tzinfo=UTC), datetime(2026, 11, 30, 8, 0, tzinfo=UTC)),
    ],
)
def test_the_default_start_is_next_monday_morning(now: datetime, expected: datetime) -> None:
    assert next_monday_morning(now) == expected
