"""The words the lead's life is told in: stages, event types and call outcomes, once each.

Each is a ``Literal`` (what pydantic validates and mypy checks) and its tuple is read from
it with ``get_args``, so a new word is written in one place. Pure, with no imports beyond
``typing``: the workflow sandbox passes this module through.
"""

from __future__ import annotations

from typing import Literal, get_args

# CONTRACT.md, "Temporal, as ops see it". The order is the order a lead meets them.
Stage = Literal["nurturing", "mql", "sql", "won", "lost", "recycling", "closed"]
STAGES: tuple[Stage, ...] = get_args(Stage)
# The stages a lead is touched in (emails and calls), where a next touch can be due.
TOUCH_STAGES: frozenset[Stage] = frozenset({"nurturing", "mql", "recycling"})
# The stages a lead never leaves: its workflow ends there.
FINAL_STAGES: frozenset[Stage] = frozenset({"won", "closed"})

EventType = Literal[
    "lead.updated",
    "email.opened",
    "email.clicked",
    "email.replied",
    "email.bounced",
    # An out-of-office or other auto-reply (CONTRACT.md, "Mail that comes back"): not a
    # reply and not scored; the lead's touches wait until data.until.
    "email.auto_replied",
    "page.visited",
    "form.submitted",
    "webinar.registered",
    "webinar.attended",
    "meeting.booked",
    "call.completed",
    "handoff.rejected",
    "opportunity.won",
    "opportunity.lost",
    "lead.unsubscribed",
    "lead.do_not_contact",
    "lead.erased",
]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)
# Engagement: behaviour that scores and can wake a wait.
ENGAGEMENT_TYPES: frozenset[EventType] = frozenset(
    {
        "email.opened",
        "email.clicked",
        "email.replied",
        "page.visited",
        "form.submitted",
        "webinar.registered",
        "webinar.attended",
        "meeting.booked",
    }
)

# CONTRACT.md, "Call outcomes".
CallOutcome = Literal[
    "connected",
    "qualified",
    "meeting_booked",
    "voicemail",
    "no_answer",
    "wrong_number",
    "not_interested",
    "call_back_later",
]
CALL_OUTCOMES: tuple[CallOutcome, ...] = get_args(CallOutcome)
TOSS_UP_OUTCOMES: frozenset[CallOutcome] = frozenset({"qualified", "meeting_booked"})
# What a branch condition may name besides the outcomes: ``none``, the call step's outcome
# never came (the SDR recorded nothing before ``wait_for_outcome`` ran out). Told apart from
# ``no_answer`` and ``voicemail``: nobody may claim a call that never happened.
NO_CALL_OUTCOME = "none"
CallOutcomeOrNone = Literal[
    "connected",
    "qualified",
    "meeting_booked",
    "voicemail",
    "no_answer",
    "wrong_number",
    "not_interested",
    "call_back_later",
    "none",
]
assert get_args(CallOutcomeOrNone) == (*CALL_OUTCOMES, NO_CALL_OUTCOME)
