"""Edge cases where a lead could be harmed or lost: opt-outs racing other work, erase in any
stage, a broken cadence file mid-flight, ops controls meeting each other, repeated toss-ups."""

from __future__ import annotations

import itertools
import textwrap
from datetime import timedelta

from conftest import SKELETON_CADENCE, write_cadence_set
from harness import eventually, running
from sqlalchemy import select
from test_journeys import CADENCES, PLAYBOOK, TEMPLATES

from nurture.adapters.catalog import CadenceCatalog
from nurture.adapters.database import EmailSend, LeadRow, Opportunity
from nurture.domain.events import Event, Lead
from nurture.domain.names import SIGNAL_MIGRATE, SIGNAL_PAUSE, SIGNAL_RESUME
from nurture.services.intake import submit_event

_ids = itertools.count(1)


def event(lead_id: str, kind: str, **data: object) -> Event:
    return Event(id=f"edge-{next(_ids)}", type=kind, lead_id=lead_id, data=data)  # type: ignore[arg-type]


def journey_settings(make_settings, tmp_path, **overrides):  # type: ignore[no-untyped-def]
    cadences_dir, templates_dir = write_cadence_set(tmp_path / "set", PLAYBOOK, CADENCES, TEMPLATES)
    return make_settings(cadences_dir=cadences_dir, templates_dir=templates_dir, **overrides)


async def lead_row(stack, lead_id: str) -> LeadRow:  # type: ignore[no-untyped-def]
    async with stack.sessions() as session:
        row = await session.get(LeadRow, lead_id)
        assert row is not None
        return row


async def test_erase_after_do_not_contact_still_erases(
    time_env, make_settings, smtp_sink, tmp_path
):
    settings = journey_settings(make_settings, tmp_path)
    async with running(time_env.client, settings) as stack:
        handle = await stack.add_lead(id="E-1", email="erase.me@example.com", first_name="Eve")
        await stack.until("E-1", lambda v: v.step == "pause")
        # Both close the lead; arriving together, the erase must not be dropped.
        for item in (event("E-1", "lead.do_not_contact"), event("E-1", "lead.erased")):
            await handle.signal("event", item)
        assert await handle.result() == "closed"

        async def erased():  # type: ignore[no-untyped-def]
            row = await lead_row(stack, "E-1")
            return row.erased_at is not None and row.email is None and row.first_name is None

        await eventually(erased)


async def test_erase_of_a_won_lead_erases_without_its_workflow(
    time_env, make_settings, smtp_sink, tmp_path
):
    settings = journey_settings(make_settings, tmp_path)
    async with running(time_env.client, settings) as stack:
        handle = await stack.add_lead(id="E-2", email="won@example.com", first_name="Wyn")
        await stack.until("E-2", lambda v: v.step == "pause")
        await submit_event(stack.intake, event("E-2", "opportunity.won"))
        assert await handle.result() == "won"
        await eventually(lambda: _stage(stack, "E-2", "won"))

        result = await submit_event(stack.intake, event("E-2", "lead.erased"))
        assert result.status == "recorded"
        row = await lead_row(stack, "E-2")
        assert row.erased_at is not None and row.email is None and row.first_name is None

        # Posting the erased lead again brings nothing back.
        await stack.intake.submit(Lead(id="E-2", email="won@example.com", first_name="Wyn"))
        row = await lead_row(stack, "E-2")
        assert row.email is None and row.first_name is None


async def _stage(stack, lead_id: str, stage: str) -> bool:  # type: ignore[no-untyped-def]
    return (await lead_row(stack, lead_id)).stage == stage


async def test_a_broken_cadence_file_mid_flight_keeps_leads_going(
    time_env, make_settings, smtp_sink, tmp_path
):
    settings = journey_settings(make_settings, tmp_path)
    async with running(time_env.client, settings) as stack:
        await stack.add_lead(id="B-1", email="bo@example.com", first_name="Bo")
        await smtp_sink.wait_for(1)
        await stack.until("B-1", lambda v: v.step == "pause")
        # A marketer saves the playbook with a typo while the lead waits.
        playbook = settings.cadences_dir / "playbook.yaml"
        playbook.write_text(playbook.read_text().replace("thresholds:", "thresholdz:"))
        await time_env.sleep(timedelta(days=2, minutes=5))
        await smtp_sink.wait_for(2)
        view = await stack.until("B-1", lambda v: v.step == "rest")
        assert view.stage == "nurturing"
        catalog = CadenceCatalog(settings.cadences_dir, settings.templates_dir)
        assert catalog.problems == []  # a fresh catalog has no good set to fall back on...
        try:
            catalog.current()
            raise AssertionError("a broken set must not load")
        except Exception as exc:  # noqa: BLE001 - ...so it refuses, naming the problem
            assert "thresholdz" in str(exc)


async def test_a_migration_reaching_a_paused_lead_waits_quietly(
    time_env, make_settings, smtp_sink, tmp_path
):
    cadences_dir, templates_dir = write_cadence_set(
        tmp_path / "set", cadences={"welcome": SKELETON_CADENCE}
    )
    settings = make_settings(cadences_dir=cadences_dir, templates_dir=templates_dir)
    async with running(time_env.client, settings) as stack:
        handle = await stack.add_lead(id="PM-1", email="pm@example.com", first_name="Pim")
        await smtp_sink.wait_for(1)
        await stack.until("PM-1", lambda v: v.step == "pause")
        await handle.signal(SIGNAL_PAUSE, "holiday")
        await time_env.sleep(timedelta(days=2, minutes=5))
        await stack.until("PM-1", lambda v: v.paused and v.step == "follow-up")

        # A new version arrives while the lead is held before its email.
        (cadences_dir / "welcome.yaml").write_text(
            textwrap.dedent(SKELETON_CADENCE).replace("Welcome series", "Welcome series v2").strip()
            + "\n"
        )
        new = CadenceCatalog(cadences_dir, templates_dir).current().cadence("welcome")
        await handle.signal(SIGNAL_MIGRATE, args=[new, {}])
        view = await stack.until("PM-1", lambda v: v.cadence_version == new.version)
        assert view.paused and view.step == "follow-up" and len(smtp_sink.messages) == 1
        history = (await handle.fetch_history()).events
        assert len(history) < 200  # waiting quietly: no loop of workflow tasks

        await handle.signal(SIGNAL_RESUME, "back")
        await smtp_sink.wait_for(2)


async def test_opt_outs_win_while_the_kill_switch_holds_a_send(
    time_env, make_settings, smtp_sink, tmp_path
):
    settings = journey_settings(make_settings, tmp_path, sending_paused=True)
    async with running(time_env.client, settings) as stack:
        await stack.add_lead(id="K-1", email="kim@example.com", first_name="Kim")
        await stack.add_lead(id="K-2", email="kim@example.com", first_name="Kim")
        await stack.add_lead(id="K-3", email="kai@example.com", first_name="Kai")
        for lead_id in ("K-1", "K-2", "K-3"):
            view = await stack.until(
                lead_id, lambda v: any(h.what == "email welcome held" for h in v.history)
            )
        assert "NURTURE_SENDING_PAUSED" in view.history[-1].why

        # The CRM unsubscribes K-1 (and so its address: K-2 too) and marks K-3 do-not-contact.
        await submit_event(stack.intake, event("K-1", "lead.unsubscribed"))
        await submit_event(stack.intake, event("K-3", "lead.do_not_contact"))
        assert (await lead_row(stack, "K-2")).unsubscribed
        assert (await lead_row(stack, "K-3")).do_not_contact
        await stack.until("K-2", lambda v: v.unsubscribed)
        await stack.until("K-1", lambda v: v.unsubscribed)

        # The switch is lifted (read at each send): nothing goes to any of them.
        settings.sending_paused = False
        await time_env.sleep(timedelta(minutes=15))
        await stack.until("K-1", lambda v: any("skipped" in h.what for h in v.history))
        await stack.until("K-2", lambda v: any("skipped" in h.what for h in v.history))
        assert await time_env.client.get_workflow_handle("lead-K-3").result() == "closed"
        assert smtp_sink.messages == []
        async with stack.sessions() as session:
            sent = (
                await session.scalars(select(EmailSend).where(EmailSend.status == "sent"))
            ).all()
        assert sent == []


async def test_a_second_toss_up_while_lost_is_its_own_pass(
    time_env, make_settings, smtp_sink, tmp_path
):
    settings = journey_settings(make_settings, tmp_path)
    async with running(time_env.client, settings) as stack:
        await stack.add_lead(
            id="T-1", email="tia@example.com", first_name="Tia", employees=5000, industry="finance"
        )
        await stack.until("T-1", lambda v: v.step == "pause")
        await submit_event(stack.intake, event("T-1", "meeting.booked"))
        await stack.settle("T-1", "sql")
        await submit_event(stack.intake, event("T-1", "opportunity.lost", reason="timing"))
        await stack.settle("T-1", "lost")
        await submit_event(stack.intake, event("T-1", "form.submitted", form="demo"))
        view = await stack.until("T-1", lambda v: v.stage == "sql" and v.cycle == 1)

        async def two_opportunities():  # type: ignore[no-untyped-def]
            async with stack.sessions() as session:
                rows = (
                    await session.scalars(select(Opportunity).order_by(Opportunity.cycle))
                ).all()
            return rows if len(rows) == 2 else None

        first, second = await eventually(two_opportunities)
        assert (first.cycle, first.outcome, first.outcome_reason) == (0, "lost", "timing")
        assert (second.cycle, second.trigger, second.outcome) == (1, "form.submitted", None)
        assert view.score > 0  # a hand-raise from lost is not a recycle: the score stays


async def test_scanner_clicks_neither_wake_nor_count(time_env, make_settings, smtp_sink, tmp_path):
    settings = journey_settings(make_settings, tmp_path)
    async with running(time_env.client, settings) as stack:
        handle = await stack.add_lead(id="S-1", email="sam@example.com")
        await stack.until("S-1", lambda v: v.step == "pause")
        await handle.signal("event", event("S-1", "email.clicked", step="welcome", scanner=True))
        view = await stack.until("S-1", lambda v: any("link scanner" in h.why for h in v.history))
        assert view.step == "pause" and view.score == 0  # still waiting, nothing scored
        assert not any("ended early" in h.what for h in view.history)


async def test_an_update_back_to_an_earlier_value_applies(
    time_env, make_settings, smtp_sink, tmp_path
):
    settings = journey_settings(make_settings, tmp_path)
    async with running(time_env.client, settings) as stack:
        await stack.add_lead(id="U-1", email="uma@example.com", employees=500)
        await stack.until("U-1", lambda v: v.grade == "D")
        for employees, grade in ((2000, "C"), (500, "D"), (2000, "C")):
            await stack.intake.submit(Lead(id="U-1", employees=employees))
            await stack.until("U-1", lambda v, g=grade: v.grade == g)
