"""nurture.domain.interpreter: every step type and every branch condition, as plain tables.

The interpreter is pure, so each row builds a tiny cadence, asks ``decide`` what happens
from one step with some facts, and compares the action. Times: Friday 2026-11-27 15:00 UTC
is 10:00 in New York; 2026-12-25 (a Friday) is a holiday in the playbook below.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from nurture.domain.cadence import Cadence, Playbook
from nurture.domain.conditions import Engagement, Facts
from nurture.domain.events import LeadFacts
from nurture.domain.interpreter import (
    CreateCallTask,
    End,
    SendEmail,
    SpinError,
    Wait,
    after,
    decide,
    entry_cadence,
    first_step,
)

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # Fri 10:00 in New York

PLAYBOOK = Playbook.model_validate(
    {
        "thresholds": {"mql": {"score": 40}, "toss_up": {"score": 80, "grades": ["A", "B"]}},
        "routing": {
            "entry": [
                {"when": {"field": "source", "in": ["webinar"]}, "cadence": "webinar-follow-up"},
                {"when": {"field": "country", "equals": "JP"}, "cadence": "inbound-ja"},
                {"cadence": "inbound"},
            ],
            "mql_cadence": "mql-sdr",
        },
        "limits": {
            "send_window": {
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "start": "09:00",
                "end": "18:00",
            },
            "holidays": ["2026-12-25"],
        },
        "team": {"call_due": "1 business day"},
        "sender": {"from": "Acme <hello@acme.example>", "postal_address": "1 Main St"},
    }
)


def cadence(*steps: dict[str, Any], exit_on: list[str] | None = None) -> Cadence:
    return Cadence.model_validate(
        {"id": "c", "name": "test", "exit_on": exit_on or [], "steps": list(steps)}
    )


def email(step_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "email", "template": f"t/{step_id}", **extra}


def facts(now: datetime = NOW, **kw: Any) -> Facts:
    lead = kw.pop("lead", None) or LeadFacts(id="L-1", country="US", timezone="America/New_York")
    return Facts(lead=lead, now=now, cadence=kw.pop("cadence", "c"), **kw)


def run(c: Cadence, step: str, f: Facts | None = None, zone: ZoneInfo = NY):
    return decide(c, step, f or facts(), playbook=PLAYBOOK, zone=zone)


# --- step types ------------------------------------------------------------------------

STEP_CASES = [
    pytest.param(
        [email("hello")],
        "hello",
        SendEmail(step="hello", template="t/hello", reason="step hello: email t/hello"),
        id="email",
    ),
    pytest.param(
        [{"id": "ring", "type": "call", "script": "s/first"}],
        "ring",
        CreateCallTask(
            step="ring",
            script="s/first",
            due="1 business day",  # the playbook's team.call_due
            wait_for_outcome=None,
            reason="step ring: call task (s/first), due in 1 business day",
        ),
        id="call-default-due",
    ),
    pytest.param(
        [
            {
                "id": "ring",
                "type": "call",
                "script": "s/first",
                "due": "4h",
                "wait_for_outcome": "2d",
            }
        ],
        "ring",
        CreateCallTask(
            step="ring",
            script="s/first",
            due="4h",
            wait_for_outcome="2d",
            reason="step ring: call task (s/first), due in 4h",
        ),
        id="call-due-and-wait-for-outcome",
    ),
    pytest.param(
        [{"id": "pause", "type": "wait", "duration": "2d"}],
        "pause",
        Wait(step="pause", until=NOW + timedelta(days=2), wake_on=[], reason="step pause: wait 2d"),
        id="wait-calendar",
    ),
    pytest.param(
        [{"id": "pause", "type": "wait", "duration": "90s"}],
        "pause",
        Wait(
            step="pause",
            until=NOW + timedelta(seconds=90),
            wake_on=[],
            reason="step pause: wait 90s",
        ),
        id="wait-seconds",
    ),
    pytest.param(
        [
            {
                "id": "pause",
                "type": "wait",
                "duration": "1 business day",
                "until_any": ["email.clicked", "page.visited"],
            }
        ],
        "pause",
        # Friday 10:00 New York + 1 business day = Monday 10:00 New York.
        Wait(
            step="pause",
            until=datetime(2026, 11, 30, 15, 0, tzinfo=UTC),
            wake_on=["email.clicked", "page.visited"],
            reason="step pause: wait 1 business day; wakes early on email.clicked, page.visited",
        ),
        id="wait-business-days-until-any",
    ),
    pytest.param(
        [{"id": "x", "type": "exit", "reason": "not interested"}],
        "x",
        End(step="x", exited=True, reason="step x: exit (not interested)"),
        id="exit",
    ),
    pytest.param(
        [email("hello")],
        "end",
        End(step=None, exited=False, reason="reached the end of c"),
        id="end",
    ),
]


@pytest.mark.parametrize(("steps", "step", "expected"), STEP_CASES)
def test_decide_acts_on_each_step_type(
    steps: list[dict[str, Any]], step: str, expected: Any
) -> None:
    decision = run(cadence(*steps), step)
    assert decision.action == expected
    assert decision.trail == []


def test_business_days_skip_the_weekend_and_a_holiday() -> None:
    c = cadence({"id": "pause", "type": "wait", "duration": "2 business days"})
    thursday = datetime(2026, 12, 24, 15, 0, tzinfo=UTC)  # Thu 10:00 New York, before Christmas
    action = run(c, "pause", facts(now=thursday)).action
    # Fri 25th is a holiday, then the weekend: Mon 28th is day 1, Tue 29th day 2.
    assert isinstance(action, Wait)
    assert action.until == datetime(2026, 12, 29, 15, 0, tzinfo=UTC)


def test_business_days_are_counted_in_the_leads_zone() -> None:
    c = cadence({"id": "pause", "type": "wait", "duration": "1 business day"})
    # Fri 2026-11-27 23:30 UTC is Friday evening in New York but Saturday morning in Tokyo.
    late_friday = datetime(2026, 11, 27, 23, 30, tzinfo=UTC)
    new_york = run(c, "pause", facts(now=late_friday), zone=NY).action
    tokyo = run(c, "pause", facts(now=late_friday), zone=ZoneInfo("Asia/Tokyo")).action
    assert isinstance(new_york, Wait) and isinstance(tokyo, Wait)
    # New York: Fri 18:30 -> Mon 18:30, after hours -> Tue 09:00 EST.
    assert new_york.until == datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
    # Tokyo: Sat 08:30 -> Mon 08:30, before the window -> Mon 09:00 JST.
    assert tokyo.until == datetime(2026, 11, 30, 0, 0, tzinfo=UTC)


# --- branches, next, falling off the end ------------------------------------------------

BRANCH = {
    "id": "choose",
    "type": "branch",
    "cases": [
        {"when": {"score_at_least": 50}, "goto": "hot"},
        {"when": {"score_at_least": 20}, "goto": "warm"},
    ],
}

ROUTE_CASES = [
    pytest.param(
        [{**BRANCH, "default": "cold"}, email("cold"), email("warm"), email("hot")],
        {"score": 60},
        "hot",
        ["choose: score ≥ 50 -> hot"],
        id="first-matching-case-wins",
    ),
    pytest.param(
        [{**BRANCH, "default": "cold"}, email("cold"), email("warm"), email("hot")],
        {"score": 30},
        "warm",
        ["choose: score ≥ 20 -> warm"],
        id="second-case",
    ),
    pytest.param(
        [{**BRANCH, "default": "cold"}, email("warm"), email("hot"), email("cold")],
        {"score": 5},
        "cold",
        ["choose: no case matched (default) -> cold"],
        id="default",
    ),
    pytest.param(
        [BRANCH, email("next-one"), email("warm"), email("hot")],
        {"score": 5},
        "next-one",
        ["choose: no case matched -> next-one"],
        id="no-default-falls-through-to-the-following-step",
    ),
    pytest.param(
        [{**BRANCH, "next": "warm"}, email("skipped"), email("warm"), email("hot")],
        {"score": 5},
        "warm",
        ["choose: no case matched -> warm"],
        id="no-default-follows-next",
    ),
    pytest.param(
        [
            {"id": "a", "type": "branch", "cases": [{"when": {"score_at_least": 1}, "goto": "b"}]},
            {"id": "b", "type": "branch", "cases": [{"when": {"grade_in": ["A"]}, "goto": "x"}]},
            email("y"),
            email("x"),
        ],
        {"score": 3, "grade": "A"},
        "x",
        ["a: score ≥ 1 -> b", "b: grade A -> x"],
        id="branch-chain-keeps-a-trail",
    ),
]


@pytest.mark.parametrize(("steps", "fact_values", "step", "trail"), ROUTE_CASES)
def test_branches_route_to_the_first_acting_step(
    steps: list[dict[str, Any]], fact_values: dict[str, Any], step: str, trail: list[str]
) -> None:
    decision = run(cadence(*steps), steps[0]["id"], facts(**fact_values))
    assert decision.action.step == step
    assert decision.trail == trail


@pytest.mark.parametrize(
    ("steps", "reason"),
    [
        pytest.param(
            [{**BRANCH, "default": "end"}, email("warm"), email("hot")],
            "reached the end of c",
            id="default-end",
        ),
        pytest.param(
            [email("warm"), email("hot"), {**BRANCH}],
            "reached the end of c",
            id="last-step-branch-falls-off-the-end",
        ),
    ],
)
def test_a_branch_can_end_the_cadence(steps: list[dict[str, Any]], reason: str) -> None:
    decision = run(cadence(*steps), "choose", facts(score=0))
    assert decision.action == End(step=None, exited=False, reason=reason)


def test_a_branch_into_an_exit_step() -> None:
    c = cadence(
        {
            "id": "choose",
            "type": "branch",
            "cases": [{"when": {"call_outcome": ["not_interested"]}, "goto": "bye"}],
        },
        email("more"),
        {"id": "bye", "type": "exit", "reason": "said no"},
    )
    decision = run(c, "choose", facts(last_call_outcome="not_interested"))
    assert decision.action == End(step="bye", exited=True, reason="step bye: exit (said no)")
    assert decision.trail == ["choose: outcome not_interested -> bye"]


AFTER_CASES = [
    pytest.param([email("a"), email("b")], "a", "b", id="the-step-below"),
    pytest.param([email("a"), email("b")], "b", "end", id="falling-off-the-end"),
    pytest.param([email("a", next="end"), email("b")], "a", "end", id="next-end"),
    pytest.param([email("a", next="c"), email("b"), email("c")], "a", "c", id="next-jumps"),
    pytest.param(
        [{"id": "w", "type": "wait", "duration": "1d", "next": "w"}], "w", "w", id="next-loops-back"
    ),
    pytest.param(
        [{"id": "r", "type": "call", "script": "s"}, email("b")], "r", "b", id="after-a-call"
    ),
]


@pytest.mark.parametrize(("steps", "step", "expected"), AFTER_CASES)
def test_after(steps: list[dict[str, Any]], step: str, expected: str) -> None:
    assert after(cadence(*steps), step) == expected


def test_first_step_and_walking_a_cadence_to_its_end() -> None:
    c = cadence(
        email("hello"),
        {"id": "pause", "type": "wait", "duration": "2d"},
        email("bye", next="end"),
        email("never"),
    )
    seen = []
    step = first_step(c)
    while True:
        action = run(c, step).action
        seen.append(action.kind)
        if isinstance(action, End):
            break
        step = after(c, action.step)  # type: ignore[arg-type]
    assert seen == ["email", "wait", "email", "end"]


def test_branches_that_loop_without_acting_raise_spin_error() -> None:
    c = cadence(
        {"id": "a", "type": "branch", "cases": [{"when": {"score_at_least": 0}, "goto": "b"}]},
        {"id": "b", "type": "branch", "cases": [{"when": {"score_at_least": 0}, "goto": "a"}]},
    )
    with pytest.raises(SpinError, match="branches in a loop from step 'a'"):
        run(c, "a")


def test_a_long_chain_of_branches_is_not_a_spin() -> None:
    steps: list[dict[str, Any]] = [
        {
            "id": f"b{i}",
            "type": "branch",
            "cases": [{"when": {"score_at_least": 999}, "goto": "end"}],
        }
        for i in range(10)
    ]
    decision = run(cadence(*steps, email("finally")), "b0")
    assert decision.action.step == "finally"
    assert len(decision.trail) == 10


def test_an_unknown_step_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="no step 'nope'"):
        run(cadence(email("a")), "nope")


# --- conditions ---------------------------------------------------------------------------


def lead(**fields: Any) -> LeadFacts:
    free = fields.pop("fields", {})
    return LeadFacts(id="L-1", fields=free, **fields)


def clicked(
    step: str | None = None,
    ago: timedelta = timedelta(days=1),
    cadence_id: str | None = "c",
    kind: str = "email.clicked",
) -> Engagement:
    return Engagement(type=kind, at=NOW - ago, step=step, cadence=cadence_id)


CONDITION_CASES = [
    # event
    ("event-any", {"event": "email.clicked"}, {"engagements": [clicked()]}, True),
    ("event-none", {"event": "email.clicked"}, {}, False),
    (
        "event-other-type",
        {"event": "email.clicked"},
        {"engagements": [clicked(kind="email.opened")]},
        False,
    ),
    (
        "event-step",
        {"event": "email.clicked", "step": "hello"},
        {"engagements": [clicked("hello")]},
        True,
    ),
    (
        "event-other-step",
        {"event": "email.clicked", "step": "hello"},
        {"engagements": [clicked("bye")]},
        False,
    ),
    (
        "event-no-step-given",
        {"event": "email.clicked", "step": "hello"},
        {"engagements": [clicked(None)]},
        False,
    ),
    (
        "event-step-of-another-cadence",
        {"event": "email.clicked", "step": "hello"},
        {"engagements": [clicked("hello", cadence_id="other")]},
        False,
    ),
    (
        "event-step-cadence-unknown",
        {"event": "email.clicked", "step": "hello"},
        {"engagements": [clicked("hello", cadence_id=None)]},
        True,
    ),
    (
        "event-within",
        {"event": "page.visited", "within": "10d"},
        {"engagements": [clicked(kind="page.visited", ago=timedelta(days=9))]},
        True,
    ),
    (
        "event-within-edge",
        {"event": "page.visited", "within": "10d"},
        {"engagements": [clicked(kind="page.visited", ago=timedelta(days=10))]},
        True,
    ),
    (
        "event-too-old",
        {"event": "page.visited", "within": "10d"},
        {"engagements": [clicked(kind="page.visited", ago=timedelta(days=10, seconds=1))]},
        False,
    ),
    (
        "event-within-hours",
        {"event": "page.visited", "within": "4h"},
        {"engagements": [clicked(kind="page.visited", ago=timedelta(hours=5))]},
        False,
    ),
    (
        "event-step-and-within",
        {"event": "email.clicked", "step": "hello", "within": "2d"},
        {
            "engagements": [
                clicked("hello", ago=timedelta(days=3)),
                clicked("hello", ago=timedelta(hours=1)),
            ]
        },
        True,
    ),
    # score
    ("score-equal", {"score_at_least": 20}, {"score": 20}, True),
    ("score-below", {"score_at_least": 20}, {"score": 19}, False),
    ("score-zero", {"score_at_least": 0}, {"score": 0}, True),
    # grade
    ("grade-in", {"grade_in": ["A", "B"]}, {"grade": "B"}, True),
    ("grade-out", {"grade_in": ["A", "B"]}, {"grade": "C"}, False),
    ("grade-none", {"grade_in": ["A", "B"]}, {"grade": None}, False),
    # call outcome
    (
        "call-outcome-in",
        {"call_outcome": ["no_answer", "voicemail"]},
        {"last_call_outcome": "voicemail"},
        True,
    ),
    (
        "call-outcome-out",
        {"call_outcome": ["no_answer", "voicemail"]},
        {"last_call_outcome": "connected"},
        False,
    ),
    ("call-outcome-none", {"call_outcome": ["no_answer"]}, {"last_call_outcome": None}, False),
    # field equals
    ("equals", {"field": "country", "equals": "JP"}, {"lead": lead(country="JP")}, True),
    (
        "equals-case-and-space",
        {"field": "industry", "equals": "Finance"},
        {"lead": lead(industry=" finance ")},
        True,
    ),
    ("equals-other", {"field": "country", "equals": "JP"}, {"lead": lead(country="US")}, False),
    ("equals-missing", {"field": "country", "equals": "JP"}, {"lead": lead()}, False),
    ("equals-number", {"field": "employees", "equals": 5}, {"lead": lead(employees=5)}, True),
    (
        "equals-true-bool",
        {"field": "tier_account", "equals": True},
        {"lead": lead(tier_account=True)},
        True,
    ),
    (
        "equals-true-but-false",
        {"field": "tier_account", "equals": True},
        {"lead": lead(tier_account=False)},
        False,
    ),
    ("equals-true-unknown", {"field": "tier_account", "equals": True}, {"lead": lead()}, False),
    (
        "equals-true-string-true",
        {"field": "vip", "equals": True},
        {"lead": lead(fields={"vip": "true"})},
        True,
    ),
    (
        "equals-true-string-yes",
        {"field": "vip", "equals": True},
        {"lead": lead(fields={"vip": " Yes "})},
        True,
    ),
    (
        "equals-true-string-1",
        {"field": "vip", "equals": True},
        {"lead": lead(fields={"vip": "1"})},
        True,
    ),
    (
        "equals-true-string-no",
        {"field": "vip", "equals": True},
        {"lead": lead(fields={"vip": "no"})},
        False,
    ),
    (
        "equals-false-string-false",
        {"field": "vip", "equals": False},
        {"lead": lead(fields={"vip": "FALSE"})},
        True,
    ),
    (
        "equals-false-string-0",
        {"field": "vip", "equals": False},
        {"lead": lead(fields={"vip": "0"})},
        True,
    ),
    (
        "equals-false-string-true",
        {"field": "vip", "equals": False},
        {"lead": lead(fields={"vip": "true"})},
        False,
    ),
    ("equals-false-unknown", {"field": "vip", "equals": False}, {"lead": lead()}, False),
    (
        "equals-free-field",
        {"field": "plan", "equals": "pro"},
        {"lead": lead(fields={"plan": "Pro"})},
        True,
    ),
    # field in
    (
        "in",
        {"field": "industry", "in": ["manufacturing", "finance"]},
        {"lead": lead(industry="Finance")},
        True,
    ),
    (
        "in-out",
        {"field": "industry", "in": ["manufacturing", "finance"]},
        {"lead": lead(industry="software")},
        False,
    ),
    ("in-missing", {"field": "industry", "in": ["manufacturing"]}, {"lead": lead()}, False),
    ("in-numbers", {"field": "employees", "in": [10, 20]}, {"lead": lead(employees=20)}, True),
    # field at_least
    (
        "at-least-equal",
        {"field": "employees", "at_least": 1000},
        {"lead": lead(employees=1000)},
        True,
    ),
    (
        "at-least-below",
        {"field": "employees", "at_least": 1000},
        {"lead": lead(employees=999)},
        False,
    ),
    ("at-least-missing", {"field": "employees", "at_least": 1}, {"lead": lead()}, False),
    (
        "at-least-numeric-string",
        {"field": "seats", "at_least": 50},
        {"lead": lead(fields={"seats": "75"})},
        True,
    ),
    (
        "at-least-not-a-number",
        {"field": "seats", "at_least": 50},
        {"lead": lead(fields={"seats": "many"})},
        False,
    ),
    # all / any / not, nested
    (
        "all-true",
        {"all": [{"score_at_least": 10}, {"grade_in": ["A"]}]},
        {"score": 10, "grade": "A"},
        True,
    ),
    (
        "all-one-false",
        {"all": [{"score_at_least": 10}, {"grade_in": ["A"]}]},
        {"score": 10, "grade": "B"},
        False,
    ),
    (
        "any-one-true",
        {"any": [{"score_at_least": 10}, {"grade_in": ["A"]}]},
        {"score": 0, "grade": "A"},
        True,
    ),
    (
        "any-none-true",
        {"any": [{"score_at_least": 10}, {"grade_in": ["A"]}]},
        {"score": 0, "grade": "B"},
        False,
    ),
    ("not-true", {"not": {"grade_in": ["D"]}}, {"grade": "C"}, True),
    ("not-false", {"not": {"grade_in": ["D"]}}, {"grade": "D"}, False),
    (
        "nested",
        {
            "all": [
                {"grade_in": ["A", "B"]},
                {"any": [{"event": "email.clicked", "within": "10d"}, {"score_at_least": 25}]},
                {"not": {"field": "employees", "at_least": 10000}},
            ]
        },
        {
            "grade": "A",
            "score": 0,
            "engagements": [clicked(ago=timedelta(days=2))],
            "lead": lead(employees=500),
        },
        True,
    ),
    (
        "nested-inner-not-fails",
        {
            "all": [
                {"grade_in": ["A", "B"]},
                {"any": [{"event": "email.clicked", "within": "10d"}, {"score_at_least": 25}]},
                {"not": {"field": "employees", "at_least": 10000}},
            ]
        },
        {"grade": "A", "score": 30, "lead": lead(employees=20000)},
        False,
    ),
]


@pytest.mark.parametrize(
    ("condition", "fact_values", "expected"),
    [pytest.param(c, f, e, id=name) for name, c, f, e in CONDITION_CASES],
)
def test_branch_conditions(
    condition: dict[str, Any], fact_values: dict[str, Any], expected: bool
) -> None:
    c = cadence(
        {
            "id": "check",
            "type": "branch",
            "cases": [{"when": condition, "goto": "yes"}],
            "default": "no",
        },
        email("yes"),
        email("no"),
        email("hello"),
        email("bye"),
    )
    decision = run(c, "check", facts(**fact_values))
    assert decision.action.step == ("yes" if expected else "no")


def test_field_condition_needs_exactly_one_operator() -> None:
    with pytest.raises(ValueError, match="exactly one of equals, in, at_least"):
        cadence(
            {
                "id": "b",
                "type": "branch",
                "cases": [{"when": {"field": "x", "equals": 1, "at_least": 2}, "goto": "e"}],
            },
            email("e"),
        )


# --- entry routing ------------------------------------------------------------------------

ENTRY_CASES = [
    pytest.param(
        lead(source="webinar", country="JP"),
        "webinar-follow-up",
        "routing: source in webinar",
        id="first-match-wins",
    ),
    pytest.param(
        lead(source="Webinar "),
        "webinar-follow-up",
        "routing: source in webinar",
        id="lenient-match",
    ),
    pytest.param(lead(country="JP"), "inbound-ja", "routing: country = JP", id="second-rule"),
    pytest.param(
        lead(source="ads", country="US"), "inbound", "routing: default entry", id="catch-all"
    ),
]


@pytest.mark.parametrize(("who", "expected", "why"), ENTRY_CASES)
def test_entry_cadence(who: LeadFacts, expected: str, why: str) -> None:
    assert entry_cadence(PLAYBOOK, facts(lead=who)) == (expected, why)


def test_entry_cadence_without_a_catch_all_uses_the_last_entry() -> None:
    routing = PLAYBOOK.routing.model_copy(update={"entry": PLAYBOOK.routing.entry[:2]})
    playbook = PLAYBOOK.model_copy(update={"routing": routing})
    assert entry_cadence(playbook, facts(lead=lead(country="US"))) == (
        "inbound-ja",
        "routing: no rule matched, last entry used",
    )


@pytest.mark.parametrize(
    ("outcome", "names", "holds"),
    [
        (None, ["none"], True),  # the SDR recorded nothing before the wait ran out
        ("no_answer", ["none"], False),
        (None, ["no_answer", "voicemail"], False),  # nothing recorded is not a missed call
        ("voicemail", ["no_answer", "voicemail"], True),
        (None, ["connected", "none"], True),
    ],
)
def test_a_call_outcome_that_never_came_is_its_own_case(
    outcome: str | None, names: list[str], holds: bool
) -> None:
    from nurture.domain.cadence import CallOutcomeCondition
    from nurture.domain.conditions import describe, evaluate

    condition = CallOutcomeCondition.model_validate({"call_outcome": names})
    assert evaluate(condition, facts(last_call_outcome=outcome)) is holds
    if "none" in names:
        assert "no outcome came" in describe(condition)


def test_call_outcome_none_is_accepted_and_a_typo_is_not() -> None:
    from pydantic import ValidationError

    from nurture.domain.cadence import CallOutcomeCondition

    CallOutcomeCondition.model_validate({"call_outcome": ["none"]})
    with pytest.raises(ValidationError):
        CallOutcomeCondition.model_validate({"call_outcome": ["nothing"]})
