"""Evaluating the conditions of branches, grading rules and routing. Pure.

A condition sees a :class:`Facts` view: the lead's decision fields, score, grade, recent
engagement and the last call outcome, and the current time (passed in, never read).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nurture.domain.cadence import (
    AllCondition,
    AnyCondition,
    CallOutcomeCondition,
    Condition,
    EventCondition,
    FieldCondition,
    GradeCondition,
    NotCondition,
    ScoreCondition,
)
from nurture.domain.durations import parse_duration
from nurture.domain.events import LeadFacts
from nurture.domain.vocabulary import NO_CALL_OUTCOME


@dataclass(frozen=True)
class Engagement:
    """An event the lead did, as branch conditions see it."""

    type: str
    at: datetime
    step: str | None = None
    cadence: str | None = None


@dataclass(frozen=True)
class Facts:
    """Everything a condition may look at."""

    lead: LeadFacts
    now: datetime
    score: int = 0
    grade: str | None = None
    engagements: Sequence[Engagement] = field(default_factory=tuple)
    last_call_outcome: str | None = None
    cadence: str | None = None
    # The playbook's `tier_accounts` (normalized): a lead of one of them is a tier account.
    tier_accounts: tuple[str, ...] = ()

    def value(self, name: str) -> Any:
        """A lead field as rules see it: ``tier_account`` is true when the CRM says so *or*
        the lead's account is in the playbook's ``tier_accounts`` (see :func:`in_tier`)."""
        value = self.lead.value(name)
        if name == "tier_account" and in_tier(self.lead.value("account"), self.tier_accounts):
            return True
        return value


def in_tier(account: Any, tier_accounts: Sequence[str]) -> bool:
    """Whether ``account`` is one of ``tier_accounts`` or a subdomain of one of them
    (``eu.initech.example`` belongs to ``initech.example``)."""
    if not isinstance(account, str) or not account or not tier_accounts:
        return False
    key = account.strip().lower()
    return any(
        key == t or (not t.startswith("company:") and key.endswith("." + t)) for t in tier_accounts
    )


def evaluate(condition: Condition, facts: Facts) -> bool:
    """Whether ``condition`` holds for ``facts``."""
    match condition:
        case EventCondition():
            return _event_happened(condition, facts)
        case ScoreCondition():
            return facts.score >= condition.score_at_least
        case GradeCondition():
            return facts.grade is not None and facts.grade in condition.grade_in
        case CallOutcomeCondition():
            # No outcome recorded is its own case (`none`), never a missed call.
            return (facts.last_call_outcome or NO_CALL_OUTCOME) in condition.call_outcome
        case FieldCondition():
            return _field_matches(condition, facts.value(condition.field))
        case AllCondition():
            return all(evaluate(c, facts) for c in condition.all)
        case AnyCondition():
            return any(evaluate(c, facts) for c in condition.any)
        case NotCondition():
            return not evaluate(condition.not_, facts)
    raise TypeError(f"unknown condition {condition!r}")


def _event_happened(condition: EventCondition, facts: Facts) -> bool:
    since = None
    if condition.within is not None:
        since = facts.now - parse_duration(condition.within).calendar
    for item in facts.engagements:
        if item.type != condition.event:
            continue
        # A step names a step of the cadence being run: the click on *this* welcome email.
        if condition.step is not None and (
            item.step != condition.step
            or (facts.cadence and item.cadence not in (None, facts.cadence))
        ):
            continue
        if since is not None and item.at < since:
            continue
        return True
    return False


def _norm(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _field_matches(condition: FieldCondition, value: Any) -> bool:
    if condition.at_least is not None:
        try:
            return value is not None and float(value) >= float(condition.at_least)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
    if condition.in_ is not None:
        return _norm(value) in {_norm(v) for v in condition.in_ or []}
    # Marketers write `tier_account: true` and CRMs send "true"; compare leniently.
    expected = condition.equals
    if isinstance(expected, bool) and isinstance(value, str):
        return value.strip().lower() in (("true", "yes", "1") if expected else ("false", "no", "0"))
    return _norm(value) == _norm(expected)


def describe(condition: Condition) -> str:
    """A condition in a few words, for reasons, histories and graphs (``score ≥ 20``)."""
    match condition:
        case EventCondition():
            text: str = condition.event
            if condition.step:
                text += f" on {condition.step}"
            if condition.within:
                text += f" within {condition.within}"
            return text
        case ScoreCondition():
            return f"score ≥ {condition.score_at_least}"
        case GradeCondition():
            return f"grade {'/'.join(condition.grade_in)}"
        case CallOutcomeCondition():
            names = [
                "no outcome came" if o == NO_CALL_OUTCOME else o for o in condition.call_outcome
            ]
            return f"outcome {'/'.join(names)}"
        case FieldCondition():
            # By value, not by "set" fields: a snapshot that went through JSON has them all.
            if condition.in_ is not None:
                return f"{condition.field} in {'/'.join(_shown(v) for v in condition.in_)}"
            if condition.at_least is not None:
                return f"{condition.field} ≥ {_shown(condition.at_least)}"
            return f"{condition.field} = {_shown(condition.equals)}"
        case AllCondition():
            return " and ".join(_grouped(c) for c in condition.all)
        case AnyCondition():
            return " or ".join(_grouped(c) for c in condition.any)
        case NotCondition():
            return f"not {_grouped(condition.not_)}"
    return repr(condition)


def _grouped(condition: Condition) -> str:
    text = describe(condition)
    return f"({text})" if isinstance(condition, AllCondition | AnyCondition) else text


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def fields_used(condition: Condition) -> set[str]:
    """The lead field names a condition reads (to keep other free fields out of workflows)."""
    match condition:
        case FieldCondition():
            return {condition.field}
        case AllCondition():
            return set().union(*(fields_used(c) for c in condition.all))
        case AnyCondition():
            return set().union(*(fields_used(c) for c in condition.any))
        case NotCondition():
            return fields_used(condition.not_)
    return set()
