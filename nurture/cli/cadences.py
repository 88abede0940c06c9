"""`nurture cadences ...`: validate, schema, graph, simulate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from nurture.adapters.loader import validate_report
from nurture.domain.cadence import Cadence, Playbook
from nurture.domain.graph import mermaid
from nurture.settings import SettingsError, load_settings

app = typer.Typer(
    help="Validate, graph and simulate cadences and the playbook.", no_args_is_help=True
)

SCHEMA_FILES: dict[str, type[Cadence] | type[Playbook]] = {
    "cadence.schema.json": Cadence,
    "playbook.schema.json": Playbook,
}


def _settings_or_exit() -> Any:
    try:
        return load_settings()
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@app.command()
def validate(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Cadence files, playbook.yaml files or folders (default: NURTURE_CADENCES_DIR)."
        ),
    ] = None,
    templates: Annotated[
        Path | None,
        typer.Option(help="The templates folder (default: NURTURE_TEMPLATES_DIR)."),
    ] = None,
) -> None:
    """Check the playbook, the cadences and their templates; print every problem found.

    Exit 0 when all is well, 1 when any problem is found.
    """
    settings = _settings_or_exit()
    targets = list(paths) if paths else [settings.cadences_dir]
    report = validate_report(targets, templates or settings.templates_dir)
    for problem in sorted([*report.problems, *report.warnings]):
        typer.echo(str(problem))
    if report.problems:
        count = len(report.problems)
        typer.echo(f"{count} problem{'s' if count != 1 else ''} found", err=True)
        raise typer.Exit(1)
    # Always "cadences": scripts and CI match this line (CONTRACT: "ok: N cadences").
    summary = f"ok: {report.cadence_files} cadence{'' if report.cadence_files == 1 else 's'}"
    if report.playbook_files:
        summary += ", playbook valid"
    if report.warnings:
        count = len(report.warnings)
        summary += f", {count} warning{'s' if count != 1 else ''}"
    typer.echo(summary)


@app.command()
def schema(
    out: Annotated[
        Path, typer.Option(help="Where to write cadence.schema.json and playbook.schema.json.")
    ] = Path("schemas"),
) -> None:
    """Write the JSON Schemas of a cadence file and of the playbook (for editors)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, model in SCHEMA_FILES.items():
        path = out / name
        path.write_text(json.dumps(json_schema(model), indent=2) + "\n", encoding="utf-8")
        typer.echo(f"wrote {path}")


def json_schema(model: type[Cadence] | type[Playbook]) -> dict[str, Any]:
    """The JSON Schema of a file marketers edit, as editors want it (draft 2020-12)."""
    body = model.model_json_schema(by_alias=True, mode="validation")
    file = "cadences/<id>.yaml" if model is Cadence else "cadences/playbook.yaml"
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **body,
        "description": f"{body.get('description', '').strip()} ({file})".strip(),
    }


@app.command()
def graph(
    cadence_id: Annotated[str, typer.Argument(metavar="ID", help="The cadence id.")],
    cadences_dir: Annotated[
        Path | None,
        typer.Option("--dir", help="The cadences folder (default: NURTURE_CADENCES_DIR)."),
    ] = None,
) -> None:
    """Print a cadence as a Mermaid flowchart (paste it into a Markdown ```mermaid block)."""
    folder = cadences_dir or _settings_or_exit().cadences_dir
    path = folder / f"{cadence_id}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml") if p.name != "playbook.yaml")
        typer.echo(
            f"no cadence '{cadence_id}' in {folder}/"
            + (f" (cadences: {', '.join(known)})" if known else ""),
            err=True,
        )
        raise typer.Exit(1)
    # Draw whatever the schema accepts: a picture helps most when a jump is wrong or a step
    # is unreachable; those problems still go to stderr.
    report = validate_report([path], None)
    for problem in report.problems:
        typer.echo(str(problem), err=True)
    cadence = next(iter(report.cadences.values()), None)
    if cadence is None:
        raise typer.Exit(1)
    typer.echo(mermaid(cadence), nl=False)
