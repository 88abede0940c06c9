"""The fault suite: ``python -m faults [--quick] [--only NAME ...] [--seed N]``.

Each scenario starts its own real parts on 127.0.0.1 (a Temporal dev server, the scripted
SMTP sink, the worker and web app processes, SQLite or PostgreSQL), breaks one of them on
purpose, and counts what came out against exact expected numbers. Exit 0 when every check
of every scenario held, 1 otherwise. See docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from faults.scenarios import SCENARIOS, Result, Run


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores ({model}), {system}, Python {platform.python_version()}"


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def show(result: Result, load_before: str) -> None:
    verdict = "PASS" if result.passed else "FAIL"
    print(
        f"\n== {result.name}: {verdict} in {result.seconds:.0f} s (load {load_before} -> {load()})"
    )
    for key, value in result.figures.items():
        print(f"   {key}: {value}")
    for what, expected, got in result.checks:
        mark = "ok  " if expected == got else "FAIL"
        print(f"   [{mark}] {what}: expected {expected}, got {got}")
    for note in result.notes:
        print(f"   note: {note}")
    sys.stdout.flush()


async def main_async(args: argparse.Namespace) -> int:
    names = args.only or list(SCENARIOS)
    folder = Path(tempfile.mkdtemp(prefix="nurture-faults-"))
    print(
        f"fault suite ({'quick' if args.quick else 'full'}, seed {args.seed}): {', '.join(names)}"
    )
    print(f"machine: {machine()}; load {load()}; work folder {folder}", flush=True)
    results = []
    try:
        for name in names:
            run = Run(
                quick=args.quick,
                seed=args.seed,
                folder=folder,
                postgres_url=args.postgres_url,
                kill_leads=args.kill_leads,
            )
            before = load()
            started = time.monotonic()
            try:
                result = await SCENARIOS[name](run)
            except Exception as exc:  # noqa: BLE001 - a broken scenario is a failed one
                result = Result(name)
                result.check("scenario ran to the end", "yes", f"{type(exc).__name__}: {exc}")
            result.seconds = time.monotonic() - started
            show(result, before)
            results.append(result)
    finally:
        if args.keep:
            print(f"logs kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print(
        "\nsummary: "
        + ", ".join(
            f"{r.name} {'PASS' if r.passed else 'FAIL'} ({r.seconds:.0f} s)" for r in results
        )
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "passed": r.passed,
                        "seconds": round(r.seconds),
                        "figures": r.figures,
                        "checks": [[w, repr(e), repr(g)] for w, e, g in r.checks],
                    }
                    for r in results
                ],
                indent=2,
                default=str,
            )
        )
    return 0 if all(r.passed for r in results) else 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a few minutes in all")
    parser.add_argument(
        "--only", action="append", choices=list(SCENARIOS), help="run this scenario (repeatable)"
    )
    parser.add_argument("--seed", type=int, default=13, help="seeds every random choice")
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder (logs) at the end"
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--kill-leads", type=int, help="leads in the kill scenario (default 300; quick 100)"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "NURTURE_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
        ),
        help="a PostgreSQL server the database scenario may create a database on",
    )
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
