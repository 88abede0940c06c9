"""Benchmark: the leads list (``GET /leads``, ``leads list``) over 100,000 leads.

Fills a fresh database (SQLite file by default; ``--database-url`` for PostgreSQL) with
``--leads`` lead rows spread over stages, owners, cadences and grades as a live set would be,
then times :func:`nurture.services.leadlist.list_leads` (one page of 50 and its count) for
the views people use most: the default order (next touch), a stage, an owner's MQLs, stuck
leads, the best scores, a deep page. Each view runs ``--repeat`` times; the median and the
slowest are printed, in milliseconds. No assertion: figures go to ``docs/benchmarks.md``.

Run from the repository root::

    .venv/bin/python bench/leads_list.py
    .venv/bin/python bench/leads_list.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import delete, insert  # noqa: E402

from nurture.adapters.database import LeadRow, make_engine, session_factory  # noqa: E402
from nurture.adapters.schema import migrate  # noqa: E402
from nurture.services.leadlist import LeadQuery, list_leads  # noqa: E402

STAGES = [("nurturing", 60), ("mql", 12), ("sql", 5), ("won", 3), ("lost", 8), ("recycling", 8)]
STAGES += [("closed", 4)]
OWNERS = ["aiko", "ben", "carla", "dev", "emma", "farid", "gus", "hana", None]
CADENCES = ["inbound", "webinar-follow-up", "mql-sdr", "recycle-generic"]
COUNTRIES = ["US", "GB", "DE", "JP", "FR", "BR", "IN"]


def _rows(count: int, now: datetime, rng: random.Random) -> list[dict[str, object]]:
    stages = [s for s, weight in STAGES for _ in range(weight)]
    rows = []
    for n in range(count):
        stage = rng.choice(stages)
        touching = stage in ("nurturing", "mql", "recycling")
        # Most next touches ahead; about 1% more than an hour late (stuck).
        late = rng.random() < 0.01
        offset = -rng.uniform(1.5, 48) if late else rng.uniform(0, 24 * 14)
        rows.append(
            {
                "id": f"L-{n:07d}",
                "email": f"lead{n}@co{n % 5000}.example",
                "company": f"Company {n % 5000}",
                "country": rng.choice(COUNTRIES),
                "stage": stage,
                "score": rng.randint(0, 120),
                "grade": rng.choice("ABCD"),
                "owner": rng.choice(OWNERS),
                "cadence": rng.choice(CADENCES) if touching else None,
                "step": "pause" if touching else None,
                "next_touch_at": now + timedelta(hours=offset) if touching else None,
                "fields": {},
                "started_at": now,
                "created_at": now,
                "updated_at": now - timedelta(seconds=n),
            }
        )
    return rows


VIEWS: list[tuple[str, LeadQuery]] = [
    ("default order (next touch), page 1", LeadQuery()),
    ("stage=mql", LeadQuery(stage="mql")),
    ("owner=ben stage=mql", LeadQuery(owner="ben", stage="mql")),
    ("owner=ben, all stages", LeadQuery(owner="ben")),
    ("stuck", LeadQuery(stuck=True)),
    ("cadence=inbound grade=A", LeadQuery(cadence="inbound", grade="A")),
    ("sort=score desc", LeadQuery(sort="score", descending=True)),
    ("sort=lead, page 1000", LeadQuery(sort="lead", page=1000)),
    ("default order, page 1000", LeadQuery(page=1000)),
]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await migrate(url)
        engine = make_engine(url)
        sessions = session_factory(engine)
        now = datetime.now(UTC)
        rows = _rows(args.leads, now, random.Random(18))
        began = time.perf_counter()
        async with sessions() as session, session.begin():
            await session.execute(delete(LeadRow))
            for start in range(0, len(rows), 5_000):
                await session.execute(insert(LeadRow), rows[start : start + 5_000])
        print(
            f"{engine.dialect.name}: {args.leads:,} leads written "
            f"in {time.perf_counter() - began:.1f} s"
        )
        print(f"python {platform.python_version()}, {platform.machine()}, repeat {args.repeat}")
        print(f"{'view':<40} {'matches':>9} {'median ms':>10} {'max ms':>8}")
        for name, query in VIEWS:
            times = []
            total = 0
            for _ in range(args.repeat):
                async with sessions() as session:
                    t0 = time.perf_counter()
                    page = await list_leads(session, query, now=now)
                    times.append((time.perf_counter() - t0) * 1000)
                    total = page.total
            print(f"{name:<40} {total:>9,} {statistics.median(times):>10.1f} {max(times):>8.1f}")
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
