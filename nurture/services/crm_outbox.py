"""The CRM outbox: posts to ``NURTURE_CRM_WEBHOOK_URL`` recorded by the lead's activities and
sent apart from them.

The toss-up (``handoff``) and every stage change (``record_transition``) used to post to the
CRM inside the activity, which Temporal retried forever while the CRM refused: the lead
stood still on a CRM's bad day. Now the activity only records the post (one row per key,
in ``crm_posts``; a retried activity finds its row), and the worker's sender
(:class:`nurture.activities.crm.CrmSender`) delivers it with a bounded number of attempts,
then marks it ``failed`` for ops (``nurture crm posts --status failed``, the ops page, the
``nurture_crm_posts{status="failed"}`` gauge) who can send it again (``nurture crm retry``).

One lead's posts leave in the order they were recorded: a post waits while an older one of
the same lead is still pending, so the CRM never sees ``won`` before the ``sql`` that led
there. A failed post no longer holds the ones after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from nurture.adapters.database import CRM_POST_STATUSES, CrmPost, insert_once, utcnow

# Attempts before a post is marked failed, and the waits between them: 10 s doubling up to
# an hour, so the last attempt comes about 6 hours after the first (a CRM's maintenance
# window passes; a misconfigured endpoint reaches ops the same working day).
MAX_ATTEMPTS = 12
FIRST_RETRY = timedelta(seconds=10)
LONGEST_RETRY = timedelta(hours=1)
# How long a claimed post is the claimer's: longer than a post can take (10 s timeout).
LEASE = timedelta(minutes=2)


@dataclass(frozen=True)
class Policy:
    """How the sender retries (tests shorten it)."""

    max_attempts: int = MAX_ATTEMPTS
    first_retry: timedelta = FIRST_RETRY
    longest_retry: timedelta = LONGEST_RETRY
    lease: timedelta = LEASE

    def retry_after(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed attempt."""
        doublings = min(max(0, attempts - 1), 30)  # far past any longest_retry
        return min(self.first_retry * (2**doublings), self.longest_retry)


async def enqueue(
    session: AsyncSession, key: str, lead_id: str, kind: str, payload: dict[str, Any]
) -> bool:
    """Record the post ``key`` in the caller's transaction (not committed here); True when this
    call recorded it, False when it was recorded before (a retried activity)."""
    _row, created = await insert_once(
        session, CrmPost, {"key": key}, lead_id=lead_id, kind=kind, payload=payload,
        status="pending", attempts=0, next_attempt_at=utcnow(),
    )  # fmt: skip
    return created


async def due(
    sessions: async_sessionmaker[AsyncSession], now: datetime, limit: int = 20
) -> list[CrmPost]:
    """Pending posts whose time has come, oldest first, each the oldest pending of its lead."""
    older = aliased(CrmPost)
    blocked = exists().where(
        and_(older.lead_id == CrmPost.lead_id, older.status == "pending", older.id < CrmPost.id)
    )
    async with sessions() as session:
        rows = await session.scalars(
            select(CrmPost)
            .where(CrmPost.status == "pending", CrmPost.next_attempt_at <= now, ~blocked)
            .order_by(CrmPost.id)
            .limit(limit)
        )
        return list(rows.all())


async def claim(
    sessions: async_sessionmaker[AsyncSession], post: CrmPost, now: datetime, policy: Policy
) -> bool:
    """Take ``post`` for one attempt (a compare-and-set: two senders never post it at once);
    its ``next_attempt_at`` becomes the lease's end."""
    async with sessions() as session:
        result = await session.execute(
            update(CrmPost)
            .where(
                CrmPost.id == post.id,
                CrmPost.status == "pending",
                CrmPost.next_attempt_at == post.next_attempt_at,
            )
            .values(next_attempt_at=now + policy.lease, attempts=CrmPost.attempts + 1)
        )
        await session.commit()
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
    post.attempts += 1
    return True


async def settle(
    sessions: async_sessionmaker[AsyncSession],
    post: CrmPost,
    now: datetime,
    policy: Policy,
    error: str | None,
) -> str:
    """Record an attempt's outcome: ``sent``; else ``pending`` again later, or ``failed``
    once its attempts are spent. Returns the status."""
    if error is None:
        values: dict[str, Any] = {"status": "sent", "sent_at": now, "last_error": None}
    elif post.attempts >= policy.max_attempts:
        values = {"status": "failed", "last_error": error[:2000]}
    else:
        values = {
            "status": "pending",
            "last_error": error[:2000],
            "next_attempt_at": now + policy.retry_after(post.attempts),
        }
    async with sessions() as session:
        await session.execute(update(CrmPost).where(CrmPost.id == post.id).values(**values))
        await session.commit()
    return str(values["status"])


async def retry_failed(
    sessions: async_sessionmaker[AsyncSession], post_id: int | None = None
) -> int:
    """Send failed posts again (one by id, or all): pending now, with fresh attempts.
    Returns how many."""
    query = update(CrmPost).where(CrmPost.status == "failed")
    if post_id is not None:
        query = query.where(CrmPost.id == post_id)
    async with sessions() as session:
        result = await session.execute(
            query.values(status="pending", attempts=0, next_attempt_at=utcnow())
        )
        await session.commit()
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def listing(
    sessions: async_sessionmaker[AsyncSession], status: str | None = None, limit: int = 500
) -> list[CrmPost]:
    """The outbox, newest first (``status`` filters)."""
    query = select(CrmPost).order_by(CrmPost.id.desc()).limit(limit)
    if status:
        query = query.where(CrmPost.status == status)
    async with sessions() as session:
        return list((await session.scalars(query)).all())


async def counts(session: AsyncSession) -> dict[str, int]:
    """Posts by status (every status present, zero or not)."""
    found = {
        status: count
        for status, count in await session.execute(
            select(CrmPost.status, func.count()).group_by(CrmPost.status)
        )
    }
    return {status: int(found.get(status, 0)) for status in CRM_POST_STATUSES}


def post_json(post: CrmPost) -> dict[str, Any]:
    """A post as the CLI's ``--json`` prints it."""
    return {
        "id": post.id,
        "key": post.key,
        "lead_id": post.lead_id,
        "kind": post.kind,
        "status": post.status,
        "attempts": post.attempts,
        "next_attempt_at": post.next_attempt_at.isoformat() if post.status == "pending" else None,
        "last_error": post.last_error,
        "created_at": post.created_at.isoformat(),
        "sent_at": post.sent_at.isoformat() if post.sent_at else None,
        "payload": post.payload,
    }
