"""The open pixel, `GET /o/<token>`: an image that records `email.opened`, honestly.

Real leads, a real worker on the time-skipping server and a real SMTP sink: the pixel is
taken from the email the cadence actually sent and fetched through the web app in-process,
as a mail client, Apple's prefetching proxy or a mail gateway would.
"""

from __future__ import annotations

import email
import email.policy
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

from nurture.adapters.database import EmailSend, EventRow, LeadRow
from nurture.adapters.link_tokens import click_url, make_token, open_url
from nurture.adapters.secrets import link_key
from nurture.web import create_app
from nurture.web.links import PIXEL_GIF, machine_open_agent

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0"
APPLE_PROXY = "Mozilla/5.0"
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)"
IPHONE_MAIL = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"


def uid() -> str:
    return f"L-{secrets.token_hex(4)}"


def pixel_of(message: EmailMessage) -> str:
    """The path of the open pixel in a sent email's html part."""
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    found = re.search(r'<img src="(https?://[^"]+/o/[^"]+)"', part.get_content())
    assert found, part.get_content()
    return urlsplit(found.group(1)).path


@pytest.fixture
async def site(make_settings, time_env) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:  # type: ignore[no-untyped-def]
    settings = make_settings()
    async with (
        running(time_env.client, settings) as stack,
        asgi_client(create_app(settings, client=time_env.client)) as client,
    ):
        yield client, stack


async def opens(stack, lead_id: str) -> list[EventRow]:  # type: ignore[no-untyped-def]
    async with stack.sessions() as session:
        query = select(EventRow).where(EventRow.lead_id == lead_id, EventRow.type == "email.opened")
        return list((await session.scalars(query.order_by(EventRow.received_at))).all())


def is_the_pixel(answer: httpx.Response) -> bool:
    cache = answer.headers.get("cache-control", "")
    return (
        answer.status_code == 200
        and answer.headers["content-type"] == "image/gif"
        and answer.content == PIXEL_GIF
        and "no-store" in cache
        and "no-cache" in cache
    )


async def test_an_open_is_recorded_once_per_send_and_kind_and_machines_score_nothing(  # type: ignore[no-untyped-def]
    site, smtp_sink
) -> None:
    client, stack = site
    lead = uid()
    await stack.add_lead(id=lead, email=f"{lead.lower()}@example.com", country="US")
    [message] = await smtp_sink.wait_for(1)
    pixel = pixel_of(message)
    await stack.until(lead, lambda v: v.step == "pause")

    async def delivered(ago: timedelta) -> None:
        async with stack.sessions() as session:
            await session.execute(
                update(EmailSend)
                .where(EmailSend.lead_id == lead)
                .values(sent_at=datetime.now(UTC) - ago)
            )
            await session.commit()

    # Just delivered, even with a reader's agent: nobody has read it yet.
    await delivered(timedelta(0))
    early = await client.get(pixel, headers={"User-Agent": BROWSER})
    await delivered(timedelta(hours=1))
    apple = await client.get(pixel, headers={"User-Agent": APPLE_PROXY})  # prefetch
    reader = await client.get(pixel, headers={"User-Agent": BROWSER})
    again = await client.get(pixel, headers={"User-Agent": IPHONE_MAIL})  # the same reader
    bare = await client.get(pixel, headers={"User-Agent": ""})

    assert all(is_the_pixel(a) for a in (early, apple, reader, again, bare))
    rows = await opens(stack, lead)
    # One machine open and one reader's open of this send: the rest are duplicates.
    assert [r.data.get("scanner", False) for r in rows] == [True, False]
    assert "within 10 s of delivery" in rows[0].data["scanner_reason"]
    assert {(r.data["cadence"], r.data["step"]) for r in rows} == {("welcome", "hello")}
    assert "user_agent" not in rows[1].data and not any("Mozilla" in str(r.data) for r in rows)
    # The reader's open scores (email.opened: 1 point), once; the machine's is only noted.
    view = await stack.until(lead, lambda v: v.score == 1)
    machine = [h for h in view.history if h.what == "email.opened recorded"]
    assert len(machine) == 1 and machine[0].why == "looks like a machine, not a reader; no points"
    assert sum("email.opened +1" in h.why for h in view.history) == 1


@pytest.mark.parametrize(
    ("agent", "machine"),
    [
        (APPLE_PROXY, "image proxy prefetch (Apple Mail Privacy Protection)"),
        (" mozilla/5.0 ", "image proxy prefetch (Apple Mail Privacy Protection)"),
        (None, "no user agent"),
        ("", "no user agent"),
        ("Mimecast/1.0 image scanner", "mail scanner or program user agent"),
        ("python-requests/2.32", "mail scanner or program user agent"),
        ("Barracuda Sentinel (link protection)", "mail scanner or program user agent"),
        # Fetched when a person opens the message: a reader's open.
        (GMAIL_PROXY, None),
        ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", None),
        (OUTLOOK, None),
        (IPHONE_MAIL, None),
        (BROWSER, None),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15", None),
    ],
)
def test_which_agents_open_as_machines(agent: str | None, machine: str | None) -> None:
    assert machine_open_agent(agent) == machine


async def test_a_forged_or_misused_token_gets_the_image_and_records_nothing(site) -> None:  # type: ignore[no-untyped-def]
    client, stack = site
    lead = uid()
    await stack.add_lead(id=lead, email=f"{lead.lower()}@example.com")
    key = await link_key(stack.settings, stack.sessions)
    send = f"{lead}|0|welcome|hello|1"
    real = urlsplit(open_url("http://x", key, lead, send)).path
    forged = make_token("not-the-secret", "open", {"l": lead, "k": send})
    click = urlsplit(click_url("http://x", key, lead, send, "https://a.example/")).path
    webhook = urlsplit(open_url("http://x", stack.settings.require_webhook_secret(), lead, send))
    gone = urlsplit(open_url("http://x", key, "L-nobody", send)).path

    answers = [
        await client.get(f"/o/{forged}", headers={"User-Agent": BROWSER}),
        await client.get(real[:-3] + "abc", headers={"User-Agent": BROWSER}),  # edited
        await client.get("/o/" + click.rsplit("/", 1)[1], headers={"User-Agent": BROWSER}),
        await client.get(webhook.path, headers={"User-Agent": BROWSER}),
        await client.get("/o/garbage", headers={"User-Agent": BROWSER}),
        await client.get(gone, headers={"User-Agent": BROWSER}),  # no such lead
    ]

    assert all(is_the_pixel(a) for a in answers), [a.status_code for a in answers]
    assert await opens(stack, lead) == []
    assert await opens(stack, "L-nobody") == []


async def test_an_erased_leads_pixel_records_nothing(site) -> None:  # type: ignore[no-untyped-def]
    client, stack = site
    lead = uid()
    await stack.add_lead(id=lead, email=f"{lead.lower()}@example.com")
    async with stack.sessions() as session:
        await session.execute(
            update(LeadRow).where(LeadRow.id == lead).values(erased_at=datetime.now(UTC))
        )
        await session.commit()
    key = await link_key(stack.settings, stack.sessions)
    pixel = urlsplit(open_url("http://x", key, lead, f"{lead}|0|welcome|hello|1")).path

    answer = await client.get(pixel, headers={"User-Agent": BROWSER})

    assert is_the_pixel(answer)
    assert await opens(stack, lead) == []


@pytest.mark.browser
async def test_looking_at_a_caught_email_in_the_browser_counts_no_open(  # type: ignore[no-untyped-def]
    time_env, make_settings, smtp_sink
) -> None:
    from playwright.async_api import async_playwright, expect
    from web_helpers import CHROMIUM, CHROMIUM_ARGS, PASSWORD, LiveServer, add_user

    from nurture.adapters.database import ReceivedMail

    settings = make_settings(temporal_address=time_env.client.service_client.config.target_host)
    lead = uid()
    async with running(time_env.client, settings) as stack:
        await add_user(stack.sessions, "ops-1", "ops")
        await stack.add_lead(id=lead, email=f"{lead.lower()}@example.com", country="US")
        [message] = await smtp_sink.wait_for(1)
        await stack.until(lead, lambda v: v.step == "pause")
        async with stack.sessions() as session:
            await session.execute(
                update(EmailSend)
                .where(EmailSend.lead_id == lead)
                .values(sent_at=datetime.now(UTC) - timedelta(hours=1))
            )
            await session.commit()
        with LiveServer(create_app(settings)) as server:
            # The copy `make run`'s sink keeps, its pixel pointing at this very server.
            html = message.get_body(preferencelist=("html",))
            assert html is not None
            html.set_content(
                html.get_content().replace(settings.public_base, server.url), subtype="html"
            )
            raw = message.as_string()
            again = email.message_from_string(raw, policy=email.policy.default)
            assert isinstance(again, EmailMessage)
            shown_html = again.get_body(preferencelist=("html",))
            assert shown_html is not None and f"{server.url}/o/" in shown_html.get_content()
            async with stack.sessions() as session:
                caught = ReceivedMail(
                    mail_from="hello@acme.example", rcpt_tos=[str(message["To"])],
                    subject=str(message["Subject"]), message_id=str(message["Message-ID"]),
                    raw=raw,
                )  # fmt: skip
                session.add(caught)
                await session.commit()
                mail_id = caught.id
            async with async_playwright() as p:
                browser = await p.chromium.launch(
                    executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
                )
                try:
                    # Headless Chromium names itself (a machine); a person's Chrome does not.
                    page = await browser.new_page(user_agent=BROWSER)
                    await page.goto(f"{server.url}/login?next=/mail")
                    await page.get_by_label("User").fill("ops-1")
                    await page.get_by_label("Password").fill(PASSWORD)
                    await page.get_by_role("button", name="Sign in").click()
                    await expect(page).to_have_url(f"{server.url}/mail")
                    # `load` waits for the frame and every image it may fetch.
                    shown = await page.goto(f"{server.url}/mail/{mail_id}", wait_until="load")
                    assert shown is not None and shown.status == 200
                    await expect(page.locator("iframe[title='HTML part']")).to_be_visible()
                    assert await opens(stack, lead) == []
                    # The same pixel, fetched by the browser itself: a reader's open.
                    pixel = f"{server.url}{pixel_of(message)}"
                    assert pixel.startswith(server.url)
                    fetched = await page.goto(pixel)
                    assert fetched is not None and fetched.status == 200
                finally:
                    await browser.close()
        [row] = await opens(stack, lead)
        assert not row.data.get("scanner")


async def test_the_image_comes_back_even_when_nothing_can_be_recorded(  # type: ignore[no-untyped-def]
    make_settings,
) -> None:
    # The app database is unreachable (nothing listens on port 1): no key, no lead, no event.
    settings = make_settings(database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none")
    async with asgi_client(create_app(settings)) as client:
        answer = await client.get("/o/anything.at-all", headers={"User-Agent": BROWSER})
    assert is_the_pixel(answer)
