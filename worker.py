"""The Temporal worker: settings -> clients -> activities -> Worker, nothing more.

Run `python worker.py`; scale out by running more.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from nurture.activities.accounts import AccountActivities
from nurture.activities.calendar import resolve_public_holidays
from nurture.activities.crm import CrmSender
from nurture.activities.email import EmailActivities
from nurture.activities.handoff import TaskActivities
from nurture.activities.storage import StorageActivities
from nurture.adapters import metrics, tracing
from nurture.adapters.catalog import CadenceCatalog
from nurture.adapters.database import make_engine, session_factory
from nurture.adapters.schema import migrate
from nurture.adapters.smtp import SmtpSender
from nurture.adapters.temporal import connect_when_up
from nurture.settings import Settings, SettingsError, load_settings
from nurture.workflows.lead import LeadWorkflow

# The domain modules the workflow uses are pure: pass them through the sandbox instead of
# re-importing them for every workflow run.
SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "nurture.domain", "pydantic", "pydantic_core"
    )
)

# Without the sandbox, a workflow run costs what its code costs: the sandbox imports
# nurture/workflows/lead.py again for every run (each new lead, each continue-as-new, each
# replay after an eviction) and keeps a copy of the module per cached run. It guards only
# that thin driver: the lead's logic (nurture.domain) is passed through it. What guards
# determinism is the replay of recorded histories (tests/test_replay.py, under both
# runners) and the domain's purity (import-linter). NURTURE_WORKFLOW_SANDBOX=true turns it
# back on. Measured in docs/benchmarks.md ("As fast as bare Temporal").
UNSANDBOXED = UnsandboxedWorkflowRunner()


def workflow_runner(settings: Settings) -> WorkflowRunner:
    """The runner of the lead workflow: unsandboxed unless NURTURE_WORKFLOW_SANDBOX is on."""
    return SANDBOX if settings.workflow_sandbox else UNSANDBOXED


@contextlib.asynccontextmanager
async def build_worker(client: Client, settings: Settings) -> AsyncIterator[Worker]:
    """A worker with every workflow and activity, its resources closed on exit.

    With NURTURE_CRM_WEBHOOK_URL set, the CRM outbox's sender runs beside it for as long as
    the context is open: the activities only record CRM posts, the sender delivers them.
    """
    slots = settings.max_concurrent_activities
    # One connection per activity slot: a flood of activities (each may hold its session
    # through an SMTP send) then never waits for, or times out on, the pool.
    engine = make_engine(settings.database_url, pool_size=slots)
    sessions = session_factory(engine)
    smtp = SmtpSender(
        settings.smtp_host,
        settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        starttls=settings.smtp_starttls,
        connections=settings.smtp_connections,
    )
    catalog = CadenceCatalog(settings.cadences_dir, settings.templates_dir)
    email = EmailActivities(settings, sessions, smtp, catalog)
    storage = StorageActivities(sessions, catalog, settings)
    tasks = TaskActivities(settings, sessions, catalog, smtp)
    governor = AccountActivities(settings, sessions, client)
    worker = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[LeadWorkflow],
        activities=[
            email.send_email,
            email.notify,
            storage.load_cadence,
            storage.record_transition,
            storage.erase_lead,
            tasks.create_call_task,
            tasks.close_call_tasks,
            tasks.move_call_tasks,
            tasks.escalate_call_task,
            tasks.handoff,
            resolve_public_holidays,
            governor.reserve_touch,
            governor.release_account,
        ],
        workflow_runner=workflow_runner(settings),
        max_concurrent_activities=slots,
        max_cached_workflows=settings.max_cached_workflows,
    )
    sender: asyncio.Task[None] | None = None
    if settings.crm_webhook_url is not None:
        crm = CrmSender(str(settings.crm_webhook_url), settings.require_webhook_secret(), sessions)
        sender = asyncio.create_task(crm.run(), name="crm-sender")
    try:
        yield worker
    finally:
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        await smtp.close()
        await engine.dispose()


async def main() -> None:
    settings = load_settings()
    settings.require_webhook_secret()
    await migrate(settings.database_url)
    # Traces when the OTEL_* variables name an exporter; metrics when NURTURE_METRICS_PORT
    # is set: the SDK's runtime metrics and the product's on one endpoint.
    tracing.setup("nurture-worker")
    telemetry = metrics.Telemetry()
    if settings.metrics_port is not None:
        telemetry = metrics.temporal_telemetry({"process": "worker"})
        metrics.serve(settings.metrics_port)
    client = await connect_when_up(settings, runtime=telemetry.runtime)
    async with build_worker(client, settings) as worker:
        print(
            f"worker polling task queue '{settings.task_queue}' on {settings.temporal_address}",
            flush=True,
        )
        await worker.run()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass
