"""Logins and the signed-in pages: the inbox, a task, a lead, ops; who may see what.

Rows are written straight into a migrated database and no worker runs, so every `state`
query fails: the pages must fall back to the database's copy (and say so). The live path,
with a worker and a real browser, is `test_browser.py`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web_helpers import PASSWORD, add_user, asgi_client, log_in

from nurture.adapters.database import (
    CallTask,
    EmailSend,
    EventRow,
    LeadRow,
    StageChange,
    User,
    make_engine,
    session_factory,
)
from nurture.adapters.schema import migrate
from nurture.services import sending
from nurture.web import create_app

UI = "http://temporal-ui.example:8233"


class Clock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Site:
    app_client: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]
    aiko_task: str
    ben_task: str
    aiko_lead: str
    ben_lead: str
    app: FastAPI
    clock: Clock

    def client(self, address: str = "127.0.0.1") -> httpx.AsyncClient:
        """A fresh browser (its own cookies) on the same app, connecting from ``address``."""
        transport = httpx.ASGITransport(self.app, client=(address, 50123))
        return httpx.AsyncClient(transport=transport, base_url="http://test")


async def _seed(sessions: async_sessionmaker[AsyncSession]) -> tuple[str, str, str, str]:
    now = datetime.now(UTC)
    aiko_lead, ben_lead = f"L-{secrets.token_hex(3)}", f"L-{secrets.token_hex(3)}"
    async with sessions() as session:
        session.add_all(
            [
                LeadRow(
                    id=aiko_lead,
                    email="mia@acme.example",
                    first_name="Mia",
                    last_name="Tanaka",
                    company="Acme KK",
                    title="CTO",
                    phone="+81 3 1234 5678",
                    country="JP",
                    stage="mql",
                    score=45,
                    grade="B",
                    owner="aiko",
                    fields={},
                ),
                LeadRow(
                    id=ben_lead,
                    email="bo@globex.example",
                    first_name="Bo",
                    company="Globex",
                    phone="+1 555 0100",
                    country="US",
                    stage="mql",
                    score=41,
                    owner="ben",
                    fields={},
                ),
            ]
        )
        await session.flush()
        session.add_all(
            [
                StageChange(
                    lead_id=aiko_lead,
                    cycle=0,
                    from_stage="nurturing",
                    to_stage="mql",
                    at=now - timedelta(hours=2),
                    reason="score 45 reached the MQL threshold 40",
                ),
                EmailSend(
                    key=f"{aiko_lead}|0|inbound|welcome|1",
                    lead_id=aiko_lead,
                    cycle=0,
                    cadence="inbound",
                    step="welcome",
                    visit=1,
                    template="inbound/welcome",
                    subject="Welcome to Acme",
                    status="sent",
                    sent_at=now - timedelta(days=2),
                ),
                EmailSend(
                    key=f"{ben_lead}|0|inbound|welcome|1",
                    lead_id=ben_lead,
                    cycle=0,
                    cadence="inbound",
                    step="welcome",
                    visit=1,
                    template="inbound/welcome",
                    status="unknown",
                    error="connection dropped after DATA",
                ),
                EventRow(
                    id="evt-early",
                    lead_id="L-not-yet",
                    type="page.visited",
                    data={"url": "/pricing"},
                    status="parked",
                ),
            ]
        )
        aiko_task = CallTask(
            key=f"{aiko_lead}|0|mql-sdr|first-call|1",
            lead_id=aiko_lead,
            cycle=0,
            cadence="mql-sdr",
            step="first-call",
            visit=1,
            owner="aiko",
            due_at=now - timedelta(hours=1),
            script="Call Mia at +81 3 1234 5678 <about the pricing page>.",
        )
        ben_task = CallTask(
            key=f"{ben_lead}|0|mql-sdr|first-call|1",
            lead_id=ben_lead,
            cycle=0,
            cadence="mql-sdr",
            step="first-call",
            visit=1,
            owner="ben",
            due_at=now + timedelta(days=1),
            script="Call Bo about Globex.",
        )
        session.add_all([aiko_task, ben_task])
        await session.commit()
        return aiko_task.id, ben_task.id, aiko_lead, ben_lead


@pytest.fixture
async def site(make_settings, time_env) -> AsyncIterator[Site]:  # type: ignore[no-untyped-def]
    settings = make_settings()
    await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)
    try:
        for user_id, role in (("aiko", "sdr"), ("ben", "sdr"), ("olga", "ops")):
            await add_user(sessions, user_id, role)
        seeded = await _seed(sessions)
        clock = Clock()
        app = create_app(settings, client=time_env.client, temporal_ui_url=UI, login_clock=clock)
        async with asgi_client(app) as client:
            yield Site(client, sessions, *seeded, app=app, clock=clock)
    finally:
        await engine.dispose()


async def test_pages_need_a_login(site: Site) -> None:
    client = site.app_client
    for path in ("/inbox", f"/leads/{site.aiko_lead}", "/ops", "/mail", "/reports", "/"):
        response = await client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=/"), path
    assert (await client.get("/inbox/poll")).status_code == 401
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/login")).status_code == 200


async def test_login_refuses_a_wrong_password_and_logs_out(site: Site) -> None:
    async with site.client() as browser:
        wrong = await browser.post("/login", data={"username": "aiko", "password": "nope"})
        nobody = await browser.post("/login", data={"username": "zed", "password": PASSWORD})
        assert wrong.status_code == 401 and "wrong password" in wrong.text
        assert nobody.status_code == 401
        assert (await browser.get("/inbox")).status_code == 303

        evil = await browser.post(
            "/login", data={"username": "aiko", "password": PASSWORD, "next": "//evil.example/"}
        )
        assert evil.status_code == 303 and evil.headers["location"] == "/inbox"  # no open redirect
        csrf = await log_in(browser, "aiko")
        assert (await browser.post("/logout", data={"csrf": "forged"})).status_code == 403
        out = await browser.post("/logout", data={"csrf": csrf})
        assert out.status_code == 303
        assert (await browser.get("/inbox")).status_code == 303


async def test_an_sdr_sees_only_their_own_tasks_with_context(site: Site) -> None:
    async with site.client() as browser:
        await log_in(browser, "aiko")
        page = await browser.get("/inbox")
        poll = await browser.get("/inbox/poll")

    assert page.status_code == 200
    text = page.text
    assert site.aiko_task in text and site.ben_task not in text
    assert "Call Mia at +81 3 1234 5678 &lt;about the pricing page&gt;." in text  # escaped
    for shown in ("Mia Tanaka", "Acme KK", "CTO", "+81 3 1234 5678", "mia@acme.example"):
        assert shown in text
    assert "overdue" in text
    assert "Welcome to Acme" in text  # last emails
    assert "MQL threshold" in text  # history from the database's copy...
    assert "did not answer" in text  # ...and the page says so (no worker runs here)
    assert 'http-equiv="refresh"' not in text and "/inbox/poll" in text
    for outcome in ("connected", "qualified", "meeting_booked", "call_back_later"):
        assert f'value="{outcome}"' in text
    assert poll.json() == {"open": [site.aiko_task]}


async def test_an_sdr_cannot_open_or_complete_another_sdrs_task(site: Site) -> None:
    async with site.client() as browser:
        csrf = await log_in(browser, "aiko")
        opened = await browser.get(f"/inbox/tasks/{site.ben_task}", headers={"Accept": "text/html"})
        completed = await browser.post(
            f"/inbox/tasks/{site.ben_task}", data={"outcome": "qualified", "csrf": csrf}
        )
        lead = await browser.get(f"/leads/{site.ben_lead}")

    assert opened.status_code == 404 and "Not found" in opened.text
    # Like a task that does not exist: the answer tells nothing about a colleague's work.
    assert completed.status_code == 404
    assert lead.status_code == 404
    async with site.sessions() as session:
        task = await session.get(CallTask, site.ben_task)
        assert task is not None and task.status == "open" and task.outcome is None


async def test_an_sdr_records_an_outcome(site: Site) -> None:
    async with site.client() as browser:
        csrf = await log_in(browser, "aiko")
        page = await browser.get(f"/inbox/tasks/{site.aiko_task}")
        forged = await browser.post(
            f"/inbox/tasks/{site.aiko_task}", data={"outcome": "qualified", "csrf": "x"}
        )
        bad = await browser.post(
            f"/inbox/tasks/{site.aiko_task}", data={"outcome": "maybe", "csrf": csrf}
        )
        done = await browser.post(
            f"/inbox/tasks/{site.aiko_task}",
            data={"outcome": "qualified", "notes": "budget approved", "csrf": csrf},
        )
        twice = await browser.post(
            f"/inbox/tasks/{site.aiko_task}", data={"outcome": "qualified", "csrf": csrf}
        )
        inbox = await browser.get(done.headers["location"])

    assert page.status_code == 200 and "Record outcome" in page.text
    assert forged.status_code == 403
    assert bad.status_code == 409 and "unknown outcome" in bad.text
    assert done.status_code == 303
    assert twice.status_code == 409 and "is done" in twice.text
    assert f"Outcome recorded for {site.aiko_task}" in inbox.text
    async with site.sessions() as session:
        task = await session.get(CallTask, site.aiko_task)
        events = (
            await session.scalars(select(EventRow).where(EventRow.type == "call.completed"))
        ).all()
    assert task is not None and (task.status, task.outcome, task.notes) == (
        "done",
        "qualified",
        "budget approved",
    )
    assert [(e.lead_id, e.data["outcome"]) for e in events] == [(site.aiko_lead, "qualified")]


async def test_ops_see_every_sdrs_tasks_and_can_filter(site: Site) -> None:
    async with site.client() as browser:
        await log_in(browser, "olga")
        everyone = await browser.get("/inbox")
        ben_only = await browser.get("/inbox?owner=ben")

    assert site.aiko_task in everyone.text and site.ben_task in everyone.text
    assert site.ben_task in ben_only.text and site.aiko_task not in ben_only.text
    assert '<option value="aiko"' in everyone.text
    # The new-task poll follows the filter (and stays valid JavaScript without one).
    assert 'var url = "/inbox/poll" + "";' in everyone.text
    assert 'var url = "/inbox/poll" + "?owner=ben";' in ben_only.text


async def test_lead_page_shows_state_and_links_to_its_workflow(site: Site) -> None:
    async with site.client() as browser:
        await log_in(browser, "aiko")
        own = await browser.get(f"/leads/{site.aiko_lead}")
    async with site.client() as browser:
        csrf = await log_in(browser, "olga")
        as_ops = await browser.get(f"/leads/{site.ben_lead}")
        missing = await browser.get("/leads/L-nobody")
        found = await browser.post("/ops/find", data={"q": "MIA@acme.example", "csrf": csrf})

    assert own.status_code == 200
    assert f'href="{UI}/namespaces/default/workflows/lead-{site.aiko_lead}"' in own.text
    assert ">mql<" in own.text and "MQL threshold" in own.text
    assert as_ops.status_code == 200 and "Globex" in as_ops.text
    assert missing.status_code == 404
    assert found.headers["location"] == f"/leads/{site.aiko_lead}"


async def test_ops_page_lists_parked_events_and_unknown_sends(site: Site) -> None:
    async with site.client() as browser:
        await log_in(browser, "aiko")
        refused = await browser.get("/ops")
        mail = await browser.get("/mail")
    async with site.client() as browser:
        await log_in(browser, "olga")
        page = await browser.get("/ops")
        reports = await browser.get("/reports")

    assert refused.status_code == 403 and mail.status_code == 403
    assert page.status_code == 200
    assert "evt-early" in page.text and "L-not-yet" in page.text
    assert "connection dropped after DATA" in page.text and site.ben_lead in page.text
    assert f'href="{UI}/namespaces/default/workflows"' in page.text
    # Ready-made Temporal UI views, of running leads only (not runs continued as new).
    mqls = quote(
        'WorkflowType="LeadWorkflow" AND ExecutionStatus="Running" AND LeadStage="mql"', safe=""
    )
    assert f"{UI}/namespaces/default/workflows?query={mqls}" in page.text
    by_aiko = quote(
        'WorkflowType="LeadWorkflow" AND ExecutionStatus="Running" AND LeadOwner="aiko"', safe=""
    )
    assert by_aiko in page.text
    assert quote(" AND NextTouchAt < ", safe="") in page.text
    assert reports.status_code == 200 and "olga (ops)" in reports.text  # behind the login too


async def sign_in(browser: httpx.AsyncClient, user_id: str) -> httpx.Response:
    """Post the right password for ``user_id``."""
    return await browser.post("/login", data={"username": user_id, "password": PASSWORD})


async def test_password_guessing_is_stopped_after_five_failures(site: Site) -> None:
    async with site.client() as browser:
        for _ in range(5):
            wrong = await browser.post("/login", data={"username": "aiko", "password": "guess"})
            assert wrong.status_code == 401
        # The right password too is refused now: the guesser cannot tell it found it.
        held = await browser.post("/login", data={"username": "aiko", "password": PASSWORD})
        assert held.status_code == 429 and "Too many failed logins" in held.text
        # A colleague behind the same address still signs in: the lock is on the name.
        other = await browser.post("/login", data={"username": "ben", "password": PASSWORD})
        assert other.status_code == 303


async def test_an_accounts_lockout_doubles_with_each_failure_and_a_success_clears_it(
    site: Site,
) -> None:
    async with site.client() as browser:

        async def log_in_as_aiko(password: str) -> httpx.Response:
            return await browser.post("/login", data={"username": "aiko", "password": password})

        for _ in range(5):
            assert (await log_in_as_aiko("guess")).status_code == 401
        held = await log_in_as_aiko(PASSWORD)
        assert held.status_code == 429 and "try again in 1 minute" in held.text
        site.clock.advance(59)
        assert (await log_in_as_aiko(PASSWORD)).status_code == 429
        site.clock.advance(1)
        # The first failure after the lock locks for twice as long.
        assert (await log_in_as_aiko("guess")).status_code == 401
        held = await log_in_as_aiko(PASSWORD)
        assert held.status_code == 429 and "try again in 2 minutes" in held.text
        site.clock.advance(119)
        assert (await log_in_as_aiko(PASSWORD)).status_code == 429
        site.clock.advance(1)
        assert (await log_in_as_aiko(PASSWORD)).status_code == 303
        # A success starts the count afresh: four typos later the right password still works.
        for _ in range(4):
            assert (await log_in_as_aiko("guess")).status_code == 401
        assert (await log_in_as_aiko(PASSWORD)).status_code == 303


async def test_guesses_sent_at_once_for_one_name_cannot_slip_past_the_lock(site: Site) -> None:
    async with site.client() as browser:
        answers = await asyncio.gather(
            *(
                browser.post("/login", data={"username": "aiko", "password": f"guess-{n}"})
                for n in range(12)
            )
        )
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [401] * 5 + [429] * 7


async def test_one_address_is_held_only_far_above_what_an_office_produces(site: Site) -> None:
    async with site.client("10.1.2.3") as office, site.client("10.9.9.9") as elsewhere:
        # Twenty-five colleagues behind one NAT mistype three times each: nobody is held.
        for n in range(25):
            for _ in range(3):
                wrong = await office.post(
                    "/login", data={"username": f"colleague-{n}", "password": "typo"}
                )
                assert wrong.status_code == 401
        assert (await sign_in(office, "ben")).status_code == 303
        # One address spraying names: the hundredth failure in 15 minutes holds the address.
        for n in range(25):
            wrong = await office.post("/login", data={"username": f"name-{n}", "password": "x"})
            assert wrong.status_code == 401
        held = await sign_in(office, "ben")
        assert held.status_code == 429 and "from this network" in held.text
        assert (await sign_in(elsewhere, "aiko")).status_code == 303
        site.clock.advance(15 * 60)
        assert (await sign_in(office, "ben")).status_code == 303


async def test_ops_pause_and_resume_sending_from_the_ops_page(site: Site) -> None:
    async with site.client() as browser:
        sdr_csrf = await log_in(browser, "aiko")
        refused = await browser.post(
            "/ops/sending", data={"action": "pause", "why": "x", "csrf": sdr_csrf}
        )
    async with site.client() as browser:
        csrf = await log_in(browser, "olga")
        no_why = await browser.post("/ops/sending", data={"action": "pause", "csrf": csrf})
        forged = await browser.post("/ops/sending", data={"action": "pause", "why": "x"})
        paused = await browser.post(
            "/ops/sending", data={"action": "pause", "why": "wrong template", "csrf": csrf}
        )
        page = await browser.get("/ops")
        resumed = await browser.post("/ops/sending", data={"action": "resume", "csrf": csrf})
        after = await browser.get("/ops")

    assert refused.status_code == 403 and forged.status_code == 403
    assert no_why.status_code == 422 and "why" in no_why.text
    assert paused.status_code == 303
    assert "Sending is paused" in page.text and "by olga: wrong template" in page.text
    assert resumed.status_code == 303
    assert "Sending is on" in after.text and "Resume sending" not in after.text
    async with site.sessions() as session:
        log = await sending.history(session)
    assert [(s.paused, s.by) for s in log[:2]] == [(False, "olga"), (True, "olga")]


def test_a_hard_wrapped_script_reads_as_paragraphs_and_rows() -> None:
    from nurture.web.script_text import script_html

    script = (
        "MQL - FIRST CALL\n================\n"
        "Who:        Mia <CTO>\nPhone:      +1 555 0100\n\n"
        "WHY THIS LEAD: their score crossed the MQL line (see the lead page for what they\n"
        "read). Call today.\n\nOPENER\n"
        '  "Hi Mia, this is Ben. You\'ve been\n   looking into planning."\n\n'
        "RECORD THE OUTCOME\n"
        "  qualified        need, owner and timing confirmed. Write the notes\n"
        "                   the AE needs.\n"
    )
    html = str(script_html(script))
    assert "<h4>MQL - FIRST CALL</h4>" in html
    assert "<span>Who:</span><span>Mia &lt;CTO&gt;</span>" in html  # escaped
    assert "what they read). Call today." in html  # a wrapped line joined back
    assert "You&#39;ve been looking into planning." in html
    assert "<h5>OPENER</h5>" in html
    assert (
        "<span>qualified</span><span>need, owner and timing confirmed. Write the notes the AE"
        in html
    )
    assert "(no script)" in str(script_html(None))


async def test_lead_page_actions_are_for_ops_with_a_valid_form_and_an_active_sdr(
    site: Site,
) -> None:
    lead = site.aiko_lead
    async with site.sessions() as session:
        ben = await session.get(User, "ben")
        assert ben is not None
        ben.deactivated_at = datetime.now(UTC)
        await session.commit()
    async with site.client() as browser:
        sdr_csrf = await log_in(browser, "aiko")
        sdr_page = await browser.get(f"/leads/{lead}")
        by_sdr = await browser.post(f"/leads/{lead}/pause", data={"csrf": sdr_csrf})
    async with site.client() as browser:
        csrf = await log_in(browser, "olga")
        page = await browser.get(f"/leads/{lead}")
        forged = await browser.post(f"/leads/{lead}/pause", data={"csrf": "forged"})
        html = {"Accept": "text/html"}
        unknown = await browser.post(
            f"/leads/{lead}/reassign", data={"owner": "zed", "csrf": csrf}, headers=html
        )
        gone = await browser.post(f"/leads/{lead}/reassign", data={"owner": "ben", "csrf": csrf})
        missing = await browser.post("/leads/L-nobody/resume", data={"csrf": csrf})
        # No worker runs here, and this lead's workflow was never started.
        no_workflow = await browser.post(f"/leads/{lead}/pause", data={"csrf": csrf})

    assert sdr_page.status_code == 200 and "/pause" not in sdr_page.text  # no actions
    assert by_sdr.status_code == 403
    assert 'action="/leads/' + lead + '/reassign"' in page.text
    assert '<option value="aiko"' in page.text and '<option value="ben"' not in page.text
    assert forged.status_code == 403
    assert unknown.status_code == 422
    assert "owner: no SDR &#39;zed&#39; in the playbook&#39;s team" in unknown.text
    assert gone.status_code == 422
    [problem] = gone.json()["detail"]
    assert problem["loc"] == ["body", "owner"]
    assert "SDR 'ben' is deactivated; active SDRs: aiko" in problem["msg"]
    assert missing.status_code == 404
    assert no_workflow.status_code == 409
    assert "no running workflow" in no_workflow.json()["detail"][0]["msg"]
    async with site.sessions() as session:
        row = await session.get(LeadRow, lead)
        assert row is not None and row.owner == "aiko"  # nothing half-applied
