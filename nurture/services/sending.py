"""The live kill switch: ops stop every worker's sends at once, with no restart.

``ops sending pause --why TEXT`` (or the ops page) writes a row to ``sending_switch``; every
outbox send reads the newest row first, so the next send on any worker is held. Held
touches are not lost: a cadence email's workflow waits and asks again
(:data:`nurture.domain.machine.SENDING_PAUSED_RETRY`), a notification's activity retries,
and both go out after ``ops sending resume``, within the caps, once (the outbox's key).

``NURTURE_SENDING_PAUSED=true`` is the start-up form of the same hold, for one process: a
worker started with it holds its sends whatever the switch says, until it is restarted
without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nurture.adapters.database import SendingSwitch

# The length the log keeps of a reason or a name; longer text is cut, not refused.
WHY_LIMIT = 500
BY_LIMIT = 200


@dataclass(frozen=True, slots=True)
class SwitchState:
    """Whether sending is paused, since when, by whom and why (``ops sending status``)."""

    paused: bool
    since: datetime | None = None
    by: str | None = None
    why: str = ""

    def describe(self) -> str:
        if not self.paused:
            since = f" since {self.since:%Y-%m-%d %H:%M} UTC ({self.by})" if self.since else ""
            return f"sending is on{since}"
        return f"sending is paused since {self.since:%Y-%m-%d %H:%M} UTC by {self.by}: {self.why}"

    def hold_detail(self) -> str:
        """What a held touch notes in the lead's history (no address, no personal data)."""
        return f"sending is paused by {self.by}: {self.why}"


async def current(session: AsyncSession) -> SwitchState:
    """The switch as it stands: the newest row, or on when none was ever written."""
    row = await session.scalar(select(SendingSwitch).order_by(SendingSwitch.id.desc()).limit(1))
    if row is None:
        return SwitchState(paused=False)
    return SwitchState(paused=row.paused, since=row.at, by=row.by, why=row.why)


async def pause(session: AsyncSession, *, by: str, why: str) -> SwitchState:
    """Pause sending everywhere (again, if paused already: the newer reason is kept).

    Raises:
        ValueError: ``why`` is empty: a pause must say why, for whoever finds it.
    """
    why = " ".join(why.split())
    if not why:
        raise ValueError("say why sending is paused (--why TEXT)")
    return await _write(session, paused=True, by=by, why=why)


async def resume(session: AsyncSession, *, by: str) -> SwitchState:
    """Turn sending back on; held touches go out as their leads next ask."""
    return await _write(session, paused=False, by=by, why="")


async def history(session: AsyncSession, limit: int = 20) -> list[SwitchState]:
    """The newest pauses and resumes first, for the ops page."""
    rows = await session.scalars(
        select(SendingSwitch).order_by(SendingSwitch.id.desc()).limit(limit)
    )
    return [SwitchState(paused=r.paused, since=r.at, by=r.by, why=r.why) for r in rows]


async def _write(session: AsyncSession, *, paused: bool, by: str, why: str) -> SwitchState:
    row = SendingSwitch(paused=paused, by=by[:BY_LIMIT], why=why[:WHY_LIMIT])
    session.add(row)
    await session.commit()
    return SwitchState(paused=row.paused, since=row.at, by=row.by, why=row.why)
