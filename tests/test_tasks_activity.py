"""Call tasks and the toss-up handoff on a real database, with a real SMTP sink for the SDR's
notification and a real local HTTP server standing in for the CRM (reached through the CRM
outbox and its sender, as the worker runs them).

SQLite always; PostgreSQL too when NURTURE_TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from activitysupport import NOW, FaultySink, Sessions, add_lead, call_input, catalog_for, run
from sqlalchemy import func, select
from temporalio.exceptions import ApplicationError

from nurture.activities.crm import CrmSender
from nurture.activities.handoff import TaskActivities
from nurture.adapters.database import (
    CallTask,
    CrmPost,
    EmailSend,
    LeadRow,
    Opportunity,
    StageChange,
)
from nurture.adapters.smtp import SmtpSender
from nurture.domain import keys
from nurture.domain import messages as am
from nurture.services import crm_outbox
from nurture.services.crm_outbox import Policy
from nurture.settings import Settings

pytest_plugins = ["dbfixtures", "activityfixtures"]


@dataclass
class Desk:
    """The task activities wired to the test's database and the faulty SMTP sink."""

    acts: TaskActivities
    sessions: Sessions
    sink: FaultySink

    async def assign(self, lead_id: str, **lead: object) -> str | None:
        """Add a lead and create its first call task; the SDR it went to."""
        await add_lead(self.sessions, lead_id, **lead)
        result = await run(self.acts.create_call_task, call_input(lead_id))
        assert result.created
        return result.owner  # type: ignore[no-any-return]

    async def task(self, task_id: str) -> CallTask:
        async with self.sessions() as session:
            task = await session.get(CallTask, task_id)
            assert task is not None
            return task


def make_desk(settings: Settings, sessions: Sessions, sink: FaultySink) -> Desk:
    smtp = SmtpSender(sink.host, sink.port)
    return Desk(TaskActivities(settings, sessions, catalog_for(settings), smtp), sessions, sink)


@pytest.fixture
async def desk(
    activity_settings: Callable[..., Settings], sessions: Sessions, faulty_sink: FaultySink
) -> AsyncIterator[Desk]:
    made = make_desk(activity_settings(), sessions, faulty_sink)
    try:
        yield made
    finally:
        assert made.acts.smtp is not None
        await made.acts.smtp.close()


# --- assignment ------------------------------------------------------------------------


async def test_a_japanese_lead_goes_to_the_japan_sdr(desk):
    assert await desk.assign("L-1", email="kenji@tanaka.example", country="JP") == "aiko"
    async with desk.sessions() as session:
        assert (await session.get(LeadRow, "L-1")).owner == "aiko"  # type: ignore[union-attr]


async def test_us_accounts_alternate_between_the_two_us_sdrs(desk):
    # Ben also covers GB and already has two accounts there: that must not skew the US turn.
    await desk.assign("G-1", email="amy@brit-one.example", country="GB")
    await desk.assign("G-2", email="tom@brit-two.example", country="GB")

    owners = [
        await desk.assign(f"U-{i}", email=f"lead@us-{i}.example", country="US") for i in range(4)
    ]
    assert owners == ["ben", "carol", "ben", "carol"]


async def test_every_lead_of_a_company_gets_its_first_sdr(desk):
    assert await desk.assign("L-1", email="ann@initech.example", country="US") == "ben"
    # Same domain: Ben again, though the rotation would have picked Carol.
    assert await desk.assign("L-2", email="bob@INITECH.example", country="US") == "ben"
    # An account is one turn, whatever its number of leads: Carol, then Ben again.
    assert await desk.assign("L-3", email="cy@globex.example", country="US") == "carol"
    assert await desk.assign("L-4", email="di@umbrella.example", country="US") == "ben"
    # Stickiness is by account, not territory: a colleague in Japan keeps Ben.
    assert await desk.assign("L-5", email="eri@initech.example", country="JP") == "ben"


async def test_free_mail_leads_are_grouped_by_normalized_company(desk):
    first = await desk.assign("L-1", email="ann@gmail.com", company="Initech Inc.", country="US")
    assert first == "ben"
    # gmail.com is not an account: a lead at another company takes the next turn ...
    assert (
        await desk.assign("L-2", email="bob@gmail.com", company="Globex", country="US") == "carol"
    )
    # ... and the same company, spelt differently and on another free-mail domain, is sticky.
    same = await desk.assign("L-3", email="cy@yahoo.com", company="INITECH, inc", country="US")
    assert same == "ben"


async def test_an_existing_owner_is_kept(desk):
    # Reassigned by hand to Carol: the territory (JP, Aiko's) does not take the lead back.
    assert await desk.assign("L-1", email="kenji@tanaka.example", country="JP", owner="carol") == (
        "carol"
    )
    # The workflow's owner (passed in) wins too.
    await add_lead(desk.sessions, "L-2", email="sato@nippon.example", country="JP")
    result = await run(desk.acts.create_call_task, call_input("L-2", owner="ben"))
    assert result.owner == "ben"


async def test_a_country_nobody_covers_rotates_over_the_whole_team(desk):
    await desk.assign("U-1", email="lead@us-1.example", country="US")  # Ben, in the US
    owners = [
        await desk.assign(f"F-{i}", email=f"lead@fr-{i}.example", country="FR") for i in range(3)
    ]
    # Counted over uncovered countries only: Ben's US account does not delay his turn.
    assert owners == ["aiko", "ben", "carol"]
    assert await desk.assign("N-1", email="lead@nowhere.example") == "aiko"  # no country


# --- the task itself ---------------------------------------------------------------------


async def test_one_task_per_key_with_its_script(desk):
    await add_lead(
        desk.sessions, "L-1", email="mia@initech.example", first_name="Mia", last_name="Chen",
        company="Initech", country="US",
    )  # fmt: skip
    request = call_input("L-1")

    first = await run(desk.acts.create_call_task, request)
    second = await run(desk.acts.create_call_task, request)
    assert first.created and not second.created
    assert (second.task_id, second.owner) == (first.task_id, first.owner) == (first.task_id, "ben")
    async with desk.sessions() as session:
        count = await session.scalar(select(func.count()).select_from(CallTask))
        assert count == 1

    task = await desk.task(first.task_id)
    assert (task.status, task.owner, task.due_at) == ("open", "ben", request.due_at)
    assert (task.cadence, task.step, task.visit, task.key) == (
        "touches",
        "intro-call",
        1,
        request.key,
    )
    assert task.script is not None
    assert "Call Mia Chen" in task.script and "at Initech." in task.script
    assert "Introduce yourself as Ben Carter" in task.script

    # The next visit of the step (a loop back) is a new task, on purpose.
    again = await run(desk.acts.create_call_task, call_input("L-1", visit=2))
    assert again.created and again.task_id != first.task_id
    # ... and it supersedes the step's older open task: one open task per lead and step.
    stale = await desk.task(first.task_id)
    assert stale.status == "cancelled" and f"[superseded by {again.task_id}]" in (stale.notes or "")
    assert (await desk.task(again.task_id)).status == "open"


async def test_the_sdr_is_emailed_once_about_a_new_task(desk):
    await add_lead(
        desk.sessions, "L-1", email="mia@initech.example", first_name="Mia", company="Initech",
        country="JP",
    )  # fmt: skip
    request = call_input("L-1")
    result = await run(desk.acts.create_call_task, request)
    await run(desk.acts.create_call_task, request)  # a retry

    [message] = desk.sink.messages
    assert message["To"] == "aiko@example.com"
    assert message["Subject"] == f"Call task {result.task_id}: Mia (Initech)"
    text = message.get_content()
    assert "Hi Aiko Sato" in text
    assert "due 2026-11-24 09:00 UTC" in text
    assert "http://localhost:8000/inbox" in text and "http://localhost:8000/leads/L-1" in text
    assert "Call Mia" in text  # the rendered script
    async with desk.sessions() as session:
        row = await session.scalar(
            select(EmailSend).where(EmailSend.key == f"notify|{request.key}")
        )
        assert row is not None and row.status == "sent"


async def test_a_failed_notification_is_retried_without_a_second_task(desk):
    await add_lead(desk.sessions, "L-1", email="mia@initech.example", country="JP")
    desk.sink.data_faults.append("451 4.3.0 Try again later")
    request = call_input("L-1")

    with pytest.raises(ApplicationError) as raised:
        await run(desk.acts.create_call_task, request)
    assert raised.value.type == "TransientSmtpError" and not raised.value.non_retryable
    async with desk.sessions() as session:
        [task] = (await session.scalars(select(CallTask))).all()  # in the inbox already

    retried = await run(desk.acts.create_call_task, request)
    assert (retried.task_id, retried.created) == (task.id, False)
    assert len(desk.sink.messages) == 1


async def test_no_notification_while_sending_is_paused(activity_settings, sessions, faulty_sink):
    paused = make_desk(activity_settings(sending_paused=True), sessions, faulty_sink)
    await add_lead(sessions, "L-1", email="mia@initech.example", country="JP")
    with pytest.raises(ApplicationError) as raised:
        await run(paused.acts.create_call_task, call_input("L-1"))
    assert raised.value.type == "SendingPaused" and not raised.value.non_retryable
    assert faulty_sink.connections == 0
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(CallTask)) == 1


async def test_closing_cancels_open_tasks_and_overdue_is_flagged_once(desk):
    await add_lead(desk.sessions, "L-1", email="mia@initech.example", country="US")
    await add_lead(desk.sessions, "L-2", email="raj@globex.example", country="US")
    first = await run(desk.acts.create_call_task, call_input("L-1"))
    second = await run(desk.acts.create_call_task, call_input("L-1", step="second-call"))
    other = await run(desk.acts.create_call_task, call_input("L-2"))
    later = NOW + timedelta(days=2)

    # No outcome in time: that one task is flagged overdue (twice: a retry), still open.
    overdue = am.CloseCallTasksInput(
        lead_id="L-1",
        status="overdue",
        reason="no outcome within 2d",
        task_id=first.task_id,
        now=later,
    )
    assert await run(desk.acts.close_call_tasks, overdue) == 1
    await run(
        desk.acts.close_call_tasks, overdue.model_copy(update={"now": later + timedelta(hours=1)})
    )
    task = await desk.task(first.task_id)
    assert (task.status, task.overdue_at) == ("open", later)
    assert task.notes == "[overdue: no outcome within 2d]"

    # Tossed up: every open task of the lead is cancelled; other leads' tasks stay.
    cancel = am.CloseCallTasksInput(
        lead_id="L-1", status="cancelled", reason="tossed up to sales", now=later
    )
    assert await run(desk.acts.close_call_tasks, cancel) == 2
    for task_id in (first.task_id, second.task_id):
        task = await desk.task(task_id)
        assert (task.status, task.completed_at) == ("cancelled", later)
        assert "[cancelled: tossed up to sales]" in (task.notes or "")
    assert (await desk.task(other.task_id)).status == "open"
    assert await run(desk.acts.close_call_tasks, cancel) == 0  # nothing left open


# --- the handoff -------------------------------------------------------------------------


@dataclass
class FakeCrm:
    """A tiny HTTP/1.1 server on 127.0.0.1 that records each request and answers ``status``."""

    status: int = 202
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        payload = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((headers | {":request": lines[0]}, payload))
        writer.write(
            f"HTTP/1.1 {self.status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".encode()
        )
        await writer.drain()
        writer.close()


@pytest.fixture
async def crm() -> AsyncIterator[FakeCrm]:
    fake = FakeCrm()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    fake.port = server.sockets[0].getsockname()[1]
    try:
        yield fake
    finally:
        server.close()
        await server.wait_closed()


def handoff_input(lead_id: str, cycle: int = 0) -> am.HandoffInput:
    return am.HandoffInput(
        key=keys.opportunity(lead_id, cycle), lead_id=lead_id, cycle=cycle, owner="ben",
        trigger="form.submitted:demo", reason="hand-raiser: demo form", score=55, grade="B",
        now=NOW,
    )  # fmt: skip


async def test_one_opportunity_per_lead_and_cycle(desk):
    await add_lead(desk.sessions, "L-1", email="mia@initech.example", country="US")
    first = await run(desk.acts.handoff, handoff_input("L-1"))
    again = await run(desk.acts.handoff, handoff_input("L-1"))
    assert (first.created, again.created) == (True, False)
    assert not first.crm_notified  # no CRM configured
    recycled = await run(desk.acts.handoff, handoff_input("L-1", cycle=1))
    assert recycled.created

    async with desk.sessions() as session:
        rows = (await session.scalars(select(Opportunity).order_by(Opportunity.cycle))).all()
    assert [(r.key, r.cycle, r.owner) for r in rows] == [("L-1|0", 0, "ben"), ("L-1|1", 1, "ben")]
    assert (rows[0].trigger, rows[0].reason, rows[0].score, rows[0].grade) == (
        "form.submitted:demo", "hand-raiser: demo form", 55, "B",
    )  # fmt: skip


async def test_a_lead_reaching_sales_without_an_owner_gets_its_accounts_sdr(desk):
    # Ben works Initech already (round robin alone would now pick Carol); Mia, of the same
    # account, hand-raises before any call task was made for her.
    assert await desk.assign("L-0", email="leo@initech.example", country="US") == "ben"
    await add_lead(
        desk.sessions, "L-1", email="mia@initech.example", first_name="Mia", country="US"
    )
    request = handoff_input("L-1").model_copy(update={"owner": None})
    desk.sink.data_faults.append("451 4.3.0 Try again later")

    with pytest.raises(ApplicationError):
        await run(desk.acts.handoff, request)  # the notification fails: retried
    retried = await run(desk.acts.handoff, request)

    assert retried.owner == "ben"
    async with desk.sessions() as session:
        lead = await session.get(LeadRow, "L-1")
        opportunity = await session.scalar(select(Opportunity))
    assert lead is not None and lead.owner == "ben"
    assert opportunity is not None and opportunity.owner == "ben"
    handoffs = [m for m in desk.sink.messages if "Tossed up" in str(m["Subject"])]
    [notice] = handoffs
    assert notice["To"] == "ben@example.com"
    assert "You are its owner now" in notice.get_content()


def sender_for(settings: Settings, sessions: Sessions, **policy: object) -> CrmSender:
    """The worker's CRM sender on the test's database (retries at once unless told)."""
    assert settings.crm_webhook_url is not None
    rules = Policy(**{"first_retry": timedelta(0), **policy})  # type: ignore[arg-type]
    return CrmSender(
        str(settings.crm_webhook_url), settings.require_webhook_secret(), sessions, rules
    )


async def test_the_crm_gets_a_signed_notification(activity_settings, sessions, faulty_sink, crm):
    settings = activity_settings(crm_webhook_url=f"http://127.0.0.1:{crm.port}/hooks/nurture")
    desk = make_desk(settings, sessions, faulty_sink)
    await add_lead(sessions, "L-1", email="mia@initech.example", first_name="Mia", country="US")

    result = await run(desk.acts.handoff, handoff_input("L-1"))
    assert result.crm_notified  # queued in the outbox with the opportunity
    assert crm.requests == []  # the activity itself posts nothing
    assert await sender_for(settings, sessions).send_due() == 1
    [(headers, raw)] = crm.requests
    assert headers[":request"] == "POST /hooks/nurture HTTP/1.1"
    assert headers["content-type"] == "application/json"

    # Verify as the CRM would (nurture/activities/crm.py): t=<unix seconds>,v1=<hex HMAC-SHA256(key,
    # "<t>.<body>")>, the key derived from the webhook secret for this direction only.
    parts = dict(item.split("=", 1) for item in headers["x-nurture-signature"].split(","))
    secret = settings.require_webhook_secret().encode()
    key = hmac.new(secret, b"nurture:crm-outbound", hashlib.sha256).hexdigest().encode()
    expected = hmac.new(key, parts["t"].encode() + b"." + raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    # Not the inbound scheme's key: replayed to our own POST /leads, it would not verify.
    inbound = hmac.new(secret, parts["t"].encode() + b"." + raw, hashlib.sha256).hexdigest()
    assert parts["v1"] != inbound
    assert abs(int(parts["t"]) - time.time()) < 60  # fresh: signed when sent, not when queued

    payload = json.loads(raw)
    assert payload == {
        "type": "lead.tossed_up", "id": "tossup-L-1|0", "lead_id": "L-1", "cycle": 0,
        "owner": "ben", "trigger": "form.submitted:demo", "reason": "hand-raiser: demo form",
        "score": 55, "grade": "B", "at": NOW.isoformat(),
    }  # fmt: skip
    assert "mia" not in raw.decode().lower()  # no personal data leaves for the CRM hook
    [post] = await crm_outbox.listing(sessions)
    assert (post.status, post.attempts, post.sent_at is not None) == ("sent", 1, True)


@pytest.mark.parametrize("status", [503, 400])
async def test_a_crm_that_refuses_never_holds_the_lead(
    activity_settings, sessions, faulty_sink, crm, status
):
    """The handoff succeeds whatever the CRM says; the post is tried a bounded number of
    times, then marked failed for ops, and sent once ops send it again."""
    settings = activity_settings(crm_webhook_url=f"http://127.0.0.1:{crm.port}/hook")
    desk = make_desk(settings, sessions, faulty_sink)
    await add_lead(sessions, "L-1", email="mia@initech.example", country="US")
    crm.status = status

    first = await run(desk.acts.handoff, handoff_input("L-1"))
    again = await run(desk.acts.handoff, handoff_input("L-1"))  # a retried activity
    assert (first.created, again.created, first.crm_notified) == (True, False, True)

    sender = sender_for(settings, sessions, max_attempts=3)
    for _ in range(5):
        await sender.send_due()
    assert len(crm.requests) == 3  # bounded: three attempts, then it gives up
    [post] = await crm_outbox.listing(sessions)
    assert (post.status, post.attempts) == ("failed", 3)
    assert str(status) in (post.last_error or "")
    assert (await crm_outbox.listing(sessions, "failed"))[0].key == "tossup-L-1|0"

    crm.status = 202
    assert await crm_outbox.retry_failed(sessions) == 1
    await sender.send_due()
    assert [p.status for p in await crm_outbox.listing(sessions)] == ["sent"]
    assert len({raw for _, raw in crm.requests}) == 1  # the same post each time (same id)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Opportunity)) == 1
        assert await session.scalar(select(func.count()).select_from(CrmPost)) == 1


async def test_retries_wait_longer_each_time(activity_settings, sessions, faulty_sink, crm):
    settings = activity_settings(crm_webhook_url=f"http://127.0.0.1:{crm.port}/hook")
    desk = make_desk(settings, sessions, faulty_sink)
    await add_lead(sessions, "L-1", country="US")
    await run(desk.acts.handoff, handoff_input("L-1"))
    crm.status = 503
    sender = sender_for(settings, sessions, first_retry=timedelta(seconds=30))

    assert await sender.send_due() == 1
    assert await sender.send_due() == 0  # not due again yet
    [post] = await crm_outbox.listing(sessions)
    wait = post.next_attempt_at - post.created_at
    assert timedelta(seconds=25) < wait < timedelta(seconds=40)
    policy = Policy()
    assert [policy.retry_after(n).total_seconds() for n in (1, 2, 3)] == [10, 20, 40]
    assert policy.retry_after(50) == policy.longest_retry


def transition(lead_id: str, from_stage: str, to_stage: str, **extra: object) -> am.TransitionInput:
    return am.TransitionInput(
        lead_id=lead_id, cycle=0, from_stage=from_stage, to_stage=to_stage, at=NOW,
        reason=f"{from_stage} -> {to_stage}", score=50, grade="B", owner="ben", **extra,
    )  # fmt: skip


async def test_stage_changes_close_the_opportunity_and_reach_the_crm(
    activity_settings, sessions, faulty_sink, crm
):
    from nurture.activities.storage import StorageActivities

    settings = activity_settings(crm_webhook_url=f"http://127.0.0.1:{crm.port}/hooks/nurture")
    desk = make_desk(settings, sessions, faulty_sink)
    storage = StorageActivities(sessions, catalog_for(settings), settings)
    await add_lead(sessions, "L-1", email="mia@initech.example", first_name="Mia", country="US")
    await add_lead(sessions, "L-2", email="leo@initech.example", country="US")
    for lead_id in ("L-1", "L-2"):
        await run(desk.acts.handoff, handoff_input(lead_id))
    await sender_for(settings, sessions).send_due()
    crm.requests.clear()

    await run(
        storage.record_transition,
        transition("L-1", "sql", "lost", trigger="opportunity.lost", loss_reason="Competitor"),
    )
    await run(
        storage.record_transition,
        transition("L-2", "sql", "lost", trigger="handoff.rejected", loss_reason="bad fit"),
    )
    async with sessions() as session:
        rows = {o.lead_id: o for o in (await session.scalars(select(Opportunity))).all()}
    assert (rows["L-1"].outcome, rows["L-1"].outcome_reason) == ("lost", "Competitor")
    assert (rows["L-2"].outcome, rows["L-2"].outcome_reason) == ("rejected", "bad fit")

    # Each stage change is posted, signed, without personal data, once the sender runs.
    assert crm.requests == []
    await sender_for(settings, sessions).send_due()
    payloads = [json.loads(raw) for _, raw in crm.requests]
    assert [(p["type"], p["lead_id"], p["from_stage"], p["to_stage"]) for p in payloads] == [
        ("lead.stage_changed", "L-1", "sql", "lost"),
        ("lead.stage_changed", "L-2", "sql", "lost"),
    ]
    assert all("mia" not in raw.decode().lower() for _, raw in crm.requests)


async def test_one_leads_posts_reach_the_crm_in_order(
    activity_settings, sessions, faulty_sink, crm
):
    """A lead's later post waits while its earlier one is retried; other leads' do not."""
    from nurture.activities.storage import StorageActivities

    settings = activity_settings(crm_webhook_url=f"http://127.0.0.1:{crm.port}/hook")
    desk = make_desk(settings, sessions, faulty_sink)
    storage = StorageActivities(sessions, catalog_for(settings), settings)
    for lead_id in ("L-1", "L-2"):
        await add_lead(sessions, lead_id, country="US")
    await run(desk.acts.handoff, handoff_input("L-1"))
    await run(storage.record_transition, transition("L-1", "sql", "won", trigger="opportunity.won"))
    await run(desk.acts.handoff, handoff_input("L-2"))
    crm.status = 503
    sender = sender_for(settings, sessions, first_retry=timedelta(hours=1))

    await sender.send_due()
    assert [json.loads(raw)["id"] for _, raw in crm.requests] == ["tossup-L-1|0", "tossup-L-2|0"]

    crm.status = 202
    crm.requests.clear()
    later = NOW.replace(year=NOW.year + 1)  # past every retry's wait
    await sender.send_due(now=later)
    await sender.send_due(now=later)
    sent = [(p["lead_id"], p["type"]) for p in (json.loads(raw) for _, raw in crm.requests)]
    assert sent == [
        ("L-1", "lead.tossed_up"), ("L-2", "lead.tossed_up"), ("L-1", "lead.stage_changed"),
    ]  # fmt: skip


async def test_a_transition_is_one_row_however_many_attempts_run_at_once(
    activity_settings, sessions
):
    """A worker frozen past the activity's timeout finishes after its retry started: the
    attempts race, and the funnel must still count the transition once."""
    from nurture.activities.storage import StorageActivities

    settings = activity_settings()
    storage = StorageActivities(sessions, catalog_for(settings), settings)
    await add_lead(sessions, "L-1", email="mia@initech.example", country="US")
    await run(storage.record_transition, transition("L-1", "nurturing", "mql"))
    await run(storage.record_transition, transition("L-1", "nurturing", "mql"))
    await asyncio.gather(
        *(run(storage.record_transition, transition("L-1", "mql", "sql")) for _ in range(4))
    )
    async with sessions() as session:
        rows = (await session.scalars(select(StageChange).order_by(StageChange.id))).all()
    assert [(r.from_stage, r.to_stage) for r in rows] == [("nurturing", "mql"), ("mql", "sql")]
