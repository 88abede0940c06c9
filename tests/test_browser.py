"""An SDR's day in a real browser: Debian's Chromium driven by Playwright.

The whole product runs: the web app served by uvicorn on a free 127.0.0.1 port (its own
thread and event loop, its own Temporal client), the worker on the time-skipping server, the
SMTP sink. A lead comes in by signed webhook, a click makes it an MQL, the MQL cadence
creates a call task; the SDR, already looking at the inbox, sees it appear without a reload,
reads the script, records `qualified`, and the lead is tossed up (`sql`). Another SDR
cannot open that task. A screenshot goes to ``test-artifacts/inbox.png``.

Marked ``browser``: see tests/conftest.py for when it runs (Playwright's own browser
download is never used).
"""

from __future__ import annotations

import secrets

import httpx
import pytest
from conftest import SKELETON_TEMPLATES, write_cadence_set
from harness import running
from sqlalchemy import select
from web_helpers import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    LiveServer,
    add_user,
    signed,
    wait_until,
)

from nurture.adapters.database import CallTask
from nurture.domain.events import CALL_OUTCOMES
from nurture.web import create_app, inbox

pytestmark = pytest.mark.browser

PLAYBOOK = """
    scoring:
      points: {email.opened: 1, email.clicked: 5, page.visited: 2}
      decay: {after: 30d, points: 10}
    grading:
      rules:
        - when: {field: employees, at_least: 1000}
          points: 50
      bands: {A: 70, B: 40, C: 20, D: 0}
    thresholds:
      mql: {score: 5}
      toss_up: {score: 80, grades: [A, B]}
      sales_follow_up: 14d
    routing:
      entry:
        - cadence: welcome
      mql_cadence: mql-call
      recycle:
        default: {after: 30d, cadence: welcome}
    limits:
      send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}
    team:
      sdrs:
        - {id: aiko, name: Aiko Sato, email: aiko@example.com, territories: [JP]}
        - {id: ben, name: Ben Carter, email: ben@example.com, territories: [US]}
      call_due: 1d
    sender:
      from: "Acme <hello@acme.example>"
      postal_address: "Acme Inc., 1 Main St, Springfield"
"""

CADENCES = {
    "welcome": """
        id: welcome
        name: Welcome
        steps:
          - {id: hello, type: email, template: welcome/hello}
          - {id: pause, type: wait, duration: 2d, until_any: [email.clicked]}
    """,
    "mql-call": """
        id: mql-call
        name: MQL call
        steps:
          - {id: first-call, type: call, script: first-call, wait_for_outcome: 2d}
    """,
}

TEMPLATES = {
    **SKELETON_TEMPLATES,
    "call/first-call.j2": (
        "Call {{ lead.first_name or 'the lead' }} at {{ lead.phone or 'no phone' }}: "
        "ask about {{ lead.company or 'their team' }}'s rollout."
    ),
}


async def _post(server: LiveServer, secret: str, path: str, payload: object) -> httpx.Response:
    body, headers = signed(secret, payload)
    async with httpx.AsyncClient(base_url=server.url) as client:
        return await client.post(path, content=body, headers=headers)


async def test_an_sdr_qualifies_a_lead_in_the_browser(  # type: ignore[no-untyped-def]
    time_env, make_settings, smtp_sink, tmp_path, monkeypatch
) -> None:
    from playwright.async_api import async_playwright, expect

    # The inbox polls for new tasks every POLL_SECONDS; a second keeps the test short.
    monkeypatch.setattr(inbox, "POLL_SECONDS", 1)
    cadences_dir, templates_dir = write_cadence_set(tmp_path / "set", PLAYBOOK, CADENCES, TEMPLATES)
    settings = make_settings(
        cadences_dir=cadences_dir,
        templates_dir=templates_dir,
        temporal_address=time_env.client.service_client.config.target_host,
    )
    secret = settings.require_webhook_secret()
    lead = f"L-{secrets.token_hex(4)}"
    ARTIFACTS.mkdir(exist_ok=True)

    async with running(time_env.client, settings) as stack:
        await add_user(stack.sessions, "ben", "sdr")
        await add_user(stack.sessions, "aiko", "sdr")
        with LiveServer(create_app(settings)) as server:
            new = {
                "id": lead,
                "email": f"{lead.lower()}@globex.example",
                "first_name": "Mia",
                "phone": "+1 555 0100",
                "company": "Globex",
                "title": "CTO",
                "country": "US",
            }
            assert (await _post(server, secret, "/leads", new)).status_code == 202
            stack.started.add(lead)
            await stack.until(lead, lambda v: v.step == "pause")

            async with async_playwright() as p:
                browser = await p.chromium.launch(
                    executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
                )
                try:
                    ben = await browser.new_page(viewport={"width": 1280, "height": 900})
                    await _log_in(ben, server.url, "ben")
                    await expect(ben.locator("main")).to_contain_text("No open call tasks")

                    # The click makes the lead an MQL; the MQL cadence's first step is a call.
                    click = {"id": f"evt-{lead}", "type": "email.clicked", "lead_id": lead}
                    assert (await _post(server, secret, "/events", click)).status_code == 202
                    task_id = await _task_of(stack, lead)

                    card = ben.locator(f"#task-{task_id}")
                    await expect(card).to_be_visible(timeout=15_000)  # no manual reload
                    await expect(card).to_contain_text(
                        "Call Mia at +1 555 0100: ask about Globex's rollout."
                    )
                    await expect(card).to_contain_text("Stage mql")
                    await ben.screenshot(path=str(ARTIFACTS / "inbox.png"), full_page=True)

                    # The compact list beside it: the lead, the step, due in both times.
                    row = ben.locator(f".tasklist tr[data-task='{task_id}']")
                    await expect(row).to_contain_text("Mia")
                    await expect(row).to_contain_text("first-call")
                    await expect(row).to_contain_text("New York")  # the lead's own time

                    # From the keyboard: n for the notes, Escape, then the outcome's number.
                    await ben.keyboard.press("n")
                    await ben.keyboard.type("Budget approved for Q3.")
                    await ben.keyboard.press("Escape")
                    key = str(CALL_OUTCOMES.index("qualified") + 1)
                    await expect(card.locator(f"button[data-key='{key}']")).to_contain_text(
                        "qualified"
                    )
                    await ben.keyboard.press(key)
                    await expect(ben.get_by_role("status").first).to_contain_text(
                        f"Outcome recorded for {task_id}"
                    )
                    await expect(ben.locator(f"#task-{task_id}")).to_have_count(0)

                    view = await stack.until(lead, lambda v: v.stage == "sql")
                    assert any("qualified" in h.why or "qualified" in h.what for h in view.history)
                    async with stack.sessions() as session:
                        task = await session.get(CallTask, task_id)
                        assert task is not None
                        assert (task.status, task.outcome) == ("done", "qualified")
                        assert task.notes == "Budget approved for Q3."

                    aiko = await browser.new_page()
                    await _log_in(aiko, server.url, "aiko")
                    await expect(aiko.locator("main")).not_to_contain_text(task_id)
                    response = await aiko.goto(f"{server.url}/inbox/tasks/{task_id}")
                    assert response is not None and response.status == 404
                    await expect(aiko.locator("h1")).to_have_text("Not found")
                    response = await aiko.goto(f"{server.url}/leads/{lead}")
                    assert response is not None and response.status == 404

                    page = await ben.goto(f"{server.url}/leads/{lead}")
                    assert page is not None and page.status == 200
                    await expect(ben.locator("#stage")).to_have_text("sql")
                finally:
                    await browser.close()


async def _log_in(page, base: str, user: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.async_api import expect

    await page.goto(f"{base}/inbox")
    await expect(page).to_have_url(f"{base}/login?next=/inbox")
    await page.get_by_label("User").fill(user)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{base}/inbox")


async def _task_of(stack, lead: str) -> str:  # type: ignore[no-untyped-def]
    async def find() -> str | None:
        async with stack.sessions() as session:
            query = select(CallTask.id).where(CallTask.lead_id == lead, CallTask.owner == "ben")
            return await session.scalar(query)

    return await wait_until(find)
