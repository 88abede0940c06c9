"""The outbox: every email, a cadence touch or an internal notification, leaves at most once.

One row per key in ``email_sends`` is the truth, moved through one state machine::

    queued ──> sending ──> sent | failed | unknown
       └─────> skipped | failed        (never handed to the mail server)

A row found past ``queued`` is never sent again, whatever Temporal retries. A row is taken
to ``sending`` at SMTP's commit point: the server already has the envelope and the whole
body, and only the dot that ends DATA is still to be written (:mod:`nurture.adapters.smtp`).
An attempt that dies before that leaves the row ``queued`` and the server discards what it
read, so the retry sends the message once. A row found ``sending`` by another attempt is
either being handed over right now (a live attempt whose heartbeat was late, so Temporal
started a retry beside it) or left by an attempt that died between writing that dot and
recording the answer. Within :data:`HANDOVER_LEASE` of its claim the retry waits (a
retryable ``SendInFlight``) and then finds the first attempt's outcome; past it, the fate
is unknowable and the row becomes ``unknown`` for a human to decide (``sends list --status
unknown``). Only one attempt can take a row from ``queued`` to ``sending`` (a
compare-and-set in the database), so even two overlapping attempts send once.

Results go into the workflow history, so their details never carry a recipient's address
(CONTRACT.md, "Personal data stays out of Temporal"); the row keeps the server's full words
until the lead is erased.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.exceptions import ApplicationError

from nurture.adapters import metrics, tracing
from nurture.adapters.database import (
    NOTIFICATION_CADENCE,
    EmailSend,
    insert_once,
    insert_or_ignore,
    utcnow,
)
from nurture.adapters.smtp import (
    DeliveryUnknown,
    NotClaimed,
    PermanentSmtpError,
    SmtpSender,
    TransientSmtpError,
)
from nurture.domain import messages as am
from nurture.services import sending

PAUSED_DETAIL = "sending is paused (NURTURE_SENDING_PAUSED)"

# How long after its claim a `sending` row may still be in the hands of a live attempt: from
# the dot to the server's answer (the sender's timeout) and the record's commit (which can
# wait out a busy SQLite). A retry that finds a younger claim waits for its outcome; an
# older one was left by an attempt that died, and is `unknown`.
HANDOVER_LEASE = timedelta(minutes=2)


@dataclass(frozen=True)
class Entry:
    """The outbox row of one email: its key and where it belongs."""

    key: str
    lead_id: str
    template: str
    cycle: int = 0
    cadence: str = NOTIFICATION_CADENCE
    step: str = "notify"
    visit: int = 1


@dataclass(frozen=True)
class Letter:
    """A message ready for the mail server."""

    message: EmailMessage
    subject: str
    envelope_from: str
    recipients: list[str]
    # Called when the server refuses for good, before the row is marked failed (a cadence
    # email suppresses an address the server says does not exist).
    on_refused: Callable[[PermanentSmtpError], Awaitable[None]] | None = field(default=None)


@dataclass(frozen=True)
class NotSent:
    """Decided before the mail server: the row ends ``skipped`` or ``failed``, for good."""

    status: Literal["skipped", "failed"]
    detail: str


# What the sender of an email prepares once the outbox knows it must go out now.
Prepare = Callable[[], Awaitable[Letter | NotSent]]


class Outbox:
    """Sends each :class:`Entry` at most once, through one session and the worker's SMTP."""

    def __init__(self, session: AsyncSession, smtp: SmtpSender, sending_paused: bool) -> None:
        self.session = session
        self.smtp = smtp
        self.sending_paused = sending_paused

    async def send(self, entry: Entry, prepare: Prepare) -> am.SendEmailResult:
        """Send ``entry`` unless its row is past ``queued``; ``prepare`` builds it first.

        The kill switch (the live one, :mod:`nurture.services.sending`, read at every send,
        or ``NURTURE_SENDING_PAUSED`` for this process) answers ``paused`` (the row stays
        ``queued``, nothing is prepared or sent) for every kind of email: the outbox cannot
        know whether its caller can wait. A cadence email can, and must (its workflow waits,
        still applying events, so an opt-out meanwhile wins), so ``send_email`` returns it;
        a notification's caller has no result to say it in and raises a retryable
        ``SendingPaused`` instead (:func:`paused_error`), letting Temporal's retry be the
        wait.

        Raises:
            ApplicationError: ``TransientSmtpError`` (retryable): nothing was sent, and the
                row is ``queued`` again for the next attempt.
        """
        session = self.session
        # One write transaction on the common path (the claim, below), not two: the row is
        # read first, and written only once the message is ready or the send is settled.
        # On SQLite every write transaction waits for the database's one write lock.
        row = await session.scalar(select(EmailSend).where(EmailSend.key == entry.key))
        if row is not None and row.status != "queued":
            return await self._already_done(row)
        paused: am.SendEmailResult | None = None
        if self.sending_paused:
            paused = am.SendEmailResult(status="paused", detail=PAUSED_DETAIL)
        else:
            switch = await sending.current(session)
            if switch.paused:
                paused = am.SendEmailResult(status="paused", detail=switch.hold_detail())
        if paused is not None:
            if row is None:  # the touch waits in the outbox, visibly (`sends list`)
                await self._queued(entry)
                await session.commit()
            return paused
        prepared = await prepare()
        if isinstance(prepared, NotSent):
            if row is None:
                row = await self._queued(entry)
            return await self.finish(row, prepared.status, prepared.detail)
        return await self._hand_over(entry, row, prepared)

    async def _queued(self, entry: Entry) -> EmailSend:
        """The entry's row, ``queued`` when new (not committed here)."""
        row, _created = await insert_once(
            self.session, EmailSend, {"key": entry.key}, lead_id=entry.lead_id,
            cycle=entry.cycle, cadence=entry.cadence, step=entry.step, visit=entry.visit,
            template=entry.template, status="queued",
        )  # fmt: skip
        return row

    async def _claim(self, entry: Entry, row: EmailSend | None, letter: Letter) -> EmailSend | None:
        """Take the entry's row to ``sending`` for this attempt, or None if another has it.

        A new row is inserted as ``sending`` (``INSERT ... ON CONFLICT DO NOTHING``: of two
        attempts inserting at once, one wins); a ``queued`` one (a retry after a temporary
        failure, or after a pause) is taken by :meth:`_take`. Committed before the dot that
        ends the message is written, so a crash after it leaves ``sending`` behind:
        ``unknown``, never resent.
        """
        if row is not None:
            return row if await self._take(row, letter) else None
        session = self.session
        statement = (
            insert_or_ignore(EmailSend, session.get_bind().dialect.name, on=["key"])
            .values(
                key=entry.key, lead_id=entry.lead_id, cycle=entry.cycle, cadence=entry.cadence,
                step=entry.step, visit=entry.visit, template=entry.template, status="sending",
                attempts=1, claimed_at=utcnow(), **_letter_columns(letter),
            )
            .returning(EmailSend)
        )  # fmt: skip
        claimed = await session.scalar(statement)
        await session.commit()
        return claimed

    async def _hand_over(
        self, entry: Entry, row: EmailSend | None, letter: Letter
    ) -> am.SendEmailResult:
        """Send, the row claimed only at the commit point (the sender calls ``claim``).

        Claimed any earlier, a send waiting for a connection of the worker's pool, or still
        in its SMTP transaction, would be ``sending`` while nothing could have been
        delivered; a crash then (SIGKILL, an OOM) made every such row ``unknown``, lost for
        good, though none had been sent. A failure before the commit point finds the row
        unclaimed: a temporary one leaves it ``queued`` (:meth:`_failed_unclaimed`); a
        refusal for good claims it first, so that only one attempt settles it.
        """
        claimed: list[EmailSend] = []

        async def claim() -> bool:
            taken = await self._claim(entry, row, letter)
            if taken is not None:
                claimed.append(taken)
            return taken is not None

        try:
            # The SMTP conversation as the last span of a traced lead (ids only, no address).
            with tracing.span("smtp send", **{"nurture.send_key": entry.key}):
                reply = await self.smtp.send(
                    letter.message, letter.envelope_from, letter.recipients, claim=claim
                )
        except NotClaimed:
            return await self._lost_race(await self._reread(entry))
        except TransientSmtpError as exc:
            if claimed:  # refused after the claim (a 4xx to the message): queued again
                back = claimed[0]
                back.status = "queued"
                back.error = str(exc)
                await self.session.commit()
            else:
                await self._failed_unclaimed(entry, str(exc))
            addresses = _letter_columns(letter)["to_address"]
            raise ApplicationError(
                f"temporary SMTP failure, will retry: {redact(str(exc), addresses)}",
                type="TransientSmtpError",
            ) from exc
        except PermanentSmtpError as exc:
            if not claimed and not await claim():
                return await self._lost_race(await self._reread(entry))
            if letter.on_refused is not None:
                await letter.on_refused(exc)
            return await self.finish(claimed[0], "failed", str(exc))
        except DeliveryUnknown as exc:
            return await self.finish(claimed[0], "unknown", str(exc))
        sent = claimed[0]
        sent.smtp_reply = reply
        sent.sent_at = utcnow()
        return await self.finish(sent, "sent", f"accepted by the mail server: {reply}")

    async def _reread(self, entry: Entry) -> EmailSend:
        """The entry's row as another attempt left it (it claimed it, so it exists)."""
        found = await self.session.scalar(
            select(EmailSend)
            .where(EmailSend.key == entry.key)
            .execution_options(populate_existing=True)
        )
        assert found is not None
        return found

    async def _failed_unclaimed(self, entry: Entry, error: str) -> None:
        """A temporary failure before the claim: the row stays (or becomes) ``queued``,
        with the attempt counted and its error kept, unless another attempt holds it now."""
        session = self.session
        await session.commit()  # end the read transaction: SQLite upgrades a fresh one cleanly
        await self._queued(entry)
        await session.execute(
            update(EmailSend)
            .where(EmailSend.key == entry.key, EmailSend.status == "queued")
            .values(attempts=EmailSend.attempts + 1, error=error)
        )
        await session.commit()

    async def finish(self, row: EmailSend, status: str, detail: str) -> am.SendEmailResult:
        """Record the outcome; the result's detail goes to Temporal, so without the address.

        Servers often quote the recipient (``550 5.1.1 <ann@x.example>: no such user``).
        """
        row.status = status
        if status != "sent":
            row.error = detail
        await self.session.commit()
        metrics.EMAILS.labels(status=status).inc()
        return am.SendEmailResult(
            status=status,  # type: ignore[arg-type]
            message_id=row.message_id,
            detail=redact(detail, row.to_address),
        )

    async def _take(self, row: EmailSend, letter: Letter) -> bool:
        """Move ``row`` from ``queued`` to ``sending`` unless another attempt already did.

        A compare-and-set in the database, not a read then a write: two attempts of the
        same activity can overlap (a start-to-close timeout lets Temporal start a retry
        while the first attempt still runs), and both may have read ``queued``. Only the
        one whose update matched goes on to SMTP.
        """
        session = self.session
        # End the read transaction first: SQLite upgrades a fresh one to a writer cleanly.
        await session.commit()
        taken = await session.scalar(
            update(EmailSend)
            .where(EmailSend.id == row.id, EmailSend.status == "queued")
            .values(
                status="sending",
                attempts=EmailSend.attempts + 1,
                claimed_at=utcnow(),
                **_letter_columns(letter),
            )
            .returning(EmailSend)
            .execution_options(populate_existing=True)
        )
        await session.commit()
        return taken is not None

    async def _lost_race(self, row: EmailSend) -> am.SendEmailResult:
        """The result for an attempt that found another one sending the same message."""
        if row.status == "sending":
            # The other attempt is talking to the server right now: its outcome will be
            # recorded by it; this attempt neither sends nor overwrites the row, and looks
            # again after Temporal's retry interval.
            raise _in_flight()
        return await self._already_done(row)

    async def _already_done(self, row: EmailSend) -> am.SendEmailResult:
        """The result for a row an earlier attempt already took past ``queued``: never resent.

        ``sending`` means that attempt died after writing the end of the message and before
        recording the server's answer (the worker crashed or was cancelled then): whether
        it went out cannot be known, so it becomes ``unknown`` for a human to decide.
        """
        if row.status == "sending":
            if row.claimed_at is not None and utcnow() - row.claimed_at < HANDOVER_LEASE:
                raise _in_flight()  # perhaps a live attempt whose heartbeat was late
            row.status = "unknown"
            row.error = "an earlier attempt stopped while handing the message over; not resent"
            await self.session.commit()
        return am.SendEmailResult(
            status=row.status,  # type: ignore[arg-type]
            message_id=row.message_id,
            detail=f"already {row.status} (no second send)",
        )


def _letter_columns(letter: Letter) -> dict[str, str | None]:
    """What the outbox row records of a message it hands over."""
    return {
        "to_address": ", ".join(letter.recipients),
        "subject": letter.subject,
        "message_id": letter.message["Message-ID"],
    }


def _in_flight() -> ApplicationError:
    """The retryable error of an attempt that found another one handing the message over."""
    return ApplicationError(
        "another attempt is handing this message over; its outcome is awaited (no second send)",
        type="SendInFlight",
    )


def paused_error(result: am.SendEmailResult) -> ApplicationError:
    """The retryable error a caller that cannot return ``paused`` raises instead."""
    return ApplicationError(result.detail, type="SendingPaused")


def redact(text: str, addresses: str | None) -> str:
    """``text`` with each of ``addresses`` (comma-separated) replaced by ``<address>``."""
    for address in (addresses or "").split(","):
        address = address.strip()
        if address:
            text = re.sub(re.escape(address), "<address>", text, flags=re.IGNORECASE)
    return text
