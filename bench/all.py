"""Every speed benchmark of `docs/benchmarks.md`, one after another, with one command.

Each benchmark runs as its own process (so none inherits another's threads, servers or
memory), its output is shown as it comes and kept in ``bench-results/<UTC time>/<name>.txt``
(ignored by git), and a summary at the end lists every run with its exit code, its wall
time and the machine's 1-minute load average before and after it: the figures are only as
good as the machine was quiet, and every script quotes its own ratios against a baseline
measured in the same run.

Run from the repository root, after ``make venv``::

    .venv/bin/python bench/all.py                  # the sizes the docs quote (many hours: parked)
    .venv/bin/python bench/all.py --quick          # small sizes: every script runs, in minutes
    .venv/bin/python bench/all.py --only leads,intake
    .venv/bin/python bench/all.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

``--database-url`` is passed to the benchmarks whose app database can be PostgreSQL (each
makes a database of its own there). Benchmarks of other questions (the leads list, a
rollout, the webhooks while Temporal is down, the mailbox reader) are listed too, and run
with ``--only`` or ``--with-others``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Benchmark:
    name: str
    question: str
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    takes_database_url: bool = False
    core: bool = True  # one of the seven measures (or the profile behind them)


BENCHMARKS = (
    Benchmark(
        "intake",
        "1. POST /leads through the web app vs bare starts, worker idle and busy",
        "intake.py",
        ("--leads", "300", "--rounds", "2"),
        ("--leads", "40", "--rounds", "1"),
        takes_database_url=True,
    ),
    Benchmark(
        "leads",
        "2, 3. a full cadence per lead, worker/server CPU, memory, signal reaction vs bare",
        "leads.py",
        ("--leads", "300", "--signals", "50"),
        ("--leads", "40", "--signals", "10"),
        takes_database_url=True,
    ),
    Benchmark(
        "webhooks",
        "4. signed events/s through the web app, 50 senders",
        "webhooks.py",
        ("--events", "3000", "--senders", "50"),
        ("--events", "300", "--senders", "10", "--seconds", "30"),
        takes_database_url=True,
    ),
    Benchmark(
        "server-cost",
        "2. where the server's extra CPU per lead goes: a bare workflow given what a lead adds",
        "server_cost.py",
        ("--workflows", "100", "--rounds", "2"),
        ("--workflows", "20", "--rounds", "1", "--variants", "bare,upserts,email,lead"),
        takes_database_url=True,
    ),
    Benchmark(
        "parked",
        "5. parked leads on one SQLite dev server: start rate, memory per cached lead, wakes",
        "parked.py",
        ("--counts", "10000,50000,100000"),
        ("--counts", "2000", "--slice", "1000", "--cache", "500", "--sample", "50"),
    ),
    Benchmark(
        "history",
        "6. events and bytes per run over a long life",
        "history.py",
        (),
        ("--signals", "20", "--days", "60"),
    ),
    Benchmark(
        "smtp",
        "7. SMTP sends/s: a pool of reused connections vs one connection per message",
        "smtp_pool.py",
        ("--rounds", "3", "-n", "400"),
        ("--rounds", "1", "-n", "50"),
    ),
    Benchmark(
        "replay",
        "the workflow's own CPU: every recorded history replayed, both runners",
        "replay.py",
        ("--rounds", "5"),
        ("--rounds", "1"),
    ),
    Benchmark(
        "leads-list",
        "the leads list over 100,000 leads",
        "leads_list.py",
        (),
        ("--leads", "5000", "--repeat", "3"),
        takes_database_url=True,
        core=False,
    ),
    Benchmark(
        "rollout",
        "a playbook rolled out to parked leads",
        "rollout.py",
        (),
        ("--leads", "300"),
        takes_database_url=True,
        core=False,
    ),
    Benchmark(
        "outage",
        "webhooks while Temporal is down",
        "outage.py",
        (),
        ("--events", "5", "--senders", "5"),
        core=False,
    ),
    Benchmark(
        "mailbox",
        "the mailbox reader: APPEND to event recorded",
        "mailbox.py",
        (),
        ("--messages", "5"),
        core=False,
    ),
)


@dataclass
class Run:
    benchmark: Benchmark
    argv: list[str]
    status: int
    seconds: float
    load_before: float
    load_after: float


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu or platform.machine()}), {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def run_one(bench: Benchmark, argv: list[str], log: Path) -> Run:
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    print(f"\n==== {bench.name}: {bench.question}\n$ {shlex.join(argv)}", flush=True)
    with log.open("w") as out:
        out.write(f"$ {shlex.join(argv)}\n# load average before: {load_before:.2f}\n")
        out.flush()
        process = subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            out.write(line)
        status = process.wait()
        seconds = time.monotonic() - started
        load_after = os.getloadavg()[0]
        out.write(f"# exit {status} after {seconds:.0f} s; load average after: {load_after:.2f}\n")
    return Run(bench, argv, status, seconds, load_before, load_after)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: check every script")
    parser.add_argument(
        "--only", help="comma-separated names: " + ", ".join(b.name for b in BENCHMARKS)
    )
    parser.add_argument("--with-others", action="store_true", help="also the non-core ones")
    parser.add_argument("--database-url", help="PostgreSQL for those that take one")
    parser.add_argument("--out", type=Path, help="where to keep the outputs")
    args = parser.parse_args()

    names = {b.name for b in BENCHMARKS}
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - names)
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
        chosen = [b for b in BENCHMARKS if b.name in wanted]
    else:
        chosen = [b for b in BENCHMARKS if b.core or args.with_others]

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = args.out or ROOT / "bench-results" / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"{machine()}; outputs in {out_dir}", flush=True)

    runs: list[Run] = []
    for bench in chosen:
        argv = [sys.executable, str(Path("bench") / bench.script)]
        argv += bench.quick if args.quick else bench.full
        if args.database_url and bench.takes_database_url:
            argv += ["--database-url", args.database_url]
        runs.append(run_one(bench, argv, out_dir / f"{bench.name}.txt"))

    lines = [
        f"# {'quick' if args.quick else 'full'} run, {stamp}; {machine()}",
        "",
        "| benchmark | exit | wall (s) | load before → after |",
        "| --- | ---: | ---: | --- |",
    ]
    lines += [
        f"| {r.benchmark.name} | {r.status} | {r.seconds:.0f} | "
        f"{r.load_before:.1f} → {r.load_after:.1f} |"
        for r in runs
    ]
    summary = "\n".join(lines)
    (out_dir / "summary.md").write_text(summary + "\n")
    print("\n" + summary)
    return 0 if all(r.status == 0 for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
