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
