"""The cadence picture (`nurture.domain.graph_svg`) and the pages that show it (`/cadences`).

The picture: well-formed XML, one box per step, one routed arrow per jump, lanes that never
overlap, text escaped, the same bytes every time (even across processes). The pages: login
required, the repo's real cadences shown as pictures, 404 for an unknown cadence, and the
problems of a broken set listed instead of a 500. ``cadences/mql-sdr.yaml`` (25 steps) is
drawn to ``test-artifacts/cadence-mql-sdr.svg``, and to ``.png`` when Debian's Chromium and
Playwright are there.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import ROOT
from web_helpers import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    add_user,
    asgi_client,
    browser_unavailable,
    log_in,
)

from nurture.adapters.database import make_engine, session_factory
from nurture.adapters.loader import load_cadence
from nurture.adapters.schema import migrate
from nurture.domain.cadence import Cadence
from nurture.domain.graph_svg import BOX_W, MARGIN, Jump, jumps, render_svg
from nurture.web import create_app

SVG = "{http://www.w3.org/2000/svg}"

CONTRACT_CADENCE = {
    "id": "inbound",
    "name": "Inbound nurture",
    "exit_on": ["email.replied", "meeting.booked"],
    "steps": [
        {"id": "welcome", "type": "email", "template": "inbound/welcome"},
        {
            "id": "pause",
            "type": "wait",
            "duration": "2 business days",
            "until_any": ["email.clicked"],
        },
        {
            "id": "engaged",
            "type": "branch",
            "cases": [
                {"when": {"event": "email.clicked", "step": "welcome"}, "goto": "first-call"},
                {"when": {"score_at_least": 20}, "goto": "first-call"},
            ],
            "default": "nudge",
        },
        {"id": "nudge", "type": "email", "template": "inbound/nudge", "next": "end"},
        {
            "id": "first-call",
            "type": "call",
            "script": "inbound/first-call",
            "wait_for_outcome": "2d",
        },
        {
            "id": "after-call",
            "type": "branch",
            "cases": [{"when": {"call_outcome": ["no_answer", "voicemail"]}, "goto": "nudge"}],
            "default": "end",
        },
    ],
}


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # raises on anything that is not well-formed XML
    assert root.tag == f"{SVG}svg"
    return root


def groups(root: ET.Element, css_class: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == css_class]


def vertical_runs(root: ET.Element) -> list[tuple[float, float, float, str]]:
    """Per jump: (lane x, top y, bottom y, target) of the part that runs in its lane."""
    runs = []
    for g in groups(root, "jump"):
        d = g.findall(f"{SVG}path")[-1].get("d", "")
        m = re.search(r"Q([\d.]+),[\d.]+ [\d.]+,([\d.]+) V([\d.]+)", d)
        assert m, d
        x, y0, y1 = (float(v) for v in m.groups())
        runs.append((x, min(y0, y1), max(y0, y1), g.get("data-to", "")))
    return runs


# --- the picture --------------------------------------------------------------------------


def test_the_contract_cadence_as_a_picture() -> None:
    cadence = Cadence.model_validate(CONTRACT_CADENCE)
    root = parse(render_svg(cadence))

    steps = groups(root, "step")
    assert [g.get("data-step") for g in steps] == [s.id for s in cadence.steps]
    assert [g.get("data-type") for g in steps] == [s.type for s in cadence.steps]
    drawn = [
        (g.get("data-from"), g.get("data-to"), g.get("data-kind")) for g in groups(root, "jump")
    ]
    assert sorted(drawn) == [  # drawn longest first, so that short ones lie on top
        ("after-call", "nudge", "goto"),
        ("engaged", "first-call", "goto"),
        ("engaged", "first-call", "goto"),
        ("nudge", "end", "next"),
    ]
    assert jumps(cadence) == [
        Jump("engaged", "first-call", "goto", "email.clicked on welcome"),
        Jump("engaged", "first-call", "goto", "score ≥ 20"),
        Jump("nudge", "end", "next", "next"),
        Jump("after-call", "nudge", "goto", "outcome no_answer/voicemail"),
    ]
    # Straight arrows: start, then every step that simply goes on to the one below.
    assert [(g.get("data-from"), g.get("data-to")) for g in groups(root, "flow")] == [
        ("start", "welcome"),
        ("welcome", "pause"),
        ("pause", "engaged"),
        ("engaged", "nudge"),  # the default, drawn straight down and labelled "otherwise"
        ("first-call", "after-call"),
        ("after-call", "end"),
    ]
    assert len(groups(root, "end")) == 1
    text = " ".join(root.itertext())
    for shown in (
        "Inbound nurture",
        "stops early on email.replied, meeting.booked",
        "template inbound/welcome",
        "wait 2 business days",
        "or until email.clicked",
        "script inbound/first-call",
        "waits 2d for the outcome",
        "if email.clicked on welcome",
        "if score ≥ 20",
        "if outcome no_answer/voicemail",
        "otherwise",
        "→ first-call",
    ):
        assert shown in text, shown


def test_each_step_type_has_its_own_shape_and_an_exit_ends_the_flow() -> None:
    cadence = Cadence.model_validate(
        {
            "id": "shapes",
            "name": "Shapes",
            "steps": [
                {"id": "hello", "type": "email", "template": "a/hello"},
                {"id": "ring", "type": "call", "script": "a/ring"},
                {"id": "rest", "type": "wait", "duration": "1d"},
                {
                    "id": "fork",
                    "type": "branch",
                    "cases": [{"when": {"grade_in": ["A"]}, "goto": "stop"}],
                },
                {"id": "stop", "type": "exit", "reason": "done"},
            ],
        }
    )
    root = parse(render_svg(cadence))
    boxes = {g.get("data-step"): g for g in groups(root, "step")}
    assert boxes["fork"].find(f"{SVG}polygon") is not None  # bevelled, with a diamond
    assert len(boxes["stop"].findall(f"{SVG}rect")) == 2  # the double border of an exit
    assert "stroke-dasharray" in (boxes["rest"].find(f"{SVG}rect").attrib)  # type: ignore[union-attr]
    assert boxes["ring"].find(f"{SVG}rect").get("rx") == "13"  # type: ignore[union-attr]
    # The exit is the last step and ends the cadence itself: no arrow leaves it, no end node.
    assert not [g for g in groups(root, "flow") if g.get("data-from") == "stop"]
    assert groups(root, "end") == []


def test_labels_are_escaped() -> None:
    nasty = "<script>alert(1)</script> & co"
    cadence = Cadence.model_validate(
        {
            "id": "esc",
            "name": 'Q&A <for> "everyone"',
            "steps": [
                {"id": "ask", "name": "Ask <boss> & 'team'", "type": "email", "template": "x<y>&z"},
                {
                    "id": "check",
                    "type": "branch",
                    "cases": [{"when": {"field": "title", "equals": "<&>"}, "goto": "stop"}],
                    "default": "end",
                },
                {"id": "stop", "type": "exit", "reason": nasty},
            ],
        }
    )
    svg = render_svg(cadence)
    root = parse(svg)
    assert "<script>" not in svg and "<boss>" not in svg and "x<y>" not in svg
    assert "&lt;script&gt;" in svg and "&amp;" in svg
    text = "".join(root.itertext())
    assert nasty in text
    assert "template x<y>&z" in text
    assert "if title = <&>" in text
    assert 'Q&A <for> "everyone"' in text
    (jump,) = [g for g in groups(root, "jump") if g.get("data-kind") == "goto"]
    assert jump.get("data-label") == "title = <&>"  # attributes are escaped too
    assert root.get("aria-label", "").startswith('Cadence Q&A <for> "everyone"')


def test_the_picture_is_deterministic() -> None:
    cadence = load_cadence(ROOT / "cadences" / "mql-sdr.yaml")
    first = render_svg(cadence)
    assert render_svg(cadence) == first
    again = Cadence.model_validate(cadence.model_dump(by_alias=True, exclude_unset=True))
    assert render_svg(again) == first
    # Another process, another hash seed: still the same bytes.
    code = (
        "import sys; from pathlib import Path; from nurture.adapters.loader import load_cadence; "
        "from nurture.domain.graph_svg import render_svg; "
        "sys.stdout.write(render_svg(load_cadence(Path('cadences/mql-sdr.yaml'))))"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout == first


@pytest.mark.parametrize(
    "path", sorted(p.name for p in (ROOT / "cadences").glob("*.yaml") if p.stem != "playbook")
)
def test_every_repo_cadence_draws_with_lanes_that_never_overlap(path: str) -> None:
    cadence = load_cadence(ROOT / "cadences" / path)
    root = parse(render_svg(cadence))
    assert len(groups(root, "step")) == len(cadence.steps)
    assert len(groups(root, "jump")) == len(jumps(cadence))
    runs = vertical_runs(root)
    for x, _, _, _ in runs:
        assert x > MARGIN + BOX_W + 10  # right of every box
    for i, (x, top, bottom, target) in enumerate(runs):
        for x2, top2, bottom2, target2 in runs[i + 1 :]:
            if x != x2:
                continue
            meeting = target == target2 and (bottom == top2 or bottom2 == top)
            assert meeting or bottom < top2 or bottom2 < top, (x, top, bottom, top2, bottom2)


def test_a_jump_to_a_missing_step_is_drawn_not_refused() -> None:
    cadence = Cadence.model_validate(
        {
            "id": "broken",
            "name": "Broken",
            "steps": [
                {
                    "id": "fork",
                    "type": "branch",
                    "cases": [{"when": {"score_at_least": 5}, "goto": "nowhere"}],
                },
                {"id": "hello", "type": "email", "template": "a/hello", "next": "nowhere"},
            ],
        }
    )
    root = parse(render_svg(cadence))
    (missing,) = groups(root, "missing")
    assert missing.get("data-step") == "nowhere"
    assert [g.get("data-to") for g in groups(root, "jump")] == ["nowhere", "nowhere"]
    assert groups(root, "end") == []  # nothing reaches end


async def test_mql_sdr_picture_artifact() -> None:
    """Draw the longest real cadence for people to look at (and Chromium to render)."""
    cadence = load_cadence(ROOT / "cadences" / "mql-sdr.yaml")
    svg = render_svg(cadence)
    root = parse(svg)
    assert len(cadence.steps) >= 20
    assert len(groups(root, "step")) == len(cadence.steps)
    assert float(root.get("width", "0")) < 900  # lanes stay compact even with 25 jumps
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "cadence-mql-sdr.svg").write_text(svg, encoding="utf-8")

    if reason := browser_unavailable():
        pytest.skip(f"the SVG is written, the PNG is not: {reason}")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.set_content(f"<!doctype html><body style='margin:0'>{svg}</body>")
            box = await page.locator("svg").first.bounding_box()
            assert box is not None and box["height"] == float(root.get("height", "0"))
            await page.locator("svg").first.screenshot(path=str(ARTIFACTS / "cadence-mql-sdr.png"))
        finally:
            await browser.close()
    assert (ARTIFACTS / "cadence-mql-sdr.png").stat().st_size > 10_000


# --- the pages ----------------------------------------------------------------------------


@dataclass
class Site:
    client: httpx.AsyncClient

    def browser(self) -> httpx.AsyncClient:
        """A fresh browser (its own cookies) on the same app."""
        return httpx.AsyncClient(transport=self.client._transport, base_url="http://test")


@pytest.fixture
async def site_for(make_settings):  # type: ignore[no-untyped-def]
    """A signed-in-able web app on a given cadences folder (default: the repo's own)."""

    @contextlib.asynccontextmanager
    async def build(cadences_dir: Path = ROOT / "cadences") -> AsyncIterator[Site]:
        settings = make_settings(cadences_dir=cadences_dir, templates_dir=ROOT / "templates")
        await migrate(settings.database_url)
        engine = make_engine(settings.database_url)
        try:
            sessions = session_factory(engine)
            await add_user(sessions, "aiko", "sdr")
            await add_user(sessions, "olga", "ops")
            async with asgi_client(create_app(settings)) as client:
                yield Site(client)
        finally:
            await engine.dispose()

    return build


def inline_svg(page: str) -> ET.Element:
    start = page.index("<svg")
    return parse(page[start : page.index("</svg>", start) + len("</svg>")])


async def test_the_cadence_pages_need_a_login(site_for) -> None:  # type: ignore[no-untyped-def]
    async with site_for() as site:
        for path in ("/cadences", "/cadences/inbound", "/cadences/inbound.svg"):
            response = await site.client.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"] == f"/login?next={path}", path


async def test_an_sdr_sees_the_set_and_a_cadence_as_a_picture(site_for) -> None:  # type: ignore[no-untyped-def]
    inbound = load_cadence(ROOT / "cadences" / "inbound.yaml")
    async with site_for() as site, site.browser() as browser:
        await log_in(browser, "aiko")
        listing = await browser.get("/cadences")
        page = await browser.get("/cadences/inbound")
        alone = await browser.get("/cadences/inbound.svg")

    assert listing.status_code == 200
    for shown in (
        'href="/cadences/inbound"',
        'href="/cadences/mql-sdr"',
        "Inbound nurture",
        inbound.version,
        "email.replied, meeting.booked",
        "score ≥ 40",  # the MQL threshold
        "grade A/B",  # the toss-up
        "if source in webinar",  # routing, first match wins
        "recycle-competitor",
        "never recycled",  # bad_fit: never
        'href="/cadences">Cadences</a>',  # the nav link
    ):
        assert shown in listing.text, shown
    assert "problem" not in listing.text

    assert page.status_code == 200
    picture = inline_svg(page.text)
    assert [g.get("data-step") for g in groups(picture, "step")] == [s.id for s in inbound.steps]
    assert len(groups(picture, "jump")) == len(jumps(inbound))
    assert "<details>" in page.text and "flowchart TD" in page.text  # the Mermaid source
    assert inbound.version in page.text

    assert alone.status_code == 200
    assert alone.headers["content-type"].startswith("image/svg+xml")
    assert "default-src 'none'" in alone.headers["content-security-policy"]
    assert parse(alone.text).get("data-cadence") == "inbound"


async def test_an_unknown_cadence_is_not_found(site_for) -> None:  # type: ignore[no-untyped-def]
    async with site_for() as site, site.browser() as browser:
        await log_in(browser, "olga")
        page = await browser.get("/cadences/no-such", headers={"Accept": "text/html"})
        alone = await browser.get("/cadences/no-such.svg")
    assert page.status_code == 404 and "no cadence" in page.text
    assert alone.status_code == 404


async def test_a_broken_set_shows_its_problems(site_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cadences = tmp_path / "broken"
    shutil.copytree(ROOT / "cadences", cadences)
    mql = cadences / "mql-sdr.yaml"
    mql.write_text(mql.read_text().replace("goto: recap\n", "goto: recapp\n", 1))
    (cadences / "recycle-timing.yaml").write_text("id: recycle-timing\nsteps: [unclosed\n")

    async with site_for(cadences) as site, site.browser() as browser:
        await log_in(browser, "aiko")
        listing = await browser.get("/cadences")
        page = await browser.get("/cadences/mql-sdr")
        unreadable = await browser.get("/cadences/recycle-timing")
        fine = await browser.get("/cadences/inbound")

    assert listing.status_code == 200
    assert "problems" in listing.text
    assert "names no step" in listing.text and "recapp" in listing.text
    assert "recycle-timing.yaml" in listing.text
    assert 'href="/cadences/inbound"' in listing.text  # what could be read is still listed

    assert page.status_code == 200
    assert "names no step" in page.text
    picture = inline_svg(page.text)  # still drawn, the bad jump to a "missing step" box
    assert [g.get("data-step") for g in groups(picture, "missing")] == ["recapp"]

    assert unreadable.status_code == 404
    assert "recycle-timing.yaml" in unreadable.text and "<svg" not in unreadable.text
    assert fine.status_code == 200 and "<svg" in fine.text and "names no step" in fine.text
