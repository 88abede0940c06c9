"""`leads import`: good rows go in, bad rows are reported with their line, twice adds nothing.

Runs the real command in a subprocess against a real Temporal server, as a user would.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from conftest import ROOT, write_cadence_set
from sqlalchemy import func, select

from nurture.adapters.database import LeadRow, make_engine, session_factory

CSV = """id,email,first_name,last_name,company,country,employees,source
L-1,ana@bigco.example,Ana,Silva,BigCo,US,5000,webinar
L-2,not-an-email,Bad,Email,Nope,US,10,ads
L-3,kei@example.jp,Kei,Sato,Sato KK,JP,300,seo
,missing@example.com,No,Id,,US,1,ads
L-5,lee@example.com,Lee,Park,,KOR,1,ads
"""

SALESFORCE = """Lead ID,First Name,Last Name,Email Address,Company / Account,Country Code,No. of Employees,Lead Source
00Q5e00000AbCdE,Ida,Berg,ida@nordic.example,Nordic AB,SE,120,Web
"""


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "starter.py"), *args,
        env=env, cwd=str(ROOT), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_import_reports_bad_rows_and_is_idempotent(dev_env, tmp_path: Path):
    cadences_dir, templates_dir = write_cadence_set(tmp_path / "set")
    database = f"sqlite+aiosqlite:///{tmp_path / 'import.db'}"
    env = {
        **os.environ,
        "NURTURE_DATABASE_URL": database,
        "NURTURE_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "NURTURE_CADENCES_DIR": str(cadences_dir),
        "NURTURE_TEMPLATES_DIR": str(templates_dir),
        "NURTURE_TASK_QUEUE": "import-test",
        "NURTURE_WEBHOOK_SECRET": "import-test-secret",
    }
    leads = tmp_path / "leads.csv"
    leads.write_text(CSV)

    code, out, err = await run_cli(env, "leads", "import", str(leads))
    assert code == 1  # some rows could not be imported
    assert "2 created, 0 updated, 3 not imported" in out
    assert f"{leads}:3: email" in err  # the file, the line, the field
    assert f"{leads}:5: id" in err
    assert f"{leads}:6: country" in err
    assert "Traceback" not in err

    code, out, _ = await run_cli(env, "leads", "import", str(leads))
    assert "0 created, 2 updated, 3 not imported" in out

    salesforce = tmp_path / "export.csv"
    salesforce.write_text(SALESFORCE)
    code, out, err = await run_cli(env, "leads", "import", str(salesforce))
    assert code == 0, err
    assert "1 created" in out

    engine = make_engine(database)
    try:
        async with session_factory(engine)() as session:
            assert await session.scalar(select(func.count()).select_from(LeadRow)) == 3
            ida = await session.get(LeadRow, "00Q5e00000AbCdE")
            assert ida is not None and (ida.email, ida.company, ida.country, ida.employees) == (
                "ida@nordic.example", "Nordic AB", "SE", 120,
            )  # fmt: skip
    finally:
        await engine.dispose()
    for lead_id in ("L-1", "L-3", "00Q5e00000AbCdE"):
        runs: list[object] = []
        for _ in range(50):  # visibility is eventually consistent
            runs = [
                wf async for wf in dev_env.client.list_workflows(f'WorkflowId = "lead-{lead_id}"')
            ]
            if runs:
                break
            await asyncio.sleep(0.1)
        assert len(runs) == 1, lead_id  # one workflow per lead, whatever the imports


async def test_overlapping_imports_run_at_once_all_finish(dev_env, tmp_path: Path):
    # Three `leads import` processes at once on one SQLite file, a fifth of their ids shared:
    # none stops at a lead another one is creating, and every row is in.
    cadences_dir, templates_dir = write_cadence_set(tmp_path / "set")
    database = f"sqlite+aiosqlite:///{tmp_path / 'overlap.db'}"
    env = {
        **os.environ,
        "NURTURE_DATABASE_URL": database,
        "NURTURE_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "NURTURE_CADENCES_DIR": str(cadences_dir),
        "NURTURE_TEMPLATES_DIR": str(templates_dir),
        "NURTURE_TASK_QUEUE": "overlap-test",
        "NURTURE_WEBHOOK_SECRET": "overlap-test-secret",
    }
    files = []
    for f in range(3):
        ids = [f"O-C{n}" for n in range(30)] + [f"O-F{f}-{n}" for n in range(120)]
        path = tmp_path / f"part{f}.csv"
        path.write_text("id,email\n" + "".join(f"{i},{i.lower()}@example.com\n" for i in ids))
        files.append(path)
    results = await asyncio.gather(*(run_cli(env, "leads", "import", str(p)) for p in files))

    for code, out, err in results:
        assert code == 0, err
        assert "Traceback" not in err
        assert "0 not imported" in out
    created = sum(int(out.strip().splitlines()[-1].split()[0]) for _, out, _ in results)
    assert created == 30 + 3 * 120
    engine = make_engine(database)
    try:
        async with session_factory(engine)() as session:
            assert await session.scalar(select(func.count()).select_from(LeadRow)) == 390
    finally:
        await engine.dispose()
