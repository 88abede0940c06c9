"""The account governor's decision: may this touch go now, else until when and why.

Leads of one account (CONTRACT.md, "Accounts and people": the email domain, or the
normalized company name for free-mail domains) share the caps of ``limits.account``, and
with ``one_conversation`` the account talks to us through one lead at a time: while one of
its leads is in ``mql`` or ``sql`` (with an SDR, or with sales), the other leads' nurture
touches wait. Caps and gaps also count per person, across lead ids: two leads with one
email address (a webinar sign-up and a form) are one person.

Shape, and why. The decision is this pure function; two shells feed it:

- live, an activity (``nurture/activities/accounts.py``) takes a *transactional reservation*
  in the app database just before the touch: it locks the account's row and the address's
  row (in one order, so two reservations never deadlock; on SQLite the write transaction
  begins IMMEDIATE, which serializes them), reads the touches already granted to the
  account and the address and the account's leads in conversation, asks :func:`decide`,
  and records the grant under the touch's idempotency key, so a retried activity re-finds
  its grant instead of taking a second one. The state is in the database, which survives
  worker restarts, and two leads of one account deciding in the same second are ordered by
  the lock: the second one sees the first one's grant.
- in ``cadences simulate`` an in-memory governor (``nurture/services/simulate.py``) keeps
  the same facts for several leads on one virtual clock and asks the same function.

An account entity workflow granting slots through updates was the other candidate. A lead
workflow cannot send an update itself (it would go through an activity anyway), the
time-skipping test server does not support update-with-start, and an entity workflow is
one more history per account to continue-as-new and to replay; the app database already
holds the addresses and accounts (personal data that must stay out of Temporal), so the
reservation lives next to them.

The lead machine asks only when the playbook has ``limits.account`` or per-lead caps, and
only once its own limits (window, caps, pause) let the touch go; a held touch sleeps until
the answer's time, or until the conversation that held it ends (the lead leaving mql/sql
signals its account's leads), with :data:`CONVERSATION_RECHECK` as the backstop if that
signal is lost. Nothing is dropped: the step stays current and asks again.

Pure: no clock, no I/O, nothing from temporalio. No personal data in what it returns: the
account is named by its key only when that is a domain (a company name is personal data
here), the other lead by its id, its owner by SDR id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from nurture.domain import timing
from nurture.domain.cadence import Limits

__all__ = [
    "CONVERSATION_RECHECK",
    "CONVERSATION_STAGES",
    "Conversation",
    "Granted",
    "Verdict",
    "account_label",
    "decide",
    "governed",
]

CONVERSATION_STAGES: frozenset[str] = frozenset({"mql", "sql"})
"""A lead in one of these stages is in conversation with the account (an SDR, or sales)."""

CONVERSATION_RECHECK = timedelta(hours=6)
"""A touch held by a conversation asks again at least this often, so a lost release
signal delays it by hours, never forever."""

Channel = Literal["email", "call"]


@dataclass(frozen=True, slots=True)
class Granted:
    """A touch the governor let go: whose, when, which channel."""

    lead_id: str
    at: datetime
    channel: Channel


@dataclass(frozen=True, slots=True)
class Conversation:
    """A lead of the account in ``mql`` or ``sql``, and its owner (an SDR id)."""

    lead_id: str
    stage: str
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The governor's answer.

    Attributes:
        at: when the touch may go; ``now`` itself when it may go at once.
        reasons: why it may not go sooner (empty when it goes at once).
        conversation: held by another lead's conversation: the hold also ends when that
            conversation does (a release signal), and ``at`` is only the backstop re-check.
    """

    at: datetime
    reasons: list[str] = field(default_factory=list)
    conversation: bool = False

    @property
    def granted(self) -> bool:
        return not self.reasons


def governed(limits: Limits) -> bool:
    """Whether touches under ``limits`` ask the governor at all.

    With neither ``limits.account`` nor a per-lead cap or gap there is nothing to share
    across leads, so the common case costs no activity.
    """
    return (
        limits.account is not None
        or limits.max_emails_per_week is not None
        or limits.min_gap_between_touches is not None
    )


def account_label(account: str | None) -> str:
    """How an account is named in histories: its key when it is a domain; else "the
    account" (a free-mail lead's account key is its company's name, kept out of Temporal)."""
    if account and not account.startswith("company:") and "." in account:
        return account
    return "the account"


def decide(
    now: datetime,
    *,
    lead_id: str,
    stage: str,
    channel: Channel,
    limits: Limits,
    zone: ZoneInfo,
    account: str | None,
    account_touches: list[Granted],
    person_touches: list[Granted],
    conversations: list[Conversation],
) -> Verdict:
    """May the touch of ``lead_id`` go at ``now``; else until when, and why.

    Args:
        now: the instant of the decision (workflow time), aware.
        lead_id: the lead asking.
        stage: its stage (a lead in mql or sql is itself the conversation: the account's
            limits never hold it; the per-person ones still do).
        channel: ``email`` or ``call``.
        limits: the lead's playbook limits (``limits.account`` and the per-lead caps, which
            here count per person across lead ids; the send window and holidays).
        zone: the lead's zone (the window that a cap pushed past closing time reopens in).
        account: the lead's account key, None when it has none (no address, no company).
        account_touches: touches granted to any lead of the account (its own included).
        person_touches: touches granted to any lead with the lead's email address.
        conversations: the account's leads in mql or sql.

    Returns:
        The verdict: granted at ``now``, or held until ``at`` with the reasons.
    """
    reasons: list[str] = []
    ready = now
    shared = limits.account
    # The account's limits pace its nurture; a lead in mql or sql is the conversation
    # itself (an SDR's calls, sales): its touches count toward them but are never held.
    if account is not None and shared is not None and stage not in CONVERSATION_STAGES:
        label = account_label(account)
        if shared.one_conversation:
            others = sorted(
                (c for c in conversations if c.lead_id != lead_id), key=lambda c: c.lead_id
            )
            if others:
                talk = others[0]
                who = talk.owner or ("sales" if talk.stage == "sql" else "an SDR")
                return Verdict(
                    at=now + CONVERSATION_RECHECK,
                    reasons=[f"{label} is in conversation with {who} via {talk.lead_id}"],
                    conversation=True,
                )
        account_limits = limits.model_copy(
            update={
                "max_emails_per_week": shared.max_emails_per_week,
                "min_gap_between_touches": shared.min_gap_between_touches,
            }
        )
        slot = _slot(now, zone, account_limits, channel, account_touches)
        if slot.deferred:
            reasons.extend(f"{label}: {r}" for r in slot.reasons)
            ready = max(ready, slot.at)
    others_of_person = [t for t in person_touches if t.lead_id != lead_id]
    if others_of_person:
        # The lead's own touches are counted by its own limits already; the person's are
        # those of every lead id with the address.
        slot = _slot(now, zone, limits, channel, person_touches)
        if slot.deferred:
            reasons.extend(f"this address (several lead ids): {r}" for r in slot.reasons)
            ready = max(ready, slot.at)
    if not reasons:
        return Verdict(at=now)
    # Two holds that each land inside the window: the later one is inside it too.
    return Verdict(at=ready, reasons=_unique(reasons))


def _slot(
    now: datetime, zone: ZoneInfo, limits: Limits, channel: Channel, touches: list[Granted]
) -> timing.TouchSlot:
    emails = [t.at for t in touches if t.channel == "email"]
    last = max((t.at for t in touches), default=None)
    return timing.earliest_touch(
        now, zone, limits, channel=channel, emails_sent=emails, last_touch=last
    )


def _unique(items: list[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
