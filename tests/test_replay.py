"""Replay the recorded histories of full journeys against the current workflow code.

A workflow change that is not behind `workflow.patched` changes the commands a recorded
history expects, and fails here before it can break leads in flight. Re-record with
`NURTURE_RECORD_HISTORIES=1 pytest tests/test_journeys.py tests/test_long_life.py` only
when a change is meant to be incompatible (and then version the workflow instead).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from nurture.domain.machine import LeadMachine, Sleep
from nurture.workflows.lead import LeadWorkflow
from worker import SANDBOX, UNSANDBOXED

HISTORIES = sorted((Path(__file__).resolve().parent / "histories").glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def test_the_corpus_covers_full_journeys():
    names = {p.name.rsplit("-run", 1)[0] for p in HISTORIES}
    assert {"full-journey", "unsubscribe-then-call", "three-recycles"} <= names
    assert len(HISTORIES) >= 10


# Both runners: the worker runs unsandboxed by default and sandboxed with
# NURTURE_WORKFLOW_SANDBOX=true; the sandbox also fails a replay that reaches for what
# workflow code must not (the clock, I/O) in the driver.
@pytest.mark.parametrize("runner", ["sandbox", "unsandboxed"])
@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_recorded_history_replays(path: Path, runner: str):
    replayer = Replayer(
        workflows=[LeadWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=SANDBOX if runner == "sandbox" else UNSANDBOXED,
    )
    await replayer.replay_workflow(load(path))


async def test_a_reordered_step_fails_replay(monkeypatch):
    """The same workflow with one step moved (a pause before every email) must not replay."""
    original = LeadMachine._send_email

    def pause_then_send(self, action):  # type: ignore[no-untyped-def]
        yield Sleep(self.now + timedelta(seconds=1), "a pause before the email")
        return (yield from original(self, action))

    monkeypatch.setattr(LeadMachine, "_send_email", pause_then_send)
    # Unsandboxed, so the patched class is the one replayed (the sandbox re-imports modules).
    replayer = Replayer(
        workflows=[LeadWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    first_run = next(p for p in HISTORIES if p.name == "full-journey-run00.json")
    result = await replayer.replay_workflow(load(first_run), raise_on_replay_failure=False)
    assert result.replay_failure is not None
    assert (
        "nondetermin" in f"{type(result.replay_failure).__name__} {result.replay_failure}".lower()
    )
