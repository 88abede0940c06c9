"""What `make run` loads: demo logins, the sample leads, a stream of sample engagement."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nurture.adapters.database import User
from nurture.adapters.passwords import hash_password
from nurture.domain.cadence import Playbook
from nurture.domain.durations import parse_duration
from nurture.domain.events import Event
from nurture.services.csvimport import read_leads
from nurture.services.intake import Intake, submit_event
from nurture.services.parked import submit_lead

DEMO_PASSWORD = "demo"


async def create_demo_users(
    sessions: async_sessionmaker[AsyncSession], playbook: Playbook
) -> list[tuple[str, str, str]]:
    """A login per SDR of the playbook and one `ops` login, password `demo` (local only)."""
    wanted = [(sdr.id, "sdr") for sdr in playbook.team.sdrs] + [("ops", "ops")]
    async with sessions() as session:
        for user_id, role in wanted:
            if await session.get(User, user_id) is None:
                session.add(User(id=user_id, role=role, password_hash=hash_password(DEMO_PASSWORD)))
        await session.commit()
    return [(user_id, role, DEMO_PASSWORD) for user_id, role in wanted]


async def import_leads(intake: Intake, path: Path) -> str:
    """Submit every good row; a summary like `8 (8 new, 0 updated, 0 bad)`."""
    new = updated = bad = 0
    for row in read_leads(path):
        if row.lead is None:
            bad += 1
            continue
        result = (await submit_lead(intake, row.lead)).result
        if result.status == "created":
            new += 1
        else:
            updated += 1
    return f"{new + updated + bad} ({new} new, {updated} existing, {bad} bad)"


async def play_engagement(intake: Intake, path: Path, stop: asyncio.Event) -> None:
    """Post each scripted event `after` its delay from now; ids make a replay harmless."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        item = json.loads(line)
        delay = parse_duration(item.pop("after", "1s")).calendar.total_seconds()
        wait = started + delay - loop.time()
        if wait > 0:
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait)
                return
            except TimeoutError:
                pass
        await submit_event(intake, Event.model_validate(item))
