"""Accounts and people, not just leads: the account governor's decision, and what several
leads of one company see on one virtual clock (`cadences simulate` with a list of leads).

The decision is pure (nurture.domain.governor.decide); the simulator shares one in-memory
governor between its leads and asks the same function as the live reservation does.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import typer
from conftest import SKELETON_TEMPLATES, write_cadence_set
from typer.testing import CliRunner

from nurture.adapters.loader import load_cadence_set
from nurture.cli.simulate import simulate as simulate_command
from nurture.domain import governor
from nurture.domain import messages as am
from nurture.domain.cadence import AccountLimits, CadenceSet, Limits, SendWindow
from nurture.domain.events import Lead
from nurture.domain.machine import Perform
from nurture.domain.rendering import Renderer
from nurture.services.simulate import (
    SimulatedLead,
    TimelineEntry,
    parse_script,
    simulate,
    simulate_leads,
)

UTC_ZONE = ZoneInfo("UTC")
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday
ALWAYS = SendWindow(
    days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start="00:00", end="24:00"
)


def _limits(**account: object) -> Limits:
    return Limits(send_window=ALWAYS, account=AccountLimits(**account) if account else None)


def _decide(limits: Limits, **given: object) -> governor.Verdict:
    facts: dict[str, object] = {
        "lead_id": "L-2",
        "stage": "nurturing",
        "channel": "email",
        "limits": limits,
        "zone": UTC_ZONE,
        "account": "initech.example",
        "account_touches": [],
        "person_touches": [],
        "conversations": [],
        **given,
    }
    return governor.decide(T0, **facts)  # type: ignore[arg-type]


# --- the decision ------------------------------------------------------------------------


def test_a_touch_with_nothing_shared_goes_at_once() -> None:
    verdict = _decide(_limits(min_gap_between_touches="1d", max_emails_per_week=2))
    assert verdict.granted and verdict.at == T0 and not verdict.conversation


def test_the_account_gap_holds_a_second_lead_until_a_day_after_the_first() -> None:
    first = governor.Granted(lead_id="L-1", at=T0 - timedelta(hours=3), channel="email")
    verdict = _decide(_limits(min_gap_between_touches="1d"), account_touches=[first])
    assert not verdict.granted
    assert verdict.at == first.at + timedelta(days=1)
    assert verdict.reasons == [
        "initech.example: last touch 3h ago; minimum gap 1d; next allowed Tue 06:00"
    ]


def test_the_account_weekly_cap_counts_every_lead_of_the_account() -> None:
    sent = [
        governor.Granted(lead_id=f"L-{n}", at=T0 - timedelta(days=n), channel="email")
        for n in range(1, 4)
    ]
    verdict = _decide(_limits(max_emails_per_week=3), account_touches=sent)
    # The third most recent send (3 days ago) leaves the week in 4 days.
    assert verdict.at == T0 + timedelta(days=4)
    assert "3 emails in the last 7 days (max 3)" in verdict.reasons[0]
    # A call is not an email: the email cap does not hold it.
    assert _decide(_limits(max_emails_per_week=3), account_touches=sent, channel="call").granted


def test_one_conversation_holds_the_other_leads_and_names_no_person() -> None:
    talking = [governor.Conversation(lead_id="L-7", stage="mql", owner="aiko")]
    verdict = _decide(_limits(one_conversation=True), conversations=talking)
    assert not verdict.granted and verdict.conversation
    assert verdict.reasons == ["initech.example is in conversation with aiko via L-7"]
    assert verdict.at == T0 + governor.CONVERSATION_RECHECK  # the backstop re-check
    # The lead in conversation is never held by itself, nor is any lead in mql or sql.
    assert _decide(_limits(one_conversation=True), conversations=talking, lead_id="L-7").granted
    assert _decide(_limits(one_conversation=True), conversations=talking, stage="sql").granted
    # Without one_conversation, the conversation holds nothing.
    assert _decide(_limits(min_gap_between_touches="1d"), conversations=talking).granted


def test_the_lead_in_conversation_is_not_held_by_the_accounts_caps() -> None:
    # An SDR calling an MQL must not wait because a colleague got a nurture email.
    first = governor.Granted(lead_id="L-1", at=T0 - timedelta(hours=3), channel="email")
    limits = _limits(min_gap_between_touches="1d")
    assert not _decide(limits, account_touches=[first]).granted
    assert _decide(limits, account_touches=[first], stage="mql").granted
    # Its person's limits still hold it.
    person = Limits(send_window=ALWAYS, min_gap_between_touches="20h")
    assert not _decide(person, account=None, person_touches=[first], stage="mql").granted


def test_a_free_mail_account_is_not_named_in_the_history() -> None:
    talking = [governor.Conversation(lead_id="L-7", stage="sql", owner=None)]
    verdict = _decide(
        _limits(one_conversation=True), account="company:initech", conversations=talking
    )
    assert verdict.reasons == ["the account is in conversation with sales via L-7"]


def test_one_address_under_two_lead_ids_is_one_person() -> None:
    limits = Limits(send_window=ALWAYS, min_gap_between_touches="20h", max_emails_per_week=3)
    other = governor.Granted(lead_id="L-1", at=T0 - timedelta(hours=2), channel="email")
    verdict = _decide(limits, account=None, person_touches=[other])
    assert verdict.at == other.at + timedelta(hours=20)
    assert verdict.reasons[0].startswith("this address (several lead ids): last touch 2h ago")
    # Its own earlier touches alone are the lead's own limits' business, not the governor's.
    own = governor.Granted(lead_id="L-2", at=T0 - timedelta(hours=2), channel="email")
    assert _decide(limits, account=None, person_touches=[own]).granted


def test_a_cap_that_ends_at_night_waits_for_the_window() -> None:
    window = SendWindow(days=["mon", "tue", "wed", "thu", "fri"], start="09:00", end="18:00")
    limits = Limits(send_window=window, account=AccountLimits(min_gap_between_touches="4h"))
    first = governor.Granted(lead_id="L-1", at=T0 + timedelta(hours=6), channel="email")
    verdict = governor.decide(
        T0 + timedelta(hours=7),  # Monday 16:00
        lead_id="L-2",
        stage="nurturing",
        channel="email",
        limits=limits,
        zone=UTC_ZONE,
        account="initech.example",
        account_touches=[first],
        person_touches=[],
        conversations=[],
    )
    assert verdict.at == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # Tuesday's opening


def test_governed_only_when_something_is_shared() -> None:
    assert not governor.governed(Limits())
    assert governor.governed(Limits(account=AccountLimits(one_conversation=True)))
    assert governor.governed(Limits(max_emails_per_week=3))


# --- several leads on one clock ----------------------------------------------------------

PLAYBOOK = """
    scoring:
      points: {email.clicked: 5, form.submitted: 10}
    grading:
      rules:
        - when: {field: employees, at_least: 1000}
          points: 30
      bands: {A: 70, B: 40, C: 20, D: 0}
    thresholds:
      mql: {score: 20}
      toss_up: {score: 60, grades: [A, B]}
      sales_follow_up: 14d
      hand_raisers: [meeting.booked, form.submitted:demo]
    routing:
      entry:
        - cadence: burst
      mql_cadence: burst
      recycle:
        default: {after: 30d, cadence: burst}
    limits:
      max_emails_per_week: 5
      min_gap_between_touches: 1h
      send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}
      account:
        max_emails_per_week: 4
        min_gap_between_touches: 1d
        one_conversation: true
    team:
      sdrs:
        - {id: aiko, name: Aiko Sato, email: aiko@example.com, territories: [JP]}
        - {id: ben, name: Ben Carter, email: ben@example.com, territories: [US]}
      call_due: 1d
    sender:
      from: "Acme <hello@acme.example>"
      postal_address: "Acme Inc., 1 Main St, Springfield"
"""

CADENCES = {
    "burst": """
        id: burst
        name: Three emails an hour apart
        steps:
          - {id: e1, type: email, template: welcome/hello}
          - {id: w1, type: wait, duration: 1h}
          - {id: e2, type: email, template: welcome/hello}
          - {id: w2, type: wait, duration: 1h}
          - {id: e3, type: email, template: welcome/hello}
    """,
}


@pytest.fixture
def cadence_set(tmp_path: Path) -> CadenceSet:
    cadences, templates = write_cadence_set(tmp_path, PLAYBOOK, CADENCES, SKELETON_TEMPLATES)
    return load_cadence_set(cadences, templates)


def _lead(lead_id: str, email: str, **more: object) -> Lead:
    return Lead.model_validate({"id": lead_id, "email": email, "country": "US", **more})


def _sent(timeline: list[TimelineEntry]) -> list[tuple[datetime, str | None, str]]:
    return [(e.at, e.lead_id, e.what) for e in timeline if e.what.endswith(": sent")]


def test_two_leads_of_one_account_are_never_touched_closer_than_the_account_gap(
    cadence_set: CadenceSet,
) -> None:
    timeline = simulate_leads(
        cadence_set,
        [
            SimulatedLead(lead=_lead("A-1", "ann@initech.example")),
            SimulatedLead(lead=_lead("A-2", "bob@initech.example")),
        ],
        T0,
        timedelta(days=20),
    )
    sent = _sent(timeline)
    # No touch lost: each lead's three emails went out, each once.
    assert sorted((lead, what) for _at, lead, what in sent) == sorted(
        (lead, f"email e{n}: sent") for lead in ("A-1", "A-2") for n in (1, 2, 3)
    )
    times = [at for at, _lead, _what in sent]
    assert all(b - a >= timedelta(days=1) for a, b in zip(times, times[1:], strict=False))
    # The account's weekly cap of 4: no 7 days hold a fifth email.
    assert all(
        sum(1 for t in times if start <= t < start + timedelta(days=7)) <= 4 for start in times
    )
    deferred = [e for e in timeline if e.lead_id == "A-2" and "deferred" in e.what]
    assert deferred and deferred[0].why.startswith("initech.example: last touch")
    # Every lead's history ends with its own stop.
    assert [e.lead_id for e in timeline if e.what == "stop"] == ["A-1", "A-2"]


def test_one_conversation_at_a_time_then_the_other_lead_resumes(
    cadence_set: CadenceSet,
) -> None:
    # A-1 asks for a demo in its first hour: it goes to sales (sql) at once; A-2 arrives
    # then, and its nurture waits until sales lose A-1 on day 3.
    script = parse_script("hour 1 form.submitted form=demo, day 3 opportunity.lost", T0)
    timeline = simulate_leads(
        cadence_set,
        [
            SimulatedLead(lead=_lead("A-1", "ann@initech.example"), script=script),
            SimulatedLead(lead=_lead("A-2", "bob@initech.example"), start=T0 + timedelta(hours=2)),
        ],
        T0,
        timedelta(days=20),
    )
    held = [e for e in timeline if e.lead_id == "A-2" and e.what == "email e1 held"]
    assert len(held) == 1  # backstop re-checks that find the same conversation add nothing
    assert held[0].at == T0 + timedelta(hours=2)
    assert held[0].why == "initech.example is in conversation with ben via A-1"
    lost_at = T0 + timedelta(days=3)
    ended = [e for e in timeline if e.lead_id == "A-2" and e.what == "email e1 hold ended"]
    assert [e.at for e in ended] == [lost_at]  # woken by the release, not the backstop
    a2 = [(at, what) for at, lead, what in _sent(timeline) if lead == "A-2"]
    assert a2[0] == (lost_at, "email e1: sent")
    assert [what for _at, what in a2] == ["email e1: sent", "email e2: sent", "email e3: sent"]
    # While A-1 was with sales, nothing reached A-2.
    assert all(at >= lost_at for at, _what in a2)


def test_two_lead_ids_with_one_address_get_one_persons_caps(tmp_path: Path) -> None:
    playbook = PLAYBOOK.replace(
        """      account:
        max_emails_per_week: 4
        min_gap_between_touches: 1d
        one_conversation: true
""",
        "",
    ).replace("min_gap_between_touches: 1h", "min_gap_between_touches: 20h")
    cadences, templates = write_cadence_set(tmp_path, playbook, CADENCES, SKELETON_TEMPLATES)
    cadence_set = load_cadence_set(cadences, templates)
    timeline = simulate_leads(
        cadence_set,
        [
            SimulatedLead(lead=_lead("W-1", "ann@gmail.com", source="webinar")),
            SimulatedLead(lead=_lead("F-1", "Ann@Gmail.com", source="form")),
        ],
        T0,
        timedelta(days=20),
    )
    sent = _sent(timeline)
    assert len(sent) == 6
    times = [at for at, _lead, _what in sent]
    assert all(b - a >= timedelta(hours=20) for a, b in zip(times, times[1:], strict=False))
    assert all(
        sum(1 for t in times if start <= t < start + timedelta(days=7)) <= 5 for start in times
    )
    assert any(e.why.startswith("this address (several lead ids)") for e in timeline)


def test_a_lone_lead_lives_as_before_in_a_run_of_one(cadence_set: CadenceSet) -> None:
    lead = _lead("A-1", "ann@initech.example")
    alone = simulate(cadence_set, "burst", lead, [], T0, timedelta(days=20))
    several = simulate_leads(cadence_set, [SimulatedLead(lead=lead)], T0, timedelta(days=20))
    assert [(e.at, e.what, e.why) for e in alone] == [(e.at, e.what, e.why) for e in several]
    # Its own emails hold to the account's gap too (a lead is part of its account).
    times = [at for at, _lead, _what in _sent(several)]
    assert [b - a for a, b in zip(times, times[1:], strict=False)] == [timedelta(days=1)] * 2


def test_the_command_runs_a_list_of_leads(cadence_set: CadenceSet, tmp_path: Path) -> None:
    leads = tmp_path / "leads.yaml"
    leads.write_text(
        "- {id: A-1, email: ann@initech.example, country: US,"
        " events: 'hour 1 form.submitted form=demo, day 3 opportunity.lost'}\n"
        "- {id: A-2, email: bob@initech.example, country: US, start: '2026-11-23T11:00:00'}\n"
    )
    app = typer.Typer()
    app.command()(simulate_command)
    env = {
        "NURTURE_CADENCES_DIR": str(tmp_path / "cadences"),
        "NURTURE_TEMPLATES_DIR": str(tmp_path / "templates"),
    }
    result = CliRunner().invoke(
        app,
        ["burst", "--lead", str(leads), "--start", "2026-11-23T09:00:00", "--days", "10", "--json"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)
    assert {e["lead_id"] for e in entries} == {"A-1", "A-2"}
    held = [e for e in entries if e["what"] == "email e1 held"]
    assert held and held[0]["why"] == "initech.example is in conversation with ben via A-1"
    table = CliRunner().invoke(
        app, ["burst", "--lead", str(leads), "--start", "2026-11-23T09:00:00"], env=env
    )
    assert table.exit_code == 0 and "A-2" in table.output


def test_the_command_names_a_bad_lead_in_a_list(cadence_set: CadenceSet, tmp_path: Path) -> None:
    leads = tmp_path / "leads.yaml"
    leads.write_text("- {id: A-1, email: ann@initech.example}\n- {id: A-2, employees: many}\n")
    app = typer.Typer()
    app.command()(simulate_command)
    env = {
        "NURTURE_CADENCES_DIR": str(tmp_path / "cadences"),
        "NURTURE_TEMPLATES_DIR": str(tmp_path / "templates"),
    }
    result = CliRunner().invoke(app, ["burst", "--lead", str(leads)], env=env)
    assert result.exit_code == 2
    assert "lead 2: employees" in " ".join(result.output.split())


def test_lead_ids_must_differ_in_one_run(cadence_set: CadenceSet) -> None:
    lead = _lead("A-1", "ann@initech.example")
    with pytest.raises(ValueError, match="given twice: A-1"):
        simulate_leads(cadence_set, [SimulatedLead(lead=lead), SimulatedLead(lead=lead)], T0)


def test_templates_render_for_each_lead(cadence_set: CadenceSet, tmp_path: Path) -> None:
    timeline = simulate_leads(
        cadence_set,
        [SimulatedLead(lead=_lead("A-1", "ann@initech.example", first_name="Ann"))],
        T0,
        timedelta(days=5),
        renderer=Renderer(tmp_path / "templates"),
    )
    assert len(_sent(timeline)) == 3


def _activities(cadence_set: CadenceSet, lead: Lead) -> list[str]:
    performed: list[str] = []

    def note(command: object) -> timedelta:
        if isinstance(command, Perform):
            performed.append(command.activity)
        return timedelta(0)

    simulate(cadence_set, "burst", lead, [], T0, timedelta(days=20), latency=note)
    return performed


def test_nothing_shared_costs_no_activity(tmp_path: Path) -> None:
    plain = PLAYBOOK.replace(
        """      max_emails_per_week: 5
      min_gap_between_touches: 1h
""",
        "",
    ).replace(
        """      account:
        max_emails_per_week: 4
        min_gap_between_touches: 1d
        one_conversation: true
""",
        "",
    )
    cadences, templates = write_cadence_set(tmp_path / "plain", plain, CADENCES, SKELETON_TEMPLATES)
    performed = _activities(
        load_cadence_set(cadences, templates), _lead("P-1", "p@initech.example")
    )
    assert performed.count(am.SEND_EMAIL) == 3
    assert am.RESERVE_TOUCH not in performed and am.RELEASE_ACCOUNT not in performed


def test_a_governed_touch_asks_once_per_touch(cadence_set: CadenceSet) -> None:
    performed = _activities(cadence_set, _lead("G-1", "g@initech.example"))
    # Each email asked for its slot (the account's gap held two of them, asked again).
    assert performed.count(am.SEND_EMAIL) == 3
    assert performed.count(am.RESERVE_TOUCH) == 5
    sends = [i for i, a in enumerate(performed) if a == am.SEND_EMAIL]
    assert all(performed[i - 1] == am.RESERVE_TOUCH for i in sends)
