"""Operating leads in flight: the live kill switch, playbook roll-outs, reassignments."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from harness import running
from sqlalchemy import select
from test_edges import journey_settings
from typer.testing import CliRunner

from nurture.adapters.database import EmailSend
from nurture.adapters.schema import migrate
from nurture.cli import app
from nurture.services import sending

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
