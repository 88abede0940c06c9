"""`worker.py` as wired: its database pool covers every activity it may run at once."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import text

from nurture.adapters.schema import migrate
from worker import build_worker


async def test_every_activity_slot_can_hold_a_connection_at_once(make_settings, time_env) -> None:  # type: ignore[no-untyped-def]
    # More slots than SQLAlchemy's default pool (5 + 10): a flood that fills every slot with
    # an activity holding its session must not wait for a connection, nor time out.
    settings = make_settings(max_concurrent_activities=24)
    await migrate(settings.database_url)
    async with build_worker(time_env.client, settings) as worker:
        config = worker.config()
        assert config["max_concurrent_activities"] == 24
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
