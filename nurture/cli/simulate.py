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
from nurture.services.simulate import TimelineEntry, parse_script
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
                "gets a sample address; write `email: null` to simulate a lead without one."
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

    person = _read_lead(lead)
    facts = person.facts()
    begin = _parse_start(start) if start is not None else next_monday_morning(datetime.now(UTC))
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
        typer.echo(json.dumps([entry.model_dump(mode="json") for entry in timeline], indent=2))
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


def _read_lead(path: Path | None) -> Lead:
    if path is None:
        return Lead.model_validate(SAMPLE_LEAD)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint="--lead") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else load_yaml(text).data
    except (json.JSONDecodeError, YamlSyntaxError) as exc:
        raise typer.BadParameter(f"{path}: {exc}", param_hint="--lead") from None
    if not isinstance(data, dict):
        raise typer.BadParameter(
            f"{path} must hold a mapping of lead fields (id, country, timezone, ...)",
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
        raise typer.BadParameter(f"{path}: {problems}", param_hint="--lead") from None


def _print_table(timeline: list[TimelineEntry], title: str) -> None:
    console = Console()
    if not console.is_terminal:
        console = Console(width=_PIPE_WIDTH)
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("UTC", no_wrap=True)
    table.add_column("lead time", no_wrap=True)
    table.add_column("what")
    table.add_column("why")
    for entry in timeline:
        table.add_row(f"{entry.at:%Y-%m-%d %H:%M}", entry.local, entry.what, entry.why)
    console.print(table)
