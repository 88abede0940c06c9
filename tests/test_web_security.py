"""Regressions for the security review: one section per finding, each test naming it.

The app runs in-process on a migrated SQLite file with the real worker on the time-skipping
server (as `worker.py` wires it); leads that need no workflow are written straight into the
database.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import itsdangerous
import pytest
from harness import Stack, running
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web_helpers import PASSWORD, add_user, asgi_client, log_in, signed, wait_until

from nurture.activities.crm import signature as outbound_signature
from nurture.adapters.database import (
    AppSecret,
    CallTask,
    EmailSend,
    EventRow,
    LeadRow,
    Suppression,
    WebhookReceipt,
    make_engine,
    session_factory,
)
from nurture.adapters.link_tokens import click_url, make_token, unsubscribe_url
from nurture.adapters.schema import migrate
from nurture.adapters.secrets import (
    APP_SECRET_NAME,
    app_secret,
    derived_key,
    link_key,
    session_key,
)
from nurture.settings import Settings
from nurture.web import create_app
from nurture.web import webhooks as webhook_routes
from nurture.web.links import click_event_id
from nurture.web.security import SESSION_COOKIE, SIGNATURE_HEADER

# database_url, migrated_url, sessions: fresh databases (SQLite; PostgreSQL when configured).
pytest_plugins = ["dbfixtures"]

Sessions = async_sessionmaker[AsyncSession]
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0"


def uid(prefix: str = "L") -> str:
    # The time-skipping server is shared by the session: lead ids must not meet other tests'.
    return f"{prefix}-{secrets.token_hex(4)}"


@dataclass
class Site:
    client: httpx.AsyncClient
    stack: Stack
    settings: Settings
    secret: str

    @property
    def sessions(self) -> Sessions:
        return self.stack.sessions

    def browser(self) -> httpx.AsyncClient:
        """A fresh browser (its own cookies) on the same app."""
        return httpx.AsyncClient(transport=self.client._transport, base_url="http://test")

    async def send(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.client.post(path, content=body, headers=headers)

    async def lead(self, lead_id: str) -> LeadRow | None:
        async with self.sessions() as session:
            return await session.get(LeadRow, lead_id)


@pytest.fixture
async def site(make_settings, time_env) -> AsyncIterator[Site]:  # type: ignore[no-untyped-def]
    settings = make_settings()
    async with (
        running(time_env.client, settings) as stack,
        asgi_client(create_app(settings, client=time_env.client)) as client,
    ):
        for user_id, role in (("aiko", "sdr"), ("ben", "sdr"), ("olga", "ops")):
            await add_user(stack.sessions, user_id, role)
        yield Site(client, stack, settings, settings.require_webhook_secret())


async def seed_lead(sessions: Sessions, owner: str | None = None, email: str | None = None) -> str:
    """A lead row with no workflow (pages and links need only the row)."""
    lead_id = uid()
    async with sessions() as session:
        session.add(
            LeadRow(
                id=lead_id,
                email=email or f"{lead_id.lower()}@acme.example",
                first_name="Mia",
                owner=owner,
                stage="mql",
                fields={},
            )
        )
        await session.commit()
    return lead_id


async def seed_task(sessions: Sessions, lead_id: str, owner: str, status: str = "open") -> str:
    async with sessions() as session:
        task = CallTask(
            key=f"{lead_id}|0|mql-sdr|call|{secrets.token_hex(3)}",
            lead_id=lead_id,
            cycle=0,
            cadence="mql-sdr",
            step="call",
            visit=1,
            owner=owner,
            status=status,
            due_at=datetime.now(UTC) + timedelta(hours=1),
            script="Call.",
        )
        session.add(task)
        await session.commit()
        return task.id


# --- 1. the webhook secret keys no session and no link ------------------------------------


def _cookie(key: str, user: str, csrf: str = "chosen") -> str:
    data = base64.b64encode(json.dumps({"user": user, "csrf": csrf}).encode())
    return itsdangerous.TimestampSigner(key).sign(data).decode()


async def test_a_session_minted_from_the_webhook_secret_is_refused(site: Site) -> None:
    """Finding 1: whoever holds the webhook secret (the CRM, event sources) is not ops."""
    lead = await seed_lead(site.sessions, owner="ben")
    task = await seed_task(site.sessions, lead, "ben")
    forged = _cookie(derived_key(site.secret, "session"), "olga")
    async with site.browser() as browser:
        browser.cookies.set(SESSION_COOKIE, forged)
        ops = await browser.get("/ops")
        page = await browser.get(f"/leads/{lead}")
        done = await browser.post(f"/inbox/tasks/{task}", data={"outcome": "qualified"})

    for answer in (ops, page, done):
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    # The real key signs sessions: one minted with it would work (so the test is meaningful).
    real = _cookie(await session_key(site.settings, site.sessions), "olga")
    async with site.browser() as browser:
        browser.cookies.set(SESSION_COOKIE, real)
        assert (await browser.get("/ops")).status_code == 200


async def test_sessions_work_across_processes_sharing_the_database(make_settings) -> None:  # type: ignore[no-untyped-def]
    """Finding 1: without NURTURE_APP_SECRET the key is made once and kept in the database,
    so a sign-in holds on every replica (and after a restart)."""
    settings = make_settings()
    await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        sessions = session_factory(engine)
        await add_user(sessions, "aiko", "sdr")
        async with asgi_client(create_app(settings)) as first:
            await log_in(first, "aiko")
            cookie = first.cookies[SESSION_COOKIE]
        async with asgi_client(create_app(settings)) as second:
            second.cookies.set(SESSION_COOKIE, cookie)
            inbox = await second.get("/inbox")
        async with sessions() as session:
            names = (await session.scalars(select(AppSecret.name))).all()
    finally:
        await engine.dispose()
    assert inbox.status_code == 200 and "aiko (sdr)" in inbox.text
    assert names == [APP_SECRET_NAME]


async def test_the_app_secret_is_made_once_when_processes_race(migrated_url: str) -> None:
    """Finding 1: several processes asking at once agree on one secret (one row)."""
    engines = [make_engine(migrated_url) for _ in range(4)]
    try:
        # One session factory per "process": each has its own cache.
        values = await asyncio.gather(
            *(app_secret(session_factory(engine), "race") for engine in engines)
        )
        async with session_factory(engines[0])() as session:
            rows = (await session.scalars(select(AppSecret).where(AppSecret.name == "race"))).all()
    finally:
        for engine in engines:
            await engine.dispose()
    assert len(set(values)) == 1 and len(values[0]) == 64
    assert [r.value for r in rows] == values[:1]


async def test_a_configured_app_secret_keys_sessions_and_links(sessions: Sessions) -> None:
    """Finding 1: NURTURE_APP_SECRET, when set, is used (nothing is stored), one key per use."""
    settings = Settings(webhook_secret="w" * 32, app_secret="a" * 32)
    links = await link_key(settings, sessions)
    cookies = await session_key(settings, sessions)

    assert links == derived_key("a" * 32, "links") and cookies == derived_key("a" * 32, "session")
    assert links != cookies
    assert {links, cookies}.isdisjoint(
        {derived_key("w" * 32, "links"), derived_key("w" * 32, "session"), "w" * 32}
    )
    async with sessions() as session:
        assert (await session.scalar(select(func.count()).select_from(AppSecret))) == 0


async def test_links_signed_with_the_webhook_secret_are_refused(site: Site) -> None:
    """Finding 1: a click link made with the webhook secret is not ours (404, nothing
    recorded); one made with the link key is."""
    lead = await seed_lead(site.sessions)
    target = "https://acme.example/pricing"
    forged = click_url("", site.secret, lead, f"{lead}|0|welcome|hello|1", target)
    key = await link_key(site.settings, site.sessions)
    real = click_url("", key, lead, f"{lead}|0|welcome|hello|1", target)

    refused = await site.client.get(forged, headers={"User-Agent": BROWSER})
    followed = await site.client.get(real, headers={"User-Agent": BROWSER})

    assert refused.status_code == 404
    assert followed.status_code == 302 and followed.headers["location"] == target
    assert key != site.secret and key != derived_key(site.secret, "links")


# --- 2. outbound posts are no inbound webhooks; replays have no effect ----------------------


async def test_our_crm_notification_replayed_to_us_is_refused(site: Site) -> None:
    """Finding 2: a stage-change notification we posted to the CRM does not verify here."""
    note = {
        "id": uid("stage"),
        "type": "lead.stage_changed",
        "lead_id": uid(),
        "cycle": 0,
        "from_stage": "mql",
        "to_stage": "sql",
        "at": "2026-01-01T00:00:00+00:00",
    }
    body = json.dumps(note, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: outbound_signature(
        site.secret, body
    )}  # fmt: skip

    as_lead = await site.send("/leads", body, headers)
    as_event = await site.send("/events", body, headers)

    assert as_lead.status_code == 401 and as_event.status_code == 401
    assert await site.lead(note["id"]) is None


async def test_a_replayed_lead_post_does_not_revert_a_later_update(site: Site) -> None:
    """Finding 2: a captured POST /leads, replayed inside its signature window, is a
    duplicate (200) with no effect."""
    lead = uid()
    first_body, first_headers = signed(
        site.secret, {"id": lead, "email": "old@acme.example", "country": "JP"}
    )
    created = await site.send("/leads", first_body, first_headers)
    site.stack.started.add(lead)
    update_body, update_headers = signed(
        site.secret, {"id": lead, "email": "new@acme.example", "country": "US"}
    )
    updated = await site.send("/leads", update_body, update_headers)

    async def moved() -> bool:
        row = await site.lead(lead)
        return row is not None and row.email == "new@acme.example"

    await wait_until(moved)
    replayed = await site.send("/leads", first_body, first_headers)

    assert created.status_code == 202 and updated.status_code == 200
    assert replayed.status_code == 200
    assert replayed.json()["status"] == "duplicate" and replayed.json()["lead_id"] == lead
    row = await site.lead(lead)
    assert row is not None and (row.email, row.country) == ("new@acme.example", "US")


async def test_one_signed_request_is_taken_once_across_both_routes(site: Site) -> None:
    """Finding 2: the receipts are shared: an event's signed bytes sent to /leads make no
    ghost lead, and the event replayed is a duplicate."""
    event = {"id": uid("evt"), "type": "page.visited", "lead_id": uid(), "data": {"url": "/x"}}
    body, headers = signed(site.secret, event)

    first = await site.send("/events", body, headers)
    to_leads = await site.send("/leads", body, headers)
    again = await site.send("/events", body, headers)

    assert first.status_code == 202
    assert to_leads.status_code == 200 and to_leads.json()["status"] == "duplicate"
    assert await site.lead(event["id"]) is None
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert [r["status"] for r in again.json()["results"]] == ["duplicate"]
    async with site.sessions() as session:
        assert (await session.scalar(select(func.count()).select_from(EventRow))) == 1


async def test_a_refused_or_failed_request_can_be_sent_again(site: Site, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Finding 2: only requests taken in are remembered; the sender's resend of the very
    same bytes after a 422 or a 503 is handled again, not called a replay."""
    invalid_body, invalid_headers = signed(site.secret, {"id": uid(), "employees": "12"})
    assert (await site.send("/leads", invalid_body, invalid_headers)).status_code == 422
    assert (await site.send("/leads", invalid_body, invalid_headers)).status_code == 422

    lead = uid()
    body, headers = signed(site.secret, {"id": lead, "email": f"{lead.lower()}@acme.example"})
    real_submit = webhook_routes.submit_lead

    async def database_down(*_args: object, **_kwargs: object) -> None:
        raise OSError("connection refused")

    monkeypatch.setattr(webhook_routes, "submit_lead", database_down)
    failed = await site.send("/leads", body, headers)
    monkeypatch.setattr(webhook_routes, "submit_lead", real_submit)
    resent = await site.send("/leads", body, headers)
    site.stack.started.add(lead)

    assert failed.status_code == 503
    assert resent.status_code == 202 and resent.json()["status"] == "created"


async def test_receipts_older_than_any_valid_signature_are_pruned(site: Site) -> None:
    """Finding 2: the receipts table does not grow without bound."""
    now = datetime.now(UTC)
    async with site.sessions() as session:
        session.add_all(
            [
                WebhookReceipt(digest="0" * 64, seen_at=now - timedelta(minutes=11)),
                WebhookReceipt(digest="1" * 64, seen_at=now - timedelta(minutes=1)),
            ]
        )
        await session.commit()
    event = {"id": uid("evt"), "type": "page.visited", "lead_id": uid()}
    body, headers = signed(site.secret, event, timestamp=int(time.time()))
    assert (await site.send("/events", body, headers)).status_code == 202

    async with site.sessions() as session:
        digests = set((await session.scalars(select(WebhookReceipt.digest))).all())
    assert "0" * 64 not in digests and "1" * 64 in digests and len(digests) == 2


# --- 3. a click link scores once ----------------------------------------------------------


def test_a_clicks_event_id_depends_on_the_send_the_link_and_the_clicker() -> None:
    """Finding 3: deterministic, so a repeat is a duplicate of the first click."""
    one = click_event_id("L-1", "L-1|0|c|s|1", "https://a.example/", scanner=False)
    assert one == click_event_id("L-1", "L-1|0|c|s|1", "https://a.example/", scanner=False)
    others = {
        click_event_id("L-1", "L-1|0|c|s|1", "https://a.example/x", scanner=False),
        click_event_id("L-1", "L-1|0|c|s|2", "https://a.example/", scanner=False),
        click_event_id("L-1", "L-1|0|c|s|1", "https://a.example/", scanner=True),
    }
    assert one not in others and len(others) == 3


async def test_a_click_link_followed_many_times_scores_once(site: Site) -> None:
    """Finding 3: six clicks of one link redirect six times and score once."""
    lead = uid()
    await site.stack.add_lead(id=lead, email=f"{lead.lower()}@example.com", country="US")
    await site.stack.until(lead, lambda v: v.step == "pause")
    key = await link_key(site.settings, site.sessions)
    # A send that is not the one just delivered: no "clicked seconds after delivery" flag.
    url = click_url("", key, lead, f"{lead}|0|welcome|later|1", "https://acme.example/pricing")

    answers = [await site.client.get(url, headers={"User-Agent": BROWSER}) for _ in range(6)]

    assert [a.status_code for a in answers] == [302] * 6
    assert {a.headers["location"] for a in answers} == {"https://acme.example/pricing"}
    async with site.sessions() as session:
        rows = (
            await session.scalars(
                select(EventRow).where(EventRow.lead_id == lead, EventRow.type == "email.clicked")
            )
        ).all()
    assert len(rows) == 1 and not rows[0].data.get("scanner")
    view = await site.stack.until(lead, lambda v: v.score == 5)
    assert sum("email.clicked +5" in h.why for h in view.history) == 1


# --- 4. no personal data in logs or URLs -------------------------------------------------


async def test_database_errors_do_not_carry_the_bound_values(sessions: Sessions) -> None:
    """Finding 4: SQLAlchemy's messages (logged with exc_info) hide parameters."""
    postgres = make_engine("postgresql+asyncpg://nurture@127.0.0.1:1/none")  # never connects
    try:
        assert postgres.sync_engine.hide_parameters
    finally:
        await postgres.dispose()
    async with sessions() as session:
        session.add(Suppression(email="jane.doe@private.example", reason="+1 555 0199"))
        await session.commit()
    with pytest.raises(IntegrityError) as raised:
        async with sessions() as session:
            session.add(Suppression(email="jane.doe@private.example", reason="+1 555 0199"))
            await session.commit()
    assert "jane.doe" not in str(raised.value) and "555 0199" not in str(raised.value)
    assert "hidden" in str(raised.value)


async def test_find_takes_the_address_in_a_form_post_with_csrf(site: Site) -> None:
    """Finding 4: the address never travels in a URL (access logs, history)."""
    lead = await seed_lead(site.sessions, owner="aiko", email="mia@acme.example")
    async with site.browser() as browser:
        csrf = await log_in(browser, "olga")
        ops = await browser.get("/ops")
        by_get = await browser.get("/ops/find?q=mia@acme.example")
        forged = await browser.post("/ops/find", data={"q": "mia@acme.example", "csrf": "x"})
        found = await browser.post("/ops/find", data={"q": "MIA@acme.example", "csrf": csrf})

    assert 'method="post" action="/ops/find"' in ops.text and f'value="{csrf}"' in ops.text
    assert by_get.status_code == 405
    assert forged.status_code == 403
    assert found.status_code == 303 and found.headers["location"] == f"/leads/{lead}"


# --- 5. reports are for ops --------------------------------------------------------------


async def test_reports_are_for_ops_only(site: Site) -> None:
    """Finding 5: the reports show every SDR's leads and activity."""
    async with site.browser() as browser:
        await log_in(browser, "aiko")
        inbox = await browser.get("/inbox")
        reports = await browser.get("/reports", headers={"Accept": "text/html"})
        plan = await browser.get("/reports/plan")
    async with site.browser() as browser:
        await log_in(browser, "olga")
        as_ops = await browser.get("/reports")

    assert reports.status_code == 403 and plan.status_code == 403
    assert 'href="/reports"' not in inbox.text  # no link to a page they cannot open
    assert as_ops.status_code == 200 and 'href="/reports"' in as_ops.text


# --- 6. an SDR learns nothing about colleagues' work -------------------------------------


async def test_another_sdrs_task_answers_like_a_missing_one(site: Site) -> None:
    """Finding 6: 404 for both, so a task id's existence is not revealed."""
    lead = await seed_lead(site.sessions, owner="ben")
    task = await seed_task(site.sessions, lead, "ben")
    async with site.browser() as browser:
        csrf = await log_in(browser, "aiko")
        theirs = await browser.post(
            f"/inbox/tasks/{task}", data={"outcome": "qualified", "csrf": csrf}
        )
        missing = await browser.post(
            "/inbox/tasks/T-0000000000", data={"outcome": "qualified", "csrf": csrf}
        )

    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()
    async with site.sessions() as session:
        row = await session.get(CallTask, task)
        assert row is not None and row.status == "open"


async def test_only_an_open_task_lets_an_sdr_see_a_colleagues_lead(site: Site) -> None:
    """Finding 6: a former owner with only a finished task does not see the lead."""
    lead = await seed_lead(site.sessions, owner="ben")
    await seed_task(site.sessions, lead, "aiko", status="done")
    async with site.browser() as browser:
        await log_in(browser, "aiko")
        closed_only = await browser.get(f"/leads/{lead}")
        await seed_task(site.sessions, lead, "aiko", status="open")
        with_open_task = await browser.get(f"/leads/{lead}")

    assert closed_only.status_code == 404
    assert with_open_task.status_code == 200


# --- 7. unsubscribe acts on the address the email went to --------------------------------


async def test_unsubscribe_suppresses_the_address_that_was_emailed(site: Site) -> None:
    """Finding 7: the lead's address changed since the send; the recipient's is suppressed."""
    lead = await seed_lead(site.sessions, email="mia@acme.example")
    send_key = f"{lead}|0|welcome|hello|1"
    async with site.sessions() as session:
        session.add(
            EmailSend(
                key=send_key, lead_id=lead, cycle=0, cadence="welcome", step="hello", visit=1,
                template="welcome/hello", to_address="mia@acme.example", status="sent",
            )
        )  # fmt: skip
        row = await session.get(LeadRow, lead)
        assert row is not None
        row.email = "someone.else@newco.example"
        await session.commit()
    key = await link_key(site.settings, site.sessions)
    link = unsubscribe_url("", key, lead, send_key)

    page = await site.client.get(link)
    done = await site.client.post(link)

    assert page.status_code == 200 and "m***@acme.example" in page.text
    assert done.status_code == 200 and "m***@acme.example" in done.text
    async with site.sessions() as session:
        assert await session.get(Suppression, "mia@acme.example") is not None
        assert await session.get(Suppression, "someone.else@newco.example") is None
        row = await session.get(LeadRow, lead)
        assert row is not None and not row.unsubscribed  # its new address was never mailed


async def test_unsubscribe_without_a_send_uses_the_leads_address(site: Site) -> None:
    """Finding 7: a link without a send key (call scripts) falls back to the lead's address.
    Links made before links had their own key (with the webhook secret) still unsubscribe:
    mail already delivered must keep working, and that secret can post the same opt-out."""
    lead = await seed_lead(site.sessions, email="bo@globex.example")
    legacy = make_token(site.secret, "unsubscribe", {"l": lead, "k": None})

    done = await site.client.post(f"/u/{legacy}")

    assert done.status_code == 200 and "b***@globex.example" in done.text
    async with site.sessions() as session:
        assert await session.get(Suppression, "bo@globex.example") is not None


# --- 8. security headers ------------------------------------------------------------------


async def test_pages_carry_basic_security_headers(site: Site) -> None:
    """Finding 8: no framing, no MIME sniffing, no referrer to other sites."""
    login = await site.client.get("/login")
    async with site.browser() as browser:
        await log_in(browser, "aiko")
        inbox = await browser.get("/inbox")
    health = await site.client.get("/health")

    for page in (login, inbox):
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["referrer-policy"] == "same-origin"
    assert health.headers["x-content-type-options"] == "nosniff"
    assert "x-frame-options" not in health.headers
    # Set by the login: the session cookie is unaffected by the extra headers.
    async with site.browser() as browser:
        answer = await browser.post("/login", data={"username": "aiko", "password": PASSWORD})
        assert answer.status_code == 303 and SESSION_COOKIE in answer.headers["set-cookie"]
        assert answer.headers["x-content-type-options"] == "nosniff"


# --- forms: size and origin ----------------------------------------------------------------


async def test_an_oversized_form_is_refused_before_it_is_read(site: Site) -> None:
    huge = {"username": "aiko", "password": "x" * (200 * 1024)}
    response = await site.client.post("/login", data=huge)
    assert response.status_code == 413
    # The webhooks keep their own (larger) limit: a normal signed post still works.
    body, headers = signed(
        site.secret, {"id": uid("evt"), "type": "email.opened", "lead_id": uid()}
    )
    assert (await site.send("/events", body, headers)).status_code in (200, 202)


async def test_a_login_posted_from_another_site_is_refused(site: Site) -> None:
    form = {"username": "aiko", "password": PASSWORD}
    evil = await site.client.post("/login", data=form, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403 and SESSION_COOKIE not in evil.cookies
    ours = await site.client.post("/login", data=form, headers={"Origin": "http://test"})
    assert ours.status_code == 303
