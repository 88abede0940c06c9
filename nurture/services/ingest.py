"""Group commit for webhook events: the writes of many requests in one transaction.

A webhook flood used to cost three write transactions per event (the request's receipt, the
event, its "delivered" mark). On SQLite every one of them takes the database's single write
lock, and a writer that finds it taken sleeps in SQLite's busy handler (1 ms, then up to
100 ms at a time), so 50 senders at once spent most of their time asleep: 45-75 events/s
with a p99 of seconds. On PostgreSQL each was a commit (and a WAL flush) of its own.

:class:`EventWriter` is the one writer of the web app's event path: requests queue what
they need written and wait; one task takes everything queued, writes it in one
transaction, and answers each request. While it writes, the next requests queue up, so
the batches grow with the load and the cost per event falls with it. Nothing is answered
before its transaction has committed, so an answer never claims more than is durable.

A new lead's row (``POST /leads``) joins the same transaction as its request's receipt. On
a SQLite file the transaction runs in one call on the writer's own thread, so the file's
write lock, which the worker's processes wait for, is held for the statements alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from nurture.adapters.database import (
    EventRow,
    LeadRow,
    WebhookReceipt,
    insert_or_ignore,
    sqlite_file_engine,
    utcnow,
)
from nurture.domain.events import Event

log = logging.getLogger(__name__)

# Events written by one transaction at most (requests are never split: one bigger than this
# goes alone). Also keeps each statement far below SQLite's limit of bound parameters.
MAX_EVENTS_PER_COMMIT = 1000
ROWS_PER_STATEMENT = 400
# Receipts older than this are pruned, at most once per PRUNE_EVERY: see webhooks.RECEIPT_TTL.
PRUNE_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class Taken:
    """What the writer did with one request: ``replay`` when its receipt was there already
    (nothing written); else, per event in order, whether it is new and its lead's row (None
    when the lead does not exist)."""

    replay: bool
    fresh: list[bool] = field(default_factory=list)
    leads: list[LeadRow | None] = field(default_factory=list)
    # For a request that brought a new lead's row: whether this transaction inserted it
    # (False: the lead existed already, and nothing of it was written).
    lead_inserted: bool = False


@dataclass
class _Record:
    digest: str | None
    events: Sequence[Event]
    done: asyncio.Future[Taken]
    # A lead's row (every column a posted lead sets) to insert unless the lead exists.
    lead: dict[str, Any] | None = None


@dataclass
class _Mark:
    event_id: str
    status: str
    done: asyncio.Future[None]


@dataclass
class _Started:
    lead_id: str
    done: asyncio.Future[bool]


_Job = _Record | _Mark | _Started


class EventWriter:
    """The web app's writer of received events, their request receipts and their marks.

    Args:
        sessions: The app's session factory.
        receipt_ttl: How long a request's receipt is kept (replays inside it are refused).
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], receipt_ttl: timedelta) -> None:
        self.sessions = sessions
        self.receipt_ttl = receipt_ttl
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._pruned_at: datetime | None = None
        self._last_received: datetime | None = None
        bind = sessions.kw.get("bind")
        self._file_engine = sqlite_file_engine(bind) if isinstance(bind, AsyncEngine) else None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-writer")

    async def take(
        self,
        digest: str | None,
        events: Sequence[Event],
        *,
        lead: dict[str, Any] | None = None,
    ) -> Taken:
        """Write the request's receipt (``digest``; None: no replay guard) and its events,
        as ``parked`` until signaled, in the next transaction.

        ``lead``: a new lead's row (``nurture.services.intake.lead_row``), inserted in the
        same transaction unless a row with its id exists (``Taken.lead_inserted`` says
        which); nothing is written for a replay. A new lead then costs its request no
        transaction of its own: on SQLite, every one of those waited for the database's
        single write lock, which a busy worker holds most of the time.

        Raises:
            SQLAlchemyError, OSError: when the transaction failed: nothing of it is written.
        """
        done: asyncio.Future[Taken] = asyncio.get_running_loop().create_future()
        self._put(_Record(digest, events, done, lead))
        return await done

    async def mark(self, event_id: str, status: str) -> None:
        """Set an event's status (``delivered`` with its time) in the next transaction."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._put(_Mark(event_id, status, done))
        await done

    async def started(self, lead_id: str) -> bool:
        """Note that the lead's workflow exists (``started_at``), in the next transaction;
        True for the call that noted it first."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._put(_Started(lead_id, done))
        return await done

    async def close(self) -> None:
        """Stop the writer (what is queued and not yet written fails with CancelledError)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.done.done():
                job.done.cancel()
        self._thread.shutdown(wait=True)
        if self._file_engine is not None:
            self._file_engine.dispose()

    def _put(self, job: _Job) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="event-writer")
        self._queue.put_nowait(job)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            size = _size(batch[0])
            while not self._queue.empty() and size < MAX_EVENTS_PER_COMMIT:
                job = self._queue.get_nowait()
                batch.append(job)
                size += _size(job)
            try:
                await self._write(batch)
            except Exception as exc:  # noqa: BLE001 - sorted out below, one job at a time
                if len(batch) == 1:
                    _fail(batch[0], exc)
                    continue
                # One job's data may be what broke the transaction: the others must not pay
                # for it, so each is tried again alone.
                for job in batch:
                    try:
                        await self._write([job])
                    except Exception as alone:  # noqa: BLE001 - answered to its own request
                        _fail(job, alone)

    async def _write(self, batch: list[_Job]) -> None:
        records = [j for j in batch if isinstance(j, _Record) and not j.done.done()]
        marks = [j for j in batch if isinstance(j, _Mark) and not j.done.done()]
        starts = [j for j in batch if isinstance(j, _Started) and not j.done.done()]

        def transaction(session: Session) -> _Written:
            dialect = session.get_bind().dialect.name
            now = utcnow()
            self._prune(session, now)
            replays = _write_receipts(session, dialect, records, now)
            taken = [r for r in records if id(r) not in replays]
            fresh_ids = self._write_events(session, dialect, taken)
            new_leads = _write_leads(session, dialect, taken)
            lead_ids = {e.lead_id for r in taken for e in r.events if e.id in fresh_ids}
            leads = _leads(session, lead_ids)
            _write_marks(session, marks, now)
            noted = _write_starts(session, starts, now)
            return _Written(replays, fresh_ids, new_leads, leads, noted)

        if self._file_engine is not None:
            # SQLite file: the whole transaction in one call on the writer's own thread, so
            # the database's write lock is held for the statements alone, not also for the
            # event loop's turns between them (on a busy loop, the worker's transactions
            # then waited past their 30 s busy timeout: bench/intake.py).
            written = await asyncio.get_running_loop().run_in_executor(
                self._thread, _in_session, self._file_engine, transaction
            )
        else:
            async with self.sessions() as session:
                written = await session.run_sync(transaction)
                await session.commit()
        replays, fresh_ids, leads, noted = (
            written.replays,
            written.fresh_ids,
            written.leads,
            written.noted,
        )
        # Answered only now, after the commit: the first of two posts of one id wins.
        claimed: set[str] = set()
        for record in records:
            if id(record) in replays:
                result = Taken(replay=True)
            else:
                fresh = []
                for event in record.events:
                    first = event.id in fresh_ids and event.id not in claimed
                    claimed.add(event.id)
                    fresh.append(first)
                row_of = [
                    leads.get(e.lead_id) if f else None
                    for e, f in zip(record.events, fresh, strict=True)
                ]
                result = Taken(
                    replay=False,
                    fresh=fresh,
                    leads=row_of,
                    lead_inserted=id(record) in written.new_leads,
                )
            if not record.done.done():
                record.done.set_result(result)
        for mark in marks:
            if not mark.done.done():
                mark.done.set_result(None)
        for start in starts:
            if not start.done.done():
                # The same lead twice in one batch: the first call noted it.
                start.done.set_result(start.lead_id in noted)
                noted.discard(start.lead_id)

    def _prune(self, session: Session, now: datetime) -> None:
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        session.execute(
            delete(WebhookReceipt).where(WebhookReceipt.seen_at < now - self.receipt_ttl)
        )
        self._pruned_at = now

    def _write_events(self, session: Session, dialect: str, records: list[_Record]) -> set[str]:
        rows: dict[str, dict[str, Any]] = {}
        for record in records:
            for event in record.events:
                if event.id in rows:
                    continue  # posted twice in this batch: the first one is the one
                rows[event.id] = {
                    "id": event.id,
                    "lead_id": event.lead_id,
                    "type": event.type,
                    "occurred_at": event.occurred_at,
                    "received_at": self._received_at(),
                    "data": dict(event.data),
                    # Parked until the signal succeeds: a failure between here and there
                    # leaves it for redelivery, never marked delivered while unseen.
                    "status": "parked",
                }
        if not rows:
            return set()
        # One statement for any number of rows, compiled once: SQLAlchemy batches the rows
        # into multi-row VALUES itself ("insertmanyvalues"), RETURNING the ids inserted.
        inserted = session.scalars(
            insert_or_ignore(EventRow.__table__, dialect).returning(EventRow.id),  # type: ignore[arg-type]
            list(rows.values()),
        )
        return set(inserted.all())

    def _received_at(self) -> datetime:
        # Strictly increasing: parked events are delivered in arrival order, and the events
        # of one batch must keep the order they were posted in.
        now = utcnow()
        if self._last_received is not None and now <= self._last_received:
            now = self._last_received + timedelta(microseconds=1)
        self._last_received = now
        return now


@dataclass
class _Written:
    replays: set[int]
    fresh_ids: set[str]
    new_leads: set[int]
    leads: dict[str, LeadRow]
    noted: set[str]


def _in_session(engine: Engine, transaction: Callable[[Session], _Written]) -> _Written:
    with Session(engine, expire_on_commit=False) as session:
        written = transaction(session)
        session.commit()
        return written


def _size(job: _Job) -> int:
    return len(job.events) if isinstance(job, _Record) else 1


def _fail(job: _Job, exc: Exception) -> None:
    log.warning("event writer: a transaction failed: %s", exc)
    if not job.done.done():
        # The request sees the database's own error, as if it had written alone.
        job.done.set_exception(exc)


def _write_receipts(
    session: Session, dialect: str, records: list[_Record], now: datetime
) -> set[int]:
    """Insert the batch's receipts; returns the records that are replays (by ``id()``)."""
    owners: dict[str, _Record] = {}
    replays: set[int] = set()
    for record in records:
        if record.digest is None:
            continue
        if record.digest in owners:
            replays.add(id(record))  # the same request twice in one batch: the first wins
        else:
            owners[record.digest] = record
    if not owners:
        return replays
    rows = session.scalars(
        insert_or_ignore(WebhookReceipt.__table__, dialect).returning(WebhookReceipt.digest),  # type: ignore[arg-type]
        [{"digest": d, "seen_at": now} for d in owners],
    )
    inserted = set(rows.all())
    replays.update(id(record) for d, record in owners.items() if d not in inserted)
    return replays


def _write_leads(session: Session, dialect: str, records: list[_Record]) -> set[int]:
    """Insert the new leads' rows (a lead already there is left as it is); returns the
    records (by ``id()``) whose row this inserted: of two with one id, the first."""
    owners: dict[str, _Record] = {}
    for record in records:
        if record.lead is not None:
            owners.setdefault(record.lead["id"], record)
    if not owners:
        return set()
    inserted = session.scalars(
        insert_or_ignore(LeadRow.__table__, dialect).returning(LeadRow.id),  # type: ignore[arg-type]
        [record.lead for record in owners.values() if record.lead is not None],
    )
    return {id(owners[lead_id]) for lead_id in inserted.all()}


def _leads(session: Session, lead_ids: set[str]) -> dict[str, LeadRow]:
    found: dict[str, LeadRow] = {}
    ids = sorted(lead_ids)
    for start in range(0, len(ids), ROWS_PER_STATEMENT):
        chunk = ids[start : start + ROWS_PER_STATEMENT]
        rows = session.scalars(select(LeadRow).where(LeadRow.id.in_(chunk)))
        found.update((row.id, row) for row in rows.all())
    return found


def _write_marks(session: Session, marks: list[_Mark], now: datetime) -> None:
    by_status: dict[str, list[str]] = {}
    for mark in marks:
        by_status.setdefault(mark.status, []).append(mark.event_id)
    for status, ids in by_status.items():
        for start in range(0, len(ids), ROWS_PER_STATEMENT):
            session.execute(
                update(EventRow)
                .where(EventRow.id.in_(ids[start : start + ROWS_PER_STATEMENT]))
                .values(status=status, delivered_at=now if status == "delivered" else None)
            )


def _write_starts(session: Session, starts: list[_Started], now: datetime) -> set[str]:
    """Set ``started_at`` of the leads not marked yet; returns the ids this batch marked."""
    ids = sorted({start.lead_id for start in starts})
    noted: set[str] = set()
    for first in range(0, len(ids), ROWS_PER_STATEMENT):
        marked = session.scalars(
            update(LeadRow)
            .where(LeadRow.id.in_(ids[first : first + ROWS_PER_STATEMENT]))
            .where(LeadRow.started_at.is_(None))
            .values(started_at=now)
            .returning(LeadRow.id)
            .execution_options(synchronize_session=False)
        )
        noted.update(marked.all())
    return noted
