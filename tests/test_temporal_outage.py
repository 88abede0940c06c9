"""Temporal down: webhooks still answer, what they took in is recorded, and nothing is lost.

The web app runs in-process on a migrated SQLite file with no client injected (it connects as
in production); "down" is a port where nothing listens, or one that accepts connections and
never answers. "Back" is a real dev server started on that same port, with the real worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from conftest import ROOT, free_port, temporal_on
from harness import running
from sqlalchemy import select
from web_helpers import add_user, asgi_client, log_in, post_signed, wait_until

from nurture.adapters.database import EventRow, LeadRow, make_engine, session_factory
from nurture.adapters.schema import migrate
from nurture.settings import Settings
from nurture.web import create_app

# The sweep runs this often here (30 s in production), so "later" comes soon in a test.
SWEEP_S = 0.2


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a hung server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


async def _rows(settings: Settings) -> tuple[dict[str, LeadRow], dict[str, EventRow]]:
    engine = make_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            leads = {r.id: r for r in (await session.scalars(select(LeadRow))).all()}
            events = {r.id: r for r in (await session.scalars(select(EventRow))).all()}
            return leads, events
    finally:
        await engine.dispose()


async def _leads_show(settings: Settings, lead_id: str) -> str:
    env = {
        **os.environ,
        "NURTURE_DATABASE_URL": settings.database_url,
        "NURTURE_TEMPORAL_ADDRESS": settings.temporal_address,
        "NURTURE_CADENCES_DIR": str(settings.cadences_dir),
        "NURTURE_TEMPLATES_DIR": str(settings.templates_dir),
        "NURTURE_WEBHOOK_SECRET": settings.require_webhook_secret(),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "starter.py"), "leads", "show", lead_id,
        env=env, cwd=str(ROOT), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def _closed(port: int) -> bool:
    """True once nothing accepts connections on ``port`` (a stopped server's port)."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


def _event(event_id: str, lead_id: str, kind: str = "page.visited") -> dict[str, object]:
    return {"id": event_id, "type": kind, "lead_id": lead_id, "data": {"url": "/blog"}}


async def test_a_lead_posted_while_temporal_is_down_starts_when_it_is_back(
    make_settings,  # type: ignore[no-untyped-def]
) -> None:
    port = free_port()  # nothing listens here yet
    settings = make_settings(temporal_address=f"127.0.0.1:{port}")
    secret = settings.require_webhook_secret()
    await migrate(settings.database_url)
    app = create_app(settings, redeliver_every_s=SWEEP_S)
    async with asgi_client(app) as client:
        lead = {"id": "W-1", "email": "wen@example.com", "country": "US"}
        created = await post_signed(client, secret, "/leads", lead)
        assert created.status_code == 202, created.text
        assert created.json()["status"] == "pending_start"
        assert "starts" in created.json()["detail"]
        clicked = await post_signed(client, secret, "/events", _event("evt-w1", "W-1"))
        assert clicked.status_code == 202
        assert clicked.json()["results"][0]["status"] == "parked"
        # Sent again before it ever ran: still waiting, not "updated" as if it were running.
        again = await post_signed(client, secret, "/leads", {**lead, "first_name": "Wen"})
        assert again.status_code == 202, again.text
        assert again.json()["status"] == "pending_start"

        leads, events = await _rows(settings)
        assert leads["W-1"].first_name == "Wen" and leads["W-1"].started_at is None
        assert events["evt-w1"].status == "parked"
        await add_user(app.state.sessions, "ops-1", "ops")
        await log_in(client, "ops-1")
        page = await client.get("/leads/W-1")
        assert page.status_code == 200
        assert "waiting to start" in page.text
        assert '"doing": "waiting to start' in await _leads_show(settings, "W-1")

        async with temporal_on(port) as env, running(env.client, settings) as stack:
            stack.started.add("W-1")
            # The sweep starts it and delivers the event that waited: page.visited is +2.
            view = await stack.until("W-1", lambda v: v.score == 2, timeout=60)
            assert view.stage == "nurturing"
            leads, events = await _rows(settings)
            assert leads["W-1"].started_at is not None
            assert events["evt-w1"].status == "delivered"

            resent = await post_signed(client, secret, "/leads", {**lead, "first_name": "Wen"})
            assert resent.status_code == 200, resent.text
            assert resent.json()["status"] == "updated"


async def test_events_are_answered_while_temporal_does_not_answer(
    make_settings,  # type: ignore[no-untyped-def]
) -> None:
    with silent_server() as port:
        settings = make_settings(temporal_address=f"127.0.0.1:{port}")
        secret = settings.require_webhook_secret()
        await migrate(settings.database_url)
        engine = make_engine(settings.database_url)
        try:
            async with session_factory(engine)() as session:
                # A lead whose workflow runs (as far as the app knows).
                session.add(LeadRow(id="S-1", fields={}, started_at=datetime.now(UTC)))
                await session.commit()
        finally:
            await engine.dispose()
        async with asgi_client(create_app(settings)) as client:
            # The bound is a hang guard only: the answer must come, whatever Temporal does.
            answers = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        post_signed(client, secret, "/events", _event(f"evt-s{n}", "S-1"))
                        for n in range(5)
                    )
                ),
                timeout=120,
            )
    assert [a.status_code for a in answers] == [202] * 5
    assert {a.json()["results"][0]["status"] for a in answers} == {"parked"}
    _, events = await _rows(settings)
    assert sorted(events) == [f"evt-s{n}" for n in range(5)]
    assert {e.status for e in events.values()} == {"parked"}


async def test_events_taken_while_temporal_was_away_reach_the_lead_when_it_is_back(
    make_settings,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    port = free_port()
    temporal_db = tmp_path / "temporal.db"  # kept, so the lead's workflow outlives the outage
    settings = make_settings(temporal_address=f"127.0.0.1:{port}")
    secret = settings.require_webhook_secret()
    await migrate(settings.database_url)
    async with asgi_client(create_app(settings, redeliver_every_s=SWEEP_S)) as client:
        async with temporal_on(port, temporal_db) as env, running(env.client, settings) as stack:
            lead = {"id": "A-1", "email": "ari@example.com", "country": "US"}
            created = await post_signed(client, secret, "/leads", lead)
            # `pending_start` too, when the fresh server takes over a second to answer first.
            assert created.json()["status"] in ("created", "pending_start")
            await stack.until("A-1", lambda v: v.step == "pause", timeout=60)

        # Temporal (and the worker) went away; the web app, connected before, stays up.
        await wait_until(lambda: _closed(port))
        answer = await asyncio.wait_for(
            post_signed(client, secret, "/events", _event("evt-a1", "A-1")), timeout=120
        )
        assert answer.status_code == 202
        assert answer.json()["results"][0]["status"] == "parked"

        async with temporal_on(port, temporal_db) as env, running(env.client, settings) as stack:
            stack.started.add("A-1")
            await stack.until("A-1", lambda v: v.score == 2, timeout=60)

            async def delivered() -> bool:
                _, events = await _rows(settings)
                return events["evt-a1"].status == "delivered"

            await wait_until(delivered)


async def test_a_slow_call_beside_answered_ones_does_not_shut_the_gate() -> None:
    """A call that outlives its bound while other calls get answers (a busy server) gives up
    alone; the same timeout with no answer around it (an outage) shuts the gate."""
    from nurture.adapters.temporal import TemporalGate, TemporalUnavailable

    never = asyncio.Event()

    async def hangs() -> None:
        await never.wait()

    async def answers() -> str:
        return "ok"

    busy = TemporalGate(timeout_s=1.0, cooldown_s=60.0)
    slow = asyncio.create_task(busy.call(hangs))
    await asyncio.sleep(0)  # the slow call is under way
    assert await busy.call(answers) == "ok"
    with contextlib.suppress(TemporalUnavailable):
        await slow
    assert slow.done() and isinstance(slow.exception(), TemporalUnavailable)
    assert not busy.shut and busy.tripped.is_set()
    assert await busy.call(answers) == "ok"

    down = TemporalGate(timeout_s=1.0, cooldown_s=60.0)
    with contextlib.suppress(TemporalUnavailable):
        await down.call(hangs)
    assert down.shut
