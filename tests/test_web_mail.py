"""The web app's health check and dev mail pages, through ASGI with the real lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage

import httpx
from fastapi import FastAPI

from nurture.adapters.database import ReceivedMail, User, make_engine, session_factory
from nurture.adapters.passwords import hash_password
from nurture.settings import Settings
from nurture.web import create_app

# migrated_url: a fresh, migrated database (SQLite; PostgreSQL when configured).
pytest_plugins = ["dbfixtures"]

SUBJECT = "ご案内：来週のウェビナー"
HOSTILE_HTML = '<p>Hi</p><script>alert("x")</script><a href="#" onclick="steal()">x</a>'


@asynccontextmanager
async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # ASGITransport does not run the lifespan; run it, as uvicorn would.
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client,
    ):
        yield client


async def _sign_in_as_ops(client: httpx.AsyncClient, url: str) -> None:
    # The mail pages show every lead's address: ops only, like every page behind a login.
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as session, session.begin():
            session.add(User(id="ops", role="ops", password_hash=hash_password("pw")))
    finally:
        await engine.dispose()
    response = await client.post("/login", data={"username": "ops", "password": "pw"})
    assert response.status_code == 303


async def _store_mail(url: str) -> int:
    message = EmailMessage()
    message["From"] = "hello@acme.example"
    message["To"] = "aiko@example.com"
    message["Subject"] = SUBJECT
    message.set_content("Plain <text> & more")
    message.add_alternative(HOSTILE_HTML, subtype="html")
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as session, session.begin():
            row = ReceivedMail(
                mail_from="hello@acme.example",
                rcpt_tos=["aiko@example.com"],
                subject=SUBJECT,
                raw=message.as_string(),
            )
            session.add(row)
        return row.id
    finally:
        await engine.dispose()


async def test_health_reports_the_database(migrated_url: str) -> None:
    async with client_for(create_app(Settings(database_url=migrated_url))) as client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


async def test_health_is_503_when_the_database_is_down() -> None:
    # Nothing listens on port 1: the connection is refused at once.
    settings = Settings(database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none")
    async with client_for(create_app(settings)) as client:
        response = await client.get("/health")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "unavailable"}


async def test_mail_pages_list_and_show_messages_safely(migrated_url: str) -> None:
    mail_id = await _store_mail(migrated_url)
    async with client_for(create_app(Settings(database_url=migrated_url))) as client:
        assert (await client.get("/mail")).status_code == 303  # to the login page
        await _sign_in_as_ops(client, migrated_url)
        listing = await client.get("/mail")
        detail = await client.get(f"/mail/{mail_id}")
        missing = await client.get(f"/mail/{mail_id + 1000}")

    assert listing.status_code == 200
    assert listing.headers["content-type"].startswith("text/html")
    assert SUBJECT in listing.text
    assert "aiko@example.com" in listing.text
    assert f'href="/mail/{mail_id}"' in listing.text

    assert detail.status_code == 200
    assert SUBJECT in detail.text
    assert "Plain &lt;text&gt; &amp; more" in detail.text
    # The HTML part is only inside the sandboxed frame's srcdoc, escaped: never live markup.
    assert '<iframe title="HTML part" sandbox=""' in detail.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in detail.text
    assert "<script>" not in detail.text
    assert 'onclick="steal()"' not in detail.text
    # No remote image loads (an open pixel would count an open when ops look).
    assert detail.headers["content-security-policy"] == "img-src data:"

    assert missing.status_code == 404


async def test_mail_page_without_mail_says_so(migrated_url: str) -> None:
    async with client_for(create_app(Settings(database_url=migrated_url))) as client:
        await _sign_in_as_ops(client, migrated_url)
        response = await client.get("/mail")
    assert response.status_code == 200
    assert "No mail yet" in response.text
