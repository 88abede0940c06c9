"""What `make run` loads: demo logins, the sample leads, a stream of sample engagement."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nurture.adapters.database import (
    NOTIFICATION_CADENCE,
    CallTask,
    EmailSend,
    StageChange,
    User,
    utcnow,
)
from nurture.adapters.passwords import hash_password, verify_password
from nurture.domain.cadence import Playbook
from nurture.domain.durations import parse_duration
from nurture.domain.events import Event
from nurture.services.csvimport import read_leads
from nurture.services.intake import Intake, submit_event
from nurture.services.parked import submit_lead

DEMO_PASSWORD = "demo"


OPS_LOGIN = "ops"


@dataclass(frozen=True)
class DemoLogin:
    """A demo login and what its holder sees."""

    user: str
    role: str
    password: str
    territories: tuple[str, ...] = ()

    def who(self, sample_leads: Counter[str] | None = None) -> str:
        """`SDR for JP (2 sample leads)`, or `ops: every lead and task`."""
        if self.role == "ops":
            return "ops: every lead, task and report, and the caught mail (/mail)"
        where = ", ".join(self.territories) or "leads no one else covers"
        if sample_leads is None:
            return f"SDR for {where}"
        count = sum(sample_leads.get(t.upper(), 0) for t in self.territories)
        return f"SDR for {where} ({count} sample lead{'' if count == 1 else 's'})"


def _wanted(playbook: Playbook) -> list[DemoLogin]:
    sdrs = [
        DemoLogin(sdr.id, "sdr", DEMO_PASSWORD, tuple(sdr.territories))
        for sdr in playbook.team.sdrs
    ]
    return [*sdrs, DemoLogin(OPS_LOGIN, "ops", DEMO_PASSWORD)]


async def create_demo_users(
    sessions: async_sessionmaker[AsyncSession], playbook: Playbook
) -> list[DemoLogin]:
    """A login per SDR of the playbook and one `ops` login, password `demo` (local only)."""
    wanted = _wanted(playbook)
    async with sessions() as session:
        for login in wanted:
            if await session.get(User, login.user) is None:
                session.add(
                    User(
                        id=login.user, role=login.role, password_hash=hash_password(login.password)
                    )
                )
        await session.commit()
    return wanted


async def demo_logins(session: AsyncSession, playbook: Playbook) -> list[DemoLogin]:
    """The demo logins that still exist, are active and still have the demo password.

    A login whose password was changed (`users add ID` again) is not listed: the sign-in
    page must never offer a password that does not work, nor hint at one that does.
    """
    found = []
    for login in _wanted(playbook):
        user = await session.get(User, login.user)
        if (
            user is not None
            and user.deactivated_at is None
            and user.role == login.role
            # scrypt takes tens of milliseconds: off the event loop.
            and await asyncio.to_thread(verify_password, login.password, user.password_hash)
        ):
            found.append(login)
    return found


def sample_countries(path: Path) -> Counter[str]:
    """How many sample leads of ``path`` are in each country."""
    return Counter(
        (row.lead.country or "").upper() for row in read_leads(path) if row.lead is not None
    )


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


class ActivityFeed:
    """What `make run` prints as it happens: emails sent, call tasks created, stage changes.

    Read from the app database's projection (the worker writes it), from the moment the
    feed starts, so a restart does not print the past again. No personal data: lead ids,
    steps and templates, never names, addresses or subjects. Rate-limited: at most
    ``limit`` lines a poll, the rest counted on one line, so a flood never buries the
    console.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        limit: int = 8,
        since: datetime | None = None,
    ) -> None:
        self.sessions = sessions
        self.limit = limit
        start = since or utcnow()
        self._emails = _Mark(start)
        self._tasks = _Mark(start)
        self._stages = _Mark(start)

    async def poll(self) -> list[str]:
        """The lines for what happened since the last poll (oldest first), rate-limited."""
        found: list[tuple[datetime, str]] = []
        async with self.sessions() as session:
            emails = await session.scalars(
                select(EmailSend)
                .where(
                    EmailSend.status == "sent",
                    EmailSend.cadence != NOTIFICATION_CADENCE,
                    EmailSend.sent_at >= self._emails.at,
                )
                .order_by(EmailSend.sent_at, EmailSend.id)
            )
            for e in emails:
                assert e.sent_at is not None
                if self._emails.new(e.sent_at, e.key):
                    found.append(
                        (e.sent_at, f"{e.lead_id}  email sent: {e.template} ({e.cadence}/{e.step})")
                    )
            tasks = await session.scalars(
                select(CallTask)
                .where(CallTask.created_at >= self._tasks.at)
                .order_by(CallTask.created_at, CallTask.id)
            )
            for t in tasks:
                if self._tasks.new(t.created_at, t.id):
                    due = f"{t.due_at:%H:%M} UTC"
                    found.append(
                        (
                            t.created_at,
                            f"{t.lead_id}  call task {t.id} for {t.owner or 'nobody yet'} "
                            f"({t.cadence}/{t.step}), due {due}",
                        )
                    )
            changes = await session.scalars(
                select(StageChange)
                .where(StageChange.at >= self._stages.at)
                .order_by(StageChange.at, StageChange.id)
            )
            for c in changes:
                if self._stages.new(c.at, str(c.id)):
                    why = f": {c.reason}" if c.reason else ""
                    found.append(
                        (c.at, f"{c.lead_id}  stage {c.from_stage or '(new)'} → {c.to_stage}{why}")
                    )
        found.sort(key=lambda item: item[0])
        lines = [f"{at:%H:%M:%S}  {text}" for at, text in found[: self.limit]]
        if len(found) > self.limit:
            lines.append(
                f"          ... and {len(found) - self.limit} more (all of it: /leads, /mail)"
            )
        return lines

    async def run(
        self, stop: asyncio.Event, echo: Callable[[str], None], every: float = 2.0
    ) -> None:
        """Print the feed every ``every`` seconds until ``stop``."""
        while not stop.is_set():
            try:
                for line in await self.poll():
                    echo(line)
            except Exception as exc:  # noqa: BLE001 - the feed must never stop the stack
                echo(f"(activity feed: {exc})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)


class _Mark:
    """A watermark: the newest time seen, and the ids seen at exactly that time."""

    def __init__(self, at: datetime) -> None:
        self.at = _aware(at)
        self.seen: set[str] = set()

    def new(self, at: datetime, key: str) -> bool:
        at = _aware(at)
        if at < self.at or (at == self.at and key in self.seen):
            return False
        if at > self.at:
            self.at, self.seen = at, set()
        self.seen.add(key)
        return True


def _aware(at: datetime) -> datetime:
    # Every time stored is UTC; a naive one read back is taken as UTC.
    return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
