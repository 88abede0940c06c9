"""The vocabulary and the idempotency keys: each written once, and the keys never respelled."""

from __future__ import annotations

from typing import get_args

from nurture.domain import keys
from nurture.domain.events import Event
from nurture.domain.state import LeadState
from nurture.domain.vocabulary import (
    CALL_OUTCOMES,
    ENGAGEMENT_TYPES,
    EVENT_TYPES,
    FINAL_STAGES,
    STAGES,
    TOSS_UP_OUTCOMES,
    TOUCH_STAGES,
)


def test_key_strings_are_the_ones_stored_in_rows_and_histories() -> None:
    # Outbox, task and opportunity rows and recorded workflow histories hold these exact
    # strings: a respelling would send a touch twice or lose a lead's visit count.
    assert keys.touch("L-1", 2, "inbound", "welcome", 3) == "L-1|2|inbound|welcome|3"
    assert keys.opportunity("L-1", 2) == "L-1|2"
    assert keys.sales_follow_up("L-1", 2) == "L-1|2|follow-up"
    assert keys.closed_with_sales("L-1", 2) == "L-1|2|closed"
    assert keys.notification("L-1|2|inbound|call|1") == "notify|L-1|2|inbound|call|1"
    assert keys.handoff_notification("L-1|2") == "notify|handoff|L-1|2"
    assert keys.crm_toss_up("L-1|2") == "tossup-L-1|2"
    assert keys.visit_counter("inbound", "welcome") == "inbound|welcome"
    assert keys.touch_step("L-1|2|inbound|welcome|3") == ("inbound", "welcome")
    assert keys.touch_step("notify|L-1|2") is None


def test_the_models_accept_exactly_the_vocabulary() -> None:
    # The tuples are read from the Literals the models validate with, so they cannot drift.
    assert get_args(LeadState.model_fields["stage"].annotation) == STAGES
    assert get_args(Event.model_fields["type"].annotation) == EVENT_TYPES
    assert STAGES == ("nurturing", "mql", "sql", "won", "lost", "recycling", "closed")
    assert len(CALL_OUTCOMES) == 8 and len(EVENT_TYPES) == 18


def test_subsets_name_only_known_words() -> None:
    assert set(STAGES) >= TOUCH_STAGES | FINAL_STAGES
    assert not TOUCH_STAGES & FINAL_STAGES
    assert set(EVENT_TYPES) >= ENGAGEMENT_TYPES
    assert set(CALL_OUTCOMES) >= TOSS_UP_OUTCOMES
