"""`nurture report funnel` and `nurture report plan`: the managers' numbers (CONTRACT.md, CLI).

The numbers come from :mod:`nurture.services.reports`; this module parses options and formats.
Every input error exits 2 with one line on stderr, so scripts can tell it from a failure.
"""

from __future__ import annotations

import asyncio
import csv
import sys
from datetime import UTC, date, datetime, timedelta

import typer
from rich.console import Console
from rich.table import Table

from nurture.cli.common import context, echo_json, fail
from nurture.services.reports import (
    DEFAULT_TASKS_PER_SDR_PER_DAY,
    DEFAULT_WORKING_DAYS_PER_MONTH,
    FUNNEL_STAGES,
    GROUPINGS,
    MIN_SAMPLE,
    Funnel,
    FunnelRow,
    Measured,
    Plan,
    ReportError,
    grouping,
    human_duration,
    measure,
    plan,
    plan_lines,
)
from nurture.services.reports import funnel as funnel_report

app = typer.Typer(help="Reports: the funnel and the capacity plan.", no_args_is_help=True)

FUNNEL_FORMATS = ("table", "json", "csv")
PLAN_FORMATS = ("table", "json")
CSV_COLUMNS = ("key", *FUNNEL_STAGES, "lead_to_mql", "mql_to_sql", "sql_to_won", "lead_to_won")


def parse_day(name: str, text: str | None, *, end: bool = False) -> datetime | None:
    """A ``--since``/``--until`` value as an aware UTC datetime.

    A date (``2026-01-31``) means the whole day: as ``--until`` (``end``) it includes that
    day, so ``--since 2026-01-01 --until 2026-01-31`` is January. A full ISO time is taken
    as given (UTC when it has no offset).
    """
    if text is None:
        return None
    text = text.strip()
    try:
        if "T" in text or " " in text:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        day = date.fromisoformat(text)
    except ValueError:
        fail(f"--{name} must be a date like 2026-01-31 (or an ISO time), not '{text}'", 2)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start + timedelta(days=1) if end else start


def _number(option: str, text: str) -> float:
    try:
        return float(text.replace(",", "").replace("_", ""))
    except ValueError:
        fail(f"{option} must be a number, not '{text}'", 2)


def _required(option: str, text: str | None) -> float:
    if text is None:
        fail(f"{option} is required", 2)
    return _number(option, text)


def _optional(option: str, text: str | None) -> float | None:
    return None if text is None else _number(option, text)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _funnel_table(report: Funnel) -> Table:
    title = "Funnel" + (f" by {report.by}" if report.by else "")
    table = Table(
        *(["group"] if report.by else []),
        *FUNNEL_STAGES,
        "lead→mql",
        "mql→sql",
        "sql→won",
        "lead→won",
        title=title,
    )
    rows: list[FunnelRow] = [*report.groups, report.total] if report.by else [report.total]
    for row in rows:
        cells = [str(row.count(stage)) for stage in FUNNEL_STAGES]
        rates = [
            _percent(v) for v in (row.lead_to_mql, row.mql_to_sql, row.sql_to_won, row.lead_to_won)
        ]
        table.add_row(
            *([row.key] if report.by else []),
            *cells,
            *rates,
            style="bold" if row is report.total and report.by else None,
        )
    return table


def _print_funnel(report: Funnel) -> None:
    console = Console()
    console.print(
        f"{report.counted()} entered the funnel {_period(report.since, report.until)}; "
        "each column counts those that have reached that stage so far."
    )
    console.print(_funnel_table(report))
    thin = report.thin_rates()
    if thin:
        console.print(
            f"Too few to trust (under {MIN_SAMPLE}): {'; '.join(thin)}. "
            "Treat those rates as a hint."
        )
    if report.time_in_stage:
        times = Table("stage", "median time", "stays", title="Time in stage")
        for item in report.time_in_stage:
            times.add_row(item.stage, human_duration(item.median_seconds), str(item.samples))
        console.print(times)
    if report.loss_reasons:
        losses = Table("outcome", "reason", "count", title="Loss and rejection reasons")
        for loss in report.loss_reasons:
            losses.add_row(loss.outcome, loss.reason, str(loss.count))
        console.print(losses)
    if report.stuck:
        stuck = Table(
            "lead",
            "stage",
            "cadence/step",
            "owner",
            "next touch (UTC)",
            "overdue",
            title=f"Stuck leads: {len(report.stuck)} (next touch overdue by more than 1h)",
        )
        for lead in report.stuck:
            stuck.add_row(
                lead.lead_id,
                lead.stage,
                f"{lead.cadence or '-'}/{lead.step or '-'}",
                lead.owner or "-",
                lead.next_touch_at.strftime("%Y-%m-%d %H:%M"),
                human_duration(lead.overdue_seconds),
            )
        console.print(stuck)
    else:
        console.print("Stuck leads: none.")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "any time"


def _period(since: datetime | None, until: datetime | None) -> str:
    """``since 2026-11-01 00:00 UTC``, ``between ... and ...``, or ``since the start``."""
    if since and until:
        return f"between {_when(since)} and {_when(until)}"
    if since:
        return f"since {_when(since)}"
    if until:
        return f"before {_when(until)}"
    return "since the start"


def _print_csv(report: Funnel) -> None:
    writer = csv.DictWriter(
        sys.stdout, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in [*report.groups, report.total]:
        writer.writerow({k: "" if v is None else v for k, v in row.model_dump().items()})


@app.command()
def funnel(
    by: str | None = typer.Option(
        None,
        "--by",
        metavar="|".join(GROUPINGS),
        help="Break down by channel, entry cadence, last-touch step, SDR or cycle.",
    ),
    since: str | None = typer.Option(None, metavar="DATE", help="First day (UTC) of the period."),
    until: str | None = typer.Option(
        None, metavar="DATE", help="Last day (UTC) of the period, included."
    ),
    output: str = typer.Option(
        "table", "--format", metavar="|".join(FUNNEL_FORMATS), help="Output format."
    ),
) -> None:
    """Leads reaching each stage (lead, mql, sql, won) and the conversion between them.

    Counts each lead once per cycle (a recycled lead again), for the cycles that began in
    the period; also the median time in each stage, loss reasons and stuck leads.
    """
    try:
        group_by = grouping(by)
    except ReportError:
        fail(f"--by must be one of {', '.join(GROUPINGS)}, not '{by}'", 2)
    if output not in FUNNEL_FORMATS:
        fail(f"--format must be one of {', '.join(FUNNEL_FORMATS)}, not '{output}'", 2)
    start, end = parse_day("since", since), parse_day("until", until, end=True)

    async def run() -> Funnel:
        async with context() as ctx, ctx.sessions() as session:
            return await funnel_report(session, since=start, until=end, by=group_by)

    try:
        report = asyncio.run(run())
    except ReportError as exc:
        fail(str(exc), 2)
    if output == "json":
        echo_json(report.model_dump(mode="json"))
    elif output == "csv":
        _print_csv(report)
    else:
        _print_funnel(report)


@app.command("plan")
def plan_command(
    target_revenue: str | None = typer.Option(
        None, metavar="N", help="Next year's revenue target."
    ),
    deal_size: str | None = typer.Option(None, metavar="N", help="The average yearly deal."),
    renewal_rate: str | None = typer.Option(
        None, metavar="R", help="Share of customers renewing, 0..1."
    ),
    customers: str | None = typer.Option(None, metavar="N", help="Current paying customers."),
    lead_to_mql: str | None = typer.Option(
        None, metavar="R", help="Lead→MQL rate (default: measured)."
    ),
    mql_to_sql: str | None = typer.Option(
        None, metavar="R", help="MQL→SQL rate (default: measured)."
    ),
    sql_to_won: str | None = typer.Option(
        None, metavar="R", help="SQL→won rate (default: measured)."
    ),
    tasks_per_sdr_per_day: str | None = typer.Option(
        None,
        metavar="N",
        help=f"Call tasks one SDR does a day (default {DEFAULT_TASKS_PER_SDR_PER_DAY:g}).",
    ),
    calls_per_sql: str | None = typer.Option(
        None, metavar="N", help="Call tasks per SQL (default: measured)."
    ),
    working_days: str | None = typer.Option(
        None,
        "--working-days-per-month",
        metavar="N",
        help=f"Default {DEFAULT_WORKING_DAYS_PER_MONTH}.",
    ),
    output: str = typer.Option(
        "table", "--format", metavar="|".join(PLAN_FORMATS), help="Output format."
    ),
) -> None:
    """Plan backwards from a revenue target: new customers, monthly leads/MQLs/SQLs, SDRs.

    Conversion rates not given are measured from the funnel of all the data.
    """
    if output not in PLAN_FORMATS:
        fail(f"--format must be one of {', '.join(PLAN_FORMATS)}, not '{output}'", 2)
    target = _required("--target-revenue", target_revenue)
    deal = _required("--deal-size", deal_size)
    renewal = _required("--renewal-rate", renewal_rate)
    current = _required("--customers", customers)
    if current is not None and not current.is_integer():
        fail(f"--customers must be a whole number, not '{customers}'", 2)
    given: dict[str, float | None] = {
        "lead_to_mql": _optional("--lead-to-mql", lead_to_mql),
        "mql_to_sql": _optional("--mql-to-sql", mql_to_sql),
        "sql_to_won": _optional("--sql-to-won", sql_to_won),
    }
    per_day = _optional("--tasks-per-sdr-per-day", tasks_per_sdr_per_day)
    calls = _optional("--calls-per-sql", calls_per_sql)
    days = _optional("--working-days-per-month", working_days)
    if days is not None and not days.is_integer():
        fail(f"--working-days-per-month must be a whole number, not '{working_days}'", 2)

    async def run() -> Measured | None:
        # Only open the database when something must be measured: a fully given plan is pure.
        if all(v is not None for v in given.values()) and calls is not None:
            return None
        async with context() as ctx, ctx.sessions() as session:
            return await measure(session)

    measured = asyncio.run(run())
    try:
        result = plan(
            target,
            deal,
            renewal,
            int(current),
            given,
            tasks_per_sdr_per_day=per_day if per_day is not None else DEFAULT_TASKS_PER_SDR_PER_DAY,
            calls_per_sql=calls,
            working_days_per_month=DEFAULT_WORKING_DAYS_PER_MONTH if days is None else int(days),
            measured=measured,
        )
    except ReportError as exc:
        fail(str(exc), 2)
    if output == "json":
        echo_json(result.model_dump(mode="json"))
    else:
        _print_plan(result, measured)


def _print_plan(result: Plan, measured: Measured | None) -> None:
    table = Table("plan", "", title="Capacity plan", show_header=False)
    for what, value in plan_lines(result):
        table.add_row(what, value)
    console = Console()
    console.print(table)
    if measured and measured.thin and "measured" in result.sources.values():
        console.print(
            f"Measured rates from few passages (under {MIN_SAMPLE}): {'; '.join(measured.thin)}. "
            "Give the rates you expect (--lead-to-mql ...) rather than plan on these."
        )
