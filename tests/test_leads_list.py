"""The leads list: `GET /leads` and `leads list`, served from the app database's projection.

Filters combine, sorting is stable across pages, an SDR sees only their own leads, bad
parameters answer 422 naming the parameter, and the CLI prints the contract's JSON keys.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from test_cli_import import run_cli
from web_helpers import PASSWORD, add_user, asgi_client

from nurture.adapters.database import LeadRow
from nurture.services.leadlist import BadListRequest, LeadQuery, list_leads
from nurture.settings import Settings
from nurture.web import create_app

pytest_plugins = ["dbfixtures"]

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def _seed(sessions: async_sessionmaker[AsyncSession]) -> None:
    rows = [
        # id, stage, score, grade, cadence, step, owner, next touch, country, timezone
        ("L-01", "nurturing", 10, "B", "inbound", "pause", "ben", NOW + timedelta(hours=3), "US", None),
        ("L-02", "mql", 45, "A", "mql-sdr", "first-call", "ben", NOW - timedelta(hours=5), "US", None),
        ("L-03", "mql", 50, "C", "mql-sdr", "first-call", "aiko", NOW + timedelta(days=1), "JP", None),
        ("L-04", "sql", 90, "A", None, None, "aiko", None, "JP", None),
        ("L-05", "nurturing", 0, None, "inbound", "welcome", None, NOW - timedelta(minutes=10), "DE", "Europe/Berlin"),
        ("L-06", "won", 99, "A", None, None, "ben", None, "GB", None),
    ]  # fmt: skip
    async with sessions() as session, session.begin():
        for lead_id, stage, score, grade, cadence, step, owner, nxt, country, tz in rows:
            session.add(
                LeadRow(
                    id=lead_id, company=f"Co {lead_id}", email=f"{lead_id.lower()}@co.example",
                    stage=stage, score=score, grade=grade, cadence=cadence, step=step,
                    owner=owner, next_touch_at=nxt, country=country, timezone=tz,
                    started_at=NOW - timedelta(days=3),
                )
            )  # fmt: skip


async def _ids(sessions: async_sessionmaker[AsyncSession], **query: object) -> list[str]:
    async with sessions() as session:
        page = await list_leads(session, LeadQuery(**query), now=NOW)  # type: ignore[arg-type]
    return [line.lead_id for line in page.lines]


async def test_filters_combine_and_sorting_pages_every_lead_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _seed(sessions)
    # By next touch, soonest first; leads at rest (no next touch) last, by id.
    assert await _ids(sessions) == ["L-02", "L-05", "L-01", "L-03", "L-04", "L-06"]
    assert await _ids(sessions, stage="mql") == ["L-02", "L-03"]
    assert await _ids(sessions, stage="mql", owner="aiko") == ["L-03"]
    assert await _ids(sessions, owner="none") == ["L-05"]
    assert await _ids(sessions, grade="A", sort="score", descending=True) == [
        "L-06",
        "L-04",
        "L-02",
    ]
    assert await _ids(sessions, cadence="inbound") == ["L-05", "L-01"]
    # Stuck: in a touch stage with the next touch more than an hour late (not L-05: 10 min).
    assert await _ids(sessions, stuck=True) == ["L-02"]

    pages = [await _ids(sessions, sort="stage", per_page=4, page=n) for n in (1, 2)]
    assert sorted(pages[0] + pages[1]) == [f"L-0{n}" for n in range(1, 7)]
    async with sessions() as session:
        page = await list_leads(session, LeadQuery(per_page=4, page=2), now=NOW)
    assert (page.total, page.pages, len(page.lines)) == (6, 2, 2)


async def test_lines_show_the_next_touch_in_the_lead_s_own_time_and_the_contract_keys(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _seed(sessions)
    async with sessions() as session:
        lines = (await list_leads(session, LeadQuery(), now=NOW)).lines
    by_id = {line.lead_id: line for line in lines}
    assert by_id["L-03"].timezone == "Asia/Tokyo"  # from the country
    assert by_id["L-03"].next_touch_local is not None
    assert by_id["L-03"].next_touch_local.hour == 21  # 12:00 UTC + 1 day, in Tokyo
    assert by_id["L-05"].timezone == "Europe/Berlin"
    assert by_id["L-02"].stuck and not by_id["L-05"].stuck
    assert set(by_id["L-01"].to_json()) == {
        "lead_id", "stage", "score", "grade", "cadence", "step", "owner", "next_touch_at",
    }  # fmt: skip
    assert "email" not in json.dumps(by_id["L-01"].to_json())


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"stage": "zombie"}, "stage"),
        ({"sort": "email"}, "sort"),
        ({"page": 0}, "page"),
        ({"per_page": 100_000}, "per_page"),
    ],
)
def test_bad_parameters_name_the_field(query: dict[str, object], field: str) -> None:
    with pytest.raises(BadListRequest) as caught:
        LeadQuery(**query).checked()  # type: ignore[arg-type]
    assert caught.value.field == field


async def test_the_web_list_filters_in_the_url_and_sdrs_see_their_own(migrated_url: str) -> None:
    app = create_app(Settings(database_url=migrated_url))
    async with asgi_client(app) as ops:
        sessions = app.state.sessions
        await _seed(sessions)
        await add_user(sessions, "ops", "ops")
        await add_user(sessions, "aiko", "sdr")
        assert (await ops.get("/leads")).status_code == 303  # a login first
        login = {"username": "ops", "password": PASSWORD}
        assert (await ops.post("/login", data=login)).status_code == 303

        page = await ops.get("/leads?stage=mql&sort=score&dir=desc")
        assert page.status_code == 200
        assert page.text.index("L-03") < page.text.index("L-02")
        assert "L-01" not in page.text
        assert "/namespaces/default/workflows/lead-L-03" in page.text
        assert 'href="/leads/L-03"' in page.text
        # Filters and sort are kept in the paging and sorting links.
        assert "stage=mql" in page.text

        rows = await ops.get("/leads?owner=ben", headers={"Accept": "application/json"})
        assert rows.status_code == 200
        assert [r["lead_id"] for r in rows.json()] == ["L-02", "L-01", "L-06"]
        assert rows.headers["X-Total-Count"] == "3"

        bad = await ops.get("/leads?stage=zombie&format=json")
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["query", "stage"]
        bad_page = await ops.get("/leads?stage=zombie")
        assert bad_page.status_code == 422 and "stage:" in bad_page.text
        assert (await ops.get("/leads?page=0&format=json")).status_code == 422

    async with asgi_client(create_app(Settings(database_url=migrated_url))) as sdr:
        login = {"username": "aiko", "password": PASSWORD}
        assert (await sdr.post("/login", data=login)).status_code == 303
        # An SDR's owner filter is always themselves, whatever the URL says.
        rows = await sdr.get("/leads?owner=ben&format=json")
        assert [r["lead_id"] for r in rows.json()] == ["L-03", "L-04"]


async def test_leads_list_on_the_command_line(tmp_path: Path) -> None:
    from nurture.adapters.database import make_engine, session_factory
    from nurture.adapters.schema import migrate

    database = f"sqlite+aiosqlite:///{tmp_path / 'list.db'}"
    await migrate(database)
    engine = make_engine(database)
    try:
        await _seed(session_factory(engine))
    finally:
        await engine.dispose()
    env = {**os.environ, "NURTURE_DATABASE_URL": database, "NURTURE_WEBHOOK_SECRET": "x" * 32}

    code, out, err = await run_cli(env, "leads", "list", "--stage", "mql", "--json")
    assert code == 0, err
    assert [row["lead_id"] for row in json.loads(out)] == ["L-02", "L-03"]

    code, out, err = await run_cli(env, "leads", "list", "--owner", "aiko")
    assert code == 0, err
    assert "L-03" in out and "L-04" in out and "L-01" not in out
    assert "Asia/Tokyo" in out
    assert "page 1 of 1, 2 leads" in err

    code, _, err = await run_cli(env, "leads", "list", "--stage", "zombie")
    assert code == 2
    assert "--stage" in err and "Traceback" not in err
