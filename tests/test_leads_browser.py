"""The leads list in Debian's Chromium: filter by stage, the URL keeps it, rows link on.

Marked ``browser``: see tests/conftest.py for when it runs. Screenshot:
``test-artifacts/leads.png``.
"""

from __future__ import annotations

import re

import pytest
from test_leads_list import _seed
from web_helpers import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, PASSWORD, LiveServer, add_user

from nurture.adapters.database import make_engine, session_factory
from nurture.adapters.schema import migrate
from nurture.settings import Settings
from nurture.web import create_app

pytestmark = pytest.mark.browser


async def test_ops_filter_the_leads_list_by_stage(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from playwright.async_api import async_playwright, expect

    url = f"sqlite+aiosqlite:///{tmp_path / 'leads.db'}"
    await migrate(url)
    engine = make_engine(url)
    try:
        sessions = session_factory(engine)
        await _seed(sessions)
        await add_user(sessions, "olga", "ops")
    finally:
        await engine.dispose()
    ARTIFACTS.mkdir(exist_ok=True)
    with LiveServer(create_app(Settings(database_url=url))) as server:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 700})
                await page.goto(f"{server.url}/leads")
                await page.get_by_label("User").fill("olga")
                await page.get_by_label("Password").fill(PASSWORD)
                await page.get_by_role("button", name="Sign in").click()
                await expect(page).to_have_url(f"{server.url}/leads")
                await expect(page.locator("tbody tr")).to_have_count(6)

                await page.get_by_label("Stage").select_option("mql")
                await page.get_by_role("button", name="Filter").click()
                await expect(page).to_have_url(re.compile(r"/leads\?stage=mql"))  # in the URL
                await expect(page.locator("tbody tr")).to_have_count(2)
                await expect(page.locator("tr[data-lead='L-02']")).to_contain_text("stuck")
                await page.screenshot(path=str(ARTIFACTS / "leads.png"), full_page=True)

                await page.get_by_role("link", name="L-03").click()
                await expect(page).to_have_url(f"{server.url}/leads/L-03")
            finally:
                await browser.close()
