"""`nurture tasks ...`, `nurture sends list`, `nurture users add`: the SDR's and ops' work."""

from __future__ import annotations

import asyncio
import getpass
from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from nurture.cli.common import context, echo_json, fail
from nurture.domain.events import CALL_OUTCOMES
from nurture.services.call_tasks import complete_task

tasks_app = typer.Typer(help="SDR call tasks: list and complete.", no_args_is_help=True)
sends_app = typer.Typer(help="The email outbox.", no_args_is_help=True)
users_app = typer.Typer(help="SDR and ops logins.", no_args_is_help=True)


def task_json(task, now: datetime) -> dict[str, object]:  # type: ignore[no-untyped-def]
    overdue = task.status == "open" and (task.overdue_at is not None or task.due_at < now)
    return {
        "id": task.id,
        "lead_id": task.lead_id,
        "owner": task.owner,
        "status": task.status,
        "overdue": overdue,
        "step": task.step,
        "cadence": task.cadence,
        "due_at": task.due_at.isoformat(),
        "script": task.script,
        "outcome": task.outcome,
        "notes": task.notes,
    }


@tasks_app.command("list")
def list_tasks(
    owner: str | None = typer.Option(None, help="An SDR id."),
    status: str = typer.Option("open", help="open, done, cancelled or all."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Tasks by due time (open ones by default, overdue ones flagged)."""
    from nurture.adapters.database import CallTask

    if status not in ("open", "done", "cancelled", "all"):
        fail(f"--status must be open, done, cancelled or all, not '{status}'", 2)

    async def run() -> list[dict[str, object]]:
        async with context() as ctx, ctx.sessions() as session:
            query = select(CallTask).order_by(CallTask.due_at, CallTask.id)
            if owner:
                query = query.where(CallTask.owner == owner)
            if status != "all":
                query = query.where(CallTask.status == status)
            now = datetime.now(UTC)
            return [task_json(t, now) for t in (await session.scalars(query)).all()]

    rows = asyncio.run(run())
    if as_json:
        echo_json(rows)
        return
    table = Table("id", "lead", "owner", "step", "due (UTC)", "status")
    for row in rows:
        due = str(row["due_at"])[:16].replace("T", " ")
        table.add_row(
            str(row["id"]),
            str(row["lead_id"]),
            str(row["owner"] or "-"),
            str(row["step"]),
            due + (" OVERDUE" if row["overdue"] else ""),
            str(row["status"]),
        )
    Console().print(table)


@tasks_app.command("complete")
def complete(
    task_id: str = typer.Argument(...),
    outcome: str = typer.Option(..., help="One of: " + ", ".join(CALL_OUTCOMES)),
    notes: str | None = typer.Option(None),
    callback: str | None = typer.Option(
        None,
        help="With call_back_later: when (2026-12-08T10:00, the lead's local time; or with "
        "an offset). A new call task is due then, in the lead's window.",
    ),
) -> None:
    """Record a call's outcome; the lead's cadence goes on from it."""

    async def run() -> None:
        async with context() as ctx:
            try:
                status = await complete_task(
                    ctx.sessions, await ctx.intake(), task_id, outcome, notes, callback=callback
                )
            except (ValueError, LookupError, PermissionError) as exc:
                fail(str(exc))
            typer.echo(f"{task_id}: {outcome} ({status})")

    asyncio.run(run())


@sends_app.command("list")
def list_sends(
    status: str | None = typer.Option(None, help="unknown, failed, sent, queued or skipped."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The outbox; `unknown` sends need a human (the message may or may not have gone out)."""
    from nurture.adapters.database import EmailSend

    async def run() -> list[dict[str, object]]:
        async with context() as ctx, ctx.sessions() as session:
            query = select(EmailSend).order_by(EmailSend.created_at.desc(), EmailSend.id.desc())
            if status:
                query = query.where(EmailSend.status == status)
            return [
                {
                    "key": s.key,
                    "lead_id": s.lead_id,
                    "cadence": s.cadence,
                    "step": s.step,
                    "visit": s.visit,
                    "template": s.template,
                    "status": s.status,
                    "subject": s.subject,
                    "message_id": s.message_id,
                    "smtp_reply": s.smtp_reply,
                    "error": s.error,
                    "sent_at": s.sent_at.isoformat() if s.sent_at else None,
                    "created_at": s.created_at.isoformat(),
                }
                for s in (await session.scalars(query)).all()
            ]

    rows = asyncio.run(run())
    if as_json:
        echo_json(rows)
        return
    table = Table("lead", "step", "status", "subject", "when (UTC)", "detail")
    for row in rows:
        when = str(row["sent_at"] or row["created_at"])[:16].replace("T", " ")
        table.add_row(
            str(row["lead_id"]),
            f"{row['cadence']}/{row['step']}#{row['visit']}",
            str(row["status"]),
            str(row["subject"] or ""),
            when,
            str(row["error"] or row["smtp_reply"] or ""),
        )
    Console().print(table)


@users_app.command("add")
def add_user(
    user_id: str = typer.Argument(..., help="An SDR id from the playbook's team, or an ops login."),
    role: str = typer.Option(..., help="sdr or ops"),
    password: str | None = typer.Option(None, help="Prompted for when omitted."),
) -> None:
    """Create or reset a login (the password is stored hashed)."""
    from nurture.adapters.database import User
    from nurture.adapters.passwords import hash_password

    if role not in ("sdr", "ops"):
        fail("--role must be sdr or ops", 2)
    if password is None:
        password = getpass.getpass(f"password for {user_id}: ")
    if len(password) < 4:
        fail("the password is too short (at least 4 characters)", 2)

    async def run() -> str:
        async with context() as ctx, ctx.sessions() as session:
            user = await session.get(User, user_id)
            if user is None:
                session.add(User(id=user_id, role=role, password_hash=hash_password(password)))
                state = "created"
            else:
                user.role = role
                user.password_hash = hash_password(password)
                state = "reactivated" if user.deactivated_at is not None else "updated"
                user.deactivated_at = None
            await session.commit()
            return state

    typer.echo(f"{asyncio.run(run())}: {user_id} ({role})")


@users_app.command("deactivate")
def deactivate_user(
    user_id: str = typer.Argument(..., help="The SDR (or ops login) who left."),
) -> None:
    """An SDR leaves: no more login or new leads; their leads in flight and open call tasks go
    to other SDRs by the playbook's assignment rule, and each is told."""
    from temporalio.service import RPCError

    from nurture.domain.names import SIGNAL_REASSIGN, workflow_id
    from nurture.services import team

    async def run() -> None:
        async with context() as ctx:
            playbook = ctx.playbook()
            async with ctx.sessions() as session:
                try:
                    done = await team.deactivate(session, playbook, user_id)
                except team.OwnerRefused as exc:
                    fail(str(exc))
            typer.echo(
                f"deactivated: {user_id}; {len(done.reassigned)} leads in flight to reassign"
            )
            if not done.reassigned:
                return
            client = await ctx.client()
            unowned = []
            for lead_id, owner in done.reassigned:
                if owner is None:
                    unowned.append(lead_id)
                    continue
                try:
                    await client.get_workflow_handle(workflow_id(lead_id)).signal(
                        SIGNAL_REASSIGN, owner
                    )
                except RPCError as exc:
                    typer.echo(f"  {lead_id}: not signaled ({exc.message})", err=True)
                    continue
                typer.echo(f"  {lead_id} -> {owner}")
            if unowned:
                fail(f"no active SDR left to take {', '.join(unowned)}: add one, then reassign")

    asyncio.run(run())
