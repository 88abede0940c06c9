"""Email: render apart from sending, and send each touch at most once.

The outbox row (unique key lead + cycle + cadence + step + visit) is the truth: a send found
`sent`, `failed`, `skipped` or `unknown` is never sent again, whatever Temporal retries. A
row found `sending` means an earlier attempt died while handing the message over: its fate
is unknowable, so it becomes `unknown` for a human to decide (`sends list --status unknown`).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.smtp import DeliveryUnknown, PermanentSmtpError, SmtpSender, TransientSmtpError
from nurture import activity_models as am
from nurture.cadence import Playbook
from nurture.catalog import CadenceCatalog
from nurture.db import EmailSend, LeadRow, Suppression, User, utcnow
from nurture.links import click_url, unsubscribe_url
from nurture.rendering import RenderedEmail, Renderer
from nurture.settings import Settings


def message_id(key: str, sender: str) -> str:
    """A deterministic Message-ID: the same touch always has the same id."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "nurture.invalid"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def lead_context(row: LeadRow) -> dict[str, Any]:
    """Every lead field for templates; optional ones present and None when missing."""
    return {
        "id": row.id,
        "email": row.email,
        "first_name": row.first_name,
        "last_name": row.last_name,
        "company": row.company,
        "title": row.title,
        "phone": row.phone,
        "country": row.country,
        "timezone": row.timezone,
        "industry": row.industry,
        "employees": row.employees,
        "tier_account": row.tier_account,
        "source": row.source,
        "fields": dict(row.fields or {}),
    }


def sdr_context(playbook: Playbook, owner: str | None) -> dict[str, Any] | None:
    for sdr in playbook.team.sdrs:
        if sdr.id == owner:
            return {"id": sdr.id, "name": sdr.name, "email": sdr.email}
    return None


def sender_context(playbook: Playbook) -> dict[str, Any]:
    name, address = parseaddr(playbook.sender.from_)
    return {"from_": playbook.sender.from_, "name": name or address, "postal_address": playbook.sender.postal_address}


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

    @property
    def _secret(self) -> str:
        return self.settings.require_webhook_secret()

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
                return am.SendEmailResult(status="skipped", detail="the lead has no record (erased?)")
            row = await self._claim(session, request)
            if row.status != "queued":
                return await _already_done(session, row)
            if self.settings.sending_paused:
                # The kill switch: fail this attempt so Temporal retries later; nothing is lost.
                raise ApplicationError("sending is paused (NURTURE_SENDING_PAUSED)", type="SendingPaused")
            playbook = self.catalog.current().playbook
            # Re-read the lead and the suppression list after rendering, just before the
            # send: an unsubscribe or do-not-contact that landed meanwhile must win.
            message, rendered = self._build(request, lead, playbook) if lead.email else (None, None)
            await session.refresh(lead)
            if not lead.email or message is None or rendered is None:
                return await self._finish(session, row, "skipped", "the lead has no email address")
            if lead.do_not_contact or lead.unsubscribed:
                return await self._finish(session, row, "skipped", "the lead opted out")
            if await session.get(Suppression, lead.email.lower()) is not None:
                return await self._finish(session, row, "skipped", "the address is on the suppression list")
            row.to_address = lead.email
            row.subject = rendered.subject
            row.message_id = message["Message-ID"]
            row.status = "sending"
            row.attempts += 1
            await session.commit()

            try:
                reply = await self.smtp.send(message, parseaddr(playbook.sender.from_)[1], [lead.email])
            except TransientSmtpError as exc:
                row.status = "queued"
                row.error = str(exc)
                await session.commit()
                raise ApplicationError(f"temporary SMTP failure, will retry: {exc}", type="TransientSmtpError") from exc
            except PermanentSmtpError as exc:
                if exc.bad_address:
                    await self._suppress(session, lead.email, f"bounced: {exc}")
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
            key=request.key, lead_id=request.lead_id, cycle=request.cycle, cadence=request.cadence,
            step=request.step, visit=request.visit, template=request.template, status="queued",
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

    async def _finish(self, session: AsyncSession, row: EmailSend, status: str, detail: str) -> am.SendEmailResult:
        row.status = status
        if status != "sent":
            row.error = detail
        await session.commit()
        return am.SendEmailResult(status=status, message_id=row.message_id, detail=detail)  # type: ignore[arg-type]

    async def _suppress(self, session: AsyncSession, address: str, reason: str) -> None:
        if await session.get(Suppression, address.lower()) is None:
            session.add(Suppression(email=address.lower(), reason=reason))

    def _build(self, request: am.SendEmailInput, lead: LeadRow, playbook: Playbook) -> tuple[EmailMessage, RenderedEmail]:
        base = self.settings.public_base
        secret = self._secret
        unsubscribe = unsubscribe_url(base, secret, lead.id, request.key)
        context = {
            "lead": lead_context(lead),
            "sdr": sdr_context(playbook, request.owner),
            "sender": sender_context(playbook),
            "unsubscribe_url": unsubscribe,
            "link": lambda url: click_url(base, secret, lead.id, request.key, str(url)),
        }
        renderer = Renderer(self.catalog.templates_dir or self.settings.templates_dir)
        rendered = renderer.render_email(request.template, context)
        message = build_message(
            sender=playbook.sender.from_,
            to=lead.email or "",
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
            if not recipients:
                activity.logger.info("notification %s has no recipient with an address", request.key)
                return
            key = f"notify|{request.key}"
            existing = await session.scalar(select(EmailSend).where(EmailSend.key == key))
            if existing is not None and existing.status != "queued":
                return
            lead = await session.get(LeadRow, request.lead_id)
            if lead is None:
                return
            if existing is None:
                existing = EmailSend(
                    key=key, lead_id=request.lead_id, cycle=0, cadence="-", step="notify", visit=1,
                    template="notify", status="queued", to_address=", ".join(recipients), subject=request.subject,
                )
                session.add(existing)
                await session.commit()
            message = build_message(
                sender=playbook.sender.from_,
                to=", ".join(recipients),
                rendered=RenderedEmail(subject=request.subject, text=request.text, html=None),
                message_id=message_id(key, playbook.sender.from_),
                unsubscribe_url=None,
                reply_to=None,
                date=request.now,
            )
            existing.status = "sending"
            await session.commit()
            try:
                reply = await self.smtp.send(message, parseaddr(playbook.sender.from_)[1], recipients)
            except TransientSmtpError as exc:
                existing.status = "queued"
                await session.commit()
                raise ApplicationError(str(exc), type="TransientSmtpError") from exc
            except (PermanentSmtpError, DeliveryUnknown) as exc:
                existing.status = "failed" if isinstance(exc, PermanentSmtpError) else "unknown"
                existing.error = str(exc)
                await session.commit()
                return
            existing.status = "sent"
            existing.smtp_reply = reply
            existing.sent_at = utcnow()
            await session.commit()


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
        message["List-Unsubscribe"] = f"<{unsubscribe_url}>, <mailto:{mailto.addr_spec}?subject=unsubscribe>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(rendered.text)
    if rendered.html:
        message.add_alternative(rendered.html, subtype="html")
    return message
