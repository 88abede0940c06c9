"""The dev SMTP sink: a real aiosmtpd server storing into a real database."""

from __future__ import annotations

import socket
from email.message import EmailMessage

import aiosmtplib
import pytest

from nurture.adapters.database import make_engine, session_factory
from nurture.adapters.mailsink import MailSink, list_mail, parse_mail

# migrated_url: a fresh, migrated database (SQLite; PostgreSQL when configured).
pytest_plugins = ["dbfixtures"]

SUBJECT = "ご案内：来週のウェビナー (Acme)"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _message(subject: str, to: str = "aiko@example.com") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Acme <hello@acme.example>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = "<test-1@acme.example>"
    message.set_content("こんにちは、佐藤さん。\nウェビナーのご案内です。")
    message.add_alternative("<p>こんにちは、<b>佐藤さん</b>。</p>", subtype="html")
    return message


async def test_sink_stores_each_message_with_a_decoded_subject(migrated_url: str) -> None:
    port = _free_port()
    with MailSink(migrated_url, port=port):
        await aiosmtplib.send(_message(SUBJECT), hostname="127.0.0.1", port=port)
        await aiosmtplib.send(
            _message("Second", to="ben@example.com"), hostname="127.0.0.1", port=port
        )

    engine = make_engine(migrated_url)
    try:
        async with session_factory(engine)() as session:
            mail = await list_mail(session)
    finally:
        await engine.dispose()

    assert [m.subject for m in mail] == ["Second", SUBJECT]  # newest first
    first = mail[1]
    assert first.mail_from == "hello@acme.example"
    assert first.rcpt_tos == ["aiko@example.com"]
    assert first.message_id == "<test-1@acme.example>"
    assert first.received_at.tzinfo is not None
    # On the wire the subject is RFC 2047 encoded; stored, it reads as Japanese.
    assert "=?utf-8?" in first.raw
    assert SUBJECT not in first.raw
    parsed = parse_mail(first.raw)
    assert ("Subject", SUBJECT) in parsed.headers
    assert parsed.text is not None and "佐藤さん" in parsed.text
    assert parsed.html is not None and "<b>佐藤さん</b>" in parsed.html


async def test_sink_stops_cleanly_and_can_be_restarted(migrated_url: str) -> None:
    port = _free_port()
    sink = MailSink(migrated_url, port=port)
    sink.start()
    with pytest.raises(RuntimeError, match="already running"):
        sink.start()
    sink.stop()
    sink.stop()  # idempotent

    with pytest.raises(aiosmtplib.SMTPConnectError):
        await aiosmtplib.send(_message("nobody listens"), hostname="127.0.0.1", port=port)

    sink.start()
    try:
        await aiosmtplib.send(_message("back again"), hostname="127.0.0.1", port=port)
    finally:
        sink.stop()
    engine = make_engine(migrated_url)
    try:
        async with session_factory(engine)() as session:
            assert [m.subject for m in await list_mail(session)] == ["back again"]
    finally:
        await engine.dispose()
