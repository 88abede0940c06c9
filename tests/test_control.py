"""Ops control of leads in flight: pause, resume, reassign, migrate to a new cadence version."""

from __future__ import annotations

import asyncio
import textwrap
from datetime import timedelta

from conftest import SKELETON_CADENCE, write_cadence_set
from harness import eventually, running

from nurture.adapters.catalog import CadenceCatalog
from nurture.domain.events import Event
from nurture.domain.names import SIGNAL_PAUSE, SIGNAL_REASSIGN, SIGNAL_RESUME
from nurture.services.cadence_migration import migrate_leads


async def test_pause_holds_touches_and_resume_releases_them(time_env, make_settings, smtp_sink):
    settings = make_settings()
    async with running(time_env.client, settings) as stack:
        handle = await stack.add_lead(id="P-1", email="pat@example.com", first_name="Pat")
        await smtp_sink.wait_for(1)
        await stack.until("P-1", lambda v: v.step == "pause")
        await handle.signal(SIGNAL_PAUSE, "customer asked for a break")
        await stack.until("P-1", lambda v: v.paused)

        # The wait ends, but the paused lead's next email waits; events still count.
        await time_env.sleep(timedelta(days=3))
        await handle.signal("event", Event(id="p-evt-1", type="email.opened", lead_id="P-1"))
        view = await stack.until("P-1", lambda v: v.score == 1)
        assert view.step == "follow-up" and len(smtp_sink.messages) == 1
        assert any(
            h.what == "paused" and h.why == "customer asked for a break" for h in view.history
        )

        await handle.signal(SIGNAL_REASSIGN, "ben")
        await handle.signal(SIGNAL_RESUME, "break over")
        await smtp_sink.wait_for(2)
        view = await stack.until("P-1", lambda v: v.step == "(done)")
        assert view.owner == "ben" and not view.paused
        assert [h.what for h in view.history if h.what in ("paused", "resumed", "owner ben")] == [
            "paused",
            "owner ben",
            "resumed",
        ]


RENAMED = """
    id: welcome
    name: Welcome series (v2)
    steps:
      - id: hello
        type: email
        template: welcome/hello
      - id: breather
        type: wait
        duration: 2d
      - id: follow-up
        type: email
        template: welcome/follow-up
"""


async def test_migrate_moves_leads_in_flight_by_step_id(
    dev_env, make_settings, smtp_sink, tmp_path
):
    cadences_dir, templates_dir = write_cadence_set(
        tmp_path / "set", cadences={"welcome": SKELETON_CADENCE}
    )
    settings = make_settings(cadences_dir=cadences_dir, templates_dir=templates_dir)
    async with running(dev_env.client, settings) as stack:
        await stack.add_lead(id="M-1", email="mo@example.com", first_name="Mo")
        view = await stack.until("M-1", lambda v: v.step == "pause")
        old_version = view.cadence_version

        # The marketer renames the wait step; leads keep their version until migrated.
        (cadences_dir / "welcome.yaml").write_text(textwrap.dedent(RENAMED).strip() + "\n")
        new = CadenceCatalog(cadences_dir, templates_dir).current().cadence("welcome")
        assert new.version != old_version
        assert (await stack.view("M-1")).cadence_version == old_version

        # The migration reads each lead's step from visibility, which is eventually
        # consistent: a lead starts with its first step there ("hello", also in the new
        # version), so wait until visibility shows the step the query showed.
        async def listed_at_pause():  # type: ignore[no-untyped-def]
            query = 'WorkflowId = "lead-M-1" AND CadenceStep = "pause"'
            return [wf async for wf in dev_env.client.list_workflows(query)]

        await eventually(listed_at_pause)
        # The migration covers every running lead of the cadence in the namespace, and the
        # dev server is shared with other tests' leads of a cadence "welcome" (leads are
        # listed from their start): only this lead's part of each report is this test's.
        refused: dict[str, str] = {}
        for _ in range(50):  # visibility is eventually consistent
            refused = dict((await migrate_leads(dev_env.client, new, {})).refused)
            if "lead-M-1" in refused:
                break
            await asyncio.sleep(0.1)
        assert "--map pause=NEW" in refused["lead-M-1"]

        report = await migrate_leads(dev_env.client, new, {"pause": "breather"})
        assert "lead-M-1" in report.signaled
        assert "lead-M-1" not in dict(report.refused)
        view = await stack.until("M-1", lambda v: v.step == "breather")
        assert view.cadence_version == new.version
        assert any(
            h.what.startswith("migrated to welcome") and "pause -> breather" in h.why
            for h in view.history
        )
        assert len(smtp_sink.messages) == 1  # the move sent nothing again
