"""The worker's SMTP sender: a few reused connections, one message at a time on each."""

from __future__ import annotations

import asyncio
import email.policy
from email.message import EmailMessage

import pytest
from activitysupport import Tap, data_block
from aiosmtpd.controller import Controller
from conftest import free_port

from nurture.adapters.smtp import NotClaimed, SmtpSender


class PeerSink:
    """Keeps each message with the client port of the connection that carried it."""

    def __init__(self) -> None:
        self.peers: list[int] = []
        self.subjects: list[str] = []
        self.texts: list[str] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        await asyncio.sleep(0.02)  # a server that takes its time: sends overlap
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.subjects.append(str(message["Subject"]))
        self.texts.append(message.get_content().replace("\r\n", "\n"))
        self.peers.append(session.peer[1])
        return "250 OK queued"


@pytest.fixture
def peer_sink():  # type: ignore[no-untyped-def]
    sink = PeerSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield sink, controller.port
    finally:
        controller.stop()


def message(n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "hello@acme.example"
    msg["To"] = f"lead{n}@example.com"
    msg["Subject"] = f"message {n}"
    msg.set_content("hello")
    return msg


async def send_all(sender: SmtpSender, count: int) -> list[str]:
    return await asyncio.gather(
        *(
            sender.send(message(n), "hello@acme.example", [f"lead{n}@example.com"])
            for n in range(count)
        )
    )


async def test_sends_at_once_share_a_few_reused_connections(peer_sink):
    sink, port = peer_sink
    sender = SmtpSender("127.0.0.1", port, connections=3)
    try:
        replies = await send_all(sender, 12)
        again = await send_all(sender, 6)
    finally:
        await sender.close()
    assert all(r.startswith("250") for r in replies + again)
    assert sorted(sink.subjects) == sorted(
        [f"message {n}" for n in range(12)] + [f"message {n}" for n in range(6)]
    )
    # Every message went out once, over at most three connections, opened once and reused.
    assert 1 < len(set(sink.peers)) <= 3


async def test_one_at_a_time_uses_one_connection(peer_sink):
    sink, port = peer_sink
    sender = SmtpSender("127.0.0.1", port, connections=4)
    try:
        for n in range(5):
            await sender.send(message(n), "hello@acme.example", [f"lead{n}@example.com"])
    finally:
        await sender.close()
    assert len(sink.subjects) == 5
    assert len(set(sink.peers)) == 1


async def test_a_lost_claim_closes_the_connection_before_the_dot_and_nothing_is_delivered(
    peer_sink,
):
    # SMTP commits a message at the lone dot that ends DATA. The claim is asked once the
    # server holds the envelope and the whole body; when it is lost (another attempt has
    # the message) the connection is closed without that dot, and the server keeps nothing.
    sink, port = peer_sink
    tap = await Tap("127.0.0.1", port).start()
    sender = SmtpSender("127.0.0.1", tap.port, connections=1)
    asked: list[bytes] = []

    async def lost() -> bool:
        asked.append(bytes(tap.connections[-1]) if tap.connections else b"")
        return False

    try:
        with pytest.raises(NotClaimed):
            await sender.send(message(1), "hello@acme.example", ["lead1@example.com"], claim=lost)
        await tap.idle.wait()  # the client closed, and so did the server
        [written] = tap.connections
        block = data_block(written)
        assert b"Subject: message 1\r\n" in block and block.endswith(b"hello\r\n")
        assert not block.endswith(b"\r\n.\r\n")  # the whole body went out, but not its end
        assert sink.subjects == []  # so the server delivered nothing

        # The sender goes on, on a new connection; the body is made transparent (RFC 5321
        # 4.5.2: a line that starts with a dot gets another), so none of it ends the message.
        dotted = message(2)
        dotted.set_content("first\n.\n..two dots\n.last\n")

        async def won() -> bool:
            return True

        reply = await sender.send(dotted, "hello@acme.example", ["lead2@example.com"], claim=won)
    finally:
        await sender.close()
        await tap.stop()
    assert reply.startswith("250")
    assert sink.subjects == ["message 2"]
    assert sink.texts == ["first\n.\n..two dots\n.last\n"]
    assert len(tap.connections) == 2
    assert b"\r\n..\r\n...two dots\r\n..last\r\n.\r\n" in tap.connections[1]


def test_a_sender_needs_a_connection():
    with pytest.raises(ValueError):
        SmtpSender("127.0.0.1", 25, connections=0)
