"""The first screens of `make run`: demo logins on the sign-in page (only where `nurture dev`
asks for them), who gets which territory, and the console's feed of what happens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conftest import write_cadence_set
from web_helpers import asgi_client

from nurture.adapters.catalog import CadenceCatalog
from nurture.adapters.database import (
    NOTIFICATION_CADENCE,
    CallTask,
    EmailSend,
    LeadRow,
    StageChange,
    User,
    make_engine,
    session_factory,
)
from nurture.adapters.passwords import hash_password
from nurture.adapters.schema import migrate
from nurture.services.demo import ActivityFeed, create_demo_users, sample_countries
from nurture.web import create_app


async def test_the_sign_in_page_lists_demo_logins_only_in_the_dev_stack(
    make_settings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    dev = make_settings(demo_logins=True)
    await migrate(dev.database_url)
    engine = make_engine(dev.database_url)
    try:
        sessions = session_factory(engine)
        playbook = CadenceCatalog(dev.cadences_dir, dev.templates_dir).current().playbook
        await create_demo_users(sessions, playbook)
        async with sessions() as session:
            ben = await session.get(User, "ben")
            assert ben is not None
            ben.password_hash = hash_password("a real one now")  # no longer a demo login
            await session.commit()
        async with asgi_client(create_app(dev)) as client:
            page = await client.get("/login")
            failed = await client.post("/login", data={"username": "aiko", "password": "no"})
        production = dev.model_copy(update={"demo_logins": False})
        async with asgi_client(create_app(production)) as client:
            plain = await client.get("/login")
    finally:
        await engine.dispose()

    assert page.status_code == 200 and 'id="demo-logins"' in page.text
    assert "<code>aiko</code></td><td>SDR for JP</td>" in page.text
    assert "<code>ops</code></td><td>ops: every lead, task and report" in page.text
    assert "<code>ben</code>" not in page.text  # its password changed: never offered
    assert failed.status_code == 401 and "<code>aiko</code>" in failed.text
    assert plain.status_code == 200 and "demo-logins" not in plain.text
    assert "password" in plain.text and "<code>aiko</code>" not in plain.text


async def test_printed_logins_say_who_gets_which_territory(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cadences_dir, templates_dir = write_cadence_set(tmp_path / "set")
    playbook = CadenceCatalog(cadences_dir, templates_dir).current().playbook
    csv = tmp_path / "leads.csv"
    csv.write_text("id,country\nA-1,JP\nA-2,us\nA-3,US\nA-4,FR\n", encoding="utf-8")
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    await migrate(url)
    engine = make_engine(url)
    try:
        logins = await create_demo_users(session_factory(engine), playbook)
    finally:
        await engine.dispose()
    countries = sample_countries(csv)
    assert [(d.user, d.who(countries)) for d in logins] == [
        ("aiko", "SDR for JP (1 sample lead)"),
        ("ben", "SDR for US (2 sample leads)"),
        ("ops", "ops: every lead, task and report, and the caught mail (/mail)"),
    ]


async def test_the_console_feed_prints_each_event_worth_seeing_once_rate_limited(
    tmp_path,
) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite+aiosqlite:///{tmp_path / 'feed.db'}"
    await migrate(url)
    engine = make_engine(url)
    start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    try:
        sessions = session_factory(engine)
        async with sessions() as session:
            session.add(LeadRow(id="L-1", email="mia@acme.example", first_name="Mia", fields={}))
            session.add(LeadRow(id="L-old", fields={}))
            await session.commit()
        feed = ActivityFeed(sessions, limit=4, since=start)
        async with sessions() as session:
            at = start + timedelta(seconds=5)
            session.add_all(
                [
                    # Before the feed started: not printed again.
                    StageChange(
                        lead_id="L-old",
                        cycle=0,
                        from_stage=None,
                        to_stage="nurturing",
                        at=start - timedelta(minutes=1),
                    ),
                    StageChange(
                        lead_id="L-1",
                        cycle=0,
                        from_stage="nurturing",
                        to_stage="mql",
                        at=at,
                        reason="score 40 reached the MQL threshold 40",
                    ),
                    _email("L-1", "welcome", "inbound", at - timedelta(seconds=2)),
                    # A notification to the SDR: not a lead's email.
                    _email("L-1", "mql-alert", NOTIFICATION_CADENCE, at),
                    CallTask(
                        key="L-1|0|mql-sdr|first-call|1",
                        lead_id="L-1",
                        cycle=0,
                        cadence="mql-sdr",
                        step="first-call",
                        visit=1,
                        owner="aiko",
                        due_at=at + timedelta(minutes=5),
                        created_at=at + timedelta(seconds=1),
                    ),
                ]
            )
            await session.commit()
        first = await feed.poll()
        again = await feed.poll()
        async with sessions() as session:
            later = start + timedelta(minutes=1)
            session.add_all(
                [
                    _email("L-1", f"step-{i}", "inbound", later + timedelta(seconds=i))
                    for i in range(7)
                ]
            )
            await session.commit()
        flood = await feed.poll()
    finally:
        await engine.dispose()

    assert [line[10:] for line in first] == [
        "L-1  email sent: inbound/welcome (inbound/welcome)",
        "L-1  stage nurturing → mql: score 40 reached the MQL threshold 40",
        f"L-1  call task {first[2].split('call task ')[1].split(' ')[0]} for aiko "
        "(mql-sdr/first-call), due 09:05 UTC",
    ]
    assert all("Mia" not in line and "mia@" not in line for line in first)
    assert again == []
    assert len(flood) == 5 and flood[-1].strip() == "... and 3 more (all of it: /leads, /mail)"


def _email(lead_id: str, step: str, cadence: str, sent_at: datetime) -> EmailSend:
    return EmailSend(
        key=f"{lead_id}|0|{cadence}|{step}|1",
        lead_id=lead_id,
        cycle=0,
        cadence=cadence,
        step=step,
        visit=1,
        template=f"{cadence}/{step}" if cadence != NOTIFICATION_CADENCE else "notify",
        subject="Hello Mia",
        status="sent",
        sent_at=sent_at,
    )
