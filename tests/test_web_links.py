"""The links in sent emails: one-click unsubscribe (per address) and tracked clicks.

Real leads, real worker on the time-skipping server, real SMTP sink: the links are taken from
the emails the cadence actually sent, and followed through the web app in-process.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from urllib.parse import urlsplit

import httpx
import pytest
from harness import running
from sqlalchemy import select, update
from web_helpers import asgi_client

from nurture.adapters.database import EmailSend, EventRow, LeadRow, Suppression
from nurture.adapters.link_tokens import click_url, make_token, unsubscribe_url
from nurture.adapters.secrets import link_key
from nurture.web import create_app

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0"
GUIDE = "https://acme.example/guide"


def uid() -> str:
    return f"L-{secrets.token_hex(4)}"


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def links_in(message: EmailMessage) -> tuple[str, str]:
    """(click path, unsubscribe path) of a sent welcome email."""
    text = text_of(message)
    click = re.search(r"https?://\S+/c/\S+", text)
    unsubscribe = re.search(r"<(https?://\S+/u/[^>]+)>", str(message["List-Unsubscribe"]))
    assert click and unsubscribe, text
    return path_of(click.group(0)), path_of(unsubscribe.group(1))


@pytest.fixture
async def site(make_settings, time_env) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:  # type: ignore[no-untyped-def]
    settings = make_settings()
    async with (
        running(time_env.client, settings) as stack,
        asgi_client(create_app(settings, client=time_env.client)) as client,
    ):
        yield client, stack


async def _events(stack, lead_id: str, kind: str) -> list[EventRow]:  # type: ignore[no-untyped-def]
    async with stack.sessions() as session:
        query = select(EventRow).where(EventRow.lead_id == lead_id, EventRow.type == kind)
        return list((await session.scalars(query.order_by(EventRow.received_at))).all())


async def test_one_click_unsubscribe_stops_every_lead_with_the_address(site, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    client, stack = site
    first, second, other = uid(), uid(), uid()
    address = f"{first.lower()}@example.com"
    await stack.add_lead(id=first, email=address, first_name="Mia", country="US")
    await stack.add_lead(id=second, email=address.upper(), country="US")  # same address, other case
    await stack.add_lead(id=other, email=f"{other.lower()}@example.com", country="US")
    messages = await smtp_sink.wait_for(3)
    mine = next(m for m in messages if str(m["To"]) == address)
    _, unsubscribe = links_in(mine)

    page = await client.get(unsubscribe)
    assert page.status_code == 200
    assert 'method="post"' in page.text and address not in page.text  # masked: m***@...
    assert await _events(stack, first, "lead.unsubscribed") == []  # a GET changes nothing

    # RFC 8058: the mail client posts this body, without a cookie or a login.
    done = await client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    again = await client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})

    assert done.status_code == 200 and again.status_code == 200
    assert "unsubscribed" in done.text
    for lead in (first, second):
        rows = await _events(stack, lead, "lead.unsubscribed")
        assert len(rows) == 1 and rows[0].status == "delivered"
        view = await stack.until(lead, lambda v: v.unsubscribed)
        assert any(h.what == "unsubscribed" for h in view.history)
    assert await _events(stack, other, "lead.unsubscribed") == []
    async with stack.sessions() as session:
        assert await session.get(Suppression, address) is not None
        flags = dict((await session.execute(select(LeadRow.id, LeadRow.unsubscribed))).all())
    assert flags == {first: True, second: True, other: False}


async def test_forged_or_misused_tokens_get_404(site) -> None:  # type: ignore[no-untyped-def]
    client, stack = site
    lead = uid()
    await stack.add_lead(id=lead, email=f"{lead.lower()}@example.com")
    key = await link_key(stack.settings, stack.sessions)
    real = path_of(unsubscribe_url("http://x", key, lead, None))
    forged_body = make_token("not-the-secret", "unsubscribe", {"l": lead, "k": None})
    click_token = path_of(click_url("http://x", key, lead, "k", GUIDE)).rsplit("/", 1)[1]
    # The webhook secret (the CRM's too) does not make links.
    webhook_secret = stack.settings.require_webhook_secret()
    by_webhook_secret = path_of(click_url("http://x", webhook_secret, lead, "k", GUIDE))

    answers = [
        await client.get(f"/u/{forged_body}"),
        await client.post(f"/u/{forged_body}"),
        await client.post(real[:-3] + "abc"),  # signature edited
        await client.post(f"/u/{click_token}"),  # a click token is no unsubscribe
        await client.get("/c/" + real.rsplit("/", 1)[1]),  # nor the other way round
        await client.get("/c/garbage"),
        await client.get(by_webhook_secret),
    ]

    assert [a.status_code for a in answers] == [404] * 7
    assert await _events(stack, lead, "lead.unsubscribed") == []
    assert await _events(stack, lead, "email.clicked") == []


async def test_click_redirects_to_the_exact_url_and_flags_scanners(site, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    client, stack = site
    lead = uid()
    await stack.add_lead(id=lead, email=f"{lead.lower()}@example.com", country="US")
    [message] = await smtp_sink.wait_for(1)
    click, _ = links_in(message)
    await stack.until(lead, lambda v: v.step == "pause")

    # Seconds after delivery: a mail gateway checking the link, not a person.
    early = await client.get(click, headers={"User-Agent": BROWSER})
    assert early.status_code == 302
    assert early.headers["location"] == GUIDE

    async with stack.sessions() as session:
        await session.execute(
            update(EmailSend)
            .where(EmailSend.lead_id == lead)
            .values(sent_at=datetime.now(UTC) - timedelta(hours=1))
        )
        await session.commit()
    person = await client.get(click, headers={"User-Agent": BROWSER})
    gateway = await client.get(
        click, headers={"User-Agent": "Barracuda Sentinel (link protection)"}
    )
    again = await client.get(click, headers={"User-Agent": BROWSER})

    assert person.status_code == 302 and person.headers["location"] == GUIDE
    assert gateway.status_code == 302 and gateway.headers["location"] == GUIDE
    assert again.status_code == 302 and again.headers["location"] == GUIDE
    # One event per link of a send and per kind of clicker: the gateway's click repeats the
    # first scanner's, the person's second click the first (duplicates, no second effect).
    rows = await _events(stack, lead, "email.clicked")
    assert [r.data.get("scanner", False) for r in rows] == [True, False]
    assert "within 10 s" in rows[0].data["scanner_reason"]
    assert {(r.data["cadence"], r.data["step"], r.data["url"]) for r in rows} == {
        ("welcome", "hello", GUIDE)
    }
    # Only the person's click scores (email.clicked: 5 points), and only once.
    view = await stack.until(lead, lambda v: v.score == 5)
    assert sum("email.clicked" in h.what for h in view.history) == 1  # the scanner's: recorded
    assert sum("email.clicked +5" in h.why for h in view.history) == 1


async def test_click_keeps_the_whole_target_url(site) -> None:  # type: ignore[no-untyped-def]
    client, stack = site
    lead = uid()
    await stack.add_lead(id=lead, email=f"{lead.lower()}@example.com")
    target = "https://acme.example/pricing?plan=pro&utm_source=mail#compare"
    key = await link_key(stack.settings, stack.sessions)
    token_url = click_url("http://x", key, lead, f"{lead}|0|welcome|hello|1", target)
    not_web = click_url("http://x", key, lead, "k", "javascript:alert(1)")

    answer = await client.get(path_of(token_url), headers={"User-Agent": BROWSER})
    refused = await client.get(path_of(not_web), headers={"User-Agent": BROWSER})

    assert answer.status_code == 302
    assert answer.headers["location"] == target
    assert refused.status_code == 404
