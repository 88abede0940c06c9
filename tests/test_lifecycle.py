"""nurture.domain.lifecycle: the contract's "What each event does in each stage" table, row by row.

Each row puts a lead in a stage, applies one event with ``apply_event``, performs the stage
change it asks for with ``enter`` (as the workflow does), and checks the stage and score.
The playbook mirrors CONTRACT.md: MQL at 40, toss-up at 80 with grade A or B, hand-raisers
``meeting.booked`` and ``form.submitted:demo``. Grades: 1,000+ employees (+30) in finance
(+20) is B; 1,000+ employees alone is C; no fields is D.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nurture.domain.cadence import Cadence, Playbook
from nurture.domain.events import EVENT_TYPES, Event, LeadFacts
from nurture.domain.lifecycle import (
    EventEffect,
    Transition,
    apply_decay,
    apply_event,
    enter,
    next_decay_at,
    regrade,
    take_owner,
    threshold_transition,
)
from nurture.domain.state import TOUCH_STAGES, LeadState, Position

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)

PLAYBOOK = Playbook.model_validate(
    {
        "scoring": {
            "points": {
                "email.opened": 1,
                "email.clicked": 5,
                "email.replied": 15,
                "page.visited": 2,
                "form.submitted": 10,
                "webinar.attended": 20,
            },
            "page_points": {"/pricing": 10, "/careers": -5},
            "decay": {"after": "30d", "points": 10},
        },
        "grading": {
            "rules": [
                {"when": {"field": "employees", "at_least": 1000}, "points": 30},
                {"when": {"field": "industry", "in": ["manufacturing", "finance"]}, "points": 20},
                {"when": {"field": "tier_account", "equals": True}, "points": 40},
            ],
            "bands": {"A": 70, "B": 40, "C": 20, "D": 0},
        },
        "thresholds": {
            "mql": {"score": 40},
            "toss_up": {"score": 80, "grades": ["A", "B"]},
            "sales_follow_up": "14d",
            "hand_raisers": ["meeting.booked", "form.submitted:demo"],
        },
        "routing": {
            "entry": [{"cadence": "inbound"}],
            "mql_cadence": "mql-sdr",
            "recycle": {
                "competitor": {"after": "180d", "cadence": "recycle-competitor"},
                "no_budget": {"after": "90d", "cadence": "recycle-budget"},
                "timing": {"after": "60d", "cadence": "recycle-timing"},
                "default": {"after": "30d", "cadence": "recycle-generic"},
                "bad_fit": "never",
            },
        },
        "sender": {"from": "Acme <hello@acme.example>", "postal_address": "1 Main St"},
    }
)

CADENCE = Cadence.model_validate(
    {
        "id": "inbound",
        "name": "Inbound",
        "exit_on": ["email.replied", "meeting.booked"],
        "steps": [
            {"id": "hello", "type": "email", "template": "t/hello"},
            {"id": "pause", "type": "wait", "duration": "2d"},
        ],
    }
)

FIT_B = {"employees": 1500, "industry": "finance"}
FIT_C = {"employees": 1500}
ALL_STAGES = ("nurturing", "mql", "recycling", "sql", "lost", "won", "closed")
OPEN_STAGES = ("nurturing", "mql", "recycling", "sql", "lost")
FINAL = ("won", "closed")

_ids = itertools.count(1)


def lead_state(stage: str = "nurturing", score: int = 0, **fields: Any) -> LeadState:
    """A lead in ``stage``: touch stages run CADENCE (waiting in `pause`)."""
    state = LeadState(
        facts=LeadFacts(id="L-1", has_email=True, **fields),
        playbook=PLAYBOOK,
        stage=stage,  # type: ignore[arg-type]
        score=score,
    )
    regrade(state, NOW)
    if stage in TOUCH_STAGES:
        state.position = Position(cadence=CADENCE, step="pause")
    if stage == "sql":
        state.tossed_up_at = NOW - timedelta(days=1)
    if stage == "lost":
        state.lost_reason = "default"
        state.recycle_at = NOW + timedelta(days=10)
    return state


def event(kind: str, *, event_id: str | None = None, **data: Any) -> Event:
    return Event(
        id=event_id or f"evt-{next(_ids)}",
        type=kind,  # type: ignore[arg-type]
        lead_id="L-1",
        occurred_at=NOW,
        data=data,
    )


def drive(state: LeadState, evt: Event, now: datetime = NOW) -> EventEffect:
    """Apply an event and perform the stage change it asks for, as the workflow does."""
    effect = apply_event(state, evt, now)
    if effect.transition is not None:
        enter(state, effect.transition, now)
    return effect


# --- the table ------------------------------------------------------------------------------

# (stage, event type, data, lead: score and fields, expected stage, expected score)
Row = tuple[str, str, dict[str, Any], dict[str, Any], str, int]

ROWS: list[tuple[str, Row]] = [
    # engagement: scores in every open stage, recorded only in won/closed
    *[(f"click-in-{s}", (s, "email.clicked", {}, {}, s, 5)) for s in OPEN_STAGES],
    *[(f"click-in-{s}", (s, "email.clicked", {}, {"score": 30}, s, 30)) for s in FINAL],
    ("page-pricing", ("nurturing", "page.visited", {"url": "/pricing"}, {}, "nurturing", 12)),
    (
        "page-pricing-full-url",
        (
            "nurturing",
            "page.visited",
            {"url": "https://acme.example/pricing?plan=pro"},
            {},
            "nurturing",
            12,
        ),
    ),
    ("page-other", ("nurturing", "page.visited", {"url": "/blog"}, {}, "nurturing", 2)),
    ("page-no-url", ("nurturing", "page.visited", {}, {}, "nurturing", 2)),
    ("no-points-in-playbook", ("nurturing", "webinar.registered", {}, {}, "nurturing", 0)),
    (
        "link-scanner-scores-nothing",
        ("nurturing", "email.clicked", {"scanner": True}, {}, "nurturing", 0),
    ),
    ("webinar-in-sql", ("sql", "webinar.attended", {}, {}, "sql", 20)),
    # engagement may reach MQL (only from nurturing or recycling) or toss-up (touch stages)
    ("mql-from-nurturing", ("nurturing", "email.clicked", {}, {"score": 38}, "mql", 43)),
    ("mql-from-recycling", ("recycling", "email.clicked", {}, {"score": 38}, "mql", 43)),
    ("already-mql", ("mql", "email.clicked", {}, {"score": 38}, "mql", 43)),
    ("no-mql-in-sql", ("sql", "email.clicked", {}, {"score": 38}, "sql", 43)),
    ("no-mql-in-lost", ("lost", "email.clicked", {}, {"score": 38}, "lost", 43)),
    ("toss-up-from-mql", ("mql", "email.clicked", {}, {"score": 78, **FIT_B}, "sql", 83)),
    (
        "toss-up-straight-from-nurturing",
        ("nurturing", "email.clicked", {}, {"score": 78, **FIT_B}, "sql", 83),
    ),
    (
        "toss-up-from-recycling",
        ("recycling", "email.clicked", {}, {"score": 78, **FIT_B}, "sql", 83),
    ),
    ("grade-c-stays-mql", ("mql", "email.clicked", {}, {"score": 78, **FIT_C}, "mql", 83)),
    (
        "grade-c-reaches-only-mql",
        ("nurturing", "email.clicked", {}, {"score": 78, **FIT_C}, "mql", 83),
    ),
    ("no-threshold-in-lost", ("lost", "email.clicked", {}, {"score": 78, **FIT_B}, "lost", 83)),
    # hand-raisers: toss up at once in touch stages and lost; recorded in sql
    *[
        (f"meeting-in-{s}", (s, "meeting.booked", {}, {}, "sql", 0))
        for s in (*TOUCH_STAGES, "lost")
    ],
    ("meeting-in-sql", ("sql", "meeting.booked", {}, {}, "sql", 0)),
    *[(f"meeting-in-{s}", (s, "meeting.booked", {}, {}, s, 0)) for s in FINAL],
    ("demo-form", ("nurturing", "form.submitted", {"form": "demo"}, {}, "sql", 10)),
    ("demo-form-any-case", ("mql", "form.submitted", {"form": " Demo "}, {}, "sql", 10)),
    ("demo-form-in-lost", ("lost", "form.submitted", {"form": "demo"}, {}, "sql", 10)),
    (
        "other-form-only-scores",
        ("nurturing", "form.submitted", {"form": "whitepaper"}, {}, "nurturing", 10),
    ),
    ("form-without-name", ("nurturing", "form.submitted", {}, {}, "nurturing", 10)),
    # call.completed: qualified / meeting_booked toss up, only in touch stages
    *[
        (f"qualified-in-{s}", (s, "call.completed", {"outcome": "qualified"}, {}, "sql", 0))
        for s in TOUCH_STAGES
    ],
    (
        "meeting-booked-outcome",
        ("mql", "call.completed", {"outcome": "meeting_booked"}, {}, "sql", 0),
    ),
    ("outcome-normalized", ("mql", "call.completed", {"outcome": " Qualified "}, {}, "sql", 0)),
    ("no-answer-stays", ("mql", "call.completed", {"outcome": "no_answer"}, {}, "mql", 0)),
    *[
        (f"qualified-in-{s}", (s, "call.completed", {"outcome": "qualified"}, {}, s, 0))
        for s in ("sql", "lost", *FINAL)
    ],
    # opportunity.won: won from every open stage; recorded only once final
    *[(f"won-in-{s}", (s, "opportunity.won", {}, {}, "won", 0)) for s in OPEN_STAGES],
    *[(f"won-in-{s}", (s, "opportunity.won", {}, {}, s, 0)) for s in FINAL],
    # opportunity.lost / handoff.rejected: only with sales
    ("lost-in-sql", ("sql", "opportunity.lost", {"reason": "competitor"}, {}, "lost", 0)),
    ("rejected-in-sql", ("sql", "handoff.rejected", {"reason": "timing"}, {}, "lost", 0)),
    *[
        (f"lost-in-{s}", (s, "opportunity.lost", {"reason": "competitor"}, {}, s, 0))
        for s in (*TOUCH_STAGES, "lost", *FINAL)
    ],
    *[
        (f"rejected-in-{s}", (s, "handoff.rejected", {}, {}, s, 0))
        for s in (*TOUCH_STAGES, "lost", *FINAL)
    ],
    # lead.updated: regrade; may toss up in touch stages
    ("update-tosses-up", ("mql", "lead.updated", FIT_B, {"score": 85}, "sql", 85)),
    (
        "update-tosses-up-from-nurturing",
        ("nurturing", "lead.updated", FIT_B, {"score": 85}, "sql", 85),
    ),
    ("update-below-threshold", ("mql", "lead.updated", FIT_B, {"score": 50}, "mql", 50)),
    ("update-in-sql", ("sql", "lead.updated", FIT_B, {"score": 85}, "sql", 85)),
    ("update-in-lost", ("lost", "lead.updated", FIT_B, {"score": 85}, "lost", 85)),
    # lead.do_not_contact / lead.erased: closed from every open stage
    *[(f"dnc-in-{s}", (s, "lead.do_not_contact", {}, {}, "closed", 0)) for s in OPEN_STAGES],
    *[(f"erased-in-{s}", (s, "lead.erased", {}, {}, "closed", 0)) for s in OPEN_STAGES],
    *[(f"dnc-in-{s}", (s, "lead.do_not_contact", {}, {}, s, 0)) for s in FINAL],
    # lead.unsubscribed never changes the stage
    *[(f"unsubscribed-in-{s}", (s, "lead.unsubscribed", {}, {}, s, 0)) for s in ALL_STAGES],
]


@pytest.mark.parametrize("row", [pytest.param(row, id=name) for name, row in ROWS])
def test_what_each_event_does_in_each_stage(row: Row) -> None:
    stage, kind, data, start, expected_stage, expected_score = row
    start = dict(start)
    state = lead_state(stage, start.pop("score", 0), **start)
    drive(state, event(kind, **data))
    assert (state.stage, state.score) == (expected_stage, expected_score)


def test_engagement_wakes_waits_and_call_outcomes_reach_the_call_step() -> None:
    state = lead_state("mql")
    assert apply_event(state, event("page.visited"), NOW).wake_type == "page.visited"
    effect = apply_event(state, event("call.completed", outcome="no_answer"), NOW)
    assert (effect.wake_type, effect.call_outcome) == ("call.completed", "no_answer")
    assert state.position is not None and state.position.last_call_outcome == "no_answer"
    assert apply_event(state, event("lead.updated", industry="retail"), NOW).wake_type is None


def test_call_outcomes_with_sales_are_recorded_not_acted_on() -> None:
    state = lead_state("sql")
    effect = apply_event(state, event("call.completed", outcome="qualified"), NOW)
    assert effect.transition is None and effect.call_outcome is None
    assert state.history[-1].what == "call outcome: qualified"


def test_updates_regrade_in_every_open_stage_but_not_once_final() -> None:
    for stage in OPEN_STAGES:
        state = lead_state(stage)
        assert state.grade == "D"
        apply_event(state, event("lead.updated", **FIT_B), NOW)
        assert state.grade == "B", stage
        assert state.facts.employees == 1500
    won = lead_state("won")
    apply_event(won, event("lead.updated", **FIT_B), NOW)
    assert (won.grade, won.facts.employees) == ("D", None)


def test_updates_keep_personal_data_out_and_free_fields_in() -> None:
    state = lead_state("nurturing")
    apply_event(
        state, event("lead.updated", first_name="Ann", email="", plan="pro", employees=20), NOW
    )
    assert state.facts.fields == {"plan": "pro"}
    assert state.facts.has_email is False
    assert "first_name" not in state.facts.model_dump_json()


def test_an_invalid_update_is_ignored_with_a_note() -> None:
    state = lead_state("nurturing", **FIT_B)
    apply_event(state, event("lead.updated", employees="lots"), NOW)
    assert state.facts.employees == 1500
    assert state.history[-1].what == "lead.updated ignored"


@pytest.mark.parametrize("stage", OPEN_STAGES)
def test_unsubscribe_stops_email_only(stage: str) -> None:
    state = lead_state(stage)
    effect = drive(state, event("lead.unsubscribed"))
    assert state.unsubscribed is True
    assert effect.transition is None and effect.exit_cadence is None


def test_erase_closes_and_asks_for_erasure() -> None:
    state = lead_state("sql")
    effect = drive(state, event("lead.erased"))
    assert effect.transition is not None and effect.transition.erase is True
    assert (state.stage, state.position) == ("closed", None)


@pytest.mark.parametrize("stage", FINAL)
@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_won_and_closed_leads_only_record(stage: str, kind: str) -> None:
    state = lead_state(stage, 30)
    before = state.model_dump(exclude={"history", "seen_event_ids"})
    effect = apply_event(
        state, event(kind, outcome="qualified", form="demo", reason="x", employees=5000), NOW
    )
    assert effect.transition is None and effect.exit_cadence is None
    assert state.model_dump(exclude={"history", "seen_event_ids"}) == before
    assert state.history[-1].what == f"{kind} recorded"


@pytest.mark.parametrize("stage", OPEN_STAGES)
def test_a_duplicate_event_id_changes_nothing(stage: str) -> None:
    state = lead_state(stage, 38)
    first = event("email.clicked", event_id="evt-dup")
    apply_event(state, first, NOW)
    after_first = state.model_dump()
    again = apply_event(state, event("form.submitted", event_id="evt-dup", form="demo"), NOW)
    assert again == EventEffect(duplicate=True)
    assert state.model_dump() == after_first


# --- scores ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("start", "expected"), [(0, 0), (2, 0), (10, 7)])
def test_scores_never_go_below_zero(start: int, expected: int) -> None:
    state = lead_state("nurturing", start)
    drive(state, event("page.visited", url="/careers"))  # +2 - 5
    assert state.score == expected
    assert state.score_log[-1].score == expected


@pytest.mark.parametrize(
    ("stage", "score"), [("mql", 45), ("sql", 85), ("lost", 50), ("recycling", 15)]
)
def test_decay_lowers_the_score_but_never_moves_the_stage(stage: str, score: int) -> None:
    state = lead_state(stage, score, **FIT_B)
    state.last_engagement_at = NOW - timedelta(days=30)
    assert next_decay_at(state) == NOW
    assert apply_decay(state, NOW - timedelta(seconds=1)) is False
    assert apply_decay(state, NOW) is True
    assert (state.stage, state.score) == (stage, score - 10)
    assert threshold_transition(state) is None
    # The next step is due 30 days after this one, not after the engagement.
    assert next_decay_at(state) == NOW + timedelta(days=30)
    assert apply_decay(state, NOW + timedelta(days=29)) is False


def test_decay_stops_at_zero_and_never_in_final_stages() -> None:
    state = lead_state("nurturing", 5)
    state.last_engagement_at = NOW - timedelta(days=40)
    assert apply_decay(state, NOW) is True
    assert state.score == 0
    assert next_decay_at(state) is None
    assert apply_decay(state, NOW + timedelta(days=60)) is False
    won = lead_state("won", 50)
    won.last_engagement_at = NOW - timedelta(days=40)
    assert apply_decay(won, NOW) is False
    assert won.score == 50


# --- stage changes ------------------------------------------------------------------------


def test_toss_up_straight_from_nurturing_skips_nothing_the_reducer_decides() -> None:
    # Score and grade both reach toss-up at once: the transition is to sql (the workflow
    # records the MQL passage on the way; see test_simulate).
    state = lead_state("nurturing", 78, **FIT_B)
    effect = drive(state, event("email.clicked"))
    assert effect.transition is not None and effect.transition.to == "sql"
    assert effect.transition.why == "score 83 >= 80 and grade B in A/B"
    assert (state.stage, state.position, state.tossed_up_at) == ("sql", None, NOW)


def test_mql_switches_to_the_mql_cadence() -> None:
    state = lead_state("nurturing", 38)
    drive(state, event("email.clicked"))
    assert (state.stage, state.position, state.pending_cadence) == ("mql", None, "mql-sdr")


def test_exit_on_stops_the_cadence_but_scores_still_count() -> None:
    state = lead_state("nurturing")
    effect = drive(state, event("email.replied"))
    assert effect.exit_cadence == "email.replied (exit_on of inbound)"
    assert (state.stage, state.score) == ("nurturing", 15)


def test_exit_on_gives_way_to_a_stage_change() -> None:
    state = lead_state("nurturing")
    effect = drive(state, event("meeting.booked"))  # in exit_on, and a hand-raiser
    assert effect.exit_cadence is None
    assert state.stage == "sql"


def test_exit_on_does_nothing_once_the_cadence_rests() -> None:
    state = lead_state("nurturing")
    assert state.position is not None
    state.position.step = None
    assert apply_event(state, event("email.replied"), NOW).exit_cadence is None


LOSS_REASONS = [
    ("competitor", "lost", "competitor", timedelta(days=180), "recycle-competitor"),
    ("Competitor", "lost", "competitor", timedelta(days=180), "recycle-competitor"),
    ("No Budget", "lost", "no_budget", timedelta(days=90), "recycle-budget"),
    ("no-budget", "lost", "no_budget", timedelta(days=90), "recycle-budget"),
    ("  NO_BUDGET ", "lost", "no_budget", timedelta(days=90), "recycle-budget"),
    ("Timing", "lost", "timing", timedelta(days=60), "recycle-timing"),
    ("went with spreadsheets", "lost", "default", timedelta(days=30), "recycle-generic"),
    ("", "lost", "default", timedelta(days=30), "recycle-generic"),
    (None, "lost", "default", timedelta(days=30), "recycle-generic"),
    ("bad fit", "closed", "bad_fit", None, None),
    ("Bad-Fit", "closed", "bad_fit", None, None),
]


@pytest.mark.parametrize(("reason", "stage", "key", "timer", "cadence"), LOSS_REASONS)
@pytest.mark.parametrize("kind", ["opportunity.lost", "handoff.rejected"])
def test_loss_reasons_pick_the_recycle_rule(
    kind: str,
    reason: str | None,
    stage: str,
    key: str,
    timer: timedelta | None,
    cadence: str | None,
) -> None:
    state = lead_state("sql", 60, **FIT_C)
    data = {} if reason is None else {"reason": reason}
    drive(state, event(kind, **data))
    assert (state.stage, state.lost_reason) == (stage, key)
    if timer is None:
        assert state.recycle_at is None
        return
    assert state.recycle_at == NOW + timer
    # The timer elapses: the lead recycles into the reason's cadence.
    later = NOW + timer
    enter(state, Transition(to="recycling", why="timer", trigger="timer"), later)
    assert (state.stage, state.pending_cadence, state.cycle) == ("recycling", cadence, 1)


def test_a_playbook_without_a_default_closes_an_unknown_reason() -> None:
    routing = PLAYBOOK.routing.model_copy(
        update={"recycle": {"competitor": PLAYBOOK.routing.recycle["competitor"]}}
    )
    state = lead_state("sql")
    state.playbook = PLAYBOOK.model_copy(update={"routing": routing})
    drive(state, event("opportunity.lost", reason="no budget"))
    assert (state.stage, state.recycle_at) == ("closed", None)


def test_recycling_resets_the_score_and_keeps_the_grade() -> None:
    state = lead_state("sql", 85, **FIT_B)
    state.last_decay_at = NOW - timedelta(days=5)
    drive(state, event("opportunity.lost", reason="timing"))
    assert (state.stage, state.score, state.grade) == ("lost", 85, "B")
    enter(state, Transition(to="recycling", why="timer", trigger="timer"), NOW + timedelta(days=60))
    assert (state.stage, state.score, state.grade, state.cycle) == ("recycling", 0, "B", 1)
    assert state.last_decay_at is None and state.recycle_at is None
    assert state.score_log[-1].why == "recycling: interest must be earned again"
    # Interest is earned again from zero: MQL needs the full 40 points.
    drive(state, event("webinar.attended"))
    assert (state.stage, state.score) == ("recycling", 20)


def test_a_recycled_lead_earns_its_engagement_again() -> None:
    # A click from the last cycle must not satisfy "clicked this step's email" in the next
    # one: the recycle cadence may run the same steps again.
    state = lead_state("mql")
    drive(state, event("email.clicked", step="hello"))
    state.stage = "sql"
    state.position = None
    drive(state, event("opportunity.lost", reason="timing"))
    enter(state, Transition(to="recycling", why="timer", trigger="timer"), NOW + timedelta(days=60))
    assert state.engagements == []
    assert state.last_engagement_at is not None  # decay still counts silence from the click


def test_a_hand_raiser_while_lost_ends_the_recycle_wait() -> None:
    state = lead_state("lost", 10)
    effect = drive(state, event("meeting.booked"))
    assert effect.transition is not None and effect.transition.why == "hand-raiser meeting.booked"
    assert (state.stage, state.tossed_up_at) == ("sql", NOW)


def test_the_strongest_transition_wins() -> None:
    ranks = ["mql", "recycling", "lost", "sql", "won", "closed"]
    for weaker, stronger in itertools.pairwise(ranks):
        low = Transition(to=weaker, why="", trigger="t")  # type: ignore[arg-type]
        high = Transition(to=stronger, why="", trigger="t")  # type: ignore[arg-type]
        assert high.stronger_than(low) and not low.stronger_than(high)
        assert low.stronger_than(None)


def test_an_owner_is_taken_once_and_noted() -> None:
    state = lead_state("sql")
    assert take_owner(state, "aiko", NOW, "assigned at toss-up")
    assert state.owner == "aiko"
    assert (state.history[-1].what, state.history[-1].why) == ("owner aiko", "assigned at toss-up")
    noted = len(state.history)
    # The same owner again, or none at all, changes nothing and notes nothing.
    assert not take_owner(state, "aiko", NOW, "again")
    assert not take_owner(state, None, NOW, "nobody")
    assert state.owner == "aiko" and len(state.history) == noted


def test_an_auto_reply_holds_until_the_stated_day_in_the_leads_zone() -> None:
    state = lead_state(country="JP")
    effect = apply_event(state, event("email.auto_replied", step="hello", until="2026-12-14"), NOW)
    assert state.away_until == datetime(2026, 12, 13, 15, 0, tzinfo=UTC)  # midnight in Tokyo
    assert state.score == 0 and effect.wake_type is None and effect.exit_cadence is None
    assert state.history[-1].what == "out of office until 2026-12-14"


def test_an_auto_reply_without_a_date_holds_for_limits_out_of_office() -> None:
    state = lead_state()
    apply_event(state, event("email.auto_replied", until="not a date"), NOW)
    assert state.away_until == NOW + timedelta(days=7)
    assert "limits.out_of_office (7d)" in state.history[-1].why


def test_a_reply_ends_an_out_of_office_hold() -> None:
    state = lead_state()
    apply_event(state, event("email.auto_replied"), NOW)
    apply_event(state, event("email.replied", step="hello"), NOW)
    assert state.away_until is None
