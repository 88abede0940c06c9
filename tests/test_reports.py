"""Reports on a hand-countable data set (tests/reportdata.py): every expected number below
is worked out by hand from the stories told there, not copied from the code's output."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from reportdata import DAY, MARCH, NOW, T0, seed
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from nurture.adapters.database import make_engine, session_factory
from nurture.adapters.schema import migrate
from nurture.cli.report import app as report_app
from nurture.services.reports import (
    Measured,
    PlanError,
    Rates,
    ReportError,
    funnel,
    grouping,
    measure,
    plan,
    sdr_activity,
    step_performance,
)
from nurture.web import reports as report_pages

# sessions / migrated_url: a fresh, migrated database (SQLite; PostgreSQL when configured).
pytest_plugins = ["dbfixtures"]

SINCE, UNTIL = MARCH


@pytest.fixture
async def seeded(sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    await seed(sessions)
    return sessions


def counts(row: Any) -> tuple[int, int, int, int]:
    return (row.lead, row.mql, row.sql, row.won)


# --- the funnel ---------------------------------------------------------------------------


async def test_funnel_counts_each_cycle_once_and_the_erased_lead(seeded) -> None:
    async with seeded() as session:
        report = await funnel(session, since=SINCE, until=UNTIL, now=NOW)

    # Passages begun in March: L-1 twice (cycle 0 and its recycle), L-2, L-3, L-4 (erased),
    # L-5, L-7. Mql: all but L-3 (L-1's cycle 1 went recycling -> sql, the mql is implied).
    # Sql: L-1 (both cycles), L-2, L-5, L-7. Won: L-1 cycle 1, L-2. L-6 began in February.
    assert counts(report.total) == (7, 6, 5, 2)
    assert report.total.lead_to_mql == round(6 / 7, 4)
    assert report.total.mql_to_sql == round(5 / 6, 4)
    assert report.total.sql_to_won == 0.4
    assert report.total.lead_to_won == round(2 / 7, 4)
    assert report.groups == []
    # What the counts count: L-1 is in the funnel twice, and it says so.
    assert report.leads == 6
    assert report.counted() == "7 passages of 6 leads (a recycled lead counts once per cycle)"
    assert report.thin_rates() == [
        "lead → MQL from 7 passages",
        "MQL → SQL from 6 passages",
        "SQL → won from 5 passages",
    ]


async def test_funnel_time_in_stage_losses_and_stuck_leads(seeded) -> None:
    async with seeded() as session:
        report = await funnel(session, since=SINCE, until=UNTIL, now=NOW)

    # nurturing stays (days): L-1 2, L-2 3, L-4 3, L-5 1, L-7 1 (L-3's exit row keeps the
    # stage: still nurturing) -> median 2. recycling: L-1 2. mql: L-1 1, L-2 0 (same
    # instant), L-4 1, L-5 1, L-7 1 -> 1. sql: L-1 7 and 3, L-2 5, L-5 3, L-7 5 -> 5.
    assert [(t.stage, t.median_seconds, t.samples) for t in report.time_in_stage] == [
        ("nurturing", 2 * DAY.total_seconds(), 5),
        ("recycling", 2 * DAY.total_seconds(), 1),
        ("mql", 1 * DAY.total_seconds(), 5),
        ("sql", 5 * DAY.total_seconds(), 5),
    ]
    # L-1 cycle 0 from its opportunity ("Competitor"), L-7 from its stage change (the CRM
    # has sent no outcome yet), L-5 rejected from its opportunity, counted once, not twice.
    assert [(r.outcome, r.reason, r.count) for r in report.loss_reasons] == [
        ("lost", "competitor", 2),
        ("rejected", "no_budget", 1),
    ]
    # L-3 is 3 h overdue; L-6 only 30 min; L-5 is lost (waiting to recycle, not touched).
    assert [(s.lead_id, s.stage, s.overdue_seconds) for s in report.stuck] == [
        ("L-3", "nurturing", 3 * 3600.0)
    ]


BY_EXPECTED: dict[str, list[tuple[str, int, int, int, int]]] = {
    # The source recorded with the stage change: L-2's lead row now says "partner".
    "source": [("ads", 3, 2, 1, 1), ("webinar", 3, 3, 3, 1), ("seo", 1, 1, 1, 0)],
    # The first row of each cycle: L-1's recycle entered recycle-competitor.
    "cadence": [
        ("inbound", 4, 3, 2, 1),
        ("webinar-follow-up", 2, 2, 2, 0),
        ("recycle-competitor", 1, 1, 1, 1),
    ],
    "owner": [("aiko", 3, 3, 2, 1), ("ben", 3, 2, 2, 1), ("(none)", 1, 1, 1, 0)],
    "cycle": [("first pass", 6, 5, 4, 1), ("recycled", 1, 1, 1, 1)],
    # Last touch before the MQL (or so far): L-1 c0 and L-7 their call, L-2 and L-4 the
    # welcome email, L-3 its second first-call task, L-1 c1 the check-in; L-5 none. The
    # failed send of L-3 and touches after the MQL (L-1's mql-sdr email) do not count.
    "step": [
        ("inbound/welcome", 2, 2, 1, 1),
        ("webinar-follow-up/call", 2, 2, 2, 0),
        ("(no touch)", 1, 1, 1, 0),
        ("inbound/first-call", 1, 0, 0, 0),
        ("recycle-competitor/check-in", 1, 1, 1, 1),
    ],
}


async def test_funnel_by_each_grouping(seeded) -> None:
    async with seeded() as session:
        for by, expected in BY_EXPECTED.items():
            report = await funnel(session, since=SINCE, until=UNTIL, by=grouping(by), now=NOW)
            assert [(g.key, *counts(g)) for g in report.groups] == expected, by
            assert counts(report.total) == (7, 6, 5, 2)


async def test_funnel_period_selects_cycles_by_their_start(seeded) -> None:
    async with seeded() as session:
        everything = await funnel(session, now=NOW)
        late_march = await funnel(session, since=T0 + 15 * DAY, until=UNTIL, now=NOW)
        february = await funnel(session, since=SINCE.replace(month=2), until=SINCE, now=NOW)
    assert counts(everything.total) == (8, 7, 5, 2)  # + L-6 (lead, mql)
    assert counts(late_march.total) == (1, 1, 1, 1)  # only L-1's recycle began after the 17th
    assert counts(february.total) == (1, 1, 0, 0)
    assert february.loss_reasons == []


async def test_funnel_refuses_bad_arguments(seeded) -> None:
    async with seeded() as session:
        with pytest.raises(ReportError, match="by must be one of"):
            await funnel(session, by="country")  # type: ignore[arg-type]
        with pytest.raises(ReportError, match="must be after"):
            await funnel(session, since=UNTIL, until=SINCE)
        with pytest.raises(ReportError, match="aware"):
            await funnel(session, since=SINCE.replace(tzinfo=None))


async def test_empty_database_gives_empty_reports(sessions) -> None:
    async with sessions() as session:
        report = await funnel(session, by="source", now=NOW)
        steps = await step_performance(session)
        sdrs = await sdr_activity(session, now=NOW)
        measured = await measure(session)
    assert counts(report.total) == (0, 0, 0, 0)
    assert report.total.lead_to_mql is None
    assert (report.groups, report.time_in_stage, report.stuck) == ([], [], [])
    assert steps.steps == [] and sdrs.sdrs == []
    assert measured == Measured(rates=Rates(), calls_per_sql=None)


# --- cadence step performance -------------------------------------------------------------


async def test_step_performance(seeded) -> None:
    async with seeded() as session:
        report = await step_performance(session, since=SINCE, until=UNTIL)

    rows = {(s.cadence, s.step): s for s in report.steps}
    # By cadence, then in the order the steps first ran.
    assert list(rows) == [
        ("inbound", "welcome"),
        ("inbound", "first-call"),
        ("inbound", "nudge"),
        ("mql-sdr", "intro"),
        ("mql-sdr", "qualify-call"),
        ("recycle-competitor", "check-in"),
        ("webinar-follow-up", "thanks"),
        ("webinar-follow-up", "call"),
    ]
    welcome = rows[("inbound", "welcome")]
    # Sent to L-2, L-3 and L-4 (erased, still counted; L-6's was in February). Opened by
    # L-2 (twice: one email) and L-4 (L-3's open was a prefetching proxy); clicked by L-2
    # only (L-3's click was a scanner);
    # replied by L-4. L-2 left for mql and was tossed up from this step.
    assert (welcome.emails_sent, welcome.opened, welcome.clicked, welcome.replied) == (3, 2, 1, 1)
    assert (welcome.open_rate, welcome.click_rate) == (round(2 / 3, 4), round(1 / 3, 4))
    assert welcome.left == {"mql": 1, "toss-up": 1}
    assert welcome.calls == 0

    nudge = rows[("inbound", "nudge")]  # the failed send of nudge-2 is no email at all
    assert (nudge.emails_sent, nudge.opened, nudge.left) == (1, 1, {"exit": 1})
    first_call = rows[("inbound", "first-call")]
    assert (first_call.calls, first_call.calls_done, first_call.call_outcomes) == (3, 0, {})
    qualify = rows[("mql-sdr", "qualify-call")]
    assert (qualify.calls, qualify.call_outcomes, qualify.left) == (
        1,
        {"qualified": 1},
        {"closed": 1},
    )
    call = rows[("webinar-follow-up", "call")]
    assert (call.calls, call.calls_done) == (2, 2)
    assert call.call_outcomes == {"connected": 1, "no_answer": 1}
    assert call.left == {"mql": 2}
    # An open naming another cadence is not this email's.
    thanks = rows[("webinar-follow-up", "thanks")]
    assert (thanks.emails_sent, thanks.opened) == (1, 0)
    check_in = rows[("recycle-competitor", "check-in")]
    assert (check_in.emails_sent, check_in.clicked, check_in.left) == (1, 1, {})


# --- SDR activity -------------------------------------------------------------------------


async def test_sdr_activity(seeded) -> None:
    async with seeded() as session:
        report = await sdr_activity(session, since=SINCE, until=UNTIL, now=NOW)

    got = {r.owner: r for r in report.sdrs}
    assert list(got) == ["aiko", "ben", "(none)"]
    aiko, ben, nobody = got["aiko"], got["ben"], got["(none)"]
    # aiko: a call done on time, a qualify call done two hours late, a cancelled task.
    assert (aiko.tasks, aiko.done, aiko.done_on_time, aiko.cancelled) == (3, 2, 1, 1)
    assert (aiko.overdue, aiko.open) == (0, 0)
    assert aiko.outcomes == {"connected": 1, "qualified": 1}
    assert aiko.on_time_rate == 0.5
    assert (aiko.toss_ups, aiko.won) == (2, 1)  # L-1 in both cycles
    # ben: an open task past due, a task marked overdue by its cadence then done.
    assert (ben.tasks, ben.done, ben.done_on_time, ben.overdue, ben.open) == (2, 1, 0, 2, 1)
    assert ben.outcomes == {"no_answer": 1}
    assert (ben.toss_ups, ben.won) == (2, 1)  # L-2 won, L-7 still open
    # Unassigned: an open task due in May (not overdue on April 2) and L-5's toss-up.
    assert (nobody.tasks, nobody.open, nobody.overdue) == (1, 1, 0)
    assert (nobody.toss_ups, nobody.on_time_rate) == (1, None)


# --- the planner --------------------------------------------------------------------------


def test_plan_keeps_the_worked_example_true() -> None:
    # PRODUCT.md: 600 customers, deal 20,000, 50% renewal, target 48,000,000.
    result = plan(
        48_000_000,
        20_000,
        0.5,
        600,
        Rates(lead_to_mql=0.2, mql_to_sql=0.5, sql_to_won=0.25),
        tasks_per_sdr_per_day=40,
        calls_per_sql=5,
        working_days_per_month=21,
    )
    assert result.renewing_customers == 300
    assert result.existing_revenue == 6_000_000
    assert result.new_business_revenue == 42_000_000
    assert result.new_customers == 2_100
    assert result.new_customers_per_month == 175
    # 175 wins / 0.25 = 700 SQLs; / 0.5 = 1,400 MQLs; / 0.2 = 7,000 leads a month.
    assert result.sqls_per_month == 700
    assert result.mqls_per_month == 1_400
    assert result.leads_per_month == 7_000
    # 700 SQLs × 5 calls = 3,500 tasks; one SDR does 40 × 21 = 840: 4.17 SDRs, so 5 people.
    assert (result.call_tasks_per_month, result.tasks_per_sdr_per_month) == (3_500, 840)
    assert (result.sdrs_needed, result.sdr_headcount) == (4.17, 5)
    assert set(result.sources.values()) == {"given"}


def test_plan_rounds_up_and_computes_money_in_decimal() -> None:
    # In binary floats 85 × 0.7 × 10 is 594.999…, which would make 101 new customers.
    result = plan(1_595, 10, 0.7, 85, {"lead_to_mql": 0.1, "mql_to_sql": 0.3, "sql_to_won": 0.3})
    assert (result.existing_revenue, result.new_business_revenue) == (595, 1_000)
    assert result.new_customers == 100
    assert result.new_customers_per_month == 9  # 8.33 rounded up
    # 9 / 0.3 = 30 SQLs (exactly, in decimal); / 0.3 = 100 MQLs; / 0.1 = 1,000 leads.
    assert (result.sqls_per_month, result.mqls_per_month, result.leads_per_month) == (30, 100, 1000)
    uneven = plan(1_300, 10, 0, 0, {"lead_to_mql": 0.3, "mql_to_sql": 0.3, "sql_to_won": 0.7})
    # 1,300 / 10 / 12 = 10.83 -> 11 a month; 11 / 0.7 = 15.7 -> 16 SQLs.
    assert (uneven.new_customers_per_month, uneven.sqls_per_month) == (11, 16)
    # More than the target already renewing: no new business, not a negative one.
    covered = plan(1_000, 10, 1, 500, {"lead_to_mql": 1, "mql_to_sql": 1, "sql_to_won": 1})
    assert covered.new_customers == 0


def test_plan_takes_missing_rates_from_the_measurement() -> None:
    measured = Measured(
        rates=Rates(lead_to_mql=0.5, mql_to_sql=0.8, sql_to_won=0.4), calls_per_sql=2.5
    )
    result = plan(48_000_000, 20_000, 0.5, 600, {"sql_to_won": 0.25}, measured=measured)
    assert result.rates == Rates(lead_to_mql=0.5, mql_to_sql=0.8, sql_to_won=0.25)
    assert result.sources == {
        "lead_to_mql": "measured",
        "mql_to_sql": "measured",
        "sql_to_won": "given",
        "calls_per_sql": "measured",
    }
    assert result.call_tasks_per_month == 1_750  # 700 SQLs × 2.5
    default = plan(
        48_000_000, 20_000, 0.5, 600, Rates(lead_to_mql=0.5, mql_to_sql=0.8, sql_to_won=0.25)
    )
    assert default.sources["calls_per_sql"] == "default"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"deal_size": 0}, "deal size must be more than 0"),
        ({"deal_size": -5}, "deal size must be more than 0"),
        ({"renewal_rate": 1.2}, "renewal rate must be between 0 and 1"),
        ({"renewal_rate": -0.1}, "renewal rate must be between 0 and 1"),
        ({"customers": -1}, "customers must be a whole number, not negative"),
        ({"target_revenue": -1}, "target revenue must not be negative"),
        ({"target_revenue": float("nan")}, "target revenue must be a finite number"),
        ({"target_revenue": "lots"}, "target revenue must be a number"),
        (
            {"rates": {"lead_to_mql": 0, "mql_to_sql": 0.5, "sql_to_won": 0.5}},
            "lead_to_mql must be more than 0",
        ),
        (
            {"rates": {"lead_to_mql": 0.2, "mql_to_sql": 1.5, "sql_to_won": 0.5}},
            "mql_to_sql must be more than 0 and at most 1",
        ),
        (
            {"rates": {"lead_to_mql": 0.2, "mql_to_sql": 0.5, "sql_to_won": -0.1}},
            "sql_to_won must be more than 0",
        ),
        (
            {"rates": {"lead_to_mql": 0.2, "mql_to_sql": 0.5, "sql_to_won": 0.5, "won_to_x": 1}},
            "unknown rate won_to_x",
        ),
        ({"tasks_per_sdr_per_day": 0}, "tasks per SDR per day must be more than 0"),
        ({"working_days_per_month": 0}, "working days per month must be between 1 and 31"),
        ({"calls_per_sql": -1}, "calls per SQL must not be negative"),
    ],
)
def test_plan_validates_its_input(changes: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "target_revenue": 48_000_000,
        "deal_size": 20_000,
        "renewal_rate": 0.5,
        "customers": 600,
        "rates": {"lead_to_mql": 0.2, "mql_to_sql": 0.5, "sql_to_won": 0.25},
    }
    args.update(changes)
    with pytest.raises(PlanError, match=message):
        plan(**args)


async def test_measure_takes_rates_and_calls_from_the_data(seeded) -> None:
    async with seeded() as session:
        measured = await measure(session, since=SINCE, until=UNTIL)
    assert measured.rates == Rates(
        lead_to_mql=round(6 / 7, 4), mql_to_sql=round(5 / 6, 4), sql_to_won=0.4
    )
    assert measured.calls_per_sql == 1.2  # 6 call tasks for 5 SQL passages


# --- the CLI ------------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
async def seeded_file(
    tmp_path: Path,
) -> AsyncIterator[tuple[str, async_sessionmaker[AsyncSession]]]:
    """The data set in a SQLite file, for the CLI and pages: what they add is formatting, and
    the queries' portability is tested on both databases above, so one backend is enough."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'reports.db'}"
    await migrate(url)
    engine = make_engine(url)
    try:
        sessions = session_factory(engine)
        await seed(sessions)
        yield url, sessions
    finally:
        await engine.dispose()


@pytest.fixture
def seeded_url(seeded_file: tuple[str, Any]) -> str:
    return seeded_file[0]


@pytest.fixture
def seeded_pages(seeded_file: tuple[str, Any]) -> async_sessionmaker[AsyncSession]:
    return seeded_file[1]


async def invoke(url: str, command: str) -> Any:
    """Run ``nurture report <command>`` on the database at ``url``."""
    # In a thread: the command runs its own event loop (asyncio.run), as from a shell.
    return await asyncio.to_thread(
        runner.invoke, report_app, shlex.split(command), env={"NURTURE_DATABASE_URL": url}
    )


MARCH_ARGS = "--since 2026-03-01 --until 2026-03-31"
MARCH_QUERY = "since=2026-03-01&until=2026-03-31"


async def test_cli_funnel_json(seeded_url: str) -> None:
    result = await invoke(seeded_url, f"funnel --by source {MARCH_ARGS} --format json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [data["total"][stage] for stage in ("lead", "mql", "sql", "won")] == [7, 6, 5, 2]
    assert data["total"]["sql_to_won"] == 0.4
    assert [(g["key"], g["lead"], g["won"]) for g in data["groups"]] == [
        ("ads", 3, 1),
        ("webinar", 3, 1),
        ("seo", 1, 0),
    ]
    assert data["since"] == "2026-03-01T00:00:00Z" and data["until"] == "2026-04-01T00:00:00Z"
    assert data["loss_reasons"][0] == {"outcome": "lost", "reason": "competitor", "count": 2}


async def test_cli_funnel_csv(seeded_url: str) -> None:
    result = await invoke(seeded_url, f"funnel --by cycle {MARCH_ARGS} --format csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["key"], r["lead"], r["mql"], r["sql"], r["won"]) for r in rows] == [
        ("first pass", "6", "5", "4", "1"),
        ("recycled", "1", "1", "1", "1"),
        ("all", "7", "6", "5", "2"),
    ]
    assert rows[1]["sql_to_won"] == "1.0" and rows[2]["lead_to_mql"] == str(round(6 / 7, 4))


async def test_cli_funnel_table(seeded_url: str) -> None:
    result = await invoke(seeded_url, f"funnel --by cadence {MARCH_ARGS}")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any("inbound" in line and "75.0%" in line for line in lines), result.stdout  # 3/4 to mql
    assert any("all" in line and "85.7%" in line for line in lines), result.stdout
    assert "Loss and rejection reasons" in result.stdout and "no_budget" in result.stdout
    words = " ".join(result.stdout.split())
    assert (
        "7 passages of 6 leads (a recycled lead counts once per cycle) entered the funnel between"
        in words
    )
    assert "Passages (a lead in one cycle)" not in words and "any time to any time" not in words
    assert "Too few to trust (under 30): lead → MQL from 7 passages" in words


EXAMPLE = "plan --target-revenue 48000000 --deal-size 20000 --renewal-rate 0.5 --customers 600"


async def test_cli_plan(seeded_url: str) -> None:
    rates = "--lead-to-mql 0.2 --mql-to-sql 0.5 --sql-to-won 0.25"
    table = await invoke(seeded_url, f"{EXAMPLE} {rates}")
    assert table.exit_code == 0, table.output
    assert "6,000,000 = 300 × 20,000" in table.stdout
    assert "2,100" in table.stdout and "175" in table.stdout

    # Rates not given are measured from all the data (8 leads, 7 mql, 5 sql, 2 won).
    measured = await invoke(seeded_url, f"{EXAMPLE} --sql-to-won 0.25 --format json")
    assert measured.exit_code == 0, measured.output
    data = json.loads(measured.stdout)
    assert data["existing_revenue"] == 6_000_000
    assert (data["new_customers"], data["new_customers_per_month"]) == (2_100, 175)
    assert data["rates"] == {
        "lead_to_mql": 0.875,
        "mql_to_sql": round(5 / 7, 4),
        "sql_to_won": 0.25,
    }
    assert data["sources"]["lead_to_mql"] == "measured"
    assert data["sources"]["sql_to_won"] == "given"


PLAN_BASE = "plan --target-revenue 1e6 --deal-size 10 --renewal-rate 0.5"


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("funnel --by country", "--by must be one of source, cadence, step, owner, cycle"),
        ("funnel --since March", "--since must be a date like 2026-01-31"),
        ("funnel --format xml", "--format must be one of table, json, csv"),
        ("funnel --since 2026-03-02 --until 2026-03-01", "must be after since"),
        ("plan --deal-size 1 --renewal-rate 0.5 --customers 1", "--target-revenue is required"),
        (
            "plan --target-revenue 1e6 --deal-size ten --renewal-rate 0.5 --customers 1",
            "--deal-size must be a number",
        ),
        (
            "plan --target-revenue 1e6 --deal-size 10 --renewal-rate 2 --customers 1"
            " --lead-to-mql 1 --mql-to-sql 1 --sql-to-won 1 --calls-per-sql 1",
            "renewal rate must be between 0 and 1",
        ),
        (f"{PLAN_BASE} --customers 1.5", "--customers must be a whole number"),
        (f"{PLAN_BASE} --customers 1 --format csv", "--format must be one of table, json"),
    ],
)
async def test_cli_errors_exit_2_with_one_line(tmp_path: Path, command: str, message: str) -> None:
    # Input errors do not depend on the data: one empty SQLite file (the CLI migrates it).
    result = await invoke(f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}", command)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.output


async def test_cli_plan_without_data_uses_labelled_benchmark_rates(tmp_path: Path) -> None:
    # A new installation has nothing to measure: the worked example still comes out, and
    # every rate that was not given says it is a default.
    command = "plan --target-revenue 48000000 --deal-size 20000 --renewal-rate 0.5 --customers 600 --format json"
    result = await invoke(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}", command)
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["new_customers"] == 2100 and plan["new_customers_per_month"] == 175
    assert plan["sources"]["lead_to_mql"] == plan["sources"]["sql_to_won"] == "default"
    assert plan["sqls_per_month"] == 875  # 175 / 0.2


# --- the pages, through ASGI (the browser test renders them for real) ---------------------


def pages_app(sessions: async_sessionmaker[AsyncSession]) -> FastAPI:
    app = FastAPI()
    app.state.sessions = sessions
    app.include_router(report_pages.router)
    return app


async def get(sessions, url: str) -> httpx.Response:
    transport = httpx.ASGITransport(pages_app(sessions))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(url)


async def test_reports_page_shows_every_report(seeded_pages) -> None:
    response = await get(seeded_pages, "/reports?since=2026-03-01&until=2026-03-31&by=owner")
    assert response.status_code == 200
    page = response.text
    assert page.count("<svg") == 4  # funnel, channels, time in stage, losses
    assert (
        "7 passages of 6 leads (a recycled lead counts once per cycle) entered the funnel" in page
    )
    assert "85.7% move on" in page and "↓" not in page  # a conversion, not a drop
    assert 'id="thin"' in page and "lead → MQL from 7 passages" in page
    assert 'class="chart funnel-chart"' in page and "Funnel by owner" in page
    for text in (
        "Conversion by channel",
        "Stuck leads",
        "Cadence step performance",
        "SDR activity",
        "first-call",
        "no_budget (rejected)",
        "aiko",
    ):
        assert text in page, text
    # The erased lead counts, and the page shows no personal data.
    assert "l-2@example.com" not in page and "Test" not in page


async def test_reports_page_refuses_bad_query(seeded_pages) -> None:
    response = await get(seeded_pages, "/reports?by=country")
    assert response.status_code == 422
    assert "by must be one of" in response.text
    response = await get(seeded_pages, "/reports?since=yesterday")
    assert response.status_code == 422 and "since must be a date" in response.text


async def test_plan_page(seeded_pages) -> None:
    empty = await get(seeded_pages, "/reports/plan")
    assert empty.status_code == 200 and "<form" in empty.text and "measured 0.875" in empty.text
    # The worked example is on the page itself, not in a document the reader may not have.
    assert "A worked example" in empty.text and "PRODUCT.md" not in empty.text
    assert "42,000,000 ÷ 20,000 = 2,100 new customers" in empty.text
    assert "Rates measured from few passages (under 30): lead → MQL from 8 passages" in empty.text
    query = (
        "target_revenue=48%2C000%2C000&deal_size=20000&renewal_rate=0.5&customers=600"
        "&lead_to_mql=0.2&mql_to_sql=0.5&sql_to_won=0.25&calls_per_sql=5&tasks_per_sdr_per_day=40"
    )
    result = await get(seeded_pages, f"/reports/plan?{query}")
    assert result.status_code == 200
    assert (
        "6,000,000 = 300 × 20,000" in result.text and "2,100 = 42,000,000 / 20,000" in result.text
    )
    assert "175 = 2,100 / 12" in result.text and "4.17 → 5 people" in result.text
    assert "<svg" in result.text
    bad = await get(
        seeded_pages, "/reports/plan?target_revenue=1&deal_size=0&renewal_rate=0.5&customers=1"
    )
    assert bad.status_code == 422 and "deal size must be more than 0" in bad.text
    missing = await get(seeded_pages, "/reports/plan?target_revenue=1")
    assert missing.status_code == 422 and "please fill in: Average deal" in missing.text


async def test_reports_in_the_app_need_an_ops_login(seeded_url: str, seeded_pages) -> None:
    # The app wires the router behind its login (nurture/web/app.py); the pages must render
    # inside the app's frame for a signed-in user too.
    from web_helpers import add_user, asgi_client, log_in

    from nurture.settings import Settings
    from nurture.web import create_app

    await add_user(seeded_pages, "ben", "sdr")
    await add_user(seeded_pages, "olga", "ops")
    app = create_app(Settings(database_url=seeded_url, webhook_secret="s" * 32))
    async with asgi_client(app) as client:
        anonymous = await client.get("/reports")
        assert anonymous.status_code == 303 and "/login" in anonymous.headers["location"]
        await log_in(client, "olga")
        page = await client.get(f"/reports?{MARCH_QUERY}")
        plan_page = await client.get("/reports/plan")
    assert page.status_code == 200, page.text
    assert page.text.count("<svg") == 4 and "olga (ops)" in page.text
    assert plan_page.status_code == 200 and "<form" in plan_page.text
    # They show every SDR's leads and activity: ops only.
    async with asgi_client(app) as client:
        await log_in(client, "ben")
        refused = await client.get(f"/reports?{MARCH_QUERY}")
        refused_plan = await client.get("/reports/plan")
    assert refused.status_code == 403 and refused_plan.status_code == 403


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.2, "under 1s"), (40, "40s"), (59.4, "59s"), (90, "2m"), (5400, "1.5h")],
)
def test_durations_read_sensibly_below_a_minute(seconds: float | None, text: str) -> None:
    from nurture.services.reports import human_duration

    assert human_duration(seconds) == text
