"""The first screens of `make run`: demo logins on the sign-in page (only where `nurture dev`
asks for them), who gets which territory, and the console's feed of what happens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

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


# --- the sample engagement: events, and mail the sample leads send back ----------------------

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo"


def test_the_sample_engagement_answers_emails_the_demo_leads_are_sent() -> None:
    from nurture.adapters.loader import load_cadence_set
    from nurture.services.csvimport import read_leads
    from nurture.services.demo import DemoMail, read_engagement

    stream = read_engagement(DEMO / "engagement.jsonl")
    assert [s.after for s in stream] == sorted(s.after for s in stream)
    mail = [s.item for s in stream if isinstance(s.item, DemoMail)]
    assert {m.mail for m in mail} == {"reply", "auto_reply"}
    leads = {row.lead.id: row.lead for row in read_leads(DEMO / "leads.csv") if row.lead}
    cadences = load_cadence_set(DEMO, Path("templates")).cadences.values()
    email_steps = {s.id for c in cadences for s in c.steps if s.type == "email"}
    for item in mail:
        assert leads[item.lead_id].email, item
        assert item.step in email_steps, item
    back = next(m for m in mail if m.mail == "auto_reply")
    assert back.back_after and "{back}" in back.text


def test_a_bad_engagement_line_is_named_and_nothing_is_played(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from nurture.services.demo import EngagementError, read_engagement

    stream = tmp_path / "engagement.jsonl"
    stream.write_text(
        '{"after": "1s", "id": "e-1", "type": "email.opened", "lead_id": "D-1"}\n'
        '{"after": "2s", "id": "m-1", "mail": "repyl", "lead_id": "D-1", "text": "hi"}\n'
        "# a comment\n"
        '{"after": "0s", "id": "e-2", "type": "email.opened", "lead_id": "D-1"}\n'
        "not json\n"
        '{"id": "m-2", "mail": "auto_reply", "lead_id": "D-1", "text": "x", "back_after": "soon"}\n',
        encoding="utf-8",
    )
    with pytest.raises(EngagementError) as caught:
        read_engagement(stream)
    lines = str(caught.value).splitlines()
    assert [line.split(": ", 2)[:2] for line in lines] == [
        ["engagement.jsonl:2", "mail"],
        ["engagement.jsonl:4", "after"],
        ["engagement.jsonl:5", "not a JSON object"],
        ["engagement.jsonl:6", "back_after"],
    ]
    assert "'reply' or 'auto_reply'" in lines[0]


async def test_the_demo_sends_a_reply_and_an_out_of_office_through_the_inbound_endpoint(  # type: ignore[no-untyped-def]
    make_settings, time_env, tmp_path
) -> None:
    import asyncio

    from harness import running
    from sqlalchemy import select
    from test_journeys import PLAYBOOK, journey_settings

    from nurture.adapters.database import InboundMail
    from nurture.services.demo import (
        DemoMail,
        compose_mail,
        play_engagement,
        signed_mail_poster,
    )

    # A reply's points alone must not make an MQL here: the reply is seen ending the cadence.
    playbook = PLAYBOOK.replace("mql: {score: 10}", "mql: {score: 40}")
    settings = journey_settings(make_settings, tmp_path, playbook=playbook)
    stream = tmp_path / "engagement.jsonl"
    stream.write_text(
        '{"after": "1s", "id": "m-1", "mail": "reply", "lead_id": "DM-1", "step": "welcome",'
        ' "text": "Sounds good, can we talk on Thursday?"}\n'
        '{"after": "1s", "id": "m-2", "mail": "auto_reply", "lead_id": "DM-2",'
        ' "back_after": "5d", "text": "I am out of the office until {back}."}\n',
        encoding="utf-8",
    )
    async with (
        running(time_env.client, settings) as stack,
        asgi_client(create_app(settings, client=time_env.client)) as client,
    ):
        for lead, name in (("DM-1", "Ana"), ("DM-2", "Bo")):
            await stack.add_lead(
                id=lead, email=f"{name.lower()}@example.com", first_name=name, timezone="UTC"
            )
            await stack.until(lead, lambda v: v.step == "pause")
        poster = signed_mail_poster(client, "/inbound/email", settings.require_webhook_secret())
        await play_engagement(stack.intake, stream, asyncio.Event(), poster)

        # The reply answers the email DM-1 was really sent, and ends its cadence.
        async with stack.sessions() as session:
            welcome = await session.scalar(select(EmailSend).where(EmailSend.lead_id == "DM-1"))
        assert welcome is not None and welcome.message_id
        item = DemoMail(id="m-x", mail="reply", lead_id="DM-1", step="welcome", text="x")
        raw = await compose_mail(stack.intake, item, asyncio.Event())
        assert raw is not None and f"In-Reply-To: {welcome.message_id}".encode() in raw
        replied = await stack.until(
            "DM-1", lambda v: any(h.what == "cadence stopped" for h in v.history)
        )
        assert replied.next_touch_at is None

        # The out-of-office holds DM-2's next email, visibly, until the day it names.
        # Back in 5 days: the next email (2 days on) is held whatever the hour now.
        back = (datetime.now(UTC) + timedelta(days=5)).date().isoformat()
        await stack.until(
            "DM-2", lambda v: any(h.what == f"out of office until {back}" for h in v.history)
        )
        await time_env.sleep(timedelta(days=2, hours=1))
        held = f"email nudge held: out of office until {back}"
        view = await stack.until("DM-2", lambda v: any(h.what == held for h in v.history))
        assert view.next_touch_at is not None and view.next_touch_at.date().isoformat() == back

        # Played again (make run restarted): the same messages, read as seen.
        await play_engagement(stack.intake, stream, asyncio.Event(), poster)
        async with stack.sessions() as session:
            mail = (await session.scalars(select(InboundMail).order_by(InboundMail.lead_id))).all()
        assert [(m.lead_id, m.kind, m.status) for m in mail] == [
            ("DM-1", "reply", "matched"),
            ("DM-2", "auto_reply", "matched"),
        ]
        assert all(m.excerpt is None for m in mail)  # matched: no words of the body kept
