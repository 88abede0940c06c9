"""Throughput against worker processes, on this machine: the check of docs/scaling.md.

``python -m faults.scale [--leads 300] [--workers 1 2]``: per worker count, a fresh stack (an
in-memory dev server, the web app, N ``python worker.py`` processes, the sink), then
``--leads`` leads posted through ``POST /leads`` (10 at once) into a cadence of two emails
a second apart. Measured from the first post until every email is at the sink: leads per
second, and the CPU seconds per lead of the workers, the Temporal server and the web app
(from /proc). The figures feed the arithmetic of docs/scaling.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

from faults.scenarios import post_leads
from faults.stack import Stack, eventually


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one(folder: Path, leads: int, workers: int) -> dict[str, float]:
    stack = Stack(folder)
    stack.start(workers=workers, webs=1)
    try:
        await asyncio.sleep(5)  # the workers connect and poll
        procs = {
            "workers": [w.pid for w in stack.workers],
            "server": [stack.temporal.pid],
            "web": [stack.webs[0].pid],
        }
        before = {k: sum(cpu_seconds(p) for p in pids) for k, pids in procs.items()}
        started = time.monotonic()
        ids = [f"P{workers}-{n}" for n in range(leads)]
        answers = await post_leads(stack.web_ports[0], ids, "two")
        done = await eventually(lambda: len(stack.sink.accepted()) >= 2 * leads, 1800, 0.5)
        seconds = time.monotonic() - started
        after = {k: sum(cpu_seconds(p) for p in pids) for k, pids in procs.items()}
        taken = answers.statuses.get(202, 0) + answers.statuses.get(200, 0)
        assert done and taken == leads, (done, answers.statuses)
        return {
            "workers": workers,
            "leads": leads,
            "seconds": round(seconds, 1),
            "leads_per_s": round(leads / seconds, 2),
            **{f"{k}_cpu_ms_per_lead": round(1000 * (after[k] - before[k]) / leads) for k in procs},
            "load": round(os.getloadavg()[0], 1),
            "answers": dict(answers.statuses),
            "resent": dict(answers.resent),
        }
    finally:
        stack.stop()


async def main_async(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="nurture-scale-"))
    try:
        for n in args.workers:
            print(await one(folder / f"w{n}", args.leads, n), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m faults.scale", description=__doc__)
    parser.add_argument("--leads", type=int, default=300)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
