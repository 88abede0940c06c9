"""A running product for workflow tests: migrated database, worker, intake; as `worker.py` wires it."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowHandle

from nurture.adapters.catalog import CadenceCatalog
from nurture.adapters.database import make_engine, session_factory
from nurture.adapters.schema import migrate
from nurture.domain.events import Lead
from nurture.domain.names import workflow_id
from nurture.domain.state import LeadInput, LeadState, LeadView
from nurture.services.intake import Intake
from nurture.settings import Settings
from worker import build_worker


@dataclass
class Stack:
    client: Client
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    intake: Intake
    started: set[str] = field(default_factory=set)

    async def add_lead(self, **fields: object) -> WorkflowHandle:
        await self.intake.submit(Lead.model_validate(fields))
        self.started.add(str(fields["id"]))
        return self.client.get_workflow_handle(workflow_id(str(fields["id"])))

    async def view(self, lead_id: str) -> LeadView:
        handle = self.client.get_workflow_handle(workflow_id(lead_id))
        return await handle.query("state", result_type=LeadView)

    async def until(self, lead_id: str, predicate, timeout: float = 120.0) -> LeadView:  # type: ignore[no-untyped-def]
        """Query the lead (real time) until ``predicate(view)`` holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: LeadView | None = None
        error: Exception | None = None
        while loop.time() < deadline:
            try:
                # Query only a lead at rest: on the time-skipping server a query that arrives
                # while the workflow task ending in continue-as-new runs leaves time skipping
                # locked for good (see `settle`). That task follows a workflow task or an
                # activity, so none may be in progress when the query is sent.
                if not await busy(self.client, lead_id):
                    last = await self.view(lead_id)
                    if predicate(last):
                        return last
            except Exception as exc:  # noqa: BLE001 - the workflow may not have run its first task yet
                error = exc
            await asyncio.sleep(0.1)
        pending = await pending_activities(self.client, lead_id)
        raise AssertionError(
            f"condition not reached for {lead_id}; pending activities: {pending}; "
            f"doing: {last.doing if last else '-'}; last history: {last.history[-5:] if last else '-'}; "
            f"last query error: {error!r}"
        )

    async def settle(self, lead_id: str, stage: str, timeout: float = 240.0) -> LeadView:
        """Wait until the lead's run *in* ``stage`` has started, then return its view.

        A stage change is visible to queries while its activities still run, just before
        the workflow continues as new. No query is sent until the new run has started: on
        the time-skipping test server, a query that arrives while the workflow task ending in
        continue-as-new runs is buffered with it, and completing that task then fails on the
        closed run. The closed run's last events are lost (an event signaled in that moment
        with them) and the task's time-skipping lock is never released, so every later
        ``env.sleep`` follows the wall clock (tests/test_long_life.py).
        """
        await self.until_run(lead_id, lambda s: s.stage == stage, timeout=timeout)
        return await self.until(lead_id, lambda v: v.stage == stage, timeout=timeout)

    async def run_state(self, lead_id: str) -> LeadState | None:
        """The state the lead's current run started with (None for its first run).

        Read from the first event of the run's history, so the workflow is not queried.
        """
        from temporalio.api.common.v1 import WorkflowExecution
        from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest

        raw = await self.client.workflow_service.get_workflow_execution_history(
            GetWorkflowExecutionHistoryRequest(
                namespace=self.client.namespace,
                execution=WorkflowExecution(workflow_id=workflow_id(lead_id)),
                maximum_page_size=1,
            )
        )
        started = raw.history.events[0].workflow_execution_started_event_attributes
        [value] = await self.client.data_converter.decode(started.input.payloads, [LeadInput])
        return value.state

    async def until_run(self, lead_id: str, predicate, timeout: float = 120.0) -> LeadState:  # type: ignore[no-untyped-def]
        """Wait (real time) until the lead's current run started with a state that satisfies
        ``predicate``: the continue-as-new into it is over. Sends no query (see ``settle``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: LeadState | None = None
        while loop.time() < deadline:
            last = await self.run_state(lead_id)
            if last is not None and predicate(last):
                return last
            await asyncio.sleep(0.1)
        raise AssertionError(
            f"no run of {lead_id} started as required; the current one started in "
            f"{(last.stage, last.cycle) if last else '-'}; pending activities: "
            f"{await pending_activities(self.client, lead_id)}"
        )


async def busy(client: Client, lead_id: str) -> bool:
    """Whether the lead's current run is in the middle of something: a workflow task pending,
    or an activity that is running or about to (not one waiting out a retry backoff)."""
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.enums.v1 import PendingActivityState
    from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest

    raw = await client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=workflow_id(lead_id)),
        )
    )
    if raw.HasField("pending_workflow_task"):
        return True
    return any(
        a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED or a.attempt <= 1
        for a in raw.pending_activities
    )


@contextlib.asynccontextmanager
async def running(client: Client, settings: Settings) -> AsyncIterator[Stack]:
    await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)
    catalog = CadenceCatalog(settings.cadences_dir, settings.templates_dir)
    try:
        async with build_worker(client, settings) as worker, worker:
            stack = Stack(client, settings, sessions, Intake(settings, client, sessions, catalog))
            try:
                yield stack
            finally:
                # Leads never end on their own: stop them, so the shared time-skipping
                # server has no orphaned workflows (with no worker) holding time back.
                for lead_id in stack.started:
                    with contextlib.suppress(Exception):
                        await client.get_workflow_handle(workflow_id(lead_id)).terminate(
                            "test over"
                        )
    finally:
        await engine.dispose()


async def search_attributes(client: Client, lead_id: str) -> dict[str, object]:
    """A lead's search attributes, read from the raw describe answer.

    The SDK's decoder fails on an *unset* Datetime as the time-skipping server reports it
    (a null payload); unset values are simply absent here, as on the real server.
    """
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
    from temporalio.converter import default

    raw = await client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=workflow_id(lead_id)),
        )
    )
    converter = default().payload_converter
    values: dict[str, object] = {}
    for name, payload in raw.workflow_execution_info.search_attributes.indexed_fields.items():
        value = converter.from_payloads([payload])[0]
        if value is None or value == []:
            continue
        values[name] = value
    return values


async def eventually(check, timeout: float = 120.0):  # type: ignore[no-untyped-def]
    """Await ``check()`` (real time) until it returns something truthy; returns that."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {check}")
        await asyncio.sleep(0.1)


HISTORIES = Path(__file__).resolve().parent / "histories"


async def record_histories(client: Client, lead_id: str, name: str) -> None:
    """With NURTURE_RECORD_HISTORIES=1, save every run of a lead's workflow for replay tests.

    The saved histories are the corpus `tests/test_replay.py` replays in CI: a change to the
    workflow that is not behind `workflow.patched` fails there.
    """
    if os.environ.get("NURTURE_RECORD_HISTORIES") != "1":
        return
    HISTORIES.mkdir(exist_ok=True)
    run_id: str | None = None
    runs = []
    while True:
        handle = client.get_workflow_handle(workflow_id(lead_id), run_id=run_id)
        history = await handle.fetch_history()
        runs.append(history)
        started = history.events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            break
        run_id = started.continued_execution_run_id
    for index, history in enumerate(reversed(runs)):
        (HISTORIES / f"{name}-run{index:02d}.json").write_text(history.to_json())


async def pending_activities(client: Client, lead_id: str) -> list[str]:
    """What a lead's workflow waits on, with the last failure: for test diagnostics."""
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest

    try:
        raw = await client.workflow_service.describe_workflow_execution(
            DescribeWorkflowExecutionRequest(
                namespace=client.namespace,
                execution=WorkflowExecution(workflow_id=workflow_id(lead_id)),
            )
        )
    except Exception as exc:  # noqa: BLE001 - diagnostics only
        return [f"describe failed: {exc}"]
    return [
        f"{a.activity_type.name} attempt {a.attempt}: {a.last_failure.message[:300]}"
        for a in raw.pending_activities
    ]
