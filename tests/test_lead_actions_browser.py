"""Ops act on a lead from its page in Debian's Chromium: pause, resume, reassign.

The whole product runs (web app on a free port, worker on the time-skipping server, SMTP
sink). Screenshot: ``test-artifacts/lead-actions.png``. Marked ``browser``: see
tests/conftest.py for when it runs.
"""

from __future__ import annotations

import secrets

import pytest
from conftest import write_cadence_set
from harness import running
from test_browser import CADENCES, PLAYBOOK, TEMPLATES, _post
from web_helpers import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, PASSWORD, LiveServer, add_user

from nurture.web import create_app

pytestmark = pytest.mark.browser


async def test_ops_pause_resume_and_reassign_a_lead_from_its_page(  # type: ignore[no-untyped-def]
    time_env, make_settings, smtp_sink, tmp_path
) -> None:
    from playwright.async_api import async_playwright, expect

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
        await add_user(stack.sessions, "olga", "ops")
        with LiveServer(create_app(settings)) as server:
            new = {"id": lead, "email": f"{lead.lower()}@globex.example", "country": "JP"}
            assert (await _post(server, secret, "/leads", new)).status_code == 202
            stack.started.add(lead)
            view = await stack.until(lead, lambda v: v.step == "pause")
            assert view.owner is None and view.playbook_version  # owners come at MQL

            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                try:
                    page = await browser.new_page(viewport={"width": 1280, "height": 900})
                    await page.goto(f"{server.url}/leads/{lead}")
                    await page.get_by_label("User").fill("olga")
                    await page.get_by_label("Password").fill(PASSWORD)
                    await page.get_by_role("button", name="Sign in").click()
                    await expect(page.locator("#playbook-version")).to_contain_text(
                        view.playbook_version[:12]
                    )
                    await expect(page.locator("#playbook-version")).to_contain_text("current")

                    await page.get_by_label("Pause: why").fill("asked us to call in May")
                    await page.get_by_role("button", name="Pause touches").click()
                    await expect(page.get_by_role("status").last).to_contain_text("Paused")
                    paused = await stack.until(lead, lambda v: v.paused)
                    assert any(
                        "asked us to call in May (paused by olga)" in h.why + h.what
                        for h in paused.history
                    )
                    await page.reload()
                    await expect(page.locator("#stage")).to_have_text("nurturing")
                    await expect(page.locator(".badge.red")).to_have_text("paused")
                    await page.screenshot(path=str(ARTIFACTS / "lead-actions.png"), full_page=True)

                    await page.get_by_role("button", name="Resume touches").click()
                    await stack.until(lead, lambda v: not v.paused)

                    await page.get_by_label("Reassign to").select_option("ben")
                    await page.get_by_role("button", name="Reassign").click()
                    await expect(page.get_by_role("status").last).to_contain_text("Reassigned")
                    await stack.until(lead, lambda v: v.owner == "ben")
                finally:
                    await browser.close()
