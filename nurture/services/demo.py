"""What `make run` loads: demo logins, the sample leads, a stream of sample engagement.

The sample engagement (``examples/demo/engagement.jsonl``) holds events, posted as a CRM
would, and mail that leads send back (a reply, an out-of-office answer): each is written
as a raw RFC 5322 message answering the email the lead was really sent (its Message-ID
read from the outbox at that moment) and posted, signed, to ``POST /inbound/email``, the
way a mail provider's inbound webhook delivers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import desc, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nurture.adapters.database import (
    NOTIFICATION_CADENCE,
    CallTask,
    EmailSend,
    InboundMail,
    LeadRow,
    StageChange,
    User,
    utcnow,
)
from nurture.adapters.passwords import hash_password, verify_password
from nurture.adapters.signing import sign
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


log = logging.getLogger(__name__)

# Posts one raw message to `POST /inbound/email`; returns the HTTP status.
MailPoster = Callable[[bytes], Awaitable[int]]


class DemoMail(BaseModel):
    """A message a sample lead sends back: a person's reply, or an out-of-office answer.

    ``text`` may say ``{back}``: the return day, ``back_after`` from now (an auto-reply).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=100)
    mail: Literal["reply", "auto_reply"]
    lead_id: str = Field(min_length=1)
    step: str | None = Field(default=None, description="the email answered; default: the last")
    text: str = Field(min_length=1)
    back_after: str | None = None

    @field_validator("back_after")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


@dataclass(frozen=True)
class Scripted:
    """One line of the engagement stream: what to post, ``after`` seconds from the start."""

    line: int
    after: float
    item: Event | DemoMail


class EngagementError(ValueError):
    """The engagement stream has bad lines; the message names each (file:line: field: why)."""


def read_engagement(path: Path) -> list[Scripted]:
    """Every line of an engagement stream, checked; nothing is posted when any is bad.

    Raises:
        EngagementError: naming each bad line as ``<file>:<line>: <field>: <message>``.
    """
    items: list[Scripted] = []
    problems: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path.name}:{number}"
        try:
            raw = json.loads(line)
        except ValueError as exc:
            problems.append(f"{where}: not a JSON object: {exc}")
            continue
        if not isinstance(raw, dict):
            problems.append(f"{where}: not a JSON object")
            continue
        try:
            after = parse_duration(str(raw.pop("after", "1s"))).calendar.total_seconds()
        except ValueError as exc:
            problems.append(f"{where}: after: {exc}")
            continue
        try:
            item: Event | DemoMail = (
                DemoMail.model_validate(raw) if "mail" in raw else Event.model_validate(raw)
            )
        except ValidationError as exc:
            for error in exc.errors():
                field = ".".join(str(part) for part in error["loc"]) or "item"
                problems.append(f"{where}: {field}: {error['msg']}")
            continue
        items.append(Scripted(number, after, item))
    if problems:
        raise EngagementError("\n".join(problems))
    return items


async def play_engagement(
    intake: Intake,
    path: Path,
    stop: asyncio.Event,
    post_mail: MailPoster | None = None,
    *,
    wait_for_send: float = 60.0,
) -> None:
    """Post each scripted item ``after`` its delay from now; ids make a replay harmless.

    Events go the way a CRM's go; mail goes through ``post_mail`` (``POST /inbound/email``),
    skipped without it. A mail item waits up to ``wait_for_send`` seconds for the email it
    answers to be sent, beside the stream (the items after it are not held up).
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    mailing: list[asyncio.Task[None]] = []
    try:
        for scripted in read_engagement(path):
            wait = started + scripted.after - loop.time()
            if wait > 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=wait)
                    return
                except TimeoutError:
                    pass
            item = scripted.item
            if isinstance(item, Event):
                await submit_event(intake, item)
            elif post_mail is not None:
                mailing.append(
                    asyncio.create_task(_send_back(intake, item, stop, post_mail, wait_for_send))
                )
        await asyncio.gather(*mailing)
    finally:
        for task in mailing:
            task.cancel()


async def _send_back(
    intake: Intake, mail: DemoMail, stop: asyncio.Event, post_mail: MailPoster, wait: float
) -> None:
    raw = await compose_mail(intake, mail, stop, wait)
    if raw is None:
        log.warning("demo mail %s: %s was sent no email to answer", mail.id, mail.lead_id)
        return
    status = await post_mail(raw)
    if status >= 300:
        log.warning("demo mail %s: POST /inbound/email answered %s", mail.id, status)


async def compose_mail(
    intake: Intake, mail: DemoMail, stop: asyncio.Event, wait_for_send: float = 60.0
) -> bytes | None:
    """The raw message ``mail`` describes, answering the newest email its lead was sent
    (of ``mail.step``, if named); None when no such email went out in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_for_send
    while True:
        async with intake.sessions() as session:
            lead = await session.get(LeadRow, mail.lead_id)
            query = select(EmailSend).where(
                EmailSend.lead_id == mail.lead_id,
                EmailSend.status == "sent",
                EmailSend.message_id.is_not(None),
                EmailSend.cadence != NOTIFICATION_CADENCE,
            )
            if mail.step:
                query = query.where(EmailSend.step == mail.step)
            send = await session.scalar(query.order_by(desc(EmailSend.sent_at)).limit(1))
        if lead is not None and lead.email and send is not None:
            break
        if loop.time() > deadline or stop.is_set():
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
    now = datetime.now(UTC)
    playbook = intake.catalog.current().playbook
    message = EmailMessage()
    name = " ".join(part for part in (lead.first_name, lead.last_name) if part)
    message["From"] = formataddr((name, lead.email)) if name else lead.email
    message["To"] = playbook.sender.reply_to or playbook.sender.from_
    subject = send.subject or "your email"
    message["Subject"] = f"Re: {subject}" if mail.mail == "reply" else f"Out of office: {subject}"
    message["Date"] = formatdate(now.timestamp(), usegmt=True)
    # Derived from the item's id: the stream played again after a restart is read as seen.
    digest = hashlib.sha256(f"{mail.lead_id}|{mail.id}".encode()).hexdigest()[:24]
    message["Message-ID"] = f"<demo-{digest}@{lead.email.rpartition('@')[2]}>"
    message["In-Reply-To"] = send.message_id
    message["References"] = send.message_id
    text = mail.text
    if mail.mail == "auto_reply":
        message["Auto-Submitted"] = "auto-replied"
        if mail.back_after:
            back = (now + parse_duration(mail.back_after).calendar).date()
            # In English whatever the machine's locale: "Monday 7 December 2026".
            said = f"{_DAYS[back.weekday()]} {back.day} {_MONTHS[back.month - 1]} {back.year}"
            text = text.replace("{back}", said)
    message.set_content(text + "\n")
    return message.as_bytes()


_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip


def signed_mail_poster(client: httpx.AsyncClient, url: str, secret: str) -> MailPoster:
    """A :data:`MailPoster` to ``url``, signed with the webhook secret like every webhook;
    it waits for the web app while it is starting (connection refused)."""

    async def post(raw: bytes) -> int:
        for attempt in range(30):
            headers = {"Content-Type": "message/rfc822", "X-Nurture-Signature": sign(secret, raw)}
            try:
                answer = await client.post(url, content=raw, headers=headers)
            except httpx.TransportError:
                if attempt == 29:
                    raise
                await asyncio.sleep(1.0)
                continue
            return answer.status_code
        raise AssertionError("unreachable")

    return post


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
        self._mail = _Mark(start)

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
            mail = await session.scalars(
                select(InboundMail)
                .where(InboundMail.received_at >= self._mail.at)
                .order_by(InboundMail.received_at, InboundMail.id)
            )
            for m in mail:
                if self._mail.new(m.received_at, str(m.id)):
                    kind = m.kind.replace("_", "-")
                    found.append(
                        (m.received_at, f"{m.lead_id or '(no lead)'}  mail in: {kind} ({m.status})")
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
