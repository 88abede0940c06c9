"""Email: render apart from sending; cadence emails and notifications go through one outbox.

:class:`nurture.activities.outbox.Outbox` sends each key at most once, whatever Temporal retries;
this module decides what a cadence email or a notification says, and when it must not go
out (no address, an opt-out, a template that cannot render).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from html import escape as html_escape
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from nurture.activities.heartbeat import heartbeating
from nurture.activities.outbox import Entry, Letter, NotSent, Outbox, paused_error, redact
from nurture.adapters.catalog import CadenceCatalog
from nurture.adapters.database import LeadRow, Suppression, insert_once
from nurture.adapters.link_tokens import click_url, open_url, unsubscribe_url
from nurture.adapters.secrets import link_key
from nurture.adapters.smtp import PermanentSmtpError, SmtpSender
from nurture.domain import keys
from nurture.domain import messages as am
from nurture.domain.cadence import Playbook
from nurture.domain.events import address_key, normalize_email
from nurture.domain.rendering import RenderedEmail, TemplateProblem, sdr_context, sender_context
from nurture.services.intake import lead_from_row
from nurture.settings import Settings


def message_id(key: str, sender: str) -> str:
    """A deterministic Message-ID: the same touch always has the same id."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "nurture.invalid"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def lead_label(lead: LeadRow) -> str:
    """How an SDR recognises a lead in a notification: name (company), else its id."""
    who = " ".join(part for part in (lead.first_name, lead.last_name) if part) or lead.id
    return f"{who} ({lead.company})" if lead.company else who


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
        """Send one cadence email, at most once per key (see :class:`Outbox`).

        Returns ``paused`` under the kill switch: the workflow waits and asks again.
        Heartbeats while it runs (see :mod:`nurture.activities.heartbeat`).

        Raises:
            ApplicationError: ``TransientSmtpError``, retryable: nothing was sent, and the
                outbox row stays ``queued`` for the next attempt.
        """
        async with heartbeating(), self.sessions() as session:
            lead = await session.get(LeadRow, request.lead_id)
            if lead is None or lead.erased_at is not None:
                return am.SendEmailResult(
                    status="skipped", detail="the lead has no record (erased?)"
                )
            entry = Entry(
                key=request.key, lead_id=request.lead_id, template=request.template,
                cycle=request.cycle, cadence=request.cadence, step=request.step,
                visit=request.visit,
            )  # fmt: skip
            outbox = Outbox(session, self.smtp, self.settings.sending_paused)
            return await outbox.send(entry, lambda: self._prepare(session, request, lead))

    async def _prepare(
        self, session: AsyncSession, request: am.SendEmailInput, lead: LeadRow
    ) -> Letter | NotSent:
        """The lead's email, or why it must not go out."""
        if not lead.email:
            return NotSent("skipped", "the lead has no email address")
        try:
            # Intake stores one normalized address; a row written before it did (or by
            # hand) may hold a display name, a list or a line break. Parsed again here,
            # so the suppression check and the envelope see the one address, and what
            # can never be sent fails once, visibly, instead of being retried forever.
            address = normalize_email(lead.email)
        except ValueError as exc:
            return NotSent(
                "failed", f"the lead's address cannot be sent to: {redact(str(exc), lead.email)}"
            )
        playbook = self.catalog.current().playbook
        key = await link_key(self.settings, self.sessions)
        try:
            message, rendered = self._build(request, lead, playbook, key, address)
        except TemplateProblem as exc:
            # Validation renders every template against sample leads; a lead's real data
            # can still break one. Recorded as failed (visible to ops), never retried.
            return NotSent("failed", f"template problem: {exc}")
        except ValueError as exc:
            # A header the email library refuses (a line break in a value): the same
            # data gives the same refusal on every attempt, so it is not retried.
            return NotSent("failed", f"the message cannot be built: {exc}")
        # Re-read the lead and the suppression list after rendering, just before the
        # send: an unsubscribe, do-not-contact or erase that landed meanwhile must win.
        await session.refresh(lead)
        if lead.erased_at is not None or lead.do_not_contact or lead.unsubscribed:
            return NotSent("skipped", "the lead opted out")
        if await session.get(Suppression, address) is not None:
            return NotSent("skipped", "the address is on the suppression list")

        async def bounced(exc: PermanentSmtpError) -> None:
            if exc.bad_address:
                await insert_once(
                    session, Suppression, {"email": address_key(address)}, reason=f"bounced: {exc}"
                )
                lead.unsubscribed = True

        return Letter(
            message=message,
            subject=rendered.subject,
            envelope_from=parseaddr(playbook.sender.from_)[1],
            recipients=[address],
            on_refused=bounced,
        )

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
        if playbook.tracking.opens:
            rendered = with_open_pixel(rendered, open_url(base, key, lead.id, request.key))
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
        """An alert to SDRs, managers or ``ops`` (everyone in ``team.ops``); once per key.

        Heartbeats while it runs, as :meth:`send_email` does.
        """
        playbook = self.catalog.current().playbook
        # The same resolution the lead's history names them by (Team.contacts).
        recipients = list(dict.fromkeys(email for _, email in playbook.team.contacts(request.to)))
        async with heartbeating(), self.sessions() as session:
            if not recipients:
                activity.logger.info("notification %s: no recipient has an address", request.key)
                return
            lead = await session.get(LeadRow, request.lead_id)
            if lead is None:
                return
            text = request.text
            if request.name_the_lead:
                # Read here, never sent through Temporal: who the lead is, and its page.
                text = (
                    f"{text}\n\nLead: {lead_label(lead)}\n"
                    f"{self.settings.public_base}/leads/{lead.id}"
                )
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
                    text=text,
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
    """Send an internal notification at most once, through the outbox like a cadence email.

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
    sender = playbook.sender.from_

    async def prepare() -> Letter:
        message = build_message(
            sender=sender,
            to=", ".join(notification.recipients),
            rendered=RenderedEmail(subject=notification.subject, text=notification.text, html=None),
            message_id=message_id(notification.key, sender),
            unsubscribe_url=None,
            reply_to=None,
            date=notification.now,
        )
        return Letter(
            message=message,
            subject=notification.subject,
            envelope_from=parseaddr(sender)[1],
            recipients=notification.recipients,
        )

    entry = Entry(
        key=notification.key, lead_id=notification.lead_id, template="notify",
        step=notification.step,
    )  # fmt: skip
    result = await Outbox(session, smtp, settings.sending_paused).send(entry, prepare)
    if result.status == "paused":
        # Its callers' results (none, a task, an opportunity) cannot say "paused".
        raise paused_error(result)
    return result.status


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


def with_open_pixel(rendered: RenderedEmail, pixel_url: str) -> RenderedEmail:
    """The email with its open pixel at the end of the HTML part (a text-only email has none:
    plain text loads no images, so its opens are never known)."""
    if rendered.html is None:
        return rendered
    image = (
        f'<img src="{html_escape(pixel_url)}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0;">'
    )
    html = rendered.html
    closing = html.lower().rfind("</body>")
    html = html[:closing] + image + html[closing:] if closing >= 0 else html + image
    return RenderedEmail(subject=rendered.subject, text=rendered.text, html=html)


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
