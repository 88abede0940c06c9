"""The same lead taken in several times at once: one row, one workflow, no request or row lost.

On SQLite and PostgreSQL (``database_url``), with the real intake and web app on the
time-skipping server (no worker: only the starts matter here).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from pathlib import Path

from sqlalchemy import select
from web_helpers import asgi_client, post_signed

from nurture.adapters.catalog import CadenceCatalog
from nurture.adapters.database import LeadRow, make_engine, session_factory
from nurture.domain.names import workflow_id
from nurture.services.csvimport import import_rows, read_leads
from nurture.services.intake import Intake
from nurture.web import create_app

pytest_plugins = ["dbfixtures"]


async def _lead_rows(url: str) -> dict[str, LeadRow]:
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as session:
            return {row.id: row for row in (await session.scalars(select(LeadRow))).all()}
    finally:
        await engine.dispose()


async def _workflow_exists(client, lead_id: str) -> bool:  # type: ignore[no-untyped-def]
    description = await client.get_workflow_handle(workflow_id(lead_id)).describe()
    return description.id == workflow_id(lead_id)


async def test_concurrent_posts_of_new_leads_all_answer(
    make_settings, time_env, migrated_url: str
) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(database_url=migrated_url)
    secret = settings.require_webhook_secret()
    ids = [f"R-{secrets.token_hex(4)}" for _ in range(10)]
    async with asgi_client(create_app(settings, client=time_env.client)) as client:
        answers = await asyncio.gather(
            *(
                post_signed(
                    client, secret, "/leads", {"id": ids[n % 10], "email": f"r{n}@example.com"}
                )
                for n in range(80)
            )
        )

    assert [a.status_code for a in answers if a.status_code not in (200, 202)] == []
    statuses = Counter((a.json()["lead_id"], a.json()["status"]) for a in answers)
    # Exactly one creation per lead; every other post of it is an update of that row.
    assert {
        lead for (lead, status), n in statuses.items() if status == "created" and n == 1
    } == set(ids)
    assert sum(n for (_, status), n in statuses.items() if status == "updated") == 70
    rows = await _lead_rows(migrated_url)
    assert sorted(rows) == sorted(ids)
    for lead_id in ids:
        assert await _workflow_exists(time_env.client, lead_id)


def _csv(path: Path, ids: list[str]) -> Path:
    lines = ["id,email,country"] + [f"{i},{i.lower()}@example.com,US" for i in ids]
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_overlapping_imports_at_once_lose_no_rows(
    make_settings, time_env, migrated_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(database_url=migrated_url)
    run = secrets.token_hex(3)
    common = [f"C{run}-{n}" for n in range(40)]
    files = [
        _csv(tmp_path / f"f{f}.csv", common + [f"F{f}{run}-{n}" for n in range(60)])
        for f in range(3)
    ]

    async def one_import(path: Path):  # type: ignore[no-untyped-def]
        # Each importer has its own engine (own connections), as separate processes would.
        engine = make_engine(migrated_url)
        try:
            catalog = CadenceCatalog(settings.cadences_dir, settings.templates_dir)
            intake = Intake(settings, time_env.client, session_factory(engine), catalog)
            return await import_rows(intake, path, list(read_leads(path)))
        finally:
            await engine.dispose()

    reports = await asyncio.gather(*(one_import(path) for path in files))

    assert [r.refused for r in reports] == [[], [], []]
    assert [r.created + r.updated for r in reports] == [100, 100, 100]
    # Each common lead is created by exactly one of the imports.
    assert sum(r.created for r in reports) == 40 + 3 * 60
    rows = await _lead_rows(migrated_url)
    assert len(rows) == 40 + 3 * 60
    assert rows[common[7]].email == common[7].lower() + "@example.com"
    for lead_id in (common[0], common[-1], f"F2{run}-59"):
        assert await _workflow_exists(time_env.client, lead_id)


async def test_an_import_takes_leads_at_once_but_a_leads_rows_in_file_order(
    make_settings, time_env, migrated_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # Leads go in 16 at a time; the three rows of one lead, far apart in the file, still
    # apply in file order (its last row wins, as when rows went one by one), and refusals
    # come out in file order.
    settings = make_settings(database_url=migrated_url)
    run = secrets.token_hex(3)
    twin = f"T{run}"
    lines = ["id,email,country,employees"]
    for n in range(60):
        if n in (5, 30, 55):
            lines.append(f"{twin},twin@example.com,US,{n}")
        elif n in (10, 40):
            lines.append(f"B{run}-{n},not-an-email,US,1")
        else:
            lines.append(f"L{run}-{n},l{n}@example.com,US,1")
    path = tmp_path / "leads.csv"
    path.write_text("\n".join(lines) + "\n")
    engine = make_engine(migrated_url)
    try:
        catalog = CadenceCatalog(settings.cadences_dir, settings.templates_dir)
        intake = Intake(settings, time_env.client, session_factory(engine), catalog)
        advanced: list[int] = []
        report = await import_rows(
            intake, path, list(read_leads(path)), lambda: advanced.append(1), concurrency=16
        )
    finally:
        await engine.dispose()

    assert (report.created, report.updated, report.waiting) == (56, 2, 0)
    assert [line.split(": ")[0] for line in report.refused] == [f"{path}:12", f"{path}:42"]
    assert len(advanced) == 60
    rows = await _lead_rows(migrated_url)
    assert rows[twin].employees == 55
    assert await _workflow_exists(time_env.client, twin)
