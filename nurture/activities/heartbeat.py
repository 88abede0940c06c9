"""Heartbeats for activities that can take a while (waiting for an SMTP connection, then the
SMTP transaction): Temporal learns that their worker died from a missed heartbeat, after the
heartbeat timeout the workflow driver sets (``nurture.workflows.lead``), instead of after the
whole start-to-close timeout. The activity's retry then runs in seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from temporalio import activity

# Well inside the driver's heartbeat timeout. The SDK sends at most one heartbeat per 80% of
# that timeout to the server, so beating more often costs nothing but a local call; it only
# has to keep beating while the event loop runs.
HEARTBEAT_EVERY = 5.0


@contextlib.asynccontextmanager
async def heartbeating(every: float = HEARTBEAT_EVERY) -> AsyncIterator[None]:
    """Heartbeat every ``every`` seconds while the block runs (in an activity only)."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
