"""Properties of the interpreter and the lifecycle reducer, over generated inputs.

* Any *valid* cadence (every jump names a step or ``end``; every loop holds a wait or call
  step, as ``cadences validate`` requires) never crashes ``decide``, and running it
  (treating each email, wait and call as done and moving on with ``after``) either ends or
  reaches a wait or call step within a bounded number of actions.
* Any sequence of events, decay steps and recycle timers keeps the score at 0 or more and
  moves the stage only along the contract's transitions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nurture.domain import scoring
from nurture.domain.cadence import Cadence, Playbook
from nurture.domain.conditions import Engagement, Facts
from nurture.domain.durations import NEVER, later
from nurture.domain.events import CALL_OUTCOMES, ENGAGEMENT_TYPES, EVENT_TYPES, Event, LeadFacts
from nurture.domain.interpreter import (
    CreateCallTask,
    End,
    SendEmail,
    Wait,
    after,
    decide,
    first_step,
)
from nurture.domain.lifecycle import (
    Transition,
    apply_decay,
    apply_event,
    enter,
    next_decay_at,
    regrade,
)
from nurture.domain.state import FINAL_STAGES, TOUCH_STAGES, LeadState, Position

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
            "page_points": {"/pricing": 10, "/careers": -7},
            "decay": {"after": "30d", "points": 10},
        },
        "grading": {
            "rules": [
                {"when": {"field": "employees", "at_least": 1000}, "points": 30},
                {"when": {"field": "industry", "in": ["finance"]}, "points": 20},
                {"when": {"field": "tier_account", "equals": True}, "points": 40},
            ],
        },
        "thresholds": {
            "mql": {"score": 20},
            "toss_up": {"score": 40, "grades": ["A", "B"]},
            "hand_raisers": ["meeting.booked", "form.submitted:demo"],
        },
        "routing": {
            "entry": [{"cadence": "c"}],
            "mql_cadence": "c",
            "recycle": {
                "competitor": {"after": "60d", "cadence": "c"},
                "default": {"after": "30d", "cadence": "c"},
                "bad_fit": "never",
            },
        },
        "limits": {
            "send_window": {"days": ["mon", "tue", "wed", "thu", "fri"]},
            "holidays": ["2026-12-25", "2027-01-01"],
        },
        "sender": {"from": "Acme <hello@acme.example>", "postal_address": "1 Main St"},
    }
)

ZONES = [ZoneInfo(z) for z in ("UTC", "America/New_York", "Asia/Tokyo", "Asia/Kolkata")]
FIELDS = ("employees", "industry", "country", "tier_account", "plan")
DURATIONS = ("90s", "15m", "4h", "2d", "3w", "1 business day", "3 business days")
SLOW = ("wait", "call")  # the steps that take time: every loop must hold one

# --- generated cadences -------------------------------------------------------------------

field_values = st.one_of(
    st.integers(-10, 5000), st.sampled_from(["finance", "JP", "pro", "true", ""]), st.booleans()
)


def conditions(step_ids: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    event = st.builds(
        lambda kind, step, within: {
            "event": kind,
            **({"step": step} if step else {}),
            **({"within": within} if within else {}),
        },
        st.sampled_from(EVENT_TYPES),
        st.one_of(st.none(), st.sampled_from(step_ids)),
        st.one_of(st.none(), st.sampled_from(DURATIONS)),
    )
    field = st.builds(
        lambda name, op: {"field": name, **op},
        st.sampled_from(FIELDS),
        st.one_of(
            st.builds(lambda v: {"equals": v}, field_values),
            st.builds(lambda vs: {"in": vs}, st.lists(field_values, min_size=1, max_size=3)),
            st.builds(lambda v: {"at_least": v}, st.integers(-5, 5000)),
        ),
    )
    leaves = st.one_of(
        event,
        st.builds(lambda n: {"score_at_least": n}, st.integers(-5, 120)),
        st.builds(
            lambda gs: {"grade_in": gs},
            st.lists(st.sampled_from("ABCD"), min_size=1, max_size=3, unique=True),
        ),
        st.builds(
            lambda os: {"call_outcome": os},
            st.lists(st.sampled_from(CALL_OUTCOMES), min_size=1, max_size=3, unique=True),
        ),
        field,
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.builds(lambda cs: {"all": cs}, st.lists(children, min_size=1, max_size=3)),
            st.builds(lambda cs: {"any": cs}, st.lists(children, min_size=1, max_size=3)),
            st.builds(lambda c: {"not": c}, children),
        ),
        max_leaves=6,
    )


@st.composite
def valid_cadences(draw: st.DrawFn) -> Cadence:
    """A cadence ``cadences validate`` accepts, loops included.

    Email and branch steps (which take no time) only jump forward or to a wait or call
    step, so any loop passes through a wait or call; wait and call steps jump anywhere.
    """
    n = draw(st.integers(1, 8))
    ids = [f"s{i}" for i in range(n)]
    types = [draw(st.sampled_from(["email", "call", "wait", "branch", "exit"])) for _ in ids]
    slow = [ids[i] for i in range(n) if types[i] in SLOW]

    def target(i: int) -> str:
        legal = ids if types[i] in SLOW else ids[i + 1 :] + slow
        return draw(st.sampled_from([*legal, "end"]))

    steps: list[dict[str, Any]] = []
    for i, kind in enumerate(types):
        step: dict[str, Any] = {"id": ids[i], "type": kind}
        if draw(st.booleans()):
            step["next"] = target(i)
        if kind == "email":
            step["template"] = f"t/{ids[i]}"
        elif kind == "call":
            step["script"] = f"s/{ids[i]}"
            if draw(st.booleans()):
                step["due"] = draw(st.sampled_from(DURATIONS))
            if draw(st.booleans()):
                step["wait_for_outcome"] = draw(st.sampled_from(DURATIONS))
        elif kind == "wait":
            step["duration"] = draw(st.sampled_from(DURATIONS))
            step["until_any"] = draw(st.lists(st.sampled_from(EVENT_TYPES), max_size=2))
        elif kind == "branch":
            cases = draw(st.lists(conditions(ids), min_size=1, max_size=3))
            step["cases"] = [{"when": when, "goto": target(i)} for when in cases]
            if draw(st.booleans()):
                step["default"] = target(i)
        else:
            step["reason"] = "generated"
        steps.append(step)
    return Cadence.model_validate({"id": "c", "name": "generated", "steps": steps})


@st.composite
def facts(draw: st.DrawFn, step_ids: list[str]) -> Facts:
    now = draw(
        st.datetimes(
            min_value=datetime(2026, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(UTC)
        )
    )
    lead = LeadFacts(
        id="L-1",
        employees=draw(st.one_of(st.none(), st.integers(0, 20000))),
        industry=draw(st.one_of(st.none(), st.sampled_from(["finance", "software"]))),
        country=draw(st.one_of(st.none(), st.sampled_from(["JP", "US"]))),
        tier_account=draw(st.one_of(st.none(), st.booleans())),
        fields=draw(st.dictionaries(st.sampled_from(["plan", "vip"]), field_values, max_size=2)),
    )
    engagements = draw(
        st.lists(
            st.builds(
                Engagement,
                type=st.sampled_from(EVENT_TYPES),
                at=st.timedeltas(timedelta(0), timedelta(days=60)).map(lambda ago: now - ago),
                step=st.one_of(st.none(), st.sampled_from(step_ids)),
                cadence=st.sampled_from([None, "c", "other"]),
            ),
            max_size=5,
        )
    )
    return Facts(
        lead=lead,
        now=now,
        score=draw(st.integers(0, 150)),
        grade=draw(st.sampled_from([None, "A", "B", "C", "D"])),
        engagements=engagements,
        last_call_outcome=draw(st.one_of(st.none(), st.sampled_from(CALL_OUTCOMES))),
        cadence="c",
    )


@st.composite
def cadence_runs(draw: st.DrawFn) -> tuple[Cadence, Facts, ZoneInfo]:
    cadence = draw(valid_cadences())
    return cadence, draw(facts([s.id for s in cadence.steps])), draw(st.sampled_from(ZONES))


PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(cadence_runs())
def test_decide_never_crashes_on_a_valid_cadence(run: tuple[Cadence, Facts, ZoneInfo]) -> None:
    cadence, f, zone = run
    for step in [*(s.id for s in cadence.steps), "end"]:
        decision = decide(cadence, step, f, playbook=PLAYBOOK, zone=zone)
        action = decision.action
        assert isinstance(action, SendEmail | CreateCallTask | Wait | End)
        if isinstance(action, Wait):
            assert action.until > f.now
        if not isinstance(action, End) or action.exited:
            assert cadence.step(action.step).type == action.kind.replace("end", "exit")  # type: ignore[arg-type]


@PROPERTY
@given(cadence_runs())
def test_a_valid_cadence_ends_or_waits_within_a_bounded_number_of_actions(
    run: tuple[Cadence, Facts, ZoneInfo],
) -> None:
    cadence, f, zone = run
    emails = sum(1 for s in cadence.steps if s.type == "email")
    step = first_step(cadence)
    in_a_row = 0  # emails since the last wait or call: bounded, or the cadence spins
    for _ in range(4 * len(cadence.steps) + 4):
        action = decide(cadence, step, f, playbook=PLAYBOOK, zone=zone).action
        if isinstance(action, End):
            return
        if isinstance(action, SendEmail):
            in_a_row += 1
            assert in_a_row <= emails, "emails in a row with no wait or call: a tight loop"
        else:
            in_a_row = 0
            if isinstance(action, Wait):
                f = Facts(**{**f.__dict__, "now": action.until})
        step = after(cadence, action.step)


# --- generated lifecycles --------------------------------------------------------------------

# Every stage change the contract allows (sql -> closed includes a loss whose reason
# recycles `never`); lost -> recycling only by the recycle timer.
ALLOWED: set[tuple[str, str]] = {
    *((s, t) for s in ("nurturing", "recycling") for t in ("mql", "sql", "won", "closed")),
    ("mql", "sql"),
    ("mql", "won"),
    ("mql", "closed"),
    ("sql", "won"),
    ("sql", "lost"),
    ("sql", "closed"),
    ("lost", "sql"),
    ("lost", "won"),
    ("lost", "closed"),
    ("lost", "recycling"),
}

event_data = st.fixed_dictionaries(
    {},
    optional={
        "outcome": st.sampled_from([*CALL_OUTCOMES, "Qualified", ""]),
        "form": st.sampled_from(["demo", "Demo", "whitepaper"]),
        "reason": st.sampled_from(["competitor", "No Budget", "bad-fit", "bad fit", "", "other"]),
        "url": st.sampled_from(["/pricing", "/careers", "/blog"]),
        "step": st.sampled_from(["hello", "pause"]),
        "employees": st.integers(0, 5000),
        "industry": st.sampled_from(["finance", "software"]),
        "scanner": st.booleans(),
    },
)
steps = st.one_of(
    st.tuples(st.just("event"), st.sampled_from(EVENT_TYPES), event_data, st.booleans()),
    st.tuples(st.just("later"), st.integers(1, 45)),  # days pass: decay may fall due
    st.just(("recycle timer",)),
)

CADENCE = Cadence.model_validate(
    {
        "id": "c",
        "name": "c",
        "exit_on": ["email.replied"],
        "steps": [{"id": "hello", "type": "email", "template": "t"}],
    }
)


@settings(max_examples=200, deadline=None)
@given(st.lists(steps, max_size=40), st.integers(0, 60), st.booleans())
def test_events_keep_scores_non_negative_and_stages_on_the_contracts_paths(
    script: list[tuple[Any, ...]], start_score: int, big_fit: bool
) -> None:
    now = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    fit = {"employees": 1500, "industry": "finance"} if big_fit else {}
    state = LeadState(
        facts=LeadFacts(id="L-1", has_email=True, **fit), playbook=PLAYBOOK, score=start_score
    )
    regrade(state, now)
    state.position = Position(cadence=CADENCE, step="hello")
    seen: list[str] = []
    for n, item in enumerate(script):
        before = state.stage
        if item[0] == "event":
            _, kind, data, repeat = item
            event_id = seen[-1] if repeat and seen else f"e{n}"
            seen.append(event_id)
            effect = apply_event(
                state,
                Event(id=event_id, type=kind, lead_id="L-1", occurred_at=now, data=data),
                now,
            )
            if effect.duplicate:
                assert state.stage == before
            if effect.transition is not None:
                assert effect.transition.to != "recycling", "only the timer recycles"
                if effect.transition.to == "sql" and state.stage == "nurturing":
                    state.stage = "mql"  # the workflow records the MQL passage
                enter(state, effect.transition, now)
                if state.stage == "mql" and state.position is None:
                    state.position = Position(cadence=CADENCE, step="hello")
        elif item[0] == "later":
            now += timedelta(days=item[1])
            score = state.score
            apply_decay(state, now)
            assert state.score <= score
            assert state.stage == before, "decay never moves a stage"
        elif state.stage == "lost":
            now = max(now, state.recycle_at or now)
            enter(state, Transition(to="recycling", why="timer", trigger="timer"), now)
            assert state.score == 0
            state.position = Position(cadence=CADENCE, step="hello")
        assert state.score >= 0
        if state.stage != before:
            start = "mql" if before == "nurturing" and state.stage == "sql" else before
            assert (before, state.stage) in ALLOWED, f"{before} -> {state.stage} via {item}"
            assert (start, state.stage) in ALLOWED
        if before in FINAL_STAGES:
            assert state.stage == before
        if state.stage in TOUCH_STAGES | {"sql", "lost"}:
            assert state.stage not in FINAL_STAGES


# --- deadlines from times other systems sent ---------------------------------------------------

any_time = st.datetimes(
    min_value=datetime.min, max_value=datetime.max, timezones=st.sampled_from([UTC, *ZONES])
).filter(lambda at: _representable_in_utc(at))


def _representable_in_utc(at: datetime) -> bool:
    try:
        at.astimezone(UTC)
    except OverflowError:
        return False  # refused when posted ("out of range"); never reaches a workflow
    return True


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(any_time, st.sampled_from(sorted(ENGAGEMENT_TYPES))), min_size=1, max_size=4
    ),
    st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    st.integers(0, 400),
)
def test_no_event_time_makes_the_reducer_or_its_deadlines_raise(
    events: list[tuple[datetime, str]], now: datetime, days_later: int
) -> None:
    """Whatever a sender dated its events, the workflow's pure code stays total: a lead
    whose workflow task raised would fail on every retry (wedged), never to move again."""
    state = LeadState(facts=LeadFacts(id="L-1", has_email=True), playbook=PLAYBOOK)
    state.position = Position(cadence=CADENCE, step="hello")
    for n, (at, kind) in enumerate(events):
        apply_event(state, Event(id=f"e{n}", type=kind, lead_id="L-1", occurred_at=at), now)
        due = next_decay_at(state)
        assert due is None or due <= NEVER
        # The workflow's timer is the distance to the earliest deadline: it must exist too.
        assert due is None or isinstance(due - now, timedelta)
        apply_decay(state, now + timedelta(days=days_later))
        assert state.score >= 0
    assert scoring.decay_due(PLAYBOOK, events[-1][0].astimezone(UTC), NEVER) == NEVER


@given(any_time, st.timedeltas(min_value=timedelta(0)))
def test_later_is_total_and_never_past_never(at: datetime, delta: timedelta) -> None:
    at = at.astimezone(UTC)
    result = later(at, delta)
    try:
        exact: datetime | None = at + delta
    except OverflowError:
        exact = None
    if exact is not None and exact <= NEVER:
        assert result == exact
    else:
        assert result == NEVER
