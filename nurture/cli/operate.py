"""Operating leads in flight: `ops sending pause|resume|status` and `playbook rollout`."""

from __future__ import annotations

import asyncio
import getpass

import typer

from nurture.cli.common import context, echo_json, fail

ops_app = typer.Typer(help="Operations: the live kill switch for sending.", no_args_is_help=True)
sending_app = typer.Typer(
    help="Stop or restart every worker's sends at once, without a restart.", no_args_is_help=True
)
ops_app.add_typer(sending_app, name="sending")


def _who(by: str | None) -> str:
    return by or f"{getpass.getuser()} (cli)"


@sending_app.command("pause")
def pause_sending(
    why: str = typer.Option(..., "--why", help="Why sending stops (kept with who and when)."),
    by: str | None = typer.Option(None, "--by", help="Who pauses (default: this OS user)."),
) -> None:
    """Hold every email on every worker within seconds; held touches wait, none is lost."""
    from nurture.services import sending

    async def run() -> str:
        async with context() as ctx, ctx.sessions() as session:
            try:
                state = await sending.pause(session, by=_who(by), why=why)
            except ValueError as exc:
                fail(str(exc), 2)
            return state.describe()

    typer.echo(asyncio.run(run()))


@sending_app.command("resume")
def resume_sending(
    by: str | None = typer.Option(None, "--by", help="Who resumes (default: this OS user)."),
) -> None:
    """Send again: held touches go out as their leads next ask, within caps, once each."""
    from nurture.services import sending

    async def run() -> str:
        async with context() as ctx, ctx.sessions() as session:
            return (await sending.resume(session, by=_who(by))).describe()

    typer.echo(asyncio.run(run()))


@sending_app.command("status")
def sending_status(as_json: bool = typer.Option(False, "--json")) -> None:
    """On or off, since when, who and why."""
    from nurture.services import sending

    async def run() -> sending.SwitchState:
        async with context() as ctx, ctx.sessions() as session:
            return await sending.current(session)

    state = asyncio.run(run())
    if as_json:
        echo_json(
            {
                "paused": state.paused,
                "since": state.since.isoformat() if state.since else None,
                "by": state.by,
                "why": state.why,
            }
        )
        return
    typer.echo(state.describe())


playbook_app = typer.Typer(
    help="The playbook: deliver its rules to the leads in flight.", no_args_is_help=True
)


@playbook_app.command("rollout")
def rollout(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show what would change."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation (scripts)."),
    rate: float = typer.Option(200.0, "--rate", min=1.0, help="Signals a second, at most."),
    by: str | None = typer.Option(None, "--by", help="Who rolls out (default: this OS user)."),
) -> None:
    """Validate the playbook, show the rule changes and the leads reached per stage, then
    deliver it to every running lead; each applies it at its next safe point."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from nurture.services import rollout as rollouts

    async def run() -> None:
        async with context() as ctx:
            playbook = ctx.playbook()
            async with ctx.sessions() as session:
                plan = await rollouts.plan(session, playbook)
            _show_plan(plan)
            if dry_run:
                typer.echo("dry run: nothing was delivered")
                return
            if plan.leads == 0:
                typer.echo("no lead in flight: new leads start on this playbook anyway")
            elif not yes:
                typer.confirm(
                    f"Roll playbook {plan.version} out to {plan.leads} leads?", abort=True
                )
            client = await ctx.client()
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=False,
            ) as bar:
                task = bar.add_task(f"playbook {plan.version}", total=plan.leads)
                result = await rollouts.deliver(
                    plan,
                    client,
                    ctx.sessions,
                    by=_who(by),
                    rate=rate,
                    progress=lambda done: bar.update(task, completed=done),
                )
            typer.echo(
                f"playbook {plan.version}: delivered to {result.delivered} leads"
                + (f", {result.gone} ended meanwhile" if result.gone else "")
            )
            if result.failed:
                for lead_id, why in result.failed[:20]:
                    typer.echo(f"  {lead_id}: {why}", err=True)
                fail(f"{len(result.failed)} leads did not get it; run the rollout again")

    asyncio.run(run())


def _show_plan(plan) -> None:  # type: ignore[no-untyped-def]
    typer.echo(f"playbook {plan.version} (valid)")
    if plan.previous is None:
        typer.echo("changes: no earlier rollout is recorded; leads run on the playbook they")
        typer.echo("  started with or last changed stage with, and take this one whole")
    elif plan.unchanged:
        typer.echo(f"changes: none since the last rollout ({plan.previous}); delivering")
        typer.echo("  again reaches leads that missed it")
    else:
        typer.echo(f"changes since {plan.previous}:")
        for line in plan.changes:
            typer.echo(f"  {line}")
    stages = ", ".join(f"{stage} {count}" for stage, count in plan.leads_by_stage.items())
    typer.echo(f"leads in flight: {plan.leads}" + (f" ({stages})" if stages else ""))
