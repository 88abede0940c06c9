"""The report pages in a real browser: Debian's Chromium driven by Playwright.

The pages are served by uvicorn on a free 127.0.0.1 port from a tiny app holding only the
report router, over a seeded SQLite file (tests/reportdata.py). JavaScript is off in the
browser: the pages must read without it. Screenshots go to ``test-artifacts/``.

Marked ``browser``: see tests/conftest.py for when it runs (Playwright's own browser
download is never used).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from reportdata import seed
from web_helpers import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, LiveServer

from nurture.adapters.database import make_engine, session_factory
from nurture.adapters.schema import migrate
from nurture.web import reports as report_pages

MARCH = "since=2026-03-01&until=2026-03-31"

pytestmark = pytest.mark.browser


def pages_app(url: str) -> FastAPI:
    """Only the report router, with the session factory the router expects."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Made in the server's own event loop (its thread), where the sessions will run.
        engine = make_engine(url)
        app.state.sessions = session_factory(engine)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(report_pages.router)
    return app


@pytest.fixture
def serve() -> Iterator[Callable[[str], str]]:
    """Start the pages app on a free port (``serve(database_url) -> base URL``); stop after."""
    with contextlib.ExitStack() as servers:
        yield lambda url: servers.enter_context(LiveServer(pages_app(url))).url


async def test_report_pages_render_their_charts_in_chromium(tmp_path: Path, serve) -> None:
    from playwright.async_api import async_playwright

    url = f"sqlite+aiosqlite:///{tmp_path / 'nurture.db'}"
    await migrate(url)
    engine = make_engine(url)
    try:
        await seed(session_factory(engine))
    finally:
        await engine.dispose()
    base = serve(url)
    ARTIFACTS.mkdir(exist_ok=True)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(
                viewport={"width": 1280, "height": 900}, java_script_enabled=False
            )
            page = await context.new_page()
            response = await page.goto(f"{base}/reports?{MARCH}&by=step")
            assert response is not None and response.status == 200

            charts = page.locator("svg.chart")
            assert await charts.count() == 4
            # Drawn, not just present: every chart has a visible box, and the funnel its bars.
            for index in range(4):
                box = await charts.nth(index).bounding_box()
                assert box is not None and box["width"] > 300 and box["height"] > 20
            funnel = page.locator("svg.funnel-chart")
            assert await funnel.locator("rect.bar").count() == 4
            assert (
                await funnel.locator("title").first.text_content()
                == "Funnel: passages reaching each stage"
            )
            widths = [
                float(await funnel.locator("rect.bar").nth(i).get_attribute("width") or 0)
                for i in range(4)
            ]
            assert widths == sorted(widths, reverse=True) and widths[-1] > 0  # 7 > 6 > 5 > 2
            assert await page.get_by_role("heading", name="Funnel by step").is_visible()
            assert await page.get_by_role("cell", name="inbound/welcome").is_visible()
            await page.screenshot(path=str(ARTIFACTS / "reports.png"), full_page=True)

            await page.goto(
                f"{base}/reports/plan?target_revenue=48000000&deal_size=20000&renewal_rate=0.5&customers=600"
                "&lead_to_mql=0.2&mql_to_sql=0.5&sql_to_won=0.25&calls_per_sql=5"
            )
            assert await page.locator("svg.funnel-chart rect.bar").count() == 4
            assert await page.get_by_role("row", name="new customers a year").text_content() == (
                "new customers a year2,100 = 42,000,000 / 20,000, rounded up"
            )
            await page.screenshot(path=str(ARTIFACTS / "reports-plan.png"), full_page=True)
        finally:
            await browser.close()
