"""Benchmark: the worker CPU of replaying the recorded lead histories (``tests/histories/``).

A lead whose workflow is not in the worker's cache replays its whole history on every
wake-up, so this is the workflow code's own cost, without any activity, database or
server: the real ``LeadWorkflow``, every recorded run replayed one after another, under the
worker's two runners (``worker.UNSANDBOXED``, the default, and ``worker.SANDBOX``,
``NURTURE_WORKFLOW_SANDBOX=true``), rounds alternating. The best of ``--rounds`` rounds of
each is printed (the least disturbed by other processes on a shared machine).

Run from the repository root::

    .venv/bin/python bench/replay.py --rounds 7
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

# Run as a script from anywhere: make the repository importable without installing it.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio.client import WorkflowHistory  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.worker import Replayer  # noqa: E402

from nurture.workflows.lead import LeadWorkflow  # noqa: E402
from worker import SANDBOX, UNSANDBOXED  # noqa: E402


async def measure(rounds: int) -> None:
    paths = sorted((ROOT / "tests" / "histories").glob("*.json"))
    histories = [WorkflowHistory.from_json(p.stem, p.read_text()) for p in paths]
    replayers = {
        name: Replayer(
            workflows=[LeadWorkflow], data_converter=pydantic_data_converter, workflow_runner=runner
        )
        for name, runner in (("unsandboxed", UNSANDBOXED), ("sandbox", SANDBOX))
    }
    for replayer in replayers.values():
        for history in histories[:2]:  # warm up: imports, the sandbox's first module copies
            await replayer.replay_workflow(history)
    best: dict[str, float] = {}
    for n in range(rounds):
        for name, replayer in list(replayers.items())[:: 1 if n % 2 == 0 else -1]:
            started = time.process_time()
            for history in histories:
                await replayer.replay_workflow(history)
            used = time.process_time() - started
            best[name] = min(best.get(name, used), used)
    events = sum(len(h.events) for h in histories)
    print(f"{len(histories)} recorded runs, {events} events: best of {rounds} rounds")
    for name, used in best.items():
        print(
            f"  {name:<12} {used * 1000:6.0f} ms of CPU, {used * 1000 / len(histories):5.1f} ms "
            f"per run ({used / best['sandbox']:.2f}x the sandbox)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds; the best is printed")
    args = parser.parse_args()
    asyncio.run(measure(max(1, args.rounds)))


if __name__ == "__main__":
    main()
