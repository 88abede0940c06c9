"""The email activity against a real SMTP server that fails on purpose, on a real database.

Each test calls ``send_email`` as Temporal would (in an activity context, again after a
retryable error) and then looks at what matters: the messages the server kept, and the
outbox row. SQLite always; PostgreSQL too when NURTURE_TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email.message import EmailMessage

import pytest
from activitysupport import (
    DROP_AFTER_BODY,
    DROP_BEFORE_KEEPING,
    HANG_AFTER_BODY,
    JA_SUBJECT,
    NOW,
    POSTAL,
    SENDER,
    FaultySink,
    Sessions,
    Tap,
    add_lead,
    catalog_for,
    data_block,
    email_input,
    run,
)
from aiosmtpd.controller import Controller
from conftest import free_port
from sqlalchemy import select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from nurture.activities.email import EmailActivities, message_id
from nurture.activities.outbox import HANDOVER_LEASE
from nurture.adapters.database import EmailSend, LeadRow, Suppression, utcnow
from nurture.adapters.link_tokens import read_token
from nurture.adapters.secrets import link_key
from nurture.adapters.smtp import SmtpSender
from nurture.domain import messages as am
from nurture.settings import Settings

pytest_plugins = ["dbfixtures", "activityfixtures"]

MIA = {"email": "mia@example.com", "first_name": "Mia", "last_name": "Chen", "company": "Initech"}


@dataclass
class Outbox:
    """The activity wired to the faulty sink and the test's database."""

    acts: EmailActivities
    sessions: Sessions
    sink: FaultySink
    settings: Settings

    async def send(self, request: am.SendEmailInput, attempts: int = 6) -> am.SendEmailResult:
        """Run the activity, again after each retryable error, as Temporal's retry policy does."""
        for _ in range(attempts):
            try:
                return await run(self.acts.send_email, request)
            except ApplicationError as exc:
                assert not exc.non_retryable, exc
        raise AssertionError(f"still failing after {attempts} attempts")

    async def row(self, key: str) -> EmailSend:
        async with self.sessions() as session:
            row = await session.scalar(select(EmailSend).where(EmailSend.key == key))
            assert row is not None, f"no outbox row {key}"
            return row


def make_outbox(
    settings: Settings,
    sessions: Sessions,
    sink: FaultySink,
    sender: SmtpSender | None = None,
    **smtp: object,
) -> Outbox:
    sender = sender or SmtpSender(sink.host, sink.port, **smtp)  # type: ignore[arg-type]
    return Outbox(
        EmailActivities(settings, sessions, sender, catalog_for(settings)), sessions, sink, settings
    )


class DiesAtClaim(SmtpSender):
    """A sender whose process dies when it asks for its claim: ``at_claim`` is set, then the
    claim never answers, and the test cancels the activity as a SIGKILL would end it."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.at_claim = asyncio.Event()

    async def send(self, message, sender, recipients, *, claim=None):  # type: ignore[no-untyped-def]
        async def never() -> bool:
            self.at_claim.set()
            await asyncio.Event().wait()
            return False

        return await super().send(message, sender, recipients, claim=never)


@pytest.fixture
async def outbox(
    activity_settings: Callable[..., Settings], sessions: Sessions, faulty_sink: FaultySink
) -> AsyncIterator[Outbox]:
    box = make_outbox(activity_settings(), sessions, faulty_sink)
    try:
        yield box
    finally:
        await box.acts.smtp.close()


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None, f"no text/{subtype} part"
    return part.get_content()  # type: ignore[no-any-return]


# --- temporary failures ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "replies"),
    [
        pytest.param("rcpt", ["451 4.7.1 Greylisted, try again later"] * 2, id="rcpt-451"),
        pytest.param("data", ["421 4.3.2 Service shutting down"] * 2, id="data-421"),
        pytest.param("data", ["451 4.3.0 Local error", "421 4.4.5 Too busy"], id="data-451-421"),
    ],
)
async def test_temporary_failures_are_retried_into_exactly_one_message(
    outbox, sessions, where, replies
):
    await add_lead(sessions, "L-1", **MIA)
    getattr(outbox.sink, f"{where}_faults").extend(replies)
    request = email_input("L-1")

    errors = []
    for _ in range(5):
        try:
            result = await run(outbox.acts.send_email, request)
            break
        except ApplicationError as exc:
            errors.append(exc)
    assert [(e.type, e.non_retryable) for e in errors] == [("TransientSmtpError", False)] * 2
    assert result.status == "sent"
    assert len(outbox.sink.messages) == 1
    row = await outbox.row(request.key)
    assert (row.status, row.attempts) == ("sent", 3)
    assert row.smtp_reply == "250 OK queued"
    # The address is personal data: it stays out of what Temporal records.
    assert all("mia@example.com" not in str(e) for e in errors)


# --- permanent failures ----------------------------------------------------------------


async def test_unknown_mailbox_fails_once_and_suppresses_the_address(outbox, sessions):
    await add_lead(sessions, "L-1", **MIA)
    await add_lead(sessions, "L-2", email="MIA@example.com", company="Initech")
    outbox.sink.rcpt_faults.append("550 5.1.1 <mia@example.com>: Recipient address rejected")
    request = email_input("L-1")

    result = await run(outbox.acts.send_email, request)  # no exception: nothing to retry
    assert result.status == "failed"
    assert "5.1.1" in result.detail and "mia@example.com" not in result.detail

    again = await run(outbox.acts.send_email, request)
    assert (again.status, again.detail) == ("failed", "already failed (no second send)")
    assert outbox.sink.rcpt_seen == ["mia@example.com"]  # the server was asked once
    assert outbox.sink.messages == []

    row = await outbox.row(request.key)
    assert row.status == "failed" and "550 5.1.1" in (row.error or "")
    async with sessions() as session:
        suppression = await session.get(Suppression, "mia@example.com")
        assert suppression is not None and "5.1.1" in (suppression.reason or "")
        assert (await session.get(LeadRow, "L-1")).unsubscribed  # type: ignore[union-attr]

    # Suppression is per address: another lead with it (any case) gets nothing either.
    other = await run(outbox.acts.send_email, email_input("L-2"))
    assert other.status == "skipped"
    assert outbox.sink.rcpt_seen == ["mia@example.com"]


async def test_a_refused_body_fails_without_suppressing(outbox, sessions):
    await add_lead(sessions, "L-1", **MIA)
    outbox.sink.data_faults.append("554 5.7.1 Message rejected as spam")
    request = email_input("L-1")

    result = await run(outbox.acts.send_email, request)
    assert result.status == "failed"
    assert (await run(outbox.acts.send_email, request)).status == "failed"
    assert outbox.sink.data_seen == 1
    async with sessions() as session:
        assert await session.get(Suppression, "mia@example.com") is None


# --- the unknowable case ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "kept"),
    [
        pytest.param(DROP_AFTER_BODY, 1, id="dropped-after-keeping"),
        pytest.param(DROP_BEFORE_KEEPING, 0, id="dropped-before-keeping"),
        pytest.param(HANG_AFTER_BODY, 1, id="answer-too-late"),
    ],
)
async def test_connection_lost_after_the_body_is_unknown_and_never_resent(
    activity_settings, sessions, faulty_sink, fault, kept
):
    # A short timeout, so that the late answer counts as none.
    outbox = make_outbox(activity_settings(), sessions, faulty_sink, timeout=0.3)
    faulty_sink.hang_seconds = 1.0
    await add_lead(sessions, "L-1", **MIA)
    await add_lead(sessions, "L-2", email="raj@globex.example")
    faulty_sink.data_faults.append(fault)
    request = email_input("L-1")
    try:
        result = await run(outbox.acts.send_email, request)
        assert result.status == "unknown"
        assert len(faulty_sink.messages) == kept  # at most one, whatever happened

        # Temporal may run the activity again (a retry, a replayed worker): no second send.
        again = await outbox.send(request)
        assert again.status == "unknown"
        assert faulty_sink.data_seen == 1
        row = await outbox.row(request.key)
        assert row.status == "unknown" and row.error

        # The sender recovers: the next message goes out on a new connection.
        assert (await outbox.send(email_input("L-2"))).status == "sent"
        assert faulty_sink.connections == 2
    finally:
        await outbox.acts.smtp.close()


async def test_a_send_found_in_flight_becomes_unknown_and_is_not_sent(outbox, sessions):
    await add_lead(sessions, "L-1", **MIA)
    request = email_input("L-1")
    # What a worker that died while handing the message over leaves behind.
    async with sessions() as session:
        session.add(
            EmailSend(
                key=request.key, lead_id="L-1", cycle=0, cadence="touches", step="hello",
                visit=1, template="welcome/hello", status="sending", attempts=1,
                to_address="mia@example.com",
            )
        )  # fmt: skip
        await session.commit()

    result = await outbox.send(request)
    assert result.status == "unknown"
    assert outbox.sink.data_seen == 0 and outbox.sink.connections == 0
    row = await outbox.row(request.key)
    assert row.status == "unknown" and "not resent" in (row.error or "")


async def test_a_retry_waits_for_a_fresh_hand_over_and_then_takes_its_outcome(outbox, sessions):
    # A live worker whose heartbeat came late: Temporal starts a retry while the first
    # attempt is between the dot and its record. The retry must neither send nor call the
    # message `unknown` (an alert to the owner and ops): it waits, then finds `sent`.
    await add_lead(sessions, "L-1", **MIA)
    fresh, stale = email_input("L-1"), email_input("L-1", step="later")
    async with sessions() as session:
        for request, claimed in ((fresh, utcnow()), (stale, utcnow() - HANDOVER_LEASE)):
            session.add(
                EmailSend(
                    key=request.key, lead_id="L-1", cycle=0, cadence="touches",
                    step=request.step, visit=1, template="welcome/hello", status="sending",
                    attempts=1, to_address="mia@example.com", claimed_at=claimed,
                )
            )  # fmt: skip
        await session.commit()

    with pytest.raises(ApplicationError) as waited:
        await run(outbox.acts.send_email, fresh)
    assert waited.value.type == "SendInFlight" and not waited.value.non_retryable
    assert (await outbox.row(fresh.key)).status == "sending"

    async with sessions() as session:  # the first attempt records the server's answer
        row = await session.scalar(select(EmailSend).where(EmailSend.key == fresh.key))
        assert row is not None
        row.status, row.sent_at = "sent", utcnow()
        await session.commit()
    assert (await outbox.send(fresh)).status == "sent"

    # A claim older than the lease was left by an attempt that died: `unknown`, not resent.
    assert (await outbox.send(stale)).status == "unknown"
    assert (await outbox.row(stale.key)).status == "unknown"
    assert outbox.sink.data_seen == 0 and outbox.sink.connections == 0


async def test_a_send_still_waiting_for_the_connection_is_sent_by_the_retry(
    activity_settings, sessions, faulty_sink
):
    # A worker killed (SIGKILL) loses every send it was running. One that was still waiting
    # for a connection of the worker's pool had handed nothing over: it must not be marked
    # `sending`, so the retry sends it, instead of giving it up as `unknown`.
    box = make_outbox(activity_settings(), sessions, faulty_sink, connections=1)
    try:
        await add_lead(sessions, "L-1", **MIA)
        await add_lead(sessions, "L-2", email="raj@globex.example")
        box.sink.data_faults.append(HANG_AFTER_BODY)  # L-1 holds the one connection a second
        box.sink.hang_seconds = 1.0
        holding = asyncio.create_task(run(box.acts.send_email, email_input("L-1")))
        while box.sink.data_seen == 0:
            await asyncio.sleep(0.01)
        waiting = asyncio.create_task(run(box.acts.send_email, email_input("L-2")))
        while box.acts.smtp.waiting == 0:  # rendered, and waiting behind L-1 for the connection
            await asyncio.sleep(0.01)
        key = email_input("L-2").key
        async with sessions() as session:
            row = await session.scalar(select(EmailSend).where(EmailSend.key == key))
        assert row is None or row.status == "queued"
        waiting.cancel()  # the process dies here
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert (await holding).status == "sent"

        retried = await box.send(email_input("L-2"))
        assert retried.status == "sent"
        assert len(box.sink.messages) == 2
        assert "raj@globex.example" in str(box.sink.messages[1]["To"])
        assert (await box.row(key)).attempts == 1
    finally:
        await box.acts.smtp.close()


async def test_a_send_stopped_after_the_body_before_its_claim_is_sent_once_by_the_retry(
    activity_settings, sessions, faulty_sink
):
    # A server takes a message only at the lone dot that ends DATA. A worker killed after it
    # wrote the whole body, but before it claimed the row and wrote that dot, delivered
    # nothing: the row must still be `queued`, so the retry sends it, once (not `unknown`).
    tap = await Tap(faulty_sink.host, faulty_sink.port).start()
    dying = make_outbox(
        activity_settings(), sessions, faulty_sink, DiesAtClaim(faulty_sink.host, tap.port)
    )
    retry = make_outbox(
        activity_settings(), sessions, faulty_sink, SmtpSender("127.0.0.1", tap.port)
    )
    try:
        await add_lead(sessions, "L-1", **MIA)
        request = email_input("L-1")
        attempt = asyncio.create_task(run(dying.acts.send_email, request))
        await dying.acts.smtp.at_claim.wait()  # type: ignore[attr-defined]
        attempt.cancel()  # the process dies here
        with pytest.raises(asyncio.CancelledError):
            await attempt
        await tap.idle.wait()  # its connection is closed, at both ends

        # The server had the envelope and the whole message but its end, and kept nothing.
        [written] = tap.connections
        block = data_block(written)
        assert message_id(request.key, SENDER).encode() in block
        assert block.endswith(b"--\r\n")  # the closing MIME boundary: the body is all there
        assert not block.endswith(b"\r\n.\r\n")
        assert (faulty_sink.data_seen, faulty_sink.messages) == (0, [])
        async with sessions() as session:
            row = await session.scalar(select(EmailSend).where(EmailSend.key == request.key))
        assert row is None or row.status == "queued"

        retried = await retry.send(request)
        assert retried.status == "sent"
        [message] = faulty_sink.messages
        assert message["Message-ID"] == retried.message_id == message_id(request.key, SENDER)
        row = await retry.row(request.key)
        assert (row.status, row.attempts) == ("sent", 1)
        assert (await retry.send(request)).detail == "already sent (no second send)"
        assert len(faulty_sink.messages) == 1
    finally:
        await retry.acts.smtp.close()
        await dying.acts.smtp.close()
        await tap.stop()


async def test_a_send_heartbeats_while_it_runs(outbox, sessions):
    # The workflow gives send_email a heartbeat timeout: without heartbeats it would fail.
    await add_lead(sessions, "L-1", **MIA)
    beats: list[tuple[object, ...]] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)
    result = await env.run(outbox.acts.send_email, email_input("L-1"))
    assert result.status == "sent"
    assert beats


# --- at most once ------------------------------------------------------------------------


async def test_the_same_touch_twice_sends_one_message(outbox, sessions):
    await add_lead(sessions, "L-1", **MIA)
    request = email_input("L-1")

    first = await outbox.send(request)
    second = await outbox.send(request)
    assert first.status == second.status == "sent"
    assert first.message_id == second.message_id
    assert second.detail == "already sent (no second send)"
    assert len(outbox.sink.messages) == 1

    # A loop back to the step is a new visit, so a new key: that one is sent on purpose.
    looped = await outbox.send(email_input("L-1", visit=2))
    assert looped.status == "sent" and looped.message_id != first.message_id
    assert len(outbox.sink.messages) == 2
    assert outbox.sink.connections == 1  # one connection, reused


async def test_two_attempts_at_once_send_one_message(outbox, sessions):
    await add_lead(sessions, "L-1", **MIA)
    request = email_input("L-1")

    results = await asyncio.gather(
        run(outbox.acts.send_email, request),
        run(outbox.acts.send_email, request),
        return_exceptions=True,
    )
    assert len(outbox.sink.messages) == 1, results
    assert (await outbox.row(request.key)).status == "sent"


async def test_a_connection_closed_while_idle_is_replaced_without_an_error(
    activity_settings, sessions
):
    # A server that drops connections idle for 0.2 s (real ones: minutes), as servers do.
    sink = FaultySink("127.0.0.1", free_port())
    controller = Controller(sink, hostname=sink.host, port=sink.port, timeout=0.2)
    controller.start()
    outbox = make_outbox(activity_settings(), sessions, sink)
    try:
        for lead_id in ("L-1", "L-2"):
            await add_lead(sessions, lead_id, email=f"{lead_id.lower()}@initech.example")
        assert (await run(outbox.acts.send_email, email_input("L-1"))).status == "sent"
        await asyncio.sleep(0.5)
        # No retryable error either: nothing had been sent, so reconnecting at once is safe.
        assert (await run(outbox.acts.send_email, email_input("L-2"))).status == "sent"
        assert (len(sink.messages), sink.connections) == (2, 2)
    finally:
        await outbox.acts.smtp.close()
        controller.stop()


# --- who gets nothing ----------------------------------------------------------------


@pytest.mark.parametrize(
    "opt_out",
    ["suppressed", "do_not_contact", "unsubscribed"],
)
async def test_opt_outs_are_checked_at_send_time(outbox, sessions, opt_out):
    await add_lead(sessions, "L-1", **MIA)
    # The workflow scheduled the email believing the lead reachable; the database knows better.
    async with sessions() as session:
        if opt_out == "suppressed":
            session.add(Suppression(email="Mia@Example.com", reason="unsubscribe link"))
        else:
            lead = await session.get(LeadRow, "L-1")
            setattr(lead, opt_out, True)
        await session.commit()
    request = email_input("L-1")

    result = await outbox.send(request)
    assert result.status == "skipped"
    assert "mia@example.com" not in result.detail.lower()
    assert outbox.sink.connections == 0 and outbox.sink.messages == []
    assert (await outbox.row(request.key)).status == "skipped"


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("Sup <sup@supp.example.com>", id="display-name"),
        pytest.param("<sup@supp.example.com>", id="angle-brackets"),
        pytest.param("SUP@Supp.Example.COM", id="other-case"),
        pytest.param("sup@supp.example.com, other@x.example", id="list"),
    ],
)
async def test_a_suppressed_address_gets_nothing_however_it_is_written(outbox, sessions, address):
    # Rows written before intake normalized addresses (or by hand) still hold these.
    await add_lead(sessions, "L-1", email=address)
    async with sessions() as session:
        session.add(Suppression(email="sup@supp.example.com", reason="unsubscribe link"))
        await session.commit()
    request = email_input("L-1")

    result = await outbox.send(request)
    assert result.status in ("skipped", "failed")
    assert "sup@supp.example.com" not in result.detail.lower()
    assert outbox.sink.rcpt_seen == [] and outbox.sink.messages == []


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("mia@example.com\r\nBcc: all@example.com", id="line-break"),
        pytest.param("Evil <evil@attacker.example>, mia@example.com", id="list"),
        pytest.param("mia at example dot com", id="not-an-address"),
    ],
)
async def test_an_address_that_can_never_be_sent_to_fails_once_visibly(outbox, sessions, address):
    await add_lead(sessions, "L-1", email=address, first_name="Mia")
    request = email_input("L-1")

    result = await run(outbox.acts.send_email, request)  # no exception: nothing to retry
    assert result.status == "failed"
    assert result.detail.startswith("the lead's address cannot be sent to: ")
    assert "mia@example.com" not in result.detail and "attacker" not in result.detail
    again = await run(outbox.acts.send_email, request)
    assert (again.status, again.detail) == ("failed", "already failed (no second send)")
    assert outbox.sink.connections == 0 and outbox.sink.messages == []
    row = await outbox.row(request.key)
    assert row.status == "failed" and "cannot be sent to" in (row.error or "")


async def test_a_header_the_email_library_refuses_fails_once_visibly(outbox, sessions):
    # The lead id goes into a header; intake allows no line break in it, a hand-made row may.
    await add_lead(sessions, "L-1\r\nBcc: all@example.com", **MIA)
    request = email_input("L-1\r\nBcc: all@example.com")

    result = await run(outbox.acts.send_email, request)  # no exception: nothing to retry
    assert result.status == "failed"
    assert result.detail.startswith("the message cannot be built: ")
    assert outbox.sink.connections == 0
    assert (await outbox.row(request.key)).status == "failed"


async def test_a_lead_stored_before_the_field_limits_is_still_mailed(outbox, sessions):
    await add_lead(sessions, "L-1", **{**MIA, "first_name": "M" * 5000, "fields": {"k" * 500: 1}})
    request = email_input("L-1")

    result = await outbox.send(request)
    assert result.status == "sent", result.detail
    assert len(outbox.sink.messages) == 1


async def test_a_lead_without_email_is_skipped(outbox, sessions):
    await add_lead(sessions, "L-1", first_name="Mia", phone="+1 555 0100")
    request = email_input("L-1")

    result = await outbox.send(request)
    assert (result.status, result.detail) == ("skipped", "the lead has no email address")
    assert outbox.sink.connections == 0
    assert (await outbox.row(request.key)).status == "skipped"


async def test_the_kill_switch_holds_every_send_until_lifted(
    activity_settings, sessions, faulty_sink
):
    await add_lead(sessions, "L-1", **MIA)
    request = email_input("L-1")
    paused = make_outbox(activity_settings(sending_paused=True), sessions, faulty_sink)

    for _ in range(2):
        # Answered, not raised: the workflow holds the touch (listening to events) and asks
        # again later with the same key.
        result = await run(paused.acts.send_email, request)
        assert result.status == "paused" and "NURTURE_SENDING_PAUSED" in result.detail
    assert faulty_sink.connections == 0
    assert (await paused.row(request.key)).status == "queued"

    # Lifted (the worker restarted with the switch off): the waiting send goes out, once.
    lifted = make_outbox(activity_settings(), sessions, faulty_sink)
    assert (await lifted.send(request)).status == "sent"
    assert len(faulty_sink.messages) == 1
    await lifted.acts.smtp.close()


async def test_the_kill_switch_holds_a_notification_the_same_way(
    activity_settings, sessions, faulty_sink
):
    await add_lead(sessions, "L-1", **MIA)
    notice = am.NotifyInput(
        key="L-1|0|follow-up", lead_id="L-1", to=["ben"], subject="Lead L-1: no outcome",
        text="No sales outcome yet.", now=NOW,
    )  # fmt: skip
    paused = make_outbox(activity_settings(sending_paused=True), sessions, faulty_sink)

    # Raised, not answered: a notification has no result to say "paused" in, so Temporal's
    # retry is its wait. The outbox row is held exactly like a cadence email's.
    with pytest.raises(ApplicationError) as raised:
        await run(paused.acts.notify, notice)
    assert raised.value.type == "SendingPaused" and not raised.value.non_retryable
    assert faulty_sink.connections == 0
    assert (await paused.row("notify|L-1|0|follow-up")).status == "queued"

    lifted = make_outbox(activity_settings(), sessions, faulty_sink)
    for _ in range(2):  # the retry after the switch is lifted, and one more
        await run(lifted.acts.notify, notice)
    assert [m["Subject"] for m in faulty_sink.messages] == ["Lead L-1: no outcome"]
    assert (await lifted.row("notify|L-1|0|follow-up")).status == "sent"
    await lifted.acts.smtp.close()


# --- what the recipient gets -----------------------------------------------------------


async def test_the_message_as_the_server_received_it(outbox, sessions):
    await add_lead(sessions, "L-1", **MIA, country="JP", timezone="Asia/Tokyo")
    await add_lead(sessions, "L-2", email="raj@globex.example")
    request = email_input("L-1", step="ja", template="welcome/ja")

    result = await outbox.send(request)
    assert result.status == "sent"
    [message] = outbox.sink.messages

    # A deterministic Message-ID: the same touch always has the same one, another touch not.
    assert message["Message-ID"] == result.message_id == message_id(request.key, SENDER)
    assert message_id(request.key, SENDER) == message_id(request.key, SENDER)
    assert message["Message-ID"].endswith("@acme.example>")
    assert message_id(email_input("L-2").key, SENDER) != message["Message-ID"]

    assert message["From"] == SENDER and message["To"] == "mia@example.com"
    assert message["Subject"] == JA_SUBJECT  # decoded from RFC 2047
    assert message["X-Nurture-Lead"] == "L-1"

    # RFC 8058 one-click unsubscribe: an http(s) link and a mailto, and the POST marker.
    https_link, mailto = [part.strip(" <>") for part in message["List-Unsubscribe"].split(",")]
    secret = await link_key(outbox.settings, sessions)
    assert https_link.startswith("http://localhost:8000/u/")  # https in production
    assert read_token(secret, "unsubscribe", https_link.rsplit("/", 1)[1]) == {
        "l": "L-1",
        "k": request.key,
    }
    assert mailto == "mailto:hello@acme.example?subject=unsubscribe"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # Text and html alternatives, each with the unsubscribe link and the postal address.
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    text, html = body(message, "plain"), body(message, "html")
    for part in (text, html):
        assert https_link in part and POSTAL in part
    assert "Chen 様" in text and "このたびはお問い合わせいただき" in text
    assert "Chen 様" in html

    # Tracked links point at the click endpoint, carrying the target.
    click = next(word for word in text.split() if "/c/" in word).removeprefix("製品紹介：")
    token = click.rsplit("/", 1)[1]
    assert read_token(secret, "click", token)["u"] == "https://acme.example/ja/tour"

    # The open pixel: one image at the end of the html part, signed for this send only.
    pixels = re.findall(r'<img src="([^"]+/o/([^"]+))" width="1" height="1"', html)
    assert len(pixels) == 1, html
    assert html.rstrip().endswith(f'<img src="{pixels[0][0]}" width="1" height="1" alt="" '
                                  'style="display:block;width:1px;height:1px;border:0;">')  # fmt: skip
    assert read_token(secret, "open", pixels[0][1]) == {"l": "L-1", "k": request.key}
    assert "/o/" not in text  # plain text loads no images

    # The 8-bit (UTF-8) body was declared, as RFC 6152 asks.
    assert outbox.sink.mail_options == [["BODY=8BITMIME"]]
    row = await outbox.row(request.key)
    assert (row.subject, row.to_address, row.message_id) == (
        JA_SUBJECT,
        "mia@example.com",
        result.message_id,
    )


async def test_a_server_without_8bitmime_gets_a_7bit_message(outbox, sessions):
    outbox.sink.offer_8bitmime = False
    await add_lead(sessions, "L-1", **MIA)

    assert (
        await outbox.send(email_input("L-1", step="ja", template="welcome/ja"))
    ).status == "sent"
    [message] = outbox.sink.messages
    assert outbox.sink.mail_options == [[]]
    for part in message.iter_parts():
        assert part["Content-Transfer-Encoding"] in ("base64", "quoted-printable", "7bit")
    assert message["Subject"] == JA_SUBJECT
    assert "Chen 様" in body(message, "plain")


async def test_a_template_without_the_footer_still_sends_one(outbox, sessions):
    await add_lead(sessions, "L-1", **MIA)

    result = await outbox.send(email_input("L-1", step="bare", template="welcome/bare"))
    assert result.status == "sent"
    [message] = outbox.sink.messages
    link = message["List-Unsubscribe"].split(",")[0].strip(" <>")
    text, html = body(message, "plain"), body(message, "html")
    assert text.startswith("Hi Mia, got a minute this week?")
    assert link in text and POSTAL in text
    assert link in html and POSTAL in html
    assert html.rstrip().endswith("</body></html>")  # the footer went inside the body


# --- internal notifications --------------------------------------------------------------


async def test_a_notification_is_sent_once_and_never_after_a_crash(outbox, sessions):
    await add_lead(sessions, "L-1", **MIA)
    async with sessions() as session:
        session.add(
            EmailSend(
                key="notify|L-1|0|crashed", lead_id="L-1", cycle=0, cadence="-", step="notify",
                visit=1, template="notify", status="sending",
            )
        )  # fmt: skip
        await session.commit()

    def notice(key: str) -> am.NotifyInput:
        return am.NotifyInput(
            key=key, lead_id="L-1", to=["ben", "ops", "ben"], subject="Lead L-1 closed",
            text="Lead L-1 was with sales and is now closed.", now=NOW,
        )  # fmt: skip

    for _ in range(2):  # a retry
        await run(outbox.acts.notify, notice("L-1|0|closed"))
    [message] = outbox.sink.messages
    assert message["To"] == "ben@example.com, ops@acme.example"
    assert message["Message-ID"] == message_id("notify|L-1|0|closed", SENDER)
    assert "List-Unsubscribe" not in message  # internal mail, not marketing
    assert (await outbox.row("notify|L-1|0|closed")).status == "sent"

    # A worker died while handing this one over: it is `unknown` for ops, never resent.
    await run(outbox.acts.notify, notice("L-1|0|crashed"))
    assert len(outbox.sink.messages) == 1
    assert (await outbox.row("notify|L-1|0|crashed")).status == "unknown"


async def test_tracking_opens_false_sends_no_pixel(
    make_settings, migrated_url, sessions, faulty_sink, tmp_path
):
    from activitysupport import PLAYBOOK, TEMPLATES, TOUCHES_CADENCE
    from conftest import SKELETON_CADENCE, write_cadence_set

    cadences_dir, templates_dir = write_cadence_set(
        tmp_path / "no-opens",
        playbook=PLAYBOOK + "\n    tracking: {opens: false}\n",
        cadences={"welcome": SKELETON_CADENCE, "touches": TOUCHES_CADENCE},
        templates=TEMPLATES,
    )
    settings = make_settings(
        database_url=migrated_url, cadences_dir=cadences_dir, templates_dir=templates_dir
    )
    assert not catalog_for(settings).current().playbook.tracking.opens
    box = make_outbox(settings, sessions, faulty_sink)
    try:
        await add_lead(sessions, "L-1", **MIA)
        result = await box.send(email_input("L-1", step="bare", template="welcome/bare"))
    finally:
        await box.acts.smtp.close()
    assert result.status == "sent"
    [message] = box.sink.messages
    html = body(message, "html")
    assert "<img" not in html and "/o/" not in html
    assert "/u/" in html  # the footer is still added
