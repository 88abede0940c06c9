"""`worker.py` as wired: its database pool covers every activity it may run at once."""

from __future__ import annotations

import asyncio
import contextlib

from conftest import free_port, temporal_on
from sqlalchemy import text

from nurture.adapters.schema import migrate
from nurture.adapters.temporal import connect_when_up
from worker import build_worker


async def test_every_activity_slot_can_hold_a_connection_at_once(make_settings, time_env) -> None:  # type: ignore[no-untyped-def]
    # More slots than SQLAlchemy's default pool (5 + 10): a flood that fills every slot with
    # an activity holding its session must not wait for a connection, nor time out.
    settings = make_settings(max_concurrent_activities=24, max_cached_workflows=50)
    await migrate(settings.database_url)
    async with build_worker(time_env.client, settings) as worker:
        config = worker.config()
        assert config["max_concurrent_activities"] == 24
        assert config["max_cached_workflows"] == 50  # NURTURE_MAX_CACHED_WORKFLOWS
        # The engine the worker's activities share (every activity object holds the same).
        storage = next(
            a.__self__ for a in config["activities"] if a.__name__ == "record_transition"
        )  # type: ignore[union-attr]
        engine = storage.sessions.kw["bind"]
        async with contextlib.AsyncExitStack() as held:
            connections = [await held.enter_async_context(engine.connect()) for _ in range(24)]
            # The bound only guards against a hang: a pool too small would wait 30 s, then fail.
            answers = await asyncio.wait_for(
                asyncio.gather(*(c.scalar(text("SELECT 1")) for c in connections)), timeout=60
            )
        assert answers == [1] * 24


async def test_the_worker_sends_the_crm_outbox_beside_its_activities(
    make_settings, time_env
) -> None:  # type: ignore[no-untyped-def]
    """With NURTURE_CRM_WEBHOOK_URL set, what an activity queued reaches the CRM while the
    worker runs: the sender is part of the worker, not a separate process to forget."""
    from datetime import UTC, datetime

    from nurture.adapters.database import LeadRow
    from nurture.domain import messages as am

    received: list[bytes] = []

    async def crm(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        received.append(await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(crm, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = make_settings(crm_webhook_url=f"http://127.0.0.1:{port}/hook")
    await migrate(settings.database_url)
    try:
        async with build_worker(time_env.client, settings) as worker:
            storage = next(
                a.__self__
                for a in worker.config()["activities"]
                if a.__name__ == "record_transition"
            )  # type: ignore[union-attr]
            async with storage.sessions() as session:
                session.add(LeadRow(id="L-crm"))
                await session.commit()
            await storage.record_transition(
                am.TransitionInput(
                    lead_id="L-crm",
                    cycle=0,
                    from_stage="nurturing",
                    to_stage="mql",
                    at=datetime.now(UTC),
                    reason="score 40",
                    score=40,
                    grade="B",
                    owner=None,
                )  # fmt: skip
            )
            for _ in range(200):
                if received:
                    break
                await asyncio.sleep(0.05)
    finally:
        server.close()
        await server.wait_closed()
    assert [b'"to_stage": "mql"' in body for body in received] == [True]


async def test_a_worker_started_before_temporal_waits_for_it(make_settings, capfd) -> None:  # type: ignore[no-untyped-def]
    # Compose (or a reboot) may start the worker before its server: it waits, saying so,
    # and connects once the server is up on that address, instead of exiting.
    port = free_port()  # nothing listens here yet
    settings = make_settings(temporal_address=f"127.0.0.1:{port}")
    connecting = asyncio.create_task(connect_when_up(settings, cap_s=0.5))
    for _ in range(600):  # bounded: the first failed attempt is reported within seconds
        if "waiting for Temporal (attempt 1" in capfd.readouterr().err:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the worker never said it was waiting")
    assert not connecting.done()
    async with temporal_on(port):
        client = await asyncio.wait_for(connecting, timeout=120)
        assert (await client.count_workflows()).count == 0
