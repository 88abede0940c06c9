"""The account governor's reservation in the app database (the decision itself is pure:
:func:`nurture.domain.governor.decide`; why this shape: that module's docstring).

A reservation locks the account's and the person's rows of ``governor_locks`` (in sorted
order: two reservations never deadlock), reads what was granted to them and which of the
account's leads are in conversation, decides, and records the grant under the touch's
idempotency key, all in one transaction. On PostgreSQL the locks are row locks (an
``INSERT ... ON CONFLICT DO UPDATE`` locks the row it finds) and each later statement reads what was
committed before it (READ COMMITTED); on SQLite the first write begins the transaction
IMMEDIATE, which takes the database's write lock, so reservations are serialized.

The person is a keyed hash of the address (``person:<hash>``): the address itself never
leaves the ``leads`` table, and the hash means nothing without the app's secret.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from nurture.adapters.database import GovernorLock, LeadRow, TouchGrant
from nurture.domain import governor, timing
from nurture.domain import messages as am
from nurture.domain.events import address_key
from nurture.domain.state import TOUCH_STAGES

# How far back grants are read: the longest cap is a rolling week; a gap longer than that
# is counted from the week's grants only (a wider look would be unbounded).
LOOK_BACK = timing.WEEK * 2


def person_key(secret: str, email: str) -> str:
    """The person an address stands for, as a keyed hash (32 hex characters)."""
    digest = hmac.new(secret.encode(), address_key(email).encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


async def lock(session: AsyncSession, keys: Iterable[str], now: datetime) -> None:
    """Take the governor's lock rows ``keys`` until the session's transaction ends.

    Args:
        session: an open session; nothing decision-relevant should have been read in its
            transaction before (on SQLite, reads before the first write see no lock).
        keys: ``account:<key>`` and ``person:<hash>`` strings.
        now: stamped on the rows (when they were last taken).
    """
    dialect = session.get_bind().dialect.name
    upsert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(dialect)
    if upsert is None:
        raise ValueError(f"no governor lock for the {dialect} dialect")
    for key in sorted(set(keys)):
        # One statement: a new row, or the existing one updated; either way locked.
        await session.execute(
            upsert(GovernorLock)
            .values(key=key, at=now)
            .on_conflict_do_update(index_elements=["key"], set_={"at": now})
        )


def account_lock(account: str) -> str:
    """The lock row of an account: a hash of its key, because lock rows outlive an erase and
    a free-mail lead's account key is its company's name."""
    return "account:" + hashlib.blake2b(account.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Reservation:
    """What :func:`reserve` answered, and whether a grant was recorded now."""

    result: am.ReserveTouchResult
    recorded: bool


async def reserve(session: AsyncSession, secret: str, request: am.ReserveTouchInput) -> Reservation:
    """Decide the touch ``request.key`` and record it when granted; commits.

    A key granted before (a retried activity) gets the same grant back, decided at once.
    A lead whose row is gone (erased, or never recorded) is granted: its own limits still
    hold in its workflow, and the email activity decides whether anything can be sent.
    """
    found = await session.get(TouchGrant, request.key)
    if found is not None:
        return Reservation(am.ReserveTouchResult(at=found.at), recorded=False)
    lead = await session.get(LeadRow, request.lead_id)
    account = lead.account if lead is not None else None
    person = person_key(secret, lead.email) if lead is not None and lead.email else None
    keys = [account_lock(account)] if account else []
    if person:
        keys.append(f"person:{person}")
    await lock(session, keys, request.now)
    # Under the locks: a concurrent attempt of the same key may have won meanwhile.
    found = await session.get(TouchGrant, request.key, populate_existing=True)
    if found is not None:
        await session.commit()
        return Reservation(am.ReserveTouchResult(at=found.at), recorded=False)
    since = request.now - LOOK_BACK
    account_touches: list[governor.Granted] = []
    person_touches: list[governor.Granted] = []
    conversations: list[governor.Conversation] = []
    if account or person:
        ours = []
        if account:
            ours.append(TouchGrant.account == account)
        if person:
            ours.append(TouchGrant.person == person)
        rows = (
            await session.scalars(select(TouchGrant).where(or_(*ours), TouchGrant.at > since))
        ).all()
        for row in rows:
            granted = governor.Granted(lead_id=row.lead_id, at=row.at, channel=row.channel)  # type: ignore[arg-type]
            if account and row.account == account:
                account_touches.append(granted)
            if person and row.person == person:
                person_touches.append(granted)
    if account:
        talking = await session.execute(
            select(LeadRow.id, LeadRow.stage, LeadRow.owner).where(
                LeadRow.account == account,
                LeadRow.stage.in_(sorted(governor.CONVERSATION_STAGES)),
                LeadRow.id != request.lead_id,
            )
        )
        conversations = [
            governor.Conversation(lead_id=i, stage=s, owner=o) for i, s, o in talking.all()
        ]
    verdict = governor.decide(
        request.now,
        lead_id=request.lead_id,
        stage=request.stage,
        channel=request.channel,
        limits=request.limits,
        zone=timing.lead_zone(request.zone, None),
        account=account,
        account_touches=account_touches,
        person_touches=person_touches,
        conversations=conversations,
    )
    if verdict.granted:
        session.add(
            TouchGrant(
                key=request.key,
                lead_id=request.lead_id,
                account=account,
                person=person,
                channel=request.channel,
                at=request.now,
            )
        )
    await session.commit()
    result = am.ReserveTouchResult(
        at=verdict.at, reasons=verdict.reasons, conversation=verdict.conversation
    )
    return Reservation(result, recorded=verdict.granted)


async def held_leads(session: AsyncSession, lead_id: str) -> list[str]:
    """The other leads of ``lead_id``'s account that may be holding a touch for it: those in
    a touch stage (nurturing, recycling) and not erased."""
    lead = await session.get(LeadRow, lead_id)
    if lead is None or not lead.account:
        return []
    rows = await session.scalars(
        select(LeadRow.id)
        .where(
            LeadRow.account == lead.account,
            LeadRow.id != lead_id,
            LeadRow.stage.in_(sorted(TOUCH_STAGES)),
            LeadRow.erased_at.is_(None),
        )
        .order_by(LeadRow.id)
    )
    return list(rows.all())
