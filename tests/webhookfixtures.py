"""The web app in-process for the webhook tests: ``web`` (the app alone) and ``stack_web``
(the app plus a real worker on the time-skipping server), with a ``Web`` that signs posts
and reads back what the app recorded."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from harness import Stack, running
from sqlalchemy import func, select
from web_helpers import asgi_client, post_signed

from nurture.adapters.database import EmailSend, EventRow, LeadRow, make_engine, session_factory
from nurture.adapters.schema import migrate
from nurture.settings import Settings
from nurture.web import create_app


def uid(prefix: str = "L") -> str:
    # The time-skipping server is shared by the session: lead ids must not meet other tests'.
    return f"{prefix}-{secrets.token_hex(4)}"


@dataclass
class Web:
    client: httpx.AsyncClient
    settings: Settings
    secret: str

    async def post(self, path: str, payload: object) -> httpx.Response:
        return await post_signed(self.client, self.secret, path, payload)

    async def events(self) -> list[EventRow]:
        engine = make_engine(self.settings.database_url)
        try:
            async with session_factory(engine)() as session:
                return list(
                    (await session.scalars(select(EventRow).order_by(EventRow.received_at))).all()
                )
        finally:
            await engine.dispose()

    async def count(self, table: type) -> int:
        engine = make_engine(self.settings.database_url)
        try:
            async with session_factory(engine)() as session:
                return int(await session.scalar(select(func.count()).select_from(table)) or 0)
        finally:
            await engine.dispose()

    async def lead(self, lead_id: str) -> LeadRow | None:
        engine = make_engine(self.settings.database_url)
        try:
            async with session_factory(engine)() as session:
                return await session.get(LeadRow, lead_id)
        finally:
            await engine.dispose()

    async def sends(self, lead_id: str) -> list[EmailSend]:
        engine = make_engine(self.settings.database_url)
        try:
            async with session_factory(engine)() as session:
                rows = await session.scalars(select(EmailSend).where(EmailSend.lead_id == lead_id))
                return list(rows.all())
        finally:
            await engine.dispose()


@pytest.fixture
async def web(make_settings, time_env) -> AsyncIterator[Web]:  # type: ignore[no-untyped-def]
    """The app alone (no worker): enough for signatures, validation and parking."""
    settings = make_settings()
    await migrate(settings.database_url)
    async with asgi_client(create_app(settings, client=time_env.client)) as client:
        yield Web(client, settings, settings.require_webhook_secret())


@pytest.fixture
async def stack_web(make_settings, time_env) -> AsyncIterator[tuple[Web, Stack]]:  # type: ignore[no-untyped-def]
    """The app plus a real worker on the time-skipping server."""
    settings = make_settings()
    async with (
        running(time_env.client, settings) as stack,
        asgi_client(create_app(settings, client=time_env.client)) as client,
    ):
        yield Web(client, settings, settings.require_webhook_secret()), stack
