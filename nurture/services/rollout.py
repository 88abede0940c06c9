"""``playbook rollout``: the playbook's rules are policy, and reach every lead in flight.

A lead carries the playbook it was given; without a rollout it takes the current one only
at its next stage change, so a lead resting in nurturing or waiting 180 days to recycle
would never see a new holiday, cap or scoring rule. A rollout validates the playbook on
disk, says what changed since the last rollout and how many leads it reaches per stage,
then signals it to each of them (``playbook``), paced so 100k leads do not flood Temporal.
Each lead applies it at its next safe point (``lifecycle.apply_playbook``) and notes
"playbook <version> applied" with what changed. Cadence versions stay pinned: moving
leads to a new cadence version is ``cadences migrate``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from nurture.adapters.database import LeadRow, PlaybookRollout
from nurture.domain.cadence import Playbook
from nurture.domain.names import SIGNAL_PLAYBOOK, workflow_id
from nurture.domain.vocabulary import FINAL_STAGES, STAGES

# Signals in flight at once, and at most this many a second: a rollout to 100k leads takes
# minutes and leaves the server room for the leads' own work.
CONCURRENCY = 20
DEFAULT_RATE = 200.0
# Lead ids are read from the database in pages of this many.
PAGE = 1000


@dataclass(frozen=True)
class RolloutPlan:
    """What a rollout would do: the playbook, what changed, and the leads it reaches."""

    playbook: Playbook
    previous: str | None  # the version of the last rollout, None before the first
    changes: list[str]
    leads_by_stage: dict[str, int]

    @property
    def version(self) -> str:
        return self.playbook.version

    @property
    def leads(self) -> int:
        return sum(self.leads_by_stage.values())

    @property
    def unchanged(self) -> bool:
        return self.previous == self.version


@dataclass
class RolloutResult:
    """What a rollout did: delivered, gone (the lead's life ended meanwhile), failed ids."""

    delivered: int = 0
    gone: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def _in_flight():  # type: ignore[no-untyped-def]
    """Leads whose workflow runs: started, not won or closed, not erased."""
    return (
        LeadRow.started_at.is_not(None),
        LeadRow.stage.not_in(sorted(FINAL_STAGES)),
        LeadRow.erased_at.is_(None),
    )


async def plan(session: AsyncSession, playbook: Playbook) -> RolloutPlan:
    """The plan of rolling ``playbook`` out: changes since the last rollout, leads per stage."""
    last = await session.scalar(
        select(PlaybookRollout).order_by(PlaybookRollout.id.desc()).limit(1)
    )
    previous = Playbook.model_validate(last.playbook) if last is not None else None
    rows = await session.execute(
        select(LeadRow.stage, func.count()).where(*_in_flight()).group_by(LeadRow.stage)
    )
    counts: dict[str, int] = {stage: count for stage, count in rows.all()}
    by_stage = {stage: counts[stage] for stage in STAGES if counts.get(stage)}
    return RolloutPlan(
        playbook=playbook,
        previous=last.version if last is not None else None,
        changes=playbook.changes_from(previous) if previous is not None else [],
        leads_by_stage=by_stage,
    )


async def _lead_ids(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[str]:
    """Every lead in flight, by id, a page at a time (keyset paging: no long transaction)."""
    after = ""
    while True:
        async with sessions() as session:
            page = (
                await session.scalars(
                    select(LeadRow.id)
                    .where(*_in_flight(), LeadRow.id > after)
                    .order_by(LeadRow.id)
                    .limit(PAGE)
                )
            ).all()
        if not page:
            return
        for lead_id in page:
            yield lead_id
        after = page[-1]


async def deliver(
    rollout: RolloutPlan,
    client: Client,
    sessions: async_sessionmaker[AsyncSession],
    *,
    by: str,
    rate: float = DEFAULT_RATE,
    progress: Callable[[int], None] = lambda done: None,
) -> RolloutResult:
    """Signal the playbook to every lead in flight, paced; record the rollout.

    The rollout is recorded first, so the next one shows what changed since this one even
    if this one is interrupted; running it again is harmless (a lead already on the version
    notes nothing).
    """
    async with sessions() as session:
        session.add(
            PlaybookRollout(
                version=rollout.version,
                playbook=rollout.playbook.model_dump(mode="json"),
                by=by,
                leads=rollout.leads,
            )
        )
        await session.commit()
    result = RolloutResult()
    slots = asyncio.Semaphore(CONCURRENCY)
    interval = 1.0 / rate if rate > 0 else 0.0
    next_at = time.monotonic()
    tasks: set[asyncio.Task[None]] = set()

    async def signal(lead_id: str) -> None:
        try:
            await client.get_workflow_handle(workflow_id(lead_id)).signal(
                SIGNAL_PLAYBOOK, rollout.playbook
            )
            result.delivered += 1
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                result.gone += 1  # its life ended since the count: nothing to deliver
            else:
                result.failed.append((lead_id, exc.message))
        finally:
            slots.release()
            progress(result.delivered + result.gone + len(result.failed))

    async for lead_id in _lead_ids(sessions):
        await slots.acquire()
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        next_at = max(next_at, time.monotonic()) + interval
        task = asyncio.create_task(signal(lead_id))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return result
