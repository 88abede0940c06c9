"""The links in every email: `/u/<token>` (unsubscribe), `/c/<token>` (a tracked click) and
`/o/<token>` (the open pixel).

No login: the signed token (:mod:`nurture.adapters.link_tokens`, keyed with the app's link key) is
the authority, and a forged or edited one gets 404. The click target is inside the signed token,
so `/c` cannot be made to redirect anywhere else (no open redirect).

Unsubscribe is per address (CONTRACT.md): the address the email went to (the token's send,
else the lead's address) is suppressed in the database first, so no email leaves even while
Temporal is unreachable, and every lead with it is unsubscribed. `GET /u` only shows a
confirm button: mail scanners fetch links, and a fetch must not unsubscribe anyone; `POST /u`
is RFC 8058's one-click.

A click is recorded once per send, link and kind (a person's, or a link scanner's): the
event id is derived from them, so the same link clicked again is a duplicate with no second
effect (the reader is still redirected). An open is recorded once per send and kind (a
reader's, or a machine's) the same way.

Machines are told apart from people, and recorded without points (``data.scanner``, which
the lead's reducer and the step report honour): link scanners for clicks, and for opens
the proxies that fetch every image of every message on delivery, read or not. Which
fetches count as a machine's open, and why:

- Apple Mail Privacy Protection: Apple's proxy loads every message's images when the
  message arrives, whether anyone reads it, with the bare user agent ``Mozilla/5.0`` (no
  mail client or browser sends only that). A machine.
- Mail security gateways and programs (Proofpoint, Mimecast, Barracuda, HTTP libraries,
  bots; the click check's list) and a fetch with no user agent: machines.
- Any fetch within seconds of delivery: nobody has read the message yet. A machine.
- Gmail's and Yahoo's image proxies (``GoogleImageProxy``, ``YahooMailProxy``) fetch a
  message's images when its reader opens it, and cache them: the first open is a
  person's (later ones are not seen). A reader, unless it comes within seconds of
  delivery. Outlook's own user agent (``Microsoft Office``) is the reader's mail client
  loading images: a reader too, though the click check distrusts it for links (Office
  previews links, it does not preview images).

A forged or edited pixel token still gets the image (200), with nothing recorded: a
broken-image icon would show in every email sent before a change of the app secret, and
one answer for every token tells a prober nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nurture.adapters.database import EmailSend, EventRow, LeadRow
from nurture.adapters.link_tokens import BadToken, read_token
from nurture.adapters.secrets import link_key
from nurture.adapters.temporal import TemporalUnavailable
from nurture.domain import keys
from nurture.domain.events import Event
from nurture.services.intake import submit_event
from nurture.services.optouts import suppress_address
from nurture.web.common import Services, ServicesDep, render

log = logging.getLogger(__name__)

router = APIRouter(tags=["links"])

# A person does not click within seconds of delivery; a link scanner does.
SCANNER_WINDOW = timedelta(seconds=10)
# A scanner opens every link of a message at once: this many other links of the same email
# clicked within BURST_WINDOW makes the next one a scanner's too.
BURST_WINDOW = timedelta(seconds=5)
BURST_LINKS = 2
# Lower-case substrings of the user agents of mail security gateways, link expanders and
# HTTP libraries; a missing user agent counts too (browsers always send one).
SCANNER_AGENTS = (
    "barracuda",
    "proofpoint",
    "mimecast",
    "messagelabs",
    "symantec",
    "forcepoint",
    "trendmicro",
    "sophos",
    "fireeye",
    "ironport",
    "cisco",
    "zscaler",
    "bitdefender",
    "safelinks",
    "urldefense",
    "microsoft office",
    "ms-office",
    "google-safety",
    "googleimageproxy",
    "ggpht",
    "yahoomailproxy",
    "headlesschrome",
    "phantomjs",
    "python-requests",
    "python-urllib",
    "httpx",
    "aiohttp",
    "curl/",
    "wget",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww",
    "bot",
    "crawler",
    "spider",
    "scan",
    "preview",
    "facebookexternalhit",
    "slackbot",
    "linkexpander",
)
REDIRECT_SCHEMES = ("http", "https")
# Apple Mail Privacy Protection's proxy: this user agent and nothing more (lower case).
PREFETCH_AGENTS = frozenset({"mozilla/5.0"})
# Fetches of images on a reader's behalf when the message is opened: a person's open,
# though the click check counts these agents as scanners (see the module docstring).
READER_AGENTS = (
    "googleimageproxy",
    "ggpht",
    "yahoomailproxy",
    "microsoft office",
    "ms-office",
)
# The open pixel: a transparent 1x1 GIF, never cached, so each open reaches us.
PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00"
    b"\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
PIXEL_HEADERS = {
    "Cache-Control": "no-store, no-cache, must-revalidate, private, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "description": "Not a link we made (forged or edited token)",
        "content": {"text/html": {}},
    }
}


async def _read(services: Services, purpose: str, token: str) -> dict[str, Any] | None:
    try:
        return read_token(await link_key(services.settings, services.sessions), purpose, token)
    except BadToken:
        pass
    if purpose == "unsubscribe" and LEGACY_UNSUBSCRIBE_TOKENS:
        return _read_legacy_unsubscribe(services, token)
    return None


# Unsubscribe links in emails sent before links had their own key were keyed with the
# webhook secret. They must keep working (CAN-SPAM: at least 30 days after the send), and
# honouring them gives a holder of the webhook secret nothing new: a signed
# `lead.unsubscribed` event does the same. Click links get no such grace: a forged one
# could score leads and redirect anywhere.
LEGACY_UNSUBSCRIBE_TOKENS = True


def _read_legacy_unsubscribe(services: Services, token: str) -> dict[str, Any] | None:
    secret = services.settings.webhook_secret
    if secret is None or not secret.get_secret_value():
        return None
    try:
        return read_token(secret.get_secret_value(), "unsubscribe", token)
    except BadToken:
        return None


def _not_found(request: Request) -> Response:
    return render(request, "link_invalid.html", status_code=404)


def _masked(address: str | None) -> str | None:
    """``j***@example.com``: enough to recognize one's address, not to learn someone else's."""
    if not address or "@" not in address:
        return None
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


# --- unsubscribe --------------------------------------------------------------------------


@router.get(
    "/u/{token}", response_class=HTMLResponse, responses=_NOT_FOUND, summary="Unsubscribe page"
)
async def unsubscribe_page(request: Request, token: str, services: ServicesDep) -> Response:
    """A page with one button that unsubscribes (a GET changes nothing: scanners fetch links)."""
    payload = await _read(services, "unsubscribe", token)
    if payload is None:
        return _not_found(request)
    async with services.sessions() as session:
        lead = await session.get(LeadRow, str(payload.get("l")))
        address = await emailed_address(session, lead, payload.get("k"))
    return render(request, "unsubscribe.html", {"address": _masked(address), "token": token})


@router.post(
    "/u/{token}",
    response_class=HTMLResponse,
    responses=_NOT_FOUND,
    summary="Unsubscribe at once (RFC 8058)",
)
async def unsubscribe_now(request: Request, token: str, services: ServicesDep) -> Response:
    """Unsubscribe the token's address: every lead with it; idempotent; no login."""
    payload = await _read(services, "unsubscribe", token)
    if payload is None:
        return _not_found(request)
    address = await unsubscribe_address(services, str(payload.get("l")), payload.get("k"))
    return render(request, "unsubscribed.html", {"address": _masked(address)})


async def emailed_address(
    session: AsyncSession, lead: LeadRow | None, send_key: object
) -> str | None:
    """The address the link's email went to: its send's, else the lead's (None: erased).

    The lead's address may have changed since: the person who clicked is the one mailed.
    """
    if lead is None or lead.erased_at is not None:
        return None
    if isinstance(send_key, str):
        sent_to = await session.scalar(
            select(EmailSend.to_address).where(
                EmailSend.key == send_key, EmailSend.lead_id == lead.id
            )
        )
        if sent_to and "," not in sent_to:
            return sent_to
    return lead.email or None


async def unsubscribe_address(services: Services, lead_id: str, send_key: object) -> str | None:
    """Suppress the address the email went to and record `lead.unsubscribed` for every lead
    with it (see :func:`emailed_address`).

    Returns:
        The address, or None when there is none (the lead was erased): nothing left to do.
    """
    now = datetime.now(UTC)
    async with services.sessions() as session:
        lead = await session.get(LeadRow, lead_id)
        address = await emailed_address(session, lead, send_key)
    if not address:
        return None
    lead_ids = list(await suppress_address(services.sessions, address, "unsubscribe link", now))
    address = address.strip().lower()
    try:
        intake = await services.intake()
    except TemporalUnavailable:
        log.warning(
            "unsubscribe of %d lead(s) suppressed in the database; workflows not told",
            len(lead_ids),
        )
        return address
    data: dict[str, object] = {"via": "unsubscribe link"}
    if isinstance(send_key, str):
        data["key"] = send_key
    for each in lead_ids:
        # One id per lead: a second click is a duplicate, with no second effect.
        event = Event(
            id=f"unsubscribe-{each}",
            type="lead.unsubscribed",
            lead_id=each,
            occurred_at=now,
            data=data,
        )
        await submit_event(intake, event)
    return address


# --- clicks -------------------------------------------------------------------------------


@router.get(
    "/c/{token}",
    status_code=302,
    response_class=RedirectResponse,
    summary="Tracked click: record, then redirect to the link's target",
    responses={302: {"description": "To the link's target"}, **_NOT_FOUND},
)
async def click(request: Request, token: str, services: ServicesDep) -> Response:
    """Record `email.clicked` (flagged when it looks like a link scanner) and redirect."""
    payload = await _read(services, "click", token)
    url = payload.get("u") if payload else None
    if (
        payload is None
        or not isinstance(url, str)
        or urlsplit(url).scheme.lower() not in REDIRECT_SCHEMES
    ):
        return _not_found(request)
    try:
        await record_click(services, payload, url, request.headers.get("user-agent"))
    except Exception:
        # The reader must reach the page even when recording fails.
        log.warning("click on %s not recorded", url, exc_info=True)
    return RedirectResponse(url, status_code=302)


def scanner_agent(user_agent: str | None) -> bool:
    """Whether ``user_agent`` is missing or one of a link scanner's."""
    if not user_agent or not user_agent.strip():
        return True
    agent = user_agent.lower()
    return any(marker in agent for marker in SCANNER_AGENTS)


async def record_click(
    services: Services, payload: dict[str, Any], url: str, user_agent: str | None
) -> str | None:
    """Record one click as `email.clicked` with the send's cadence and step.

    Returns:
        The event's status, or None when the lead no longer exists (nothing to record).
    """
    now = datetime.now(UTC)
    lead_id, key, data = _tracked(payload)
    data["url"] = url
    async with services.sessions() as session:
        lead = await session.get(LeadRow, lead_id)
        if lead is None or lead.erased_at is not None:
            return None
        why = await _scanner_reason(session, lead_id, key, url, user_agent, now)
    if why:
        data["scanner"] = True
        data["scanner_reason"] = why
    event = Event(
        id=click_event_id(lead_id, key, url, scanner=bool(why)),
        type="email.clicked",
        lead_id=lead_id,
        occurred_at=now,
        data=data,
    )
    return (await submit_event(await services.intake(), event)).status


def click_event_id(lead_id: str, send_key: str | None, url: str, *, scanner: bool) -> str:
    """The id of a click's event: the same for every click of one link of one send.

    So a link clicked again (or a token replayed) is a duplicate with no second effect. A
    link scanner's clicks and the person's are told apart: a gateway opening every link
    on delivery must not use up the click of the person reading it later.
    """
    return _once_id("click", [lead_id, send_key, url], machine=scanner)


def open_event_id(lead_id: str, send_key: str | None, *, machine: bool) -> str:
    """The id of an open's event: one per send and kind (a reader's, or a machine's), so a
    proxy's prefetch on delivery does not use up the open of the person reading later."""
    return _once_id("open", [lead_id, send_key], machine=machine)


def _once_id(prefix: str, parts: list[str | None], *, machine: bool) -> str:
    who = "scanner" if machine else "person"
    raw = json.dumps([*parts, who], separators=(",", ":"))
    return f"{prefix}-{hashlib.sha256(raw.encode()).hexdigest()[:32]}"


async def _delivered_just_now(
    session: AsyncSession, key: str | None, now: datetime, what: str
) -> str | None:
    """Why a click or open is a machine's: it came seconds after delivery (None: it did not)."""
    if key is None:
        return None
    send = await session.scalar(select(EmailSend).where(EmailSend.key == key))
    if send is not None and send.sent_at is not None and now - send.sent_at < SCANNER_WINDOW:
        return f"{what} within {SCANNER_WINDOW.seconds} s of delivery"
    return None


async def _scanner_reason(
    session: AsyncSession,
    lead_id: str,
    key: str | None,
    url: str,
    user_agent: str | None,
    now: datetime,
) -> str | None:
    if scanner_agent(user_agent):
        return "link scanner user agent"
    if key is None:
        return None
    soon = await _delivered_just_now(session, key, now, "clicked")
    if soon:
        return soon
    recent = (
        await session.scalars(
            select(EventRow).where(
                EventRow.lead_id == lead_id,
                EventRow.type == "email.clicked",
                EventRow.received_at >= now - BURST_WINDOW,
            )
        )
    ).all()
    others = {str(r.data.get("url")) for r in recent if (r.data or {}).get("key") == key} - {url}
    if len(others) >= BURST_LINKS:
        return "many links of one email clicked at once"
    return None


# --- opens --------------------------------------------------------------------------------


@router.get(
    "/o/{token}",
    summary="The open pixel: record an open, answer a 1x1 transparent GIF",
    responses={
        200: {"description": "A 1x1 transparent GIF, never cached", "content": {"image/gif": {}}}
    },
    response_class=Response,
)
async def open_pixel(token: str, request: Request, services: ServicesDep) -> Response:
    """Record `email.opened` (flagged when a machine fetched it) and answer the image.

    The image comes back whatever happens: a forged token, an erased lead or a failure to
    record never shows as a broken image in someone's mail.
    """
    try:
        payload = read_token(await link_key(services.settings, services.sessions), "open", token)
        await record_open(services, payload, request.headers.get("user-agent"))
    except BadToken:
        pass  # not ours: nothing to record, and the same image as for any token
    except Exception:
        log.warning("open not recorded", exc_info=True)
    return Response(PIXEL_GIF, media_type="image/gif", headers=PIXEL_HEADERS)


def machine_open_agent(user_agent: str | None) -> str | None:
    """Why a fetch of the pixel with ``user_agent`` is a machine's (None: a reader's)."""
    if not user_agent or not user_agent.strip():
        return "no user agent"
    agent = user_agent.strip().lower()
    if agent in PREFETCH_AGENTS:
        return "image proxy prefetch (Apple Mail Privacy Protection)"
    if any(marker in agent for marker in READER_AGENTS):
        return None
    if scanner_agent(agent):
        return "mail scanner or program user agent"
    return None


async def record_open(
    services: Services, payload: dict[str, Any], user_agent: str | None
) -> str | None:
    """Record one open as `email.opened` with the send's cadence and step.

    Returns:
        The event's status, or None when there is nothing to record (no such lead, erased).
    """
    now = datetime.now(UTC)
    lead_id, key, data = _tracked(payload)
    async with services.sessions() as session:
        lead = await session.get(LeadRow, lead_id)
        if lead is None or lead.erased_at is not None:
            return None
        why = machine_open_agent(user_agent) or await _delivered_just_now(
            session, key, now, "opened"
        )
    if why:
        data["scanner"] = True
        data["scanner_reason"] = why
    event = Event(
        id=open_event_id(lead_id, key, machine=bool(why)),
        type="email.opened",
        lead_id=lead_id,
        occurred_at=now,
        data=data,
    )
    return (await submit_event(await services.intake(), event)).status


def _tracked(payload: dict[str, Any]) -> tuple[str, str | None, dict[str, object]]:
    """A tracking token's lead, its send's key, and the event data naming that send's step."""
    lead_id = str(payload.get("l"))
    found = payload.get("k")
    key = found if isinstance(found, str) else None
    data: dict[str, object] = {}
    if key:
        data["key"] = key
        where = keys.touch_step(key)
        if where is not None:
            data["cadence"], data["step"] = where
    return lead_id, key, data
