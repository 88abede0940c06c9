"""Score (interest, from behaviour) and grade (fit, from firmographics). Pure.

Every change keeps its reason so a lead's score and grade can be explained.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nurture.domain.cadence import Playbook
from nurture.domain.conditions import Facts, describe, evaluate, fields_used, in_tier
from nurture.domain.durations import later, parse_duration
from nurture.domain.events import LeadFacts


@dataclass(frozen=True)
class Points:
    points: int
    why: str


def event_points(playbook: Playbook, event_type: str, data: dict[str, Any]) -> Points | None:
    """The points an engagement event earns, or None when it earns nothing."""
    base = playbook.scoring.points.get(event_type, 0)  # type: ignore[call-overload]
    parts = [f"{event_type} +{base}"] if base else []
    total = base
    url = data.get("url")
    if event_type == "page.visited" and isinstance(url, str):
        for key, extra in playbook.scoring.page_points.items():
            if key in url:
                total += extra
                parts.append(f"{key} +{extra}")
    if total == 0:
        return None
    return Points(total, ", ".join(parts))


def apply(score: int, delta: int) -> int:
    """Scores never go below 0."""
    return max(0, score + delta)


def decay_due(
    playbook: Playbook, last_engagement: datetime, last_decay: datetime | None
) -> datetime | None:
    """When the next decay step is due: `after` of silence since the last engagement or decay.

    Total: an engagement dated near the end of time gives :data:`~nurture.domain.durations.NEVER`,
    not an OverflowError.
    """
    decay = playbook.scoring.decay
    if decay is None:
        return None
    start = max(last_engagement, last_decay) if last_decay else last_engagement
    return later(start, parse_duration(decay.after).calendar)


def decay_points(playbook: Playbook) -> int:
    return playbook.scoring.decay.points if playbook.scoring.decay else 0


def decay_period(playbook: Playbook) -> timedelta | None:
    return parse_duration(playbook.scoring.decay.after).calendar if playbook.scoring.decay else None


@dataclass(frozen=True)
class Grade:
    grade: str
    points: int
    why: tuple[str, ...]


def grade(playbook: Playbook, lead: LeadFacts, now: datetime) -> Grade:
    """Fit: the grading rules' points added up, then banded."""
    total = 0
    why: list[str] = []
    facts = Facts(lead=lead, now=now, tier_accounts=tuple(playbook.tier_accounts))
    listed = False
    for rule in playbook.grading.rules:
        if evaluate(rule.when, facts):
            total += rule.points
            why.append(f"{describe(rule.when)} +{rule.points}")
            listed = listed or "tier_account" in fields_used(rule.when)
    if listed and in_tier(lead.value("account"), facts.tier_accounts):
        # Say where a tier account comes from when the CRM did not say so.
        why.append(f"account {lead.value('account')} is in tier_accounts")
    return Grade(playbook.grading.band(total), total, tuple(why))


def is_hand_raiser(playbook: Playbook, event_type: str, data: dict[str, Any]) -> bool:
    """A hand-raise from `thresholds.hand_raisers`: `type`, or `type:form` for forms."""
    for spec in playbook.thresholds.hand_raisers:
        kind, _, form = spec.partition(":")
        if kind != event_type:
            continue
        if not form or str(data.get("form", "")).strip().lower() == form.strip().lower():
            return True
    return False


def reaches_toss_up(playbook: Playbook, score: int, grade_letter: str | None) -> bool:
    toss = playbook.thresholds.toss_up
    return score >= toss.score and (not toss.grades or grade_letter in toss.grades)


def reaches_mql(playbook: Playbook, score: int) -> bool:
    return score >= playbook.thresholds.mql.score


def recycle_key(playbook: Playbook, reason: str | None) -> str:
    """A loss reason matched to the playbook's recycle keys (case-insensitive, `-`/` ` as `_`)."""
    if reason:
        key = reason.strip().lower().replace("-", "_").replace(" ", "_")
        if key in playbook.routing.recycle:
            return key
    return "default"
