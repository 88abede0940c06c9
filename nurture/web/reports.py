"""The report pages: ``/reports`` (funnel, channels, losses, steps, SDRs) and ``/reports/plan``.

Rendered on the server, charts included: each chart is an inline SVG drawn here in Python,
so the pages read without JavaScript, print well, and need no front-end build. Numbers
come from :mod:`nurture.services.reports`; this module only parses the query and draws.

The router needs ``request.app.state.sessions`` (an async session factory); the app puts an
ops login in front of it (CONTRACT.md: every page needs a login; these show every SDR's leads
and activity, so SDRs get 403).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from nurture.services.reports import (
    DEFAULT_TASKS_PER_SDR_PER_DAY,
    DEFAULT_WORKING_DAYS_PER_MONTH,
    FUNNEL_STAGES,
    GROUPINGS,
    MIN_SAMPLE,
    Funnel,
    Measured,
    Plan,
    ReportError,
    funnel,
    grouping,
    human_duration,
    measure,
    plan,
    plan_lines,
    sdr_activity,
    step_performance,
)

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
templates = Jinja2Templates(directory=TEMPLATES_DIR)
DEFAULT_BY = "cadence"

ACCENT = "#2f5bd3"
ACCENT_LIGHT = "#c9d6f6"
LOSS = "#c2410c"
WON = "#1f7a4d"
MUTED = "#667085"
FG = "#1d2330"
FONT = "system-ui, -apple-system, 'Segoe UI', 'Hiragino Sans', 'Noto Sans JP', sans-serif"

STAGE_LABELS = {"lead": "Leads", "mql": "MQL", "sql": "SQL", "won": "Won"}

router = APIRouter(tags=["reports"])


def percent(value: float | None) -> str:
    """A rate as ``12.5%``; ``-`` when there was nothing to convert."""
    return "-" if value is None else f"{value:.1%}"


def number(value: float | int | None) -> str:
    """A count or amount with thousands separators, decimals only when it has some."""
    if value is None:
        return "-"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def utc(value: datetime | None) -> str:
    """A time as ``2026-01-31 09:00 UTC``."""
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


templates.env.filters["utc"] = utc
templates.env.filters["percent"] = percent
templates.env.filters["number"] = number
templates.env.filters["duration"] = human_duration


# --- charts: inline SVG -------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One bar of a chart: what it is, how long, and the words next to it."""

    label: str
    value: float
    text: str


def _svg(width: int, height: int, title: str, body: list[str], css_class: str) -> Markup:
    # role=img and a <title>: screen readers announce the chart by its title; the numbers
    # are also in the tables beside each chart.
    return Markup(
        f'<svg class="chart {css_class}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'font-family="{FONT}" font-size="14"><title>{escape(title)}</title>{"".join(body)}</svg>'
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def funnel_svg(stages: Sequence[tuple[str, int]], title: str) -> Markup:
    """A horizontal funnel: one centred bar per stage, the conversion between each two.

    Args:
        stages: (stage name, count) from the top of the funnel down.
        title: What the chart shows (its accessible name).
    """
    width, label_w, right_w, bar_h, gap = 560, 64, 60, 30, 22
    area = width - label_w - right_w
    top = max((count for _, count in stages), default=0) or 1
    body: list[str] = []
    y = 4
    for index, (name, count) in enumerate(stages):
        if index:
            previous = stages[index - 1][1]
            # A conversion, not a fall: say how many went on to the next stage.
            rate = f"{count / previous:.1%} move on" if previous else "none to move on"
            body.append(
                f'<text x="{label_w + area / 2:.1f}" y="{y + gap / 2 + 4:.1f}" '
                f'text-anchor="middle" fill="{MUTED}" font-size="12">{escape(rate)}</text>'
            )
            y += gap
        # A stage with passages keeps a sliver, so "1 of 900" is still visible as a bar.
        bar_w = max(area * count / top, 3 if count else 0)
        x = label_w + (area - bar_w) / 2
        body.append(
            f'<text x="0" y="{y + bar_h / 2 + 5:.1f}" fill="{FG}" font-weight="600">'
            f"{escape(STAGE_LABELS.get(name, name))}</text>"
        )
        body.append(
            f'<rect class="bar" x="{x:.1f}" y="{y}" width="{bar_w:.1f}" height="{bar_h}" rx="3" '
            f'fill="{ACCENT if index < len(stages) - 1 else WON}">'
            f"<title>{escape(name)}: {count}</title></rect>"
        )
        body.append(
            f'<text x="{width - 4}" y="{y + bar_h / 2 + 5:.1f}" text-anchor="end" fill="{FG}" '
            f'font-weight="600">{count:,}</text>'
        )
        y += bar_h
    return _svg(width, y + 4, title, body, "funnel-chart")


def bar_svg(
    bars: Sequence[Bar], title: str, *, color: str = ACCENT, max_value: float | None = None
) -> Markup:
    """A horizontal bar chart, one labelled row per bar, longest value = full width.

    Args:
        bars: The rows, top to bottom.
        title: What the chart shows (its accessible name).
        color: The bars' colour.
        max_value: The value of a full-width bar (e.g. 1 for rates); default the largest.
    """
    width, label_w, text_w, bar_h, gap = 560, 150, 120, 22, 8
    area = width - label_w - text_w
    top = max_value or max((b.value for b in bars), default=0) or 1
    body: list[str] = []
    y = 2
    for item in bars:
        bar_w = max(area * min(item.value, top) / top, 2 if item.value else 0)
        body.append(
            f'<text x="0" y="{y + 16}" fill="{FG}"><title>{escape(item.label)}</title>'
            f"{escape(_clip(item.label, 20))}</text>"
        )
        body.append(
            f'<rect x="{label_w}" y="{y}" width="{area}" height="{bar_h}" fill="#f1f3f7" rx="2"/>'
        )
        body.append(
            f'<rect class="bar" x="{label_w}" y="{y}" width="{bar_w:.1f}" height="{bar_h}" '
            f'fill="{color}" rx="2"><title>{escape(item.label)}: {escape(item.text)}</title></rect>'
        )
        body.append(
            f'<text x="{label_w + area + 8}" y="{y + 16}" fill="{FG}">{escape(item.text)}</text>'
        )
        y += bar_h + gap
    return _svg(width, max(y, 24), title, body, "bar-chart")


# --- /reports -----------------------------------------------------------------------------


def _parse_day(name: str, text: str | None, *, end: bool = False) -> datetime | None:
    if not text:
        return None
    try:
        day = date.fromisoformat(text.strip())
    except ValueError as exc:
        raise ReportError(f"{name} must be a date like 2026-01-31, not {text!r}") from exc
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    # The last day is included, as in the CLI: since 01-01 until 01-31 is January.
    return start + timedelta(days=1) if end else start


def _channel_bars(report: Funnel) -> list[Bar]:
    return [
        Bar(
            row.key,
            row.sql / row.lead if row.lead else 0,
            f"{percent(row.sql / row.lead if row.lead else None)} ({row.sql}/{row.lead})",
        )
        for row in report.groups
    ]


@router.get("/reports", response_class=HTMLResponse)
async def reports_page(
    request: Request,
    since: str | None = None,
    until: str | None = None,
    by: str | None = None,
) -> HTMLResponse:
    """The funnel page: funnel, conversion by channel, time in stage, loss reasons, stuck
    leads, cadence step performance and SDR activity, for the cycles begun in a period."""
    by = by or DEFAULT_BY
    form = {"since": since or "", "until": until or "", "by": by}
    try:
        group_by = grouping(by)
        start, end = _parse_day("since", since), _parse_day("until", until, end=True)
        now = datetime.now(UTC)
        async with request.app.state.sessions() as session:
            breakdown = await funnel(session, since=start, until=end, by=group_by, now=now)
            channels = (
                breakdown
                if by == "source"
                else await funnel(session, since=start, until=end, by="source", now=now)
            )
            steps = await step_performance(session, since=start, until=end)
            sdrs = await sdr_activity(session, since=start, until=end, now=now)
    except ReportError as exc:
        failed: dict[str, Any] = {"form": form, "groupings": GROUPINGS, "error": str(exc)}
        return templates.TemplateResponse(request, "reports.html", failed, status_code=422)

    total = breakdown.total
    charts = {
        "funnel": funnel_svg(
            [(s, total.count(s)) for s in FUNNEL_STAGES], "Funnel: passages reaching each stage"
        ),
        "channels": bar_svg(
            _channel_bars(channels), "Conversion by channel: lead to SQL", max_value=1
        ),
        "times": bar_svg(
            [
                Bar(
                    t.stage,
                    t.median_seconds or 0,
                    f"{human_duration(t.median_seconds)} ({t.samples})",
                )
                for t in breakdown.time_in_stage
            ],
            "Median time in each stage",
            color="#5b7bd8",
        ),
        "losses": bar_svg(
            [
                Bar(f"{loss.reason} ({loss.outcome})", loss.count, f"{loss.count}")
                for loss in breakdown.loss_reasons
            ],
            "Loss and rejection reasons",
            color=LOSS,
        ),
    }
    context: dict[str, Any] = {
        "form": form,
        "groupings": GROUPINGS,
        "error": None,
        "funnel": breakdown,
        "min_sample": MIN_SAMPLE,
        "channels": channels,
        "steps": steps,
        "sdrs": sdrs,
        "charts": charts,
        "stages": FUNNEL_STAGES,
        "generated_at": now,
    }
    return templates.TemplateResponse(request, "reports.html", context)


# --- /reports/plan ------------------------------------------------------------------------

PLAN_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("target_revenue", "Revenue target, next year", "48000000"),
    ("deal_size", "Average deal", "20000"),
    ("renewal_rate", "Renewal rate (0–1)", "0.5"),
    ("customers", "Paying customers now", "600"),
    ("lead_to_mql", "Lead → MQL rate", ""),
    ("mql_to_sql", "MQL → SQL rate", ""),
    ("sql_to_won", "SQL → won rate", ""),
    ("calls_per_sql", "Call tasks per SQL", ""),
    ("tasks_per_sdr_per_day", "Call tasks per SDR a day", f"{DEFAULT_TASKS_PER_SDR_PER_DAY:g}"),
    ("working_days_per_month", "Working days a month", f"{DEFAULT_WORKING_DAYS_PER_MONTH}"),
)
REQUIRED = ("target_revenue", "deal_size", "renewal_rate", "customers")


def _field(values: dict[str, str], name: str, label: str) -> float | None:
    text = values.get(name, "").replace(",", "").replace("_", "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise ReportError(f"{label}: {text!r} is not a number") from exc


def _plan_from(values: dict[str, str], measured: Measured) -> Plan:
    labels = {name: label for name, label, _ in PLAN_FIELDS}
    parsed = {name: _field(values, name, labels[name]) for name in labels}
    target, deal, renewal, customers = (parsed[name] for name in REQUIRED)
    if target is None or deal is None or renewal is None or customers is None:
        missing = [labels[name] for name in REQUIRED if parsed[name] is None]
        raise ReportError(f"please fill in: {', '.join(missing)}")
    days = parsed["working_days_per_month"]
    if not customers.is_integer() or (days is not None and not days.is_integer()):
        raise ReportError("customers and working days must be whole numbers")
    return plan(
        target,
        deal,
        renewal,
        int(customers),
        {name: parsed[name] for name in ("lead_to_mql", "mql_to_sql", "sql_to_won")},
        tasks_per_sdr_per_day=parsed["tasks_per_sdr_per_day"] or DEFAULT_TASKS_PER_SDR_PER_DAY,
        calls_per_sql=parsed["calls_per_sql"],
        working_days_per_month=DEFAULT_WORKING_DAYS_PER_MONTH if days is None else int(days),
        measured=measured,
    )


@router.get("/reports/plan", response_class=HTMLResponse)
async def plan_page(request: Request) -> HTMLResponse:
    """The capacity planner: a form (GET, so a plan is a link to share) and its result.

    Rates left empty are measured from the funnel of all the data; the form shows them.
    """
    names = [name for name, _, _ in PLAN_FIELDS]
    values = {name: request.query_params.get(name, "") for name in names}
    async with request.app.state.sessions() as session:
        measured = await measure(session)
    hints: dict[str, Any] = {**measured.rates.model_dump(), "calls_per_sql": measured.calls_per_sql}
    context: dict[str, Any] = {
        "fields": PLAN_FIELDS,
        "values": values,
        "hints": hints,
        "thin": measured.thin,
        "min_sample": MIN_SAMPLE,
        "result": None,
        "error": None,
        "chart": None,
    }
    status = 200
    if any(values[name] for name in REQUIRED):
        try:
            result = _plan_from(values, measured)
        except ReportError as exc:
            context["error"], status = str(exc), 422
        else:
            context["result"] = result
            context["lines"] = plan_lines(result)
            context["chart"] = funnel_svg(
                [
                    ("lead", result.leads_per_month),
                    ("mql", result.mqls_per_month),
                    ("sql", result.sqls_per_month),
                    ("won", result.new_customers_per_month),
                ],
                "Monthly funnel needed to reach the target",
            )
    return templates.TemplateResponse(request, "reports_plan.html", context, status_code=status)
