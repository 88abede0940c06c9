"""`nurture cadences simulate ID`: a dry run of one lead on a virtual clock.

No Temporal, no database, no email: the cadence files are loaded and validated as the worker
would load them, and :func:`nurture.services.simulate.simulate` plays the lead through them. The
command is registered by ``nurture/cli/cadences.py`` with
``from nurture.cli.simulate import simulate``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from nurture.adapters.loader import CadenceSetInvalid, load_cadence_set
from nurture.adapters.yamlio import YamlSyntaxError, load_yaml
from nurture.domain.events import Lead
from nurture.domain.interpreter import SpinError
from nurture.domain.rendering import Renderer
from nurture.domain.timing import lead_zone
from nurture.services.simulate import (
    SimulatedLead,
    TimelineEntry,
    parse_script,
    simulate_leads,
)
from nurture.services.simulate import simulate as run_simulation
from nurture.settings import SettingsError, load_settings

SAMPLE_LEAD: dict[str, Any] = {
    "id": "sample-lead",
    "email": "sam.sample@example.com",
    "first_name": "Sam",
    "company": "Sample Software Inc.",
    "country": "US",
    "timezone": "America/New_York",
    "employees": 250,
    "industry": "software",
}
"""The lead simulated when no ``--lead`` file is given."""

# A wide table reads better in a file or a pipe than one wrapped to 80 columns.
_PIPE_WIDTH = 200


def simulate(
    cadence_id: Annotated[
        str, typer.Argument(metavar="ID", help="The cadence the lead starts in.")
    ],
    lead: Annotated[
        Path | None,
        typer.Option(
            "--lead",
            help=(
                "A YAML or JSON file with the lead's fields (id, country, timezone, industry, "
                "employees, tier_account, source, ...). Default: a sample lead (US, "
                "America/New_York, 250 employees, software). A file without an `email` key "
                "gets a sample address; write `email: null` to simulate a lead without one. "
                "A file holding a list of leads runs them all on one clock, sharing the "
                "account governor (limits.account, one address across lead ids); each item "
                "may add `cadence` (default: ID), `events` (a SPEC of its own) and `start`."
            ),
        ),
    ] = None,
    events: Annotated[
        str | None,
        typer.Option(
            "--events",
            metavar="SPEC",
            help=(
                "Comma-separated scripted events: 'day N [HH:MM]', 'hour N' or 'minute N', then "
                "an event type (page.visited), TYPE@STEP (email.clicked@welcome), "
                "call:OUTCOME (call:no_answer) or an ops control (pause, resume, "
                "reassign:OWNER), then key=value data. HH:MM is the lead's local time. "
                "Example: 'day 1 email.clicked@welcome, day 5 10:30 page.visited "
                "url=/pricing, day 40 lead.updated employees=5000, day 41 pause'."
            ),
        ),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            "--start",
            help=(
                "When the lead arrives, ISO 8601 (naive means UTC). Default: next Monday 08:00 UTC."
            ),
        ),
    ] = None,
    days: Annotated[int, typer.Option("--days", min=1, help="How many days to simulate.")] = 120,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the history as JSON (as `leads show` prints it) instead of a table.",
        ),
    ] = False,
) -> None:
    """Dry-run a lead through a cadence on a virtual clock and print its history.

    The lead lives by the same machine as a live lead: windows, holidays, caps, scores,
    stages, recycling. Every email and call script is rendered for the lead, so a template
    that would fail at send time shows. Nothing is sent and nothing is stored.
    """
    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    try:
        cadence_set = load_cadence_set(settings.cadences_dir, settings.templates_dir)
    except CadenceSetInvalid as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        count = len(exc.problems)
        typer.echo(
            f"{count} problem{'s' if count != 1 else ''} in the cadence files: "
            "fix them first (`nurture cadences validate`)",
            err=True,
        )
        raise typer.Exit(1) from None
    if cadence_id not in cadence_set.cadences:
        known = ", ".join(sorted(cadence_set.cadences)) or "none"
        typer.echo(
            f"no cadence '{cadence_id}' in {settings.cadences_dir} (cadences: {known})", err=True
        )
        raise typer.Exit(1)

    begin = _parse_start(start) if start is not None else next_monday_morning(datetime.now(UTC))
    data = _read_file(lead) if lead is not None else None
    if isinstance(data, list):
        _simulate_several(cadence_set, cadence_id, lead, data, events, begin, days, as_json)
        return
    person = _read_lead(lead, data)
    facts = person.facts()
    zone = lead_zone(facts.timezone, facts.country)
    try:
        script = parse_script(events or "", begin, zone=zone)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--events") from None
    try:
        timeline = run_simulation(
            cadence_set,
            cadence_id,
            person,
            script,
            begin,
            timedelta(days=days),
            renderer=Renderer(settings.templates_dir),
        )
    except (ValueError, SpinError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None

    if as_json:
        typer.echo(_as_json(timeline))
        return
    title = (
        f"{cadence_id}: lead {facts.id} ({zone}), from {begin:%Y-%m-%d %H:%M} UTC for {days} days"
    )
    _print_table(timeline, title)


def next_monday_morning(now: datetime) -> datetime:
    """The first Monday 08:00 UTC after ``now``: a working week ahead of the lead."""
    now = now.astimezone(UTC)
    monday = now.replace(hour=8, minute=0, second=0, microsecond=0) + timedelta(
        days=-now.weekday() % 7
    )
    return monday if monday > now else monday + timedelta(days=7)


def _parse_start(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"'{text}' is not an ISO 8601 date-time, e.g. 2026-11-23T08:00:00Z",
            param_hint="--start",
        ) from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _read_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint="--lead") from None
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else load_yaml(text).data
    except (json.JSONDecodeError, YamlSyntaxError) as exc:
        raise typer.BadParameter(f"{path}: {exc}", param_hint="--lead") from None


def _read_lead(path: Path | None, data: Any = None, where: str = "") -> Lead:
    if path is None:
        return Lead.model_validate(SAMPLE_LEAD)
    if not isinstance(data, dict):
        raise typer.BadParameter(
            f"{path}{where} must hold a mapping of lead fields (id, country, timezone, ...)",
            param_hint="--lead",
        )
    # A dry run is about the cadence: emails go out unless the file says the lead has none.
    data = {"id": SAMPLE_LEAD["id"], "email": SAMPLE_LEAD["email"], **data}
    try:
        return Lead.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'lead'}: {error['msg']}"
            for error in exc.errors()
        )
        raise typer.BadParameter(f"{path}{where}: {problems}", param_hint="--lead") from None


# The keys of a list item that are about the run, not the lead.
_RUN_KEYS = ("cadence", "events", "start")


def _simulate_several(
    cadence_set: Any,
    cadence_id: str,
    path: Path,
    items: list[Any],
    events: str | None,
    begin: datetime,
    days: int,
    as_json: bool,
) -> None:
    """Several leads on one clock: the account governor's view (``--lead`` holds a list)."""
    if not items:
        raise typer.BadParameter(f"{path}: the list of leads is empty", param_hint="--lead")
    if events:
        raise typer.BadParameter(
            "with a list of leads, give each lead its own `events` in the file",
            param_hint="--events",
        )
    leads: list[SimulatedLead] = []
    for n, item in enumerate(items, start=1):
        where = f": lead {n}"
        if not isinstance(item, dict):
            raise typer.BadParameter(
                f"{path}{where} must hold a mapping of lead fields (id, email, company, ...)",
                param_hint="--lead",
            )
        fields = {k: v for k, v in item.items() if k not in _RUN_KEYS}
        person = _read_lead(path, {"id": f"sample-lead-{n}", **fields}, where)
        arrives = _parse_start(str(item["start"])) if item.get("start") is not None else begin
        cadence = str(item.get("cadence") or cadence_id)
        if cadence not in cadence_set.cadences:
            raise typer.BadParameter(f"{path}{where}: no cadence '{cadence}'", param_hint="--lead")
        facts = person.facts()
        zone = lead_zone(facts.timezone, facts.country)
        try:
            script = parse_script(str(item.get("events") or ""), arrives, zone=zone)
        except ValueError as exc:
            raise typer.BadParameter(f"{path}{where}: {exc}", param_hint="--lead") from None
        leads.append(SimulatedLead(lead=person, cadence=cadence, script=script, start=arrives))
    try:
        timeline = simulate_leads(
            cadence_set,
            leads,
            begin,
            timedelta(days=days),
            renderer=Renderer(load_settings().templates_dir),
        )
    except (ValueError, SpinError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(_as_json(timeline))
        return
    names = ", ".join(item.lead.id for item in leads)
    _print_table(
        timeline,
        f"{len(leads)} leads ({names}), from {begin:%Y-%m-%d %H:%M} UTC for {days} days",
        several=True,
    )


def _as_json(timeline: list[TimelineEntry]) -> str:
    # `lead_id` only in a run of several leads: one lead's entries stay {at, local, what, why}.
    return json.dumps(
        [entry.model_dump(mode="json", exclude_none=True) for entry in timeline], indent=2
    )


def _print_table(timeline: list[TimelineEntry], title: str, *, several: bool = False) -> None:
    console = Console()
    if not console.is_terminal:
        console = Console(width=_PIPE_WIDTH)
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("UTC", no_wrap=True)
    table.add_column("lead time", no_wrap=True)
    if several:
        table.add_column("lead", no_wrap=True)
    table.add_column("what")
    table.add_column("why")
    for entry in timeline:
        lead = [entry.lead_id or ""] if several else []
        table.add_row(f"{entry.at:%Y-%m-%d %H:%M}", entry.local, *lead, entry.what, entry.why)
    console.print(table)
