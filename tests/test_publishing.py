"""The search attributes a lead's workflow publishes: set at its start, never repeated.

Intake starts a lead with the search attributes its run would publish first, and a continued
run carries the last run's; a run's first publish that would only repeat them is no upsert
(each upsert is a history event and a visibility write on the server: docs/benchmarks.md).
"""

from __future__ import annotations

from harness import record_histories, running, search_attributes
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory
from temporalio.converter import default

from nurture.domain.events import Event
from nurture.domain.names import workflow_id
from nurture.services.intake import submit_event


def _decoded(fields: dict[str, Payload]) -> dict[str, object]:
    converter = default().payload_converter
    values = {name: converter.from_payloads([p])[0] for name, p in fields.items()}
    return {name: value for name, value in values.items() if value not in (None, [])}


def _runs(histories: list[WorkflowHistory]) -> list[tuple[dict[str, object], list[dict]]]:
    """Per run: the search attributes it started with, and the fields of each upsert."""
    runs = []
    for history in histories:
        started = history.events[0].workflow_execution_started_event_attributes
        upserts = [
            _decoded(dict(e.upsert_workflow_search_attributes_event_attributes
                          .search_attributes.indexed_fields))
            for e in history.events
            if e.HasField("upsert_workflow_search_attributes_event_attributes")
        ]  # fmt: skip
        runs.append((_decoded(dict(started.search_attributes.indexed_fields)), upserts))
    return runs


async def _histories(client, lead_id: str) -> list[WorkflowHistory]:  # type: ignore[no-untyped-def]
    histories, run_id = [], None
    while True:
        history = await client.get_workflow_handle(
            workflow_id(lead_id), run_id=run_id
        ).fetch_history()
        histories.append(history)
        started = history.events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            return list(reversed(histories))
        run_id = started.continued_execution_run_id


async def test_a_lead_starts_with_its_search_attributes_and_no_run_repeats_them(
    time_env, make_settings, smtp_sink
):
    lead = "P-1"
    async with running(time_env.client, make_settings()) as stack:
        await stack.add_lead(
            id=lead, email="mia@example.com", first_name="Mia", country="US", source="webinar"
        )
        await stack.until(lead, lambda v: v.step == "pause")
        booked = Event(
            id="P-1-booked", type="meeting.booked", lead_id=lead,
            occurred_at=await time_env.get_current_time(), data={},
        )  # fmt: skip
        assert (await submit_event(stack.intake, booked)).status == "delivered"
        await stack.settle(lead, "sql")
        histories = await _histories(time_env.client, lead)
        attributes = await search_attributes(time_env.client, lead)
        await record_histories(time_env.client, lead, "start-attributes")

    runs = _runs(histories)
    assert len(runs) == 2  # nurturing, then a new run with sales
    first_started, first_upserts = runs[0]
    # What the run would have published first, there from the start (list queries find it).
    assert first_started == {
        "LeadStage": "nurturing", "LeadScore": 0, "LeadGrade": "D", "Cadence": "welcome",
        "CadenceStep": "hello", "LeadOwner": "", "LeadSource": "webinar",
    }  # fmt: skip
    # Its first upsert is the wait's (the step it started at was not published again).
    assert first_upserts[0]["CadenceStep"] == "pause"
    assert first_upserts[-1]["LeadStage"] == "sql"
    # The continued run carries the last values and upserts nothing it did not change.
    sql_started, sql_upserts = runs[1]
    assert sql_started == first_upserts[-1]
    assert sql_upserts == []
    assert attributes["LeadStage"] == "sql"
    assert attributes["LeadOwner"] == "ben"
