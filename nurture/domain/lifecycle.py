"""What each event does in each stage (CONTRACT.md table), as a pure reducer over LeadState.

The lead workflow feeds events and timers in here and performs what comes out; nothing in
this module does I/O or reads a clock, so the whole table is tested without a server.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from nurture.domain import calendars, scoring, timing
from nurture.domain.cadence import Limits, Playbook
from nurture.domain.conditions import Engagement, Facts
from nurture.domain.durations import later, parse_duration
from nurture.domain.events import (
    ENGAGEMENT_TYPES,
    PERSONAL_FIELDS,
    TOSS_UP_OUTCOMES,
    Event,
    LeadFacts,
    parse_callback,
)
from nurture.domain.state import (
    ENGAGEMENTS_KEEP,
    FINAL_STAGES,
    HISTORY_KEEP,
    SCORE_LOG_KEEP,
    SEEN_EVENTS_KEEP,
    TOUCH_STAGES,
    EngagementItem,
    HistoryEntry,
    LeadState,
    ScoreChange,
    Stage,
)

# When several events ask for different stages at once, the strongest wins.
_PRIORITY: dict[Stage, int] = {"closed": 6, "won": 5, "sql": 4, "lost": 3, "recycling": 2, "mql": 1}


class Transition(BaseModel):
    """A stage change asked for by an event, a threshold or a timer."""

    to: Stage
    why: str
    trigger: str
    loss_reason: str | None = None
    erase: bool = False

    def stronger_than(self, other: Transition | None) -> bool:
        return other is None or _PRIORITY[self.to] > _PRIORITY[other.to]


class EventEffect(BaseModel):
    """What the workflow must do after an event was applied."""

    duplicate: bool = False
    transition: Transition | None = None
    exit_cadence: str | None = None  # why the cadence stops early (exit_on)
    call_outcome: str | None = None
    wake_type: str | None = None  # the event type, for `until_any` waits
    scanner: bool = False  # a link scanner's click or a machine's open: recorded only


def note(state: LeadState, at: datetime, what: str, why: str) -> None:
    """Add a history entry (bounded; the app database keeps the full history)."""
    state.history.append(HistoryEntry(at=at, what=what, why=why))
    if len(state.history) > HISTORY_KEEP:
        del state.history[: len(state.history) - HISTORY_KEEP]


def opted_out(state: LeadState) -> str:
    """Why an email of an unsubscribed lead is skipped, in the words of its history."""
    return f"address suppressed: {state.suppressed}" if state.suppressed else "unsubscribed"


def take_owner(state: LeadState, owner: str | None, at: datetime, why: str) -> bool:
    """Make ``owner`` the lead's owner, noted; False (nothing noted) when nothing changes."""
    if not owner or owner == state.owner:
        return False
    note(state, at, f"owner {owner}", why)
    state.owner = owner
    return True


def facts_view(state: LeadState, now: datetime) -> Facts:
    """What cadence conditions see now."""
    position = state.position
    return Facts(
        lead=state.facts,
        now=now,
        score=state.score,
        grade=state.grade,
        engagements=tuple(
            Engagement(type=e.type, at=e.at, step=e.step, cadence=e.cadence)
            for e in state.engagements
        ),
        last_call_outcome=position.last_call_outcome if position else None,
        cadence=position.cadence.id if position else None,
        tier_accounts=tuple(state.playbook.tier_accounts),
    )


def regrade(state: LeadState, now: datetime) -> bool:
    """Recompute the grade from the lead's fields; True when it changed."""
    result = scoring.grade(state.playbook, state.facts, now)
    changed = result.grade != state.grade
    state.grade = result.grade
    state.grade_why = [f"{result.points} fit points"] + list(result.why)
    return changed


def change_score(
    state: LeadState, at: datetime, delta: int, why: str, event_id: str | None
) -> None:
    before = state.score
    state.score = scoring.apply(state.score, delta)
    state.score_log.append(
        ScoreChange(
            at=at, delta=state.score - before, score=state.score, why=why, event_id=event_id
        )
    )
    if len(state.score_log) > SCORE_LOG_KEEP:
        del state.score_log[: len(state.score_log) - SCORE_LOG_KEEP]


def threshold_transition(state: LeadState) -> Transition | None:
    """Toss-up or MQL reached by score and grade, in a stage where that counts."""
    if state.stage not in TOUCH_STAGES:
        return None
    playbook = state.playbook
    if scoring.reaches_toss_up(playbook, state.score, state.grade):
        toss = playbook.thresholds.toss_up
        grades = f" and grade {state.grade} in {'/'.join(toss.grades)}" if toss.grades else ""
        return Transition(
            to="sql",
            why=f"score {state.score} >= {toss.score}{grades}",
            trigger="threshold",
        )
    if state.stage in ("nurturing", "recycling") and scoring.reaches_mql(playbook, state.score):
        return Transition(
            to="mql",
            why=f"score {state.score} >= {playbook.thresholds.mql.score}",
            trigger="threshold",
        )
    return None


# How many rule changes a lead's history names; the rest are counted.
CHANGES_NOTED = 6


def apply_playbook(state: LeadState, playbook: Playbook, now: datetime) -> Transition | None:
    """A playbook rolled out to the lead in flight (``playbook rollout``): policy for everyone.

    The lead regrades under the new rules and notes what changed, for it too (its grade);
    touches it holds are re-planned by the machine. Cadence versions stay pinned (they move
    only by ``cadences migrate``); a recycle timer already running keeps its time.

    Returns the stage change the new thresholds reach at once, if any.
    """
    old = state.playbook
    if playbook.version == old.version:
        return None
    changes = playbook.changes_from(old)
    state.playbook = playbook
    grade_before = state.grade
    regrade(state, now)
    shown = changes[:CHANGES_NOTED]
    if len(changes) > CHANGES_NOTED:
        shown.append(f"and {len(changes) - CHANGES_NOTED} more")
    if state.grade != grade_before:
        shown.append(f"grade {grade_before or 'none'} -> {state.grade or 'none'}")
    note(state, now, f"playbook {playbook.version} applied", "; ".join(shown) or "no rule changed")
    return threshold_transition(state)


def _remember(state: LeadState, event_id: str) -> bool:
    """False when the event id was seen already (at-least-once delivery)."""
    if event_id in state.seen_event_ids:
        return False
    state.seen_event_ids.append(event_id)
    if len(state.seen_event_ids) > SEEN_EVENTS_KEEP:
        del state.seen_event_ids[: len(state.seen_event_ids) - SEEN_EVENTS_KEEP]
    return True


def apply_event(state: LeadState, event: Event, now: datetime) -> EventEffect:
    """Apply one event to the lead's state, following the contract's stage table.

    Args:
        state: mutated in place.
        event: the event as signaled.
        now: workflow time (events without `occurred_at` happened now).
    """
    if not _remember(state, event.id):
        return EventEffect(duplicate=True)
    at = event.occurred_at or now
    kind = event.type
    effect = EventEffect()
    stage = state.stage
    if stage in FINAL_STAGES:
        note(state, now, f"{kind} recorded", f"the lead is {stage}; nothing changes")
        return effect

    if kind == "email.replied":
        # Someone who answers is back: an out-of-office hold ends.
        state.away_until = None
    if kind in ENGAGEMENT_TYPES:
        _engage(state, event, at, now, effect)
    elif kind == "call.completed":
        outcome = str(event.data.get("outcome", "")).strip().lower() or None
        note(state, now, f"call outcome: {outcome or 'none given'}", _by(event))
        if stage in TOUCH_STAGES:
            effect.call_outcome = outcome
            if state.position is not None:
                state.position.last_call_outcome = outcome
                state.position.callback_at = (
                    callback_time(event.data.get("callback"), state.facts)
                    if outcome == "call_back_later"
                    else None
                )
            if outcome in TOSS_UP_OUTCOMES:
                effect.transition = Transition(
                    to="sql", why=f"SDR call outcome {outcome}", trigger="call.completed"
                )
    elif kind == "lead.updated":
        _update_fields(state, event, now)
        if stage in TOUCH_STAGES:
            effect.transition = threshold_transition(state)
    elif kind == "opportunity.won":
        effect.transition = Transition(to="won", why="opportunity won", trigger=kind)
    elif kind in ("opportunity.lost", "handoff.rejected"):
        reason = str(event.data.get("reason") or "").strip() or None
        if stage == "sql":
            what = (
                "opportunity lost" if kind == "opportunity.lost" else "sales rejected the handoff"
            )
            effect.transition = Transition(
                to="lost",
                why=f"{what}: {reason or 'no reason given'}",
                trigger=kind,
                loss_reason=reason,
            )
        else:
            note(state, now, f"{kind} recorded", f"the lead is {stage}, not with sales")
    elif kind == "lead.unsubscribed":
        if not state.unsubscribed:
            state.unsubscribed = True
            suppressed = event.data.get("suppressed")
            if suppressed:
                # The address bounced (on this lead, or on another with the same address).
                state.suppressed = str(suppressed)[:200]
                via = f" ({event.data['via']})" if event.data.get("via") else ""
                note(
                    state,
                    now,
                    f"address suppressed: {state.suppressed}",
                    f"no more email to this address{via}; calls go on",
                )
            else:
                note(state, now, "unsubscribed", "no more email; calls go on")
    elif kind == "email.auto_replied":
        # Not a reply and not engagement: no points, no wake-up; the touches wait.
        state.away_until, why = away_until(state, event, at)
        day = state.away_until.astimezone(_zone(state)).date().isoformat()
        note(state, now, f"out of office until {day}", why)
    elif kind == "email.bounced":
        bounce = "hard" if str(event.data.get("kind") or "").lower() == "hard" else "soft"
        note(state, now, "email bounced", str(event.data.get("reason") or f"{bounce} bounce"))
    elif kind == "lead.do_not_contact":
        effect.transition = Transition(to="closed", why="do not contact", trigger=kind)
    elif kind == "lead.erased":
        # The account is a domain, but may be a person's own: it goes with the rest.
        state.facts = state.facts.model_copy(update={"account": None})
        effect.transition = Transition(
            to="closed", why="personal data erased on request", trigger=kind, erase=True
        )

    if (kind in ENGAGEMENT_TYPES and not effect.scanner) or kind == "call.completed":
        effect.wake_type = kind
    if (
        stage in TOUCH_STAGES
        and state.position is not None
        and kind in state.position.cadence.exit_on
        and state.position.step is not None
        and effect.transition is None
    ):
        effect.exit_cadence = f"{kind} (exit_on of {state.position.cadence.id})"
    return effect


# The longest hold an auto-reply's stated return date may ask for.
MAX_AWAY = timedelta(days=366)


def limits_of(state: LeadState) -> Limits:
    """The playbook's limits as they hold for this lead (its country's and public holidays)."""
    return calendars.lead_limits(state.playbook.limits, state.facts.country, state.public_holidays)


def _zone(state: LeadState) -> ZoneInfo:
    return timing.lead_zone(state.facts.timezone, state.facts.country)


def away_until(state: LeadState, event: Event, at: datetime) -> tuple[datetime, str]:
    """When an auto-replying lead is back: the start of the stated return day (``data.until``,
    an ISO date, in the lead's zone), else ``limits.out_of_office`` after the auto-reply.
    Total over any data: a bad or far date falls back to the default, or is capped."""
    zone = _zone(state)
    stated = event.data.get("until")
    if isinstance(stated, str):
        try:
            day = date.fromisoformat(stated.strip()[:10])
        except ValueError:
            day = None
        if day is not None:
            start = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
            return min(start, later(at, MAX_AWAY)), "the auto-reply states its return date"
    default = state.playbook.limits.out_of_office
    until = timing.add_duration(at, default, zone, limits_of(state))
    return until, f"an auto-reply with no return date: limits.out_of_office ({default})"


def callback_time(value: object, facts: LeadFacts) -> datetime | None:
    """The time a ``call_back_later`` outcome asks for: ISO 8601; without an offset it is
    the lead's own local time (the SDR agreed it with the lead). None when absent or bad
    (the intake refuses a bad one before it reaches the workflow)."""
    try:
        at = parse_callback(value)
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=timing.lead_zone(facts.timezone, facts.country))
    return at.astimezone(UTC)


def _by(event: Event) -> str:
    parts = [f"event {event.id}"]
    if event.data.get("task"):
        parts.append(f"task {event.data['task']}")
    return ", ".join(parts)


def _engage(
    state: LeadState, event: Event, at: datetime, now: datetime, effect: EventEffect
) -> None:
    kind = event.type
    # Link scanners click everything and image proxies fetch every message, seconds after
    # delivery: recorded, and nothing more (no points, no "clicked" or "opened" for
    # branches, no early wake-up, no reset of the decay clock).
    if event.data.get("scanner"):
        who = "a link scanner" if kind == "email.clicked" else "a machine, not a reader"
        note(state, now, f"{kind} recorded", f"looks like {who}; no points")
        effect.scanner = True
        return
    step = event.data.get("step")
    cadence = event.data.get("cadence") or (state.position.cadence.id if state.position else None)
    state.engagements.append(
        EngagementItem(type=kind, at=at, step=str(step) if step else None, cadence=cadence)
    )
    if len(state.engagements) > ENGAGEMENTS_KEEP:
        del state.engagements[: len(state.engagements) - ENGAGEMENTS_KEEP]
    if state.last_engagement_at is None or at > state.last_engagement_at:
        state.last_engagement_at = at

    points = scoring.event_points(state.playbook, kind, event.data)
    if points is not None:
        change_score(state, at, points.points, points.why, event.id)
        note(state, now, f"score {state.score}", f"{points.why} (event {event.id})")
    else:
        note(state, now, f"{kind}", f"event {event.id}; no points in the playbook")

    if scoring.is_hand_raiser(state.playbook, kind, event.data) and state.stage in (
        *TOUCH_STAGES,
        "lost",
    ):
        form = f" ({event.data['form']})" if event.data.get("form") else ""
        effect.transition = Transition(to="sql", why=f"hand-raiser {kind}{form}", trigger=kind)
        return
    effect.transition = threshold_transition(state)


def _update_fields(state: LeadState, event: Event, now: datetime) -> None:
    data = {k: v for k, v in event.data.items() if k not in PERSONAL_FIELDS and k != "id"}
    if "email" in event.data:
        # Only whether an address exists matters here; the address stays in the app database.
        data["has_email"] = bool(event.data.get("email"))
    known = set(LeadFacts.model_fields) - {"id", "fields"}
    current = state.facts.model_dump()
    fields = dict(current.get("fields") or {})
    for key, value in data.items():
        if key in known:
            current[key] = value
        elif key == "fields" and isinstance(value, dict):
            fields.update(value)
        else:
            fields[key] = value
    current["fields"] = fields
    try:
        state.facts = LeadFacts.model_validate(current)
    except ValueError as exc:
        note(state, now, "lead.updated ignored", f"invalid fields: {exc}"[:300])
        return
    before = state.grade
    if regrade(state, now):
        note(state, now, f"grade {state.grade}", f"was {before}; " + "; ".join(state.grade_why))
    else:
        note(
            state,
            now,
            "lead updated",
            f"fields {', '.join(sorted(data)) or 'none'}; grade stays {state.grade}",
        )


def apply_decay(state: LeadState, now: datetime) -> bool:
    """Take decay points after silence; True when the score changed. Never moves a stage back."""
    if state.last_engagement_at is None or state.stage in FINAL_STAGES:
        return False
    due = scoring.decay_due(state.playbook, state.last_engagement_at, state.last_decay_at)
    if due is None or now < due:
        return False
    state.last_decay_at = now
    points = scoring.decay_points(state.playbook)
    if state.score == 0:
        return False
    change_score(
        state, now, -points, f"no engagement for {state.playbook.scoring.decay.after}", None
    )  # type: ignore[union-attr]
    note(state, now, f"score {state.score}", f"decay: -{points} after silence")
    return True


def next_decay_at(state: LeadState) -> datetime | None:
    if state.last_engagement_at is None or state.score == 0 or state.stage in FINAL_STAGES:
        return None
    return scoring.decay_due(state.playbook, state.last_engagement_at, state.last_decay_at)


def enter(state: LeadState, transition: Transition, now: datetime) -> str | None:
    """Move the lead to the transition's stage; returns the cadence to enter, if any."""
    before = state.stage
    state.stage = transition.to
    state.next_touch_at = None
    playbook = state.playbook
    cadence: str | None = None
    if transition.to == "mql":
        cadence = playbook.routing.mql_cadence
    elif transition.to == "sql":
        state.tossed_up_at = now
        state.position = None
        if before == "lost":
            # A hand-raise while waiting to recycle is a new pass through sales: its own
            # cycle, so its opportunity, notices and funnel row are not taken for the last.
            state.cycle += 1
            state.visits = {}
            state.recycle_at = None
    elif transition.to == "lost":
        state.position = None
        key = scoring.recycle_key(playbook, transition.loss_reason)
        state.lost_reason = key
        rule = playbook.routing.recycle.get(key)
        if rule is None or rule == "never":
            # `never` closes the lead; an absent default recycles nothing: close honestly.
            state.stage = "closed"
            state.recycle_at = None
            note(state, now, "closed", f"lost ({key}): the playbook recycles it never")
            return None
        state.recycle_at = now + parse_duration(rule.after).calendar
    elif transition.to == "recycling":
        state.cycle += 1
        state.visits = {}
        state.score = 0
        state.last_decay_at = None
        # Interest is earned again: a click from the last cycle must not satisfy a branch's
        # "clicked this step's email" when the recycle cadence runs that step anew.
        state.engagements.clear()
        state.score_log.append(
            ScoreChange(at=now, delta=0, score=0, why="recycling: interest must be earned again")
        )
        rule = playbook.routing.recycle.get(state.lost_reason or "default")
        cadence = rule.cadence if rule is not None and rule != "never" else None
        state.recycle_at = None
    elif transition.to in FINAL_STAGES:
        state.position = None
    note(state, now, f"stage {before} -> {state.stage}", transition.why)
    if cadence is not None:
        state.position = None
        state.pending_cadence = cadence
    return cadence
