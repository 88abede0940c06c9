"""Operating leads in flight: the live kill switch, playbook roll-outs, reassignments."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import write_cadence_set
from harness import eventually, running
from sqlalchemy import select
from test_edges import event, journey_settings
from test_journeys import CADENCES, PLAYBOOK, TEMPLATES, open_task
from typer.testing import CliRunner

from nurture.adapters.database import CallTask, EmailSend
from nurture.adapters.loader import load_cadence_set
from nurture.adapters.schema import migrate
from nurture.cli import app
from nurture.services import reports, rollout, sending, team
from nurture.services.call_tasks import TaskError, complete_task
from nurture.services.intake import submit_event

runner = CliRunner()


async def test_the_live_kill_switch_holds_sends_and_releases_each_once(
    time_env, make_settings, smtp_sink, tmp_path
):
    settings = journey_settings(make_settings, tmp_path)
    async with running(time_env.client, settings) as stack:
        async with stack.sessions() as session:
            await sending.pause(session, by="olga", why="wrong template in welcome")
        await stack.add_lead(id="KS-1", email="kit@example.com", first_name="Kit")
        view = await stack.until(
            "KS-1", lambda v: any(h.what == "email welcome held" for h in v.history)
        )
        held = next(h for h in view.history if h.what == "email welcome held")
        assert held.why == "sending is paused by olga: wrong template in welcome"
        # Held, not lost and not spinning: an hour later it is still held, nothing went out.
        await time_env.sleep(timedelta(hours=1))
        assert smtp_sink.messages == []

        async with stack.sessions() as session:
            await sending.resume(session, by="olga")
        await time_env.sleep(timedelta(minutes=15))
        await smtp_sink.wait_for(1)
        await stack.until("KS-1", lambda v: any(h.what == "email welcome: sent" for h in v.history))
        # A day later: the held email went out exactly once.
        await time_env.sleep(timedelta(days=1))
        async with stack.sessions() as session:
            rows = (
                await session.scalars(
                    select(EmailSend).where(
                        EmailSend.lead_id == "KS-1", EmailSend.step == "welcome"
                    )
                )
            ).all()
        assert [r.status for r in rows] == ["sent"]
        assert len(smtp_sink.messages) == 1


@pytest.fixture
def cli_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}"
    monkeypatch.setenv("NURTURE_DATABASE_URL", url)
    monkeypatch.setenv("NURTURE_WEBHOOK_SECRET", "ops-test-secret")
    return url


def test_ops_sending_pause_resume_and_status_from_the_cli(cli_database: str) -> None:
    status = runner.invoke(app, ["ops", "sending", "status"])
    assert status.exit_code == 0 and status.output.strip() == "sending is on"

    no_reason = runner.invoke(app, ["ops", "sending", "pause", "--why", "   "])
    assert no_reason.exit_code == 2 and "say why" in no_reason.output

    paused = runner.invoke(
        app, ["ops", "sending", "pause", "--why", "wrong template", "--by", "ana"]
    )
    assert paused.exit_code == 0, paused.output
    assert "sending is paused since" in paused.output and "by ana: wrong template" in paused.output
    shown = json.loads(runner.invoke(app, ["ops", "sending", "status", "--json"]).output)
    assert shown["paused"] is True and shown["by"] == "ana" and shown["why"] == "wrong template"

    resumed = runner.invoke(app, ["ops", "sending", "resume", "--by", "ana"])
    assert resumed.exit_code == 0 and "sending is on since" in resumed.output
    assert (
        json.loads(runner.invoke(app, ["ops", "sending", "status", "--json"]).output)["paused"]
        is False
    )


async def test_the_switch_log_keeps_who_and_why(tmp_path: Path) -> None:
    from nurture.adapters.database import make_engine, session_factory

    url = f"sqlite+aiosqlite:///{tmp_path / 'switch.db'}"
    await migrate(url)
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as session:
            assert (await sending.current(session)).paused is False
            await sending.pause(session, by="olga", why="  bad\n link  ")
            await sending.resume(session, by="sam")
            log = await sending.history(session)
    finally:
        await engine.dispose()
    assert [(s.paused, s.by, s.why) for s in log] == [
        (False, "sam", ""),
        (True, "olga", "bad link"),
    ]


ROLLED = PLAYBOOK.replace("mql: {score: 10}", "mql: {score: 12}")


async def test_a_rollout_reaches_every_lead_in_flight_and_says_what_changed(
    time_env, make_settings, smtp_sink, tmp_path
):
    settings = journey_settings(make_settings, tmp_path)
    rolled = load_cadence_set(
        *write_cadence_set(tmp_path / "rolled", ROLLED, CADENCES, TEMPLATES)
    ).playbook
    async with running(time_env.client, settings) as stack:
        for lead_id in ("RO-1", "RO-2", "RO-3"):
            await stack.add_lead(id=lead_id, email=f"{lead_id.lower()}@example.com")
        for lead_id in ("RO-1", "RO-2", "RO-3"):
            await stack.until(lead_id, lambda v: v.step == "pause")
        await submit_event(stack.intake, event("RO-3", "lead.do_not_contact"))
        await time_env.client.get_workflow_handle("lead-RO-3").result()

        async with stack.sessions() as session:
            first = await rollout.plan(session, rolled)
        assert first.previous is None and first.leads_by_stage == {"nurturing": 2}
        done: list[int] = []
        result = await rollout.deliver(
            first, time_env.client, stack.sessions, by="olga", progress=done.append
        )
        assert (result.delivered, result.gone, result.failed) == (2, 0, [])
        assert done[-1] == 2
        for lead_id in ("RO-1", "RO-2"):
            view = await stack.until(lead_id, lambda v: v.playbook_version == rolled.version)
            applied = next(h for h in view.history if h.what.startswith("playbook "))
            assert applied.what == f"playbook {rolled.version} applied"
            assert applied.why == "thresholds.mql.score: 10 -> 12"
        assert (await stack.view("RO-3")).stage == "closed"

        # The next rollout shows what changed since this one; the same one again, nothing.
        async with stack.sessions() as session:
            again = await rollout.plan(session, rolled)
            back = await rollout.plan(session, stack_playbook(settings))
        assert again.unchanged and again.changes == []
        assert back.previous == rolled.version
        assert back.changes == ["thresholds.mql.score: 12 -> 10"]


def stack_playbook(settings):  # type: ignore[no-untyped-def]
    return load_cadence_set(settings.cadences_dir, settings.templates_dir).playbook


def test_playbook_rollout_dry_run_shows_changes_and_delivers_nothing(
    cli_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cadences_dir, templates_dir = write_cadence_set(tmp_path / "set", PLAYBOOK, CADENCES, TEMPLATES)
    monkeypatch.setenv("NURTURE_CADENCES_DIR", str(cadences_dir))
    monkeypatch.setenv("NURTURE_TEMPLATES_DIR", str(templates_dir))
    shown = runner.invoke(app, ["playbook", "rollout", "--dry-run"])
    assert shown.exit_code == 0, shown.output
    assert "no earlier rollout is recorded" in shown.output
    assert "leads in flight: 0" in shown.output and "nothing was delivered" in shown.output

    (cadences_dir / "playbook.yaml").write_text("thresholds: {mql: {score: -1}}\n")
    broken = runner.invoke(app, ["playbook", "rollout", "--yes"])
    assert broken.exit_code == 1
    assert "playbook.yaml" in broken.output and "nothing was changed" in broken.output


async def mql_with_a_task(stack, lead_id: str, country: str):  # type: ignore[no-untyped-def]
    await stack.add_lead(id=lead_id, email=f"{lead_id.lower()}@example.com", country=country)
    await stack.until(lead_id, lambda v: v.step == "pause")
    await submit_event(stack.intake, event(lead_id, "webinar.attended"))
    await stack.until(lead_id, lambda v: v.step == "first-call" and v.owner is not None)
    return await open_task(stack, lead_id)


async def test_reassign_moves_open_tasks_tells_both_and_refuses_unknown_sdrs(
    time_env, make_settings, smtp_sink, tmp_path
):
    settings = journey_settings(make_settings, tmp_path)
    playbook = stack_playbook(settings)
    async with running(time_env.client, settings) as stack:
        task = await mql_with_a_task(stack, "RA-1", "JP")
        assert task.owner == "aiko"
        await smtp_sink.wait_for(2)  # the welcome, and Aiko's new-task notice

        async with stack.sessions() as session:
            with pytest.raises(team.OwnerRefused, match="no SDR 'nobody-such'.*aiko, ben"):
                await team.reassign(session, time_env.client, playbook, "RA-1", "nobody-such")
            await team.reassign(session, time_env.client, playbook, "RA-1", "ben")
        view = await stack.until("RA-1", lambda v: v.owner == "ben")
        assert any(h.what == "owner ben" for h in view.history)

        async def moved():  # type: ignore[no-untyped-def]
            async with stack.sessions() as session:
                row = await session.get(CallTask, task.id)
                return row if row is not None and row.owner == "ben" else None

        row = await eventually(moved)
        assert row.status == "open" and "moved from aiko" in (row.notes or "")
        await smtp_sink.wait_for(4)
        told = {m["To"]: m["Subject"] for m in smtp_sink.messages[2:]}
        assert set(told) == {"aiko@example.com", "ben@example.com"}
        assert all(s.startswith("Lead reassigned to ben") for s in told.values())
        # Ben can now record the outcome of the task he was given.
        await complete_task(stack.sessions, stack.intake, task.id, "no_answer", None, by="ben")
        await stack.until("RA-1", lambda v: v.step != "first-call")


async def test_a_deactivated_sdrs_leads_and_tasks_go_to_the_team(
    time_env, make_settings, smtp_sink, tmp_path
):
    settings = journey_settings(make_settings, tmp_path)
    playbook = stack_playbook(settings)
    async with running(time_env.client, settings) as stack:
        task = await mql_with_a_task(stack, "DA-1", "JP")
        assert task.owner == "aiko"
        async with stack.sessions() as session:
            done = await team.deactivate(session, playbook, "aiko")
            # Nobody may give aiko a lead any more.
            with pytest.raises(team.OwnerRefused, match="'aiko' is deactivated"):
                await team.check_owner(session, playbook, "aiko")
        # Nobody else covers JP: the rest of the team takes it.
        assert done.reassigned == [("DA-1", "ben")]
        await time_env.client.get_workflow_handle("lead-DA-1").signal("reassign", "ben")

        async def moved():  # type: ignore[no-untyped-def]
            async with stack.sessions() as session:
                row = await session.get(CallTask, task.id)
                return row if row is not None and row.owner == "ben" else None

        assert (await eventually(moved)).status == "open"
        # A new JP lead now goes to ben too.
        later = await mql_with_a_task(stack, "DA-2", "JP")
        assert later.owner == "ben"


def test_leads_reassign_refuses_an_unknown_sdr(
    cli_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cadences_dir, templates_dir = write_cadence_set(tmp_path / "set", PLAYBOOK, CADENCES, TEMPLATES)
    monkeypatch.setenv("NURTURE_CADENCES_DIR", str(cadences_dir))
    monkeypatch.setenv("NURTURE_TEMPLATES_DIR", str(templates_dir))
    refused = runner.invoke(app, ["leads", "reassign", "L-1", "--owner", "nobody-such"])
    assert refused.exit_code == 1
    assert "no SDR 'nobody-such' in the playbook's team; active SDRs: aiko, ben" in refused.output
    unknown = runner.invoke(app, ["users", "deactivate", "nobody-such"])
    assert unknown.exit_code == 1 and "no user or SDR 'nobody-such'" in unknown.output


@pytest.mark.parametrize(
    ("outcome", "callback", "refused"),
    [
        ("no_answer", "2030-01-01T10:00", "goes with the outcome call_back_later only"),
        ("call_back_later", "next tuesday", "is not an ISO 8601 date-time"),
        ("call_back_later", "2001-01-01T10:00", "callback: in the past"),
        ("call_back_later", "2999-01-01T10:00", "more than a year ahead"),
    ],
)
async def test_a_bad_callback_is_refused_before_anything_is_recorded(
    outcome: str, callback: str, refused: str
) -> None:
    # Checked before the task is even looked up: nothing is half-applied.
    with pytest.raises(TaskError, match=refused):
        await complete_task(None, None, "T-any", outcome, None, callback=callback)  # type: ignore[arg-type]


ESCALATING = PLAYBOOK.replace(
    "      call_due: 1d\n", "      call_due: 1d\n      escalation: {after: 4h, to: next_sdr}\n"
)


async def test_an_overdue_task_goes_to_the_next_sdr_and_a_done_one_does_not(
    time_env, make_settings, smtp_sink, tmp_path
):
    assert ESCALATING != PLAYBOOK
    cadences_dir, templates_dir = write_cadence_set(
        tmp_path / "set", ESCALATING, CADENCES, TEMPLATES
    )
    settings = make_settings(cadences_dir=cadences_dir, templates_dir=templates_dir)
    async with running(time_env.client, settings) as stack:
        late = await mql_with_a_task(stack, "ES-1", "US")
        done = await mql_with_a_task(stack, "ES-2", "US")
        assert late.owner == done.owner == "ben"
        await complete_task(stack.sessions, stack.intake, done.id, "connected", None, by="ben")
        await stack.until("ES-2", lambda v: v.step != "first-call")
        await time_env.sleep(timedelta(days=1, hours=5))
        view = await stack.until("ES-1", lambda v: v.owner == "aiko")
        assert any(h.what == f"call task {late.id} escalated to aiko" for h in view.history)

        async def escalated():  # type: ignore[no-untyped-def]
            async with stack.sessions() as session:
                row = await session.get(CallTask, late.id)
                return row if row is not None and row.escalated_at is not None else None

        row = await eventually(escalated)
        assert (row.owner, row.escalated_to, row.status) == ("aiko", "aiko", "open")

        async def notice():  # type: ignore[no-untyped-def]
            return [m for m in smtp_sink.messages if "escalated" in (m["Subject"] or "")]

        [message] = await eventually(notice)
        assert set(message["To"].split(", ")) == {"ben@example.com", "aiko@example.com"}
        async with stack.sessions() as session:
            untouched = await session.get(CallTask, done.id)
        assert untouched is not None and untouched.escalated_at is None
        assert not any("escalated" in h.what for h in (await stack.view("ES-2")).history)
        async with stack.sessions() as session:
            report = await reports.sdr_activity(session)
        by_sdr = {r.owner: r for r in report.sdrs}
        assert by_sdr["ben"].escalated == 1 and by_sdr["aiko"].open == 1
