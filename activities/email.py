"""Email: render apart from sending, and send each touch at most once.

The outbox row (unique key lead + cycle + cadence + step + visit) is the truth: a send found
`sent`, `failed`, `skipped` or `unknown` is never sent again, whatever Temporal retries. A
row found `sending` means an earlier attempt died while handing the message over: its fate
is unknowable, so it becomes `unknown` for a human to decide (`sends list --status unknown`).
Only one attempt can take a row from `queued` to `sending` (a compare-and-set in the
database), so even two overlapping attempts send once.

Results and errors go into the workflow history, so they never carry the recipient's
address (CONTRACT.md, "Personal data stays out of Temporal"); the outbox row keeps the
server's full words until the lead is erased.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from html import escape as html_escape
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.smtp import DeliveryUnknown, PermanentSmtpError, SmtpSender, TransientSmtpError
from nurture import activity_models as am
from nurture import keys
from nurture.appsecrets import link_key
from nurture.cadence import Playbook
from nurture.catalog import CadenceCatalog
from nurture.db import EmailSend, LeadRow, Suppression, User, utcnow
from nurture.events import address_key, normalize_email
from nurture.intake import lead_from_row
from nurture.links import click_url, unsubscribe_url
from nurture.rendering import RenderedEmail, TemplateProblem, sdr_context, sender_context
from nurture.settings import Settings


def message_id(key: str, sender: str) -> str:
    """A deterministic Message-ID: the same touch always has the same id."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "nurture.invalid"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def lead_context(row: LeadRow) -> dict[str, Any]:
    """Every lead field for templates; optional ones present and None when missing."""
    return lead_from_row(row).model_dump()


class EmailActivities:
    """Email touches and notifications, with injected SMTP, renderer, catalog and database."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        smtp: SmtpSender,
        catalog: CadenceCatalog,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.smtp = smtp
        self.catalog = catalog

    @activity.defn(name=am.SEND_EMAIL)
    async def send_email(self, request: am.SendEmailInput) -> am.SendEmailResult:
        """Send one cadence email, at most once per key.

        Raises:
            ApplicationError: ``SendingPaused`` or ``TransientSmtpError``, both retryable:
                nothing was sent, and the outbox row stays ``queued`` for the next attempt.
        """
        async with self.sessions() as session:
            lead = await session.get(LeadRow, request.lead_id)
            if lead is None or lead.erased_at is not None:
                return am.SendEmailResult(
                    status="skipped", detail="the lead has no record (erased?)"
                )
            row = await self._claim(session, request)
            if row.status != "queued":
                return await _already_done(session, row)
            if self.settings.sending_paused:
                # The kill switch: nothing is sent and the row stays queued; the workflow
                # waits (still applying events, so an opt-out meanwhile wins) and asks again.
                return am.SendEmailResult(
                    status="paused", detail="sending is paused (NURTURE_SENDING_PAUSED)"
                )
            if not lead.email:
                return await self._finish(session, row, "skipped", "the lead has no email address")
            try:
                # Intake stores one normalized address; a row written before it did (or by
                # hand) may hold a display name, a list or a line break. Parsed again here,
                # so the suppression check and the envelope see the one address, and what
                # can never be sent fails once, visibly, instead of being retried forever.
                address = normalize_email(lead.email)
            except ValueError as exc:
                return await self._finish(
                    session, row, "failed",
                    f"the lead's address cannot be sent to: {redact(str(exc), lead.email)}",
                )  # fmt: skip
            playbook = self.catalog.current().playbook
            key = await link_key(self.settings, self.sessions)
            try:
                message, rendered = self._build(request, lead, playbook, key, address)
            except TemplateProblem as exc:
                # Validation renders every template against sample leads; a lead's real data
                # can still break one. Recorded as failed (visible to ops), never retried.
                return await self._finish(session, row, "failed", f"template problem: {exc}")
            except ValueError as exc:
                # A header the email library refuses (a line break in a value): the same
                # data gives the same refusal on every attempt, so it is not retried.
                return await self._finish(
                    session, row, "failed", f"the message cannot be built: {exc}"
                )
            # Re-read the lead and the suppression list after rendering, just before the
            # send: an unsubscribe, do-not-contact or erase that landed meanwhile must win.
            await session.refresh(lead)
            if lead.erased_at is not None or lead.do_not_contact or lead.unsubscribed:
                return await self._finish(session, row, "skipped", "the lead opted out")
            if await session.get(Suppression, address) is not None:
                return await self._finish(
                    session, row, "skipped", "the address is on the suppression list"
                )
            taken = await _take(
                session, row, to_address=address, subject=rendered.subject,
                message_id=message["Message-ID"],
            )  # fmt: skip
            if not taken:
                return await _lost_race(session, row)

            try:
                reply = await self.smtp.send(
                    message, parseaddr(playbook.sender.from_)[1], [address]
                )
            except TransientSmtpError as exc:
                row.status = "queued"
                row.error = str(exc)
                await session.commit()
                raise ApplicationError(
                    f"temporary SMTP failure, will retry: {redact(str(exc), address)}",
                    type="TransientSmtpError",
                ) from exc
            except PermanentSmtpError as exc:
                if exc.bad_address:
                    await self._suppress(session, address, f"bounced: {exc}")
                    lead.unsubscribed = True
                return await self._finish(session, row, "failed", str(exc))
            except DeliveryUnknown as exc:
                return await self._finish(session, row, "unknown", str(exc))
            row.smtp_reply = reply
            row.sent_at = utcnow()
            return await self._finish(session, row, "sent", f"accepted by the mail server: {reply}")

    async def _claim(self, session: AsyncSession, request: am.SendEmailInput) -> EmailSend:
        existing = await session.scalar(select(EmailSend).where(EmailSend.key == request.key))
        if existing is not None:
            return existing
        row = EmailSend(
            key=request.key,
            lead_id=request.lead_id,
            cycle=request.cycle,
            cadence=request.cadence,
            step=request.step,
            visit=request.visit,
            template=request.template,
            status="queued",
        )
        session.add(row)
        try:
            await session.commit()
        except IntegrityError:
            # Another attempt claimed the key first: use its row.
            await session.rollback()
            claimed = await session.scalar(select(EmailSend).where(EmailSend.key == request.key))
            assert claimed is not None
            return claimed
        return row

    async def _finish(
        self, session: AsyncSession, row: EmailSend, status: str, detail: str
    ) -> am.SendEmailResult:
        return await _finish(session, row, status, detail)

    async def _suppress(self, session: AsyncSession, address: str, reason: str) -> None:
        address = address_key(address)
        if await session.get(Suppression, address) is None:
            session.add(Suppression(email=address, reason=reason))

    def _build(
        self,
        request: am.SendEmailInput,
        lead: LeadRow,
        playbook: Playbook,
        key: str,
        address: str,
    ) -> tuple[EmailMessage, RenderedEmail]:
        """The message, its links signed with ``key`` (the app's link key, never the
        webhook secret: whoever holds that must not be able to make our links)."""
        base = self.settings.public_base
        unsubscribe = unsubscribe_url(base, key, lead.id, request.key)
        context = {
            "lead": lead_context(lead),
            "sdr": sdr_context(playbook, request.owner),
            "sender": sender_context(playbook),
            "unsubscribe_url": unsubscribe,
            "link": lambda url: click_url(base, key, lead.id, request.key, str(url)),
        }
        renderer = self.catalog.renderer(self.settings.templates_dir)
        rendered = with_footer(
            renderer.render_email(request.template, context),
            unsubscribe,
            playbook.sender.postal_address,
        )
        message = build_message(
            sender=playbook.sender.from_,
            to=address,
            rendered=rendered,
            message_id=message_id(request.key, playbook.sender.from_),
            unsubscribe_url=unsubscribe,
            reply_to=playbook.sender.reply_to,
            date=request.now,
        )
        message["X-Nurture-Lead"] = lead.id
        message["X-Nurture-Step"] = f"{request.cadence}/{request.step}"
        return message, rendered

    @activity.defn(name=am.NOTIFY)
    async def notify(self, request: am.NotifyInput) -> None:
        """A plain notification to SDRs or ops (toss-ups, overdue follow-ups); once per key."""
        playbook = self.catalog.current().playbook
        recipients: list[str] = []
        async with self.sessions() as session:
            for target in dict.fromkeys(request.to):
                sdr = sdr_context(playbook, target)
                if sdr is not None:
                    recipients.append(sdr["email"])
                elif target == "ops":
                    ops = (await session.scalars(select(User).where(User.role == "ops"))).all()
                    recipients.extend(u.id for u in ops if "@" in u.id)
            recipients = list(dict.fromkeys(recipients))
            if not recipients:
                activity.logger.info("notification %s: no recipient has an address", request.key)
                return
            if await session.get(LeadRow, request.lead_id) is None:
                return
            await send_notification(
                session,
                self.smtp,
                self.settings,
                playbook,
                Notification(
                    key=keys.notification(request.key),
                    lead_id=request.lead_id,
                    recipients=recipients,
                    subject=request.subject,
                    text=request.text,
                    now=request.now,
                ),
            )


@dataclass(frozen=True)
class Notification:
    """An internal email (to SDRs or ops), sent once per ``key`` through the outbox."""

    key: str
    lead_id: str
    recipients: list[str]
    subject: str
    text: str
    now: datetime
    step: str = "notify"


async def send_notification(
    session: AsyncSession,
    smtp: SmtpSender,
    settings: Settings,
    playbook: Playbook,
    notification: Notification,
) -> str:
    """Send an internal notification at most once, with its own outbox row.

    The same rules as a cadence email: a row found ``sending`` becomes ``unknown`` (never
    resent), the kill switch holds it back, and a 4xx is retried by Temporal.

    Args:
        session: an open session; the lead row (``notification.lead_id``) must exist.
        smtp: the worker's shared sender.
        settings: for the kill switch.
        playbook: for the sender address.
        notification: what to send, and its key.

    Returns:
        The outbox status: ``sent``, ``failed``, ``unknown`` (or ``skipped``).

    Raises:
        ApplicationError: ``SendingPaused`` or ``TransientSmtpError`` (retryable; the row
            stays ``queued``).
    """
    row = await session.scalar(select(EmailSend).where(EmailSend.key == notification.key))
    if row is not None and row.status != "queued":
        return (await _already_done(session, row)).status
    if settings.sending_paused:
        raise ApplicationError("sending is paused (NURTURE_SENDING_PAUSED)", type="SendingPaused")
    if row is None:
        row = EmailSend(
            key=notification.key, lead_id=notification.lead_id, cycle=0, cadence="-",
            step=notification.step, visit=1, template="notify", status="queued",
        )  # fmt: skip
        session.add(row)
        try:
            await session.commit()
        except IntegrityError:
            # A concurrent attempt claimed the key: it sends, this one reports its status.
            await session.rollback()
            claimed = await session.scalar(
                select(EmailSend).where(EmailSend.key == notification.key)
            )
            assert claimed is not None
            return claimed.status
    sender = playbook.sender.from_
    message = build_message(
        sender=sender,
        to=", ".join(notification.recipients),
        rendered=RenderedEmail(subject=notification.subject, text=notification.text, html=None),
        message_id=message_id(notification.key, sender),
        unsubscribe_url=None,
        reply_to=None,
        date=notification.now,
    )
    taken = await _take(
        session, row, to_address=", ".join(notification.recipients),
        subject=notification.subject, message_id=message["Message-ID"],
    )  # fmt: skip
    if not taken:
        return (await _lost_race(session, row)).status
    try:
        reply = await smtp.send(message, parseaddr(sender)[1], notification.recipients)
    except TransientSmtpError as exc:
        row.status = "queued"
        row.error = str(exc)
        await session.commit()
        raise ApplicationError(
            f"temporary SMTP failure, will retry: {exc}", type="TransientSmtpError"
        ) from exc
    except PermanentSmtpError as exc:
        return (await _finish(session, row, "failed", str(exc))).status
    except DeliveryUnknown as exc:
        return (await _finish(session, row, "unknown", str(exc))).status
    row.smtp_reply = reply
    row.sent_at = utcnow()
    return (await _finish(session, row, "sent", f"accepted by the mail server: {reply}")).status


async def _finish(
    session: AsyncSession, row: EmailSend, status: str, detail: str
) -> am.SendEmailResult:
    """Record the outcome; the result's detail goes to Temporal, so without the address.

    The outbox row keeps the server's full words (erase clears them); the workflow history
    must not hold contact details (CONTRACT.md, "Personal data stays out of Temporal"), and
    servers often quote the recipient (``550 5.1.1 <ann@x.example>: no such user``).
    """
    row.status = status
    if status != "sent":
        row.error = detail
    await session.commit()
    return am.SendEmailResult(
        status=status,  # type: ignore[arg-type]
        message_id=row.message_id,
        detail=redact(detail, row.to_address),
    )


async def _take(session: AsyncSession, row: EmailSend, **values: str | None) -> bool:
    """Move ``row`` from ``queued`` to ``sending`` unless another attempt already did.

    A compare-and-set in the database, not a read then a write: two attempts of the same
    activity can overlap (a start-to-close timeout lets Temporal start a retry while the
    first attempt still runs), and both may have read ``queued``. Only the one whose update
    matched goes on to SMTP.
    """
    # End the read transaction first: SQLite upgrades a fresh one to a writer cleanly.
    await session.commit()
    result = await session.execute(
        update(EmailSend)
        .where(EmailSend.id == row.id, EmailSend.status == "queued")
        .values(status="sending", attempts=EmailSend.attempts + 1, **values)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    await session.refresh(row)
    return result.rowcount == 1  # type: ignore[attr-defined]


async def _lost_race(session: AsyncSession, row: EmailSend) -> am.SendEmailResult:
    """The result for an attempt that found another one sending the same message."""
    if row.status == "sending":
        # The other attempt is still talking to the server: its outcome will be recorded by
        # it; this attempt must neither send nor overwrite the row.
        return am.SendEmailResult(
            status="unknown",
            message_id=row.message_id,
            detail="another attempt is handing this message over right now (no second send)",
        )
    return await _already_done(session, row)


async def _already_done(session: AsyncSession, row: EmailSend) -> am.SendEmailResult:
    """The result for a row an earlier attempt already took past ``queued``: never resent.

    ``sending`` means that attempt died while handing the message over (the worker crashed
    or was cancelled mid-send): whether it went out cannot be known, so it becomes
    ``unknown`` for a human to decide (``sends list --status unknown``).
    """
    if row.status == "sending":
        row.status = "unknown"
        row.error = "an earlier attempt stopped while handing the message over; not resent"
        await session.commit()
    return am.SendEmailResult(
        status=row.status,  # type: ignore[arg-type]
        message_id=row.message_id,
        detail=f"already {row.status} (no second send)",
    )


def redact(text: str, addresses: str | None) -> str:
    """``text`` with each of ``addresses`` (comma-separated) replaced by ``<address>``."""
    for address in (addresses or "").split(","):
        address = address.strip()
        if address:
            text = re.sub(re.escape(address), "<address>", text, flags=re.IGNORECASE)
    return text


def with_footer(
    rendered: RenderedEmail, unsubscribe_url: str, postal_address: str
) -> RenderedEmail:
    """The email with its unsubscribe link and the sender's postal address in every part.

    Templates are expected to carry both (CAN-SPAM, RFC 8058 practice); a template that
    forgot one still never sends an email without them: a plain footer is appended.
    """
    text_missing = [item for item in (unsubscribe_url, postal_address) if item not in rendered.text]
    text = rendered.text
    if text_missing:
        text = text.rstrip("\n") + "\n\n--\n" + _text_footer(unsubscribe_url, postal_address)
    html = rendered.html
    if html is not None and (
        unsubscribe_url not in html or html_escape(postal_address, quote=False) not in html
    ):
        footer = (
            f'<p style="color:#777777;font-size:12px;"><a href="{html_escape(unsubscribe_url)}">'
            f"Unsubscribe</a><br>{html_escape(postal_address)}</p>"
        )
        closing = html.lower().rfind("</body>")
        html = html[:closing] + footer + html[closing:] if closing >= 0 else html + footer
    return RenderedEmail(subject=rendered.subject, text=text, html=html)


def _text_footer(unsubscribe_url: str, postal_address: str) -> str:
    return f"Unsubscribe: {unsubscribe_url}\n{postal_address}\n"


def build_message(
    *,
    sender: str,
    to: str,
    rendered: RenderedEmail,
    message_id: str,
    unsubscribe_url: str | None,
    reply_to: str | None,
    date: datetime,
) -> EmailMessage:
    """A multipart (text + optional html) message with list-unsubscribe headers (RFC 8058)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = rendered.subject
    message["Message-ID"] = message_id
    message["Date"] = formatdate(date.timestamp(), usegmt=True)
    if reply_to:
        message["Reply-To"] = reply_to
    if unsubscribe_url:
        name, address = parseaddr(sender)
        mailto = Address(addr_spec=address or "unsubscribe@nurture.invalid")
        mailto_url = f"mailto:{mailto.addr_spec}?subject=unsubscribe"
        message["List-Unsubscribe"] = f"<{unsubscribe_url}>, <{mailto_url}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(rendered.text)
    if rendered.html:
        message.add_alternative(rendered.html, subtype="html")
    return message
