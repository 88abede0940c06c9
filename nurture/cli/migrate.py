"""`nurture cadences migrate ID [--map OLD=NEW ...]`."""

from __future__ import annotations

import asyncio

import typer

from nurture.cli.common import context, fail


def migrate(
    cadence_id: str = typer.Argument(
        ..., help="The cadence whose leads move to its current version."
    ),
    map_: list[str] = typer.Option(
        [], "--map", help="OLD=NEW: where leads at a renamed or removed step go."
    ),
) -> None:
    """Move leads in flight to the current version of a cadence (by step id)."""
    from nurture.adapters.catalog import CadenceCatalog
    from nurture.adapters.loader import CadenceSetInvalid
    from nurture.services.cadence_migration import check_map, migrate_leads

    step_map: dict[str, str] = {}
    for item in map_:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            fail(f"--map expects OLD=NEW, got '{item}'", 2)
        step_map[old.strip()] = new.strip()

    async def run() -> None:
        async with context() as ctx:
            try:
                cadence_set = CadenceCatalog(
                    ctx.settings.cadences_dir, ctx.settings.templates_dir
                ).current()
            except CadenceSetInvalid as exc:
                fail(f"fix the cadence files first:\n{exc}")
            if cadence_id not in cadence_set.cadences:
                fail(f"no cadence '{cadence_id}' in {ctx.settings.cadences_dir}")
            cadence = cadence_set.cadence(cadence_id)
            problems = check_map(cadence, step_map)
            if problems:
                fail("\n".join(problems), 2)
            report = await migrate_leads(await ctx.client(), cadence, step_map)
            for workflow_id in report.signaled:
                typer.echo(f"migrating {workflow_id} -> {cadence.id} version {cadence.version}")
            for workflow_id, why in report.refused:
                typer.echo(f"not migrated {workflow_id}: {why}", err=True)
            typer.echo(
                f"{len(report.signaled)} leads migrating, {len(report.refused)} not migrated"
            )
            if report.refused:
                raise typer.Exit(1)

    asyncio.run(run())
