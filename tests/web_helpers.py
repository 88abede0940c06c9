"""Helpers for the web app's tests: an in-process client, signed posts, logins, a live server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from conftest import free_port
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nurture.adapters.database import User
from nurture.adapters.passwords import hash_password
from nurture.web.security import SIGNATURE_HEADER, sign

# Debian's Chromium, driven by Playwright (never a downloaded browser); flags for a closed network.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def browser_unavailable() -> str | None:
    """Why the browser tests cannot run here, or None when they can.

    ``make test`` installs Debian's Chromium when it may (root or password-less sudo with
    apt); elsewhere the browser tests are skipped with this reason instead of failing.
    """
    if os.environ.get("NURTURE_SKIP_BROWSER") == "1":
        return "NURTURE_SKIP_BROWSER=1"
    if not CHROMIUM.exists():
        return (
            f"Debian's Chromium is not installed ({CHROMIUM}): run `make test` as root (it "
            "installs it), or `sudo apt-get install chromium fonts-liberation`"
        )
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed: `pip install -e .[test]`"
    return None


ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

PASSWORD = "correct horse"


@contextlib.asynccontextmanager
async def asgi_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app in-process, with the app's lifespan run as uvicorn would."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client,
    ):
        yield client


def signed(
    secret: str, payload: Any, *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The JSON body for ``payload`` and headers carrying its signature."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body, timestamp)}
    return body, headers


async def post_signed(
    client: httpx.AsyncClient, secret: str, path: str, payload: Any
) -> httpx.Response:
    body, headers = signed(secret, payload)
    return await client.post(path, content=body, headers=headers)


async def add_user(sessions: async_sessionmaker[AsyncSession], user_id: str, role: str) -> None:
    async with sessions() as session:
        session.add(User(id=user_id, role=role, password_hash=hash_password(PASSWORD)))
        await session.commit()


async def log_in(client: httpx.AsyncClient, user_id: str) -> str:
    """Sign ``user_id`` in on ``client`` (cookie kept); returns the session's CSRF token."""
    response = await client.post(
        "/login", data={"username": user_id, "password": PASSWORD, "next": "/inbox"}
    )
    assert response.status_code == 303, response.text
    page = await client.get("/inbox")
    marker = 'name="csrf" value="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]


class LiveServer:
    """The app served by uvicorn on a free 127.0.0.1 port, in a thread with its own event loop.

    Its own loop keeps it serving while a test's loop is busy (or blocked by a synchronous
    client such as schemathesis's); the app connects its own Temporal client there.
    """

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="live-server", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        # Generous: start-up migrates and connects to Temporal, slow on a busy machine.
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("the web app did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_exc: object) -> None:
        # Never leave the server running into the next test: it would migrate or serve
        # on a database another test owns.
        self.server.should_exit = True
        self.thread.join(timeout=120)
        if self.thread.is_alive():
            raise RuntimeError("the web app did not stop within 120 s")


@contextlib.contextmanager
def live_server(app: FastAPI) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


async def wait_until(check, timeout: float = 120.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Await ``check()`` (real time) until it returns something truthy; returns that."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"not reached in {timeout} s; last value: {value!r}")
        await asyncio.sleep(interval)
