"""Erase: a lead's personal data leaves every table; the anonymous funnel stays.

The lead's rows are made by the real activities (an email through the SMTP sink, a call
task, stage changes), plus an event and the dev sink's copy of the email as intake and
`make run` would store them. After the erase, no table holds any of the lead's contact
details anywhere, in any column. SQLite always; PostgreSQL too when configured.
"""

from __future__ import annotations

from datetime import timedelta

from activitysupport import NOW, Sessions, add_lead, call_input, catalog_for, email_input, run
from sqlalchemy import func, select

from nurture.activities.email import EmailActivities
from nurture.activities.handoff import TaskActivities
from nurture.activities.storage import StorageActivities
from nurture.adapters.database import (
    Base,
    CallTask,
    EmailSend,
    EventRow,
    InboundMail,
    LeadRow,
    ReceivedMail,
    StageChange,
    Suppression,
)
from nurture.adapters.smtp import SmtpSender
from nurture.domain import messages as am

pytest_plugins = ["dbfixtures", "activityfixtures"]

MIA = {
    "email": "mia.chen@initech.example",
    "first_name": "Mia",
    "last_name": "Chenowith",
    "company": "Initech",
    "title": "Head of Planning",
    "phone": "+1 555 0142",
    "country": "US",
    "industry": "manufacturing",
    "employees": 1200,
    "source": "webinar",
    "fields": {"linkedin": "https://linkedin.example/in/miachenowith"},
}
# Strings that identify Mia; none may survive anywhere (the suppression list aside).
TRACES = ("mia.chen", "Chenowith", "Initech", "555 0142", "Head of Planning", "miachenowith")


async def dump(sessions: Sessions, skip: frozenset[str] = frozenset()) -> str:
    """Every row of every table as text: a trace anywhere in it is found."""
    async with sessions() as session:
        chunks = []
        for table in Base.metadata.sorted_tables:
            if table.name not in skip:
                rows = (await session.execute(select(table))).all()
                chunks.append(f"{table.name}: {rows!r}")
    return "\n".join(chunks)


async def make_history(settings, sessions: Sessions, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    """Mia's footprint, made the way the product makes it; and Raj, who is not erased."""
    await add_lead(sessions, "L-1", **MIA)
    await add_lead(sessions, "L-2", email="raj@globex.example", first_name="Raj", country="US")
    smtp = SmtpSender(smtp_sink.host, smtp_sink.port)
    catalog = catalog_for(settings)
    email = EmailActivities(settings, sessions, smtp, catalog)
    tasks = TaskActivities(settings, sessions, catalog, smtp)
    storage = StorageActivities(sessions, catalog)
    try:
        for lead_id in ("L-1", "L-2"):
            assert (await run(email.send_email, email_input(lead_id))).status == "sent"
            await run(tasks.create_call_task, call_input(lead_id))  # + the SDR's notification
        for before, after in ((None, "nurturing"), ("nurturing", "mql")):
            await run(
                storage.record_transition,
                am.TransitionInput(
                    lead_id="L-1", cycle=0, from_stage=before, to_stage=after, at=NOW,
                    reason=f"entered {after}", source="webinar", cadence="touches", score=42,
                ),
            )  # fmt: skip
        await run(
            tasks.close_call_tasks,
            am.CloseCallTasksInput(
                lead_id="L-1", status="overdue", reason="no outcome", now=NOW + timedelta(days=2)
            ),
        )
    finally:
        await smtp.close()
    async with sessions() as session:
        session.add(
            EventRow(
                id="evt-1", lead_id="L-1", type="lead.updated", occurred_at=NOW,
                data={"phone": MIA["phone"], "title": MIA["title"]}, status="delivered",
            )
        )  # fmt: skip
        # The dev sink's copies of what was sent (make run keeps them for the web app).
        for message in smtp_sink.messages:
            session.add(
                ReceivedMail(
                    mail_from="hello@acme.example", rcpt_tos=[str(message["To"])],
                    subject=str(message["Subject"]), message_id=str(message["Message-ID"]),
                    raw=message.as_string(),
                )
            )  # fmt: skip
        # Mail that came back, as the inbound mail path keeps it: Mia's reply (matched:
        # sender and subject), a bounce about her address that matched no lead (its
        # excerpt quotes the address), and Raj's reply, which stays.
        session.add_all(
            [
                InboundMail(
                    message_key="<r1@initech.example>", source="webhook", kind="reply",
                    why="a person's message", status="matched", lead_id="L-1",
                    event_id="mail-1", sender=MIA["email"], subject="Re: Welcome, Mia",
                ),
                InboundMail(
                    message_key="<b1@mx.example>", source="mailbox", kind="bounce",
                    why="delivery status 5.1.1", status="unmatched",
                    sender="mailer-daemon@mx.example", subject="Undelivered Mail Returned",
                    excerpt=f"Your message to {MIA['email'].upper()} couldn't be delivered.",
                ),
                InboundMail(
                    message_key="<r2@globex.example>", source="webhook", kind="reply",
                    why="a person's message", status="matched", lead_id="L-2",
                    event_id="mail-2", sender="raj@globex.example", subject="Re: Hello Raj",
                ),
            ]
        )  # fmt: skip
        # Mia once bounced: the suppression list must keep stopping mail to that address.
        session.add(Suppression(email=MIA["email"], reason="bounced: 550 5.1.1"))
        await session.commit()


async def test_erase_removes_every_trace_and_keeps_the_funnel(
    activity_settings, sessions, smtp_sink
):
    settings = activity_settings()
    await make_history(settings, sessions, smtp_sink)
    before = await dump(sessions)
    assert all(trace in before for trace in TRACES)  # the test would prove nothing otherwise
    async with sessions() as session:
        stages_before = (
            await session.execute(select(StageChange.to_stage, StageChange.reason, StageChange.at))
        ).all()

    storage = StorageActivities(sessions, catalog_for(settings))
    erase = am.EraseInput(lead_id="L-1", now=NOW + timedelta(days=3))
    await run(storage.erase_lead, erase)
    await run(storage.erase_lead, erase)  # a retry is harmless

    after = await dump(sessions, skip=frozenset({"suppressions"}))
    for trace in TRACES:
        assert trace.lower() not in after.lower(), f"{trace!r} survived the erase"

    async with sessions() as session:
        lead = await session.get(LeadRow, "L-1")
        assert lead is not None
        assert (lead.email, lead.first_name, lead.phone, lead.account, lead.fields) == (
            None, None, None, None, {},
        )  # fmt: skip
        assert lead.erased_at == NOW + timedelta(days=3) and lead.do_not_contact
        # The anonymous facts the funnel and reports need stay.
        assert (lead.country, lead.industry, lead.source) == ("US", "manufacturing", "webinar")
        stages_after = (
            await session.execute(select(StageChange.to_stage, StageChange.reason, StageChange.at))
        ).all()
        assert stages_after == stages_before and len(stages_after) == 2
        # The outbox keeps what happened (status, Message-ID), not to whom or what it said.
        sends = (await session.scalars(select(EmailSend).where(EmailSend.lead_id == "L-1"))).all()
        assert len(sends) == 2  # the email and the SDR's notification
        for send in sends:
            assert send.status == "sent" and send.message_id
            assert (send.to_address, send.subject, send.smtp_reply) == (None, None, None)
        task = await session.scalar(select(CallTask).where(CallTask.lead_id == "L-1"))
        assert task is not None and task.script is None and task.notes is None
        assert task.overdue_at is not None and task.status == "open"
        event = await session.get(EventRow, "evt-1")
        assert event is not None and event.data == {} and event.type == "lead.updated"
        assert await session.get(Suppression, MIA["email"]) is not None

        # Raj is untouched: his email, task, and the dev sink's copy of his mail.
        raj = await session.get(LeadRow, "L-2")
        assert raj is not None and raj.email == "raj@globex.example" and raj.erased_at is None
        kept_mail = (await session.scalars(select(ReceivedMail.rcpt_tos))).all()
        # Raj's email and his SDR's notification (Mia's went to Ben, Raj's turn is Carol's).
        assert sorted(kept_mail) == [["carol@example.com"], ["raj@globex.example"]]
        kept_back = (await session.scalars(select(InboundMail.message_key))).all()
        assert kept_back == ["<r2@globex.example>"]  # Mia's reply and her bounce are gone
        raj_task = await session.scalar(select(CallTask).where(CallTask.lead_id == "L-2"))
        assert raj_task is not None and "Raj" in (raj_task.script or "")


async def test_an_erased_lead_gets_no_more_email(activity_settings, sessions, smtp_sink):
    settings = activity_settings()
    await add_lead(sessions, "L-1", **MIA)
    storage = StorageActivities(sessions, catalog_for(settings))
    await run(storage.erase_lead, am.EraseInput(lead_id="L-1", now=NOW))

    smtp = SmtpSender(smtp_sink.host, smtp_sink.port)
    email = EmailActivities(settings, sessions, smtp, catalog_for(settings))
    result = await run(email.send_email, email_input("L-1"))
    await smtp.close()
    assert result.status == "skipped"
    assert smtp_sink.messages == []
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(EmailSend)) == 0
