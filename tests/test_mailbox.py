"""`nurture mailbox`: the product reads its own mail from a real IMAP server (dovecot).

The tests marked ``imap`` run Debian's dovecot (tests/imapserver.py), the real worker on the
time-skipping server and the real SMTP sink: a lead is sent its first email, and what comes
back is APPENDed to the folder the reader watches. Each test has a folder of its own on the
session's server; the restart test has a server of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import ROOT, SKELETON_PLAYBOOK, write_cadence_set
from harness import Stack, eventually, running
from imapserver import Dovecot, dovecot_unavailable
from sqlalchemy import select
from typer.testing import CliRunner
from webhookfixtures import uid

from nurture.adapters import imap
from nurture.adapters.database import EmailSend, EventRow, InboundMail, LeadRow, Suppression
from nurture.adapters.imap import (
    FAILED,
    PROCESSED,
    ImapMailbox,
    MailboxUrlError,
    parse_mailbox_url,
)
from nurture.cli import app as cli
from nurture.services import mailback
from nurture.services.mailbox import MailboxReader, backoff
from nurture.settings import SettingsError, load_settings

pytest_plugins = ["dbfixtures"]

CORPUS = Path(__file__).parent / "mail"
EXIT_ON_REPLY = """
    id: welcome
    name: Welcome series
    exit_on: [email.replied]
    steps:
      - id: hello
        type: email
        template: welcome/hello
      - id: pause
        type: wait
        duration: 2d
      - id: follow-up
        type: email
        template: welcome/follow-up
"""
SEEN = "\\Seen"


# --- the URL and the settings (no server) ---------------------------------------------------


def test_a_mailbox_url_is_read_with_its_defaults_and_percent_decoding() -> None:
    tls = parse_mailbox_url("imaps://leads%40acme.example:p%40ss%2Fw%20rd@mail.acme.example")
    starttls = parse_mailbox_url("imap://bot:secret@127.0.0.1:10143/Lead%20Replies/Bounces")

    assert (tls.scheme, tls.host, tls.port, tls.folder) == (
        "imaps",
        "mail.acme.example",
        993,
        "INBOX",
    )
    assert (tls.user, tls.password) == ("leads@acme.example", "p@ss/w rd")
    assert (starttls.scheme, starttls.port, starttls.folder) == (
        "imap",
        10143,
        "Lead Replies/Bounces",
    )
    # What logs show: never the password.
    assert "secret" not in starttls.redacted() and "secret" not in repr(starttls)
    assert starttls.redacted() == "imap://bot@127.0.0.1:10143/Lead Replies/Bounces"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("pop3://u:p@host/INBOX", "imaps:// (TLS) or imap:// (STARTTLS)"),
        ("imaps://u:p@/INBOX", "no host"),
        ("imaps://host/INBOX", "no user"),
        ("imaps://u@host/INBOX", "no password"),
        ("imaps://u:p@host:99999/INBOX", "not a mailbox URL"),
        ("imaps://u:p@host/INBOX?x=1", "no ?query"),
        ("imaps://u:p@host/IN%0ABOX", "line break"),
    ],
)
def test_a_bad_mailbox_url_is_refused_naming_the_part(url: str, says: str) -> None:
    with pytest.raises(MailboxUrlError, match=None) as refused:
        parse_mailbox_url(url)
    assert says in str(refused.value)
    with pytest.raises(SettingsError) as bad:
        load_settings(mailbox_url=url)
    assert "NURTURE_MAILBOX_URL" in str(bad.value) and says in str(bad.value)
    assert ":p@" not in str(bad.value)


def test_reconnects_back_off_exponentially_up_to_a_cap() -> None:
    waits = [backoff(n, first=1.0, cap=60.0) for n in range(12)]
    assert 0.8 <= waits[0] <= 1.0 and 1.6 <= waits[1] <= 2.0 and 3.2 <= waits[2] <= 4.0
    assert all(48.0 <= w <= 60.0 for w in waits[6:])


def test_the_mailbox_command_needs_a_url_and_says_so(tmp_path: Path) -> None:
    env = {
        "NURTURE_MAILBOX_URL": "",
        "NURTURE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/n.db",
    }
    missing = CliRunner().invoke(cli, ["mailbox"], env=env)
    optional = CliRunner().invoke(cli, ["mailbox", "--if-configured"], env=env)
    bad = CliRunner().invoke(cli, ["mailbox"], env={**env, "NURTURE_MAILBOX_URL": "imaps://x"})

    assert missing.exit_code == 2 and "NURTURE_MAILBOX_URL is not set" in missing.output
    assert optional.exit_code == 0 and "no mailbox to read" in optional.output
    assert bad.exit_code == 2 and "NURTURE_MAILBOX_URL" in bad.output


# --- a real server ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One dovecot for the session (each test reads a folder of its own)."""
    reason = dovecot_unavailable()
    if reason is not None:
        pytest.skip(reason)
    server = Dovecot(tmp_path_factory.mktemp("dovecot"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Mail:
    """A running product, a dovecot folder, and readers of it."""

    stack: Stack
    server: Dovecot
    folder: str = field(default_factory=lambda: uid("Replies"))
    _readers: list[tuple[asyncio.Event, asyncio.Task[None]]] = field(default_factory=list)

    def reader(self, *, starttls: bool = False, **options: object) -> MailboxReader:
        options = {"poll_interval": 5.0, "backoff_first": 0.2, "backoff_cap": 2.0, **options}
        url = parse_mailbox_url(self.server.url(self.folder, starttls=starttls))
        return MailboxReader(self.stack.intake, url, ca_file=str(self.server.cert), **options)  # type: ignore[arg-type]

    async def create_folder(self) -> None:
        await asyncio.to_thread(self.server.create_folder, self.folder)

    def start(self, reader: MailboxReader | None = None) -> MailboxReader:
        reader = reader or self.reader()
        stop = asyncio.Event()
        self._readers.append((stop, asyncio.create_task(reader.run(stop))))
        return reader

    async def stop(self) -> None:
        for stop, _task in self._readers:
            stop.set()
        for _, task in self._readers:
            await asyncio.wait_for(task, timeout=60)
        self._readers.clear()

    async def append(self, raw: bytes) -> None:
        await asyncio.to_thread(self.server.append, raw, self.folder)

    async def flags(self) -> list[set[str]]:
        return await asyncio.to_thread(self.server.flags, self.folder)

    async def all_processed(self, count: int) -> list[set[str]]:
        async def check() -> list[set[str]] | None:
            for _, task in self._readers:
                if task.done():
                    task.result()  # a reader that stopped: say why at once
                    raise AssertionError("a reader stopped")
            flags = await self.flags()
            done = len(flags) == count and all(PROCESSED in f or FAILED in f for f in flags)
            return flags if done else None

        return await eventually(check, timeout=120)

    async def rows(self, model: type, **where: object) -> list:  # type: ignore[type-arg]
        async with self.stack.sessions() as session:
            query = select(model)
            for name, value in where.items():
                query = query.where(getattr(model, name) == value)
            return list((await session.scalars(query)).all())

    async def first_email(self, lead: str, **fields: object) -> EmailSend:
        await self.stack.add_lead(id=lead, **fields)
        await self.stack.until(lead, lambda v: v.step == "pause")
        [sent] = await self.rows(EmailSend, lead_id=lead)
        assert sent.message_id
        return sent


@pytest.fixture
async def mail(make_settings, time_env, dovecot) -> AsyncIterator[Mail]:  # type: ignore[no-untyped-def]
    async for box in _mail(make_settings, time_env, dovecot):
        yield box


@pytest.fixture
async def mail_on_each_database(
    make_settings, time_env, dovecot, database_url
) -> AsyncIterator[Mail]:  # type: ignore[no-untyped-def]
    """As ``mail``, on SQLite and (with NURTURE_TEST_DATABASE_URL) on PostgreSQL."""
    async for box in _mail(make_settings, time_env, dovecot, database_url=database_url):
        yield box


async def _mail(make_settings, time_env, dovecot, **overrides) -> AsyncIterator[Mail]:  # type: ignore[no-untyped-def]
    cadences_dir, templates_dir = write_cadence_set(
        Path(make_settings().cadences_dir).parent / "mailbox",
        SKELETON_PLAYBOOK,
        {"welcome": EXIT_ON_REPLY},
    )
    settings = make_settings(cadences_dir=cadences_dir, templates_dir=templates_dir, **overrides)
    async with running(time_env.client, settings) as stack:
        box = Mail(stack, dovecot)
        await box.create_folder()
        try:
            yield box
        finally:
            await box.stop()


def reply(to_message_id: str, sender: str, body: str = "Yes, let's talk next week.") -> bytes:
    return (
        f"From: Someone <{sender}>\r\nTo: Acme <hello@acme.example>\r\n"
        f"Subject: Re: Welcome\r\nMessage-ID: <{uid('r')}@mail.example>\r\n"
        f"In-Reply-To: {to_message_id}\r\nReferences: {to_message_id}\r\n"
        f"Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"\r\n{body}\r\n"
    ).encode()


def stranger(body: str = "Who is this?") -> bytes:
    return reply(f"<{uid('none')}@elsewhere.example>", f"{uid('x').lower()}@nowhere.example", body)


@pytest.mark.imap
async def test_a_reply_read_from_the_mailbox_ends_the_cadence(mail: Mail) -> None:
    lead = uid()
    address = f"{lead.lower()}@example.com"
    sent = await mail.first_email(lead, email=address, country="US")
    mail.start()

    await mail.append(reply(sent.message_id, address))

    view = await mail.stack.until(
        lead, lambda v: any(h.what == "cadence stopped" for h in v.history)
    )
    assert view.next_touch_at is None
    [replied] = await mail.rows(EventRow, type="email.replied")
    assert replied.lead_id == lead and replied.data.get("step") == "hello"
    [flags] = await mail.all_processed(1)
    assert {PROCESSED, SEEN} <= flags
    [kept] = await mail.rows(InboundMail)
    assert kept.source == "mailbox" and kept.status == "matched" and kept.lead_id == lead


@pytest.mark.imap
async def test_a_reply_too_large_to_fetch_is_read_by_its_header(
    mail: Mail, monkeypatch, caplog
) -> None:  # type: ignore[no-untyped-def]
    from nurture.services import mailbox

    lead = uid()
    address = f"{lead.lower()}@example.com"
    sent = await mail.first_email(lead, email=address, country="US")
    # The limit lowered, so a reply with a long quote stands for one with a big attachment.
    monkeypatch.setattr(mailbox, "MAX_MESSAGE_BYTES", 2_000)
    with caplog.at_level(logging.INFO, logger="nurture.services.mailbox"):
        mail.start()
        await mail.append(reply(sent.message_id, address, "Yes.\r\n" + "> quoted\r\n" * 500))
        await mail.all_processed(1)

    [replied] = await mail.rows(EventRow, type="email.replied")
    assert replied.lead_id == lead and replied.data.get("step") == "hello"
    assert "header only" in caplog.text


def japanese_out_of_office(to_message_id: str, sender: str, back: datetime) -> bytes:
    """The corpus' Japanese auto-reply (ISO-2022-JP), its return day and thread rewritten."""
    raw = (CORPUS / "japanese-autoreply.eml").read_bytes()
    head, _, body = raw.partition(b"\n\n")
    text = body.decode("iso-2022-jp").replace("12月14日", f"{back.month}月{back.day}日")
    head = (
        head.replace(b"<9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b@acme.example>", to_message_id.encode())
        .replace(b"20261201101520.A7F3.6B1C9E2D", uid("oof").encode())
        .replace(b"misaki.sato@kaisha.example", sender.encode())
    )
    return head + b"\n\n" + text.encode("iso-2022-jp")


@pytest.mark.imap
async def test_a_japanese_out_of_office_holds_touches_until_the_return_day(
    mail: Mail, time_env, smtp_sink
) -> None:  # type: ignore[no-untyped-def]
    lead = uid()
    address = f"{lead.lower()}@kaisha.example"
    sent = await mail.first_email(lead, email=address, country="JP")
    tokyo = ZoneInfo("Asia/Tokyo")
    back = ((await time_env.get_current_time()) + timedelta(days=5)).astimezone(tokyo).date()
    mail.start(mail.reader(starttls=True))  # imap:// with STARTTLS this time

    await mail.append(japanese_out_of_office(sent.message_id, address, back))

    await mail.stack.until(
        lead, lambda v: any(h.what == f"out of office until {back.isoformat()}" for h in v.history)
    )
    [oof] = await mail.rows(EventRow, type="email.auto_replied")
    assert oof.data["until"] == back.isoformat()
    # The pause ends after 2 days: the follow-up waits for the return day.
    await time_env.sleep(timedelta(days=2, hours=1))
    held = f"email follow-up held: out of office until {back.isoformat()}"
    await mail.stack.until(lead, lambda v: any(h.what == held for h in v.history))
    assert len(smtp_sink.messages) == 1
    # ... and goes out once the lead is back.
    await time_env.sleep(timedelta(days=4))
    view = await mail.stack.until(
        lead, lambda v: any(h.what == "email follow-up: sent" for h in v.history)
    )
    [sent_entry] = [h for h in view.history if h.what == "email follow-up: sent"]
    back_start = datetime(back.year, back.month, back.day, tzinfo=tokyo)
    assert datetime.fromisoformat(str(sent_entry.at)) >= back_start
    assert len(await smtp_sink.wait_for(2)) == 2
    assert "cadence stopped" not in [h.what for h in view.history]


@pytest.mark.imap
async def test_a_bounce_read_from_the_mailbox_suppresses_the_address(mail: Mail) -> None:
    lead = uid()
    address = f"{lead.lower()}@initrode.example"
    sent = await mail.first_email(lead, email=address, country="US")
    raw = (
        (CORPUS / "postfix-dsn-hard.eml")
        .read_bytes()
        .replace(b"nobody@initrode.example", address.encode())
        .replace(b"<5b2e9c1d0a7f4e3b8c6d5a4f3e2d1c0b@acme.example>", sent.message_id.encode())
    )
    mail.start()

    await mail.append(raw)

    await mail.all_processed(1)
    [bounce] = await mail.rows(EventRow, type="email.bounced")
    assert bounce.lead_id == lead and bounce.data["kind"] == "hard"
    [suppressed] = await mail.rows(Suppression)
    assert suppressed.email == address and "hard bounce" in (suppressed.reason or "")


@pytest.mark.imap
async def test_a_complaint_read_from_the_mailbox_unsubscribes(mail: Mail) -> None:
    lead = uid()
    address = f"{lead.lower()}@yahoo.example"
    sent = await mail.first_email(lead, email=address, country="US")
    raw = (
        (CORPUS / "arf-complaint.eml")
        .read_bytes()
        .replace(b"angry.reader@yahoo.example", address.encode())
        .replace(b"1764607447.4412.fbl", uid("fbl").encode())
        .replace(b"<77aa88bb99cc00dd11ee22ff33aa44bb@acme.example>", sent.message_id.encode())
    )
    mail.start()

    await mail.append(raw)

    await mail.all_processed(1)
    [unsubscribed] = await mail.rows(EventRow, type="lead.unsubscribed")
    assert unsubscribed.lead_id == lead and unsubscribed.data["via"] == "spam complaint"
    assert [s.email for s in await mail.rows(Suppression)] == [address]
    [row] = await mail.rows(LeadRow, id=lead)
    assert row.unsubscribed
    await mail.stack.until(lead, lambda v: v.unsubscribed)


@pytest.mark.imap
async def test_a_message_read_again_after_a_crash_before_its_mark_has_one_effect(
    mail: Mail, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    lead = uid()
    address = f"{lead.lower()}@example.com"
    sent = await mail.first_email(lead, email=address, country="US")
    await mail.append(reply(sent.message_id, address))

    # The crash: processed, then gone before the mark was set.
    with monkeypatch.context() as patch:
        patch.setattr(ImapMailbox, "mark_processed", lambda self, uid: None)
        first = await mail.reader().read_once()
    assert (first.read, first.duplicates) == (1, 0)
    [flags] = await mail.flags()
    assert PROCESSED not in flags and SEEN not in flags
    # The next reader reads it again: recognised, marked, no second effect.
    again = await mail.reader().read_once()

    assert (again.read, again.duplicates) == (1, 1)
    [flags] = await mail.flags()
    assert {PROCESSED, SEEN} <= flags
    assert len(await mail.rows(EventRow, type="email.replied")) == 1
    assert len(await mail.rows(InboundMail)) == 1
    view = await mail.stack.until(
        lead, lambda v: any(h.what == "cadence stopped" for h in v.history)
    )
    assert [h.what for h in view.history].count("cadence stopped") == 1


@pytest.mark.imap
async def test_two_readers_of_one_folder_give_each_message_one_effect(
    mail_on_each_database: Mail, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    mail = mail_on_each_database
    lead = uid()
    address = f"{lead.lower()}@example.com"
    sent = await mail.first_email(lead, email=address, country="US")
    # One with IDLE, one polling every 0.2 s: both race for every message; sizes are
    # fetched in slices (a backlog must not make one command too long for the server).
    monkeypatch.setattr(imap, "FETCH_SLICE", 4)
    mail.start(mail.reader())
    mail.start(mail.reader(idle=False, poll_interval=0.2, starttls=True))

    await mail.append(reply(sent.message_id, address))
    for n in range(5):
        await mail.append(stranger(f"Message {n}"))

    await mail.all_processed(6)
    assert len(await mail.rows(EventRow, type="email.replied")) == 1
    kept = await mail.rows(InboundMail)
    assert len(kept) == 6 and {k.status for k in kept} == {"matched", "unmatched"}
    await mail.stack.until(lead, lambda v: any(h.what == "cadence stopped" for h in v.history))


@pytest.mark.imap
async def test_with_idle_new_mail_is_read_without_waiting_for_the_next_search(mail: Mail) -> None:
    lead = uid()
    address = f"{lead.lower()}@example.com"
    await mail.first_email(lead, email=address, country="US")
    # A search only every 29 minutes: within the test, only IDLE can bring the mail in.
    mail.start(mail.reader(poll_interval=1740.0))

    # Each one lands as soon as the one before is recorded: while the reader still hands
    # that one over and marks it, before its next IDLE (so the server reports the new one
    # in an answer to those commands, not to the IDLE).
    for n in range(1, 7):
        await mail.append(away(address))
        await _events_reach(mail, "email.auto_replied", n)
    for _ in range(3):
        await mail.append(away(address))

    await mail.all_processed(9)
    assert len(await mail.rows(EventRow, type="email.auto_replied")) == 9


def away(sender: str) -> bytes:
    return (
        f"From: <{sender}>\r\nTo: Acme <hello@acme.example>\r\nSubject: Out of office\r\n"
        f"Message-ID: <{uid('away')}@mail.example>\r\nAuto-Submitted: auto-replied\r\n"
        "Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "\r\nI am away from the office.\r\n"
    ).encode()


async def _events_reach(mail: Mail, kind: str, count: int, timeout: float = 120.0) -> None:
    # Looked for often: the next message must land while the reader is still busy.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(await mail.rows(EventRow, type=kind)) < count:
        assert loop.time() < deadline, f"fewer than {count} {kind} events in {timeout} s"
        await asyncio.sleep(0.002)


@pytest.mark.imap
async def test_a_message_that_cannot_be_processed_is_set_aside_and_the_rest_is_read(
    mail: Mail, monkeypatch, caplog
) -> None:  # type: ignore[no-untyped-def]
    real = mailback.take_mail

    async def take_mail(intake, raw, **kwargs):  # type: ignore[no-untyped-def]
        if b"poison" in raw:
            raise ValueError("a message this release cannot read")
        return await real(intake, raw, **kwargs)

    monkeypatch.setattr(mailback, "take_mail", take_mail)
    mail.start()
    with caplog.at_level(logging.INFO, logger="nurture.services.mailbox"):
        await mail.append(stranger("poison"))
        await mail.append(stranger("a good one"))
        poisoned, good = await mail.all_processed(2)

    assert FAILED in poisoned and PROCESSED not in poisoned and SEEN not in poisoned
    assert {PROCESSED, SEEN} <= good
    assert len(await mail.rows(InboundMail)) == 1
    assert "could not be processed" in caplog.text and "ValueError" in caplog.text
    # After the fix, --retry-failed reads it again.
    await mail.stop()
    monkeypatch.setattr(mailback, "take_mail", real)
    assert await mail.reader().retry_failed() == 1
    report = await mail.reader().read_once()
    assert (report.read, report.failed) == (1, 0)
    assert len(await mail.rows(InboundMail)) == 2


@pytest.mark.imap
async def test_an_outage_while_processing_leaves_the_message_for_the_next_try(
    mail: Mail, monkeypatch, caplog
) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import OperationalError

    real = mailback.take_mail
    calls = 0

    async def take_mail(intake, raw, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OperationalError("INSERT", {}, Exception("database is down"))
        return await real(intake, raw, **kwargs)

    monkeypatch.setattr(mailback, "take_mail", take_mail)
    with caplog.at_level(logging.INFO, logger="nurture.services.mailbox"):
        mail.start()
        await mail.append(stranger())
        [flags] = await mail.all_processed(1)

    assert {PROCESSED, SEEN} <= flags and calls == 2
    assert len(await mail.rows(InboundMail)) == 1
    assert "processing paused" in caplog.text and "reconnected" in caplog.text


@pytest.mark.imap
async def test_the_reader_reconnects_after_the_server_restarts(
    make_settings, time_env, tmp_path, caplog
) -> None:  # type: ignore[no-untyped-def]
    server = Dovecot(tmp_path / "own-dovecot")
    server.start()
    try:
        async with running(time_env.client, make_settings()) as stack:
            mail = Mail(stack, server)
            await mail.create_folder()
            try:
                with caplog.at_level(logging.INFO, logger="nurture.services.mailbox"):
                    mail.start()
                    await mail.append(stranger("before the restart"))
                    await mail.all_processed(1)

                    await asyncio.to_thread(server.stop)
                    await eventually(lambda: _logged(caplog, "reconnecting in"))
                    await asyncio.to_thread(server.start)
                    await mail.append(stranger("after the restart"))
                    await mail.all_processed(2)
            finally:
                await mail.stop()
            assert len(await mail.rows(InboundMail)) == 2
            assert "reconnected after" in caplog.text
    finally:
        server.stop()


@pytest.mark.imap
async def test_a_server_without_idle_is_polled(make_settings, time_env, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    # Dovecot announcing, once logged in, what a server without IDLE would.
    server = Dovecot(tmp_path / "no-idle", settings="imap_capability = IMAP4rev1 LITERAL+ UIDPLUS")
    server.start()
    try:
        async with running(time_env.client, make_settings()) as stack:
            mail = Mail(stack, server)
            await mail.create_folder()
            try:
                with caplog.at_level(logging.INFO, logger="nurture.services.mailbox"):
                    mail.start(mail.reader(poll_interval=1.0))
                    await mail.append(stranger())
                    await mail.all_processed(1)
            finally:
                await mail.stop()
            assert "connected (polling)" in caplog.text
            assert len(await mail.rows(InboundMail)) == 1
    finally:
        server.stop()


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return text in caplog.text


# --- the command --------------------------------------------------------------------------


def _command_env(mail: Mail, **extra: str) -> dict[str, str]:
    settings = mail.stack.settings
    return {
        **os.environ,
        "NURTURE_DATABASE_URL": settings.database_url,
        "NURTURE_CADENCES_DIR": str(settings.cadences_dir),
        "NURTURE_TEMPLATES_DIR": str(settings.templates_dir),
        "NURTURE_TEMPORAL_ADDRESS": "127.0.0.1:1",  # unmatched mail never needs it
        "NURTURE_MAILBOX_URL": mail.server.url(mail.folder),
        "NURTURE_MAILBOX_CA": str(mail.server.cert),
        "NURTURE_MAILBOX_POLL_SECONDS": "5",
        **extra,
    }


@pytest.mark.imap
async def test_the_command_reads_once_and_refuses_a_bad_login_or_certificate(mail: Mail) -> None:
    await mail.append(stranger())
    runner = CliRunner()

    wrong = mail.server.url(mail.folder).replace("reader:", "reader:x")
    refused = await asyncio.to_thread(
        runner.invoke, cli, ["mailbox", "--once"], env=_command_env(mail, NURTURE_MAILBOX_URL=wrong)
    )
    untrusted = await asyncio.to_thread(
        runner.invoke, cli, ["mailbox", "--once"], env=_command_env(mail, NURTURE_MAILBOX_CA="")
    )
    read = await asyncio.to_thread(
        runner.invoke, cli, ["mailbox", "--once"], env=_command_env(mail)
    )
    # A backlog a person chose to leave out: marked, never read.
    await mail.append(stranger("old mail"))
    skipped = await asyncio.to_thread(
        runner.invoke, cli, ["mailbox", "--skip-existing"], env=_command_env(mail)
    )

    assert refused.exit_code == 2 and "refused the login" in refused.output
    assert "p%40" not in refused.output and "p@ss" not in refused.output  # no password said
    assert untrusted.exit_code == 2 and "NURTURE_MAILBOX_CA" in untrusted.output
    assert read.exit_code == 0, read.output
    assert "read 1 message(s)" in read.output
    assert skipped.exit_code == 0 and "1 message(s) marked" in skipped.output
    assert [PROCESSED in f for f in await mail.flags()] == [True, True]
    assert len(await mail.rows(InboundMail)) == 1


@pytest.mark.imap
async def test_the_mailbox_process_stops_cleanly_on_sigterm(mail: Mail) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "starter", "mailbox",
        cwd=ROOT, env=_command_env(mail),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        await mail.append(stranger())
        await mail.all_processed(1)
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    text = output.decode()
    assert proc.returncode == 0, text
    assert "connected (IDLE)" in text and "stopped" in text
    assert "p%40" not in text and "Traceback" not in text


def test_compose_runs_the_reader_only_with_its_profile_and_never_in_a_restart_loop() -> None:
    from ruamel.yaml import YAML

    services = YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())["services"]
    reader = services["mailbox"]

    assert reader["profiles"] == ["mailbox"]
    # Without a URL it exits 0, which `on-failure` leaves alone.
    assert reader["restart"] == "on-failure" and "--if-configured" in reader["command"]
    env = reader["environment"]
    assert env["NURTURE_MAILBOX_URL"] == "${NURTURE_MAILBOX_URL:-}"
    assert env["NURTURE_DATABASE_URL"] == services["worker"]["environment"]["NURTURE_DATABASE_URL"]
    assert reader["volumes"] == services["worker"]["volumes"]
    settings = load_settings(mailbox_url="", mailbox_ca="", mailbox_poll_seconds="60")
    assert settings.mailbox is None and settings.mailbox_ca is None
