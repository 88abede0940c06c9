"""The outbox: every email, a cadence touch or an internal notification, leaves at most once.

One row per key in ``email_sends`` is the truth, moved through one state machine::

    queued ──> sending ──> sent | failed | unknown
       └─────> skipped | failed        (never handed to the mail server)

A row found past ``queued`` is never sent again, whatever Temporal retries. A row found
``sending`` means an earlier attempt died while handing the message over: its fate is
unknowable, so it becomes ``unknown`` for a human to decide (``sends list --status
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
from email.message import EmailMessage
from typing import Literal

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.exceptions import ApplicationError

from nurture.adapters import metrics, tracing
from nurture.adapters.database import NOTIFICATION_CADENCE, EmailSend, insert_once, utcnow
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
        row, _created = await insert_once(
            self.session, EmailSend, {"key": entry.key}, lead_id=entry.lead_id,
            cycle=entry.cycle, cadence=entry.cadence, step=entry.step, visit=entry.visit,
            template=entry.template, status="queued",
        )  # fmt: skip
        await self.session.commit()
        if row.status != "queued":
            return await self._already_done(row)
        if self.sending_paused:
            return am.SendEmailResult(status="paused", detail=PAUSED_DETAIL)
        switch = await sending.current(self.session)
        if switch.paused:
            return am.SendEmailResult(status="paused", detail=switch.hold_detail())
        prepared = await prepare()
        if isinstance(prepared, NotSent):
            return await self.finish(row, prepared.status, prepared.detail)
        return await self._hand_over(row, prepared)

    async def _hand_over(self, row: EmailSend, letter: Letter) -> am.SendEmailResult:
        """Take the row and send, the row taken only once the connection is this send's.

        Taken any earlier, a send queued behind others for the worker's one connection
        would be ``sending`` while nothing was handed over; a crash then (SIGKILL, an OOM)
        made every such row ``unknown``, lost for good, though none had been sent.
        """

        async def claim() -> bool:
            return await self._take(row, letter)

        try:
            # The SMTP conversation as the last span of a traced lead (ids only, no address).
            with tracing.span("smtp send", **{"nurture.send_key": row.key}):
                reply = await self.smtp.send(
                    letter.message, letter.envelope_from, letter.recipients, claim=claim
                )
        except NotClaimed:
            return await self._lost_race(row)
        except TransientSmtpError as exc:
            row.status = "queued"
            row.error = str(exc)
            await self.session.commit()
            raise ApplicationError(
                f"temporary SMTP failure, will retry: {redact(str(exc), row.to_address)}",
                type="TransientSmtpError",
            ) from exc
        except PermanentSmtpError as exc:
            if letter.on_refused is not None:
                await letter.on_refused(exc)
            return await self.finish(row, "failed", str(exc))
        except DeliveryUnknown as exc:
            return await self.finish(row, "unknown", str(exc))
        row.smtp_reply = reply
        row.sent_at = utcnow()
        return await self.finish(row, "sent", f"accepted by the mail server: {reply}")

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
        result = await session.execute(
            update(EmailSend)
            .where(EmailSend.id == row.id, EmailSend.status == "queued")
            .values(
                status="sending",
                attempts=EmailSend.attempts + 1,
                to_address=", ".join(letter.recipients),
                subject=letter.subject,
                message_id=letter.message["Message-ID"],
            )
            .execution_options(synchronize_session=False)
        )
        await session.commit()
        await session.refresh(row)
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def _lost_race(self, row: EmailSend) -> am.SendEmailResult:
        """The result for an attempt that found another one sending the same message."""
        if row.status == "sending":
            # The other attempt is still talking to the server: its outcome will be recorded
            # by it; this attempt must neither send nor overwrite the row.
            return am.SendEmailResult(
                status="unknown",
                message_id=row.message_id,
                detail="another attempt is handing this message over right now (no second send)",
            )
        return await self._already_done(row)

    async def _already_done(self, row: EmailSend) -> am.SendEmailResult:
        """The result for a row an earlier attempt already took past ``queued``: never resent.

        ``sending`` means that attempt died while handing the message over (the worker
        crashed or was cancelled mid-send): whether it went out cannot be known, so it
        becomes ``unknown`` for a human to decide.
        """
        if row.status == "sending":
            row.status = "unknown"
            row.error = "an earlier attempt stopped while handing the message over; not resent"
            await self.session.commit()
        return am.SendEmailResult(
            status=row.status,  # type: ignore[arg-type]
            message_id=row.message_id,
            detail=f"already {row.status} (no second send)",
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
