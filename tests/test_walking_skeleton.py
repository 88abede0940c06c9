"""One lead, one real cadence: emails through a real SMTP sink on the time-skipping server,
and idempotent intake with visible search attributes on the real dev server."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from harness import running, search_attributes

from nurture.domain.state import LeadView


async def test_two_emails_around_a_two_day_wait(time_env, make_settings, smtp_sink):
    settings = make_settings()
    started = time.monotonic()
    async with running(time_env.client, settings) as stack:
        handle = await stack.add_lead(
            id="L-1001", email="mia@example.com", first_name="Mia", country="US"
        )
        await smtp_sink.wait_for(1)
        assert smtp_sink.subjects() == ["Welcome, Mia"]

        view = await stack.until("L-1001", lambda v: v.step == "pause")
        assert view.stage == "nurturing"
        assert view.cadence == "welcome"
        assert view.next_touch_at is not None

        await time_env.sleep(timedelta(days=2, minutes=5))
        await smtp_sink.wait_for(2)
        assert smtp_sink.subjects() == ["Welcome, Mia", "Two days later"]
        assert [rcpts for _, rcpts in smtp_sink.envelopes] == [
            ["mia@example.com"],
            ["mia@example.com"],
        ]

        view = await stack.until("L-1001", lambda v: v.step == "(done)")
        assert view.next_touch_at is None
        whats = [entry.what for entry in view.history]
        assert "email hello: sent" in whats and "email follow-up: sent" in whats
        attributes = await search_attributes(time_env.client, "L-1001")
        assert attributes["LeadStage"] == "nurturing"
        assert attributes["Cadence"] == "welcome"
        assert attributes["CadenceStep"] == "(done)"
        assert "NextTouchAt" not in attributes
        # A rest is not an end: the workflow keeps listening.
        history = await handle.fetch_history()
        assert not history.events[-1].HasField("workflow_execution_completed_event_attributes")
        # Each send heartbeats: a dead worker's send is retried once a heartbeat is 30 s
        # late, not after the 2-minute start-to-close timeout.
        scheduled = [
            event.activity_task_scheduled_event_attributes
            for event in history.events
            if event.HasField("activity_task_scheduled_event_attributes")
        ]
        sends = [s for s in scheduled if s.activity_type.name == "send_email"]
        assert [s.heartbeat_timeout.ToTimedelta() for s in sends] == [timedelta(seconds=30)] * 2
        assert {s.start_to_close_timeout.ToTimedelta() for s in sends} == {timedelta(minutes=2)}
        others = [s for s in scheduled if s.activity_type.name != "send_email"]
        assert others and all(s.heartbeat_timeout.ToTimedelta() == timedelta(0) for s in others)
    # Two simulated days passed in far less real time.
    assert time.monotonic() - started < 120


async def test_same_lead_twice_gives_one_workflow(dev_env, make_settings, smtp_sink):
    settings = make_settings()
    async with running(dev_env.client, settings) as stack:
        for _ in range(2):
            await stack.add_lead(
                id="L-2002", email="kai@example.com", first_name="Kai", source="webinar"
            )
        await stack.until("L-2002", lambda v: v.step == "pause")
        await smtp_sink.wait_for(1)

        query = 'WorkflowId = "lead-L-2002" AND LeadStage = "nurturing"'
        found = []
        for _ in range(100):  # visibility is eventually consistent
            found = [wf async for wf in dev_env.client.list_workflows(query)]
            if found:
                break
            await asyncio.sleep(0.1)
        assert len(found) == 1
        await asyncio.sleep(0.5)
        assert len(smtp_sink.messages) == 1
        sa = {p.key.name: p.value for p in found[0].typed_search_attributes}
        assert sa["LeadSource"] == "webinar"
        view: LeadView = await stack.view("L-2002")
        assert view.lead_id == "L-2002"


async def test_the_temporal_ui_summary_names_the_lead_without_personal_data(
    dev_env, make_settings, smtp_sink
):
    settings = make_settings()
    async with running(dev_env.client, settings) as stack:
        handle = await stack.add_lead(
            id="L-2003",
            email="noa@example.com",
            first_name="Noa",
            last_name="Levi",
            phone="+1 555 0199",
            company="Initech",
            source="webinar",
        )
        await stack.until("L-2003", lambda v: v.step == "pause")
        described = await handle.describe()
        summary = await described.static_summary()
        details = await described.static_details()
        assert summary == "lead L-2003 · source webinar · entered welcome"
        assert details is not None and "**Entry cadence** welcome (version " in details
        for personal in ("noa", "Noa", "Levi", "555", "Initech"):
            assert personal not in summary + details
