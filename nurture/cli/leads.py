"""`nurture leads ...` and `nurture events send`: leads in, and what ops do to them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.progress import Progress
from sqlalchemy import select

from nurture.cli.common import context, echo_json, fail
from nurture.domain.names import SIGNAL_PAUSE, SIGNAL_RESUME, workflow_id
from nurture.services.parked import submit_lead

app = typer.Typer(
    help="Add, import, show, find, list, pause, resume and reassign leads.", no_args_is_help=True
)
events_app = typer.Typer(help="Send events to leads (as the CRM would).", no_args_is_help=True)


def _pairs(values: list[str], option: str) -> dict[str, object]:
    data: dict[str, object] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"{option} expects key=value, got '{item}'", 2)
        data[key.strip()] = value
    return data


@app.command("add")
def add(
    id: str = typer.Option(..., "--id", help="The CRM's lead id (no personal data in it)."),
    email: str | None = typer.Option(None),
    first_name: str | None = typer.Option(None, "--first-name"),
    last_name: str | None = typer.Option(None, "--last-name"),
    company: str | None = typer.Option(None),
    title: str | None = typer.Option(None),
    phone: str | None = typer.Option(None),
    country: str | None = typer.Option(None),
    timezone: str | None = typer.Option(None),
    industry: str | None = typer.Option(None),
    employees: int | None = typer.Option(None),
    tier_account: bool | None = typer.Option(None, "--tier-account/--no-tier-account"),
    source: str | None = typer.Option(None),
    field: list[str] = typer.Option([], "--field", help="A free field, key=value (repeatable)."),
) -> None:
    """Create a lead (or update it when the id exists) and start its workflow."""
    from pydantic import ValidationError

    from nurture.domain.events import Lead

    given = {
        "id": id,
        "email": email,
        "first_name": first_name,
        "last_name": last_name,
        "company": company,
        "title": title,
        "phone": phone,
        "country": country,
        "timezone": timezone,
        "industry": industry,
        "employees": employees,
        "tier_account": tier_account,
        "source": source,
    }
    data = {k: v for k, v in given.items() if v is not None}
    if field:
        data["fields"] = _pairs(field, "--field")
    try:
        lead = Lead.model_validate(data)
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()), 2)

    async def run() -> None:
        async with context() as ctx:
            intake = await ctx.intake()
            result = (await submit_lead(intake, lead)).result
            if result.status == "closed":
                fail(f"lead {lead.id} is {result.stage}: its workflow has completed")
            typer.echo(
                f"{result.status}: {lead.id} -> workflow {result.workflow_id}"
                + (f" (cadence {result.cadence})" if result.cadence else "")
            )

    asyncio.run(run())


@app.command("import")
def import_(file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True)) -> None:
    """Import leads from a CSV (our columns or a Salesforce lead export); idempotent by id."""
    from nurture.services.csvimport import ImportReport, import_rows, read_leads

    rows = list(read_leads(file))

    async def run() -> ImportReport:
        async with context() as ctx:
            intake = await ctx.intake()
            with Progress() as progress:
                task = progress.add_task(f"importing {file.name}", total=len(rows))
                return await import_rows(intake, file, rows, lambda: progress.advance(task))

    report = asyncio.run(run())
    for line in report.refused:
        typer.echo(line, err=True)
    waiting = f"{report.waiting} waiting to start, " if report.waiting else ""
    typer.echo(
        f"{report.created} created, {report.updated} updated, {waiting}"
        f"{len(report.refused)} not imported"
    )
    if report.refused:
        raise typer.Exit(1)


@app.command("show")
def show(lead_id: str = typer.Argument(...)) -> None:
    """The lead as JSON: stage, score, grade, cadence, step, owner, next touch, history."""

    async def run() -> None:
        async with context() as ctx:
            echo_json(await lead_json(ctx, lead_id))

    asyncio.run(run())


async def lead_json(ctx, lead_id: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """The workflow's `state` query; for a lead whose workflow cannot answer, the database."""
    from temporalio.service import RPCError

    from nurture.adapters.database import LeadRow, StageChange
    from nurture.domain.state import LeadView

    async with ctx.sessions() as session:
        row = await session.get(LeadRow, lead_id)
    if row is None:
        fail(f"no lead with id {lead_id}")
    from datetime import timedelta

    from nurture.adapters.temporal import TemporalUnavailable, connect

    waiting = row.waiting_to_start
    if not waiting:
        try:
            client = await connect(ctx.settings)
            view = await client.get_workflow_handle(workflow_id(lead_id)).query(
                "state", result_type=LeadView, rpc_timeout=timedelta(seconds=15)
            )
            return view.to_json()
        except (RPCError, TemporalUnavailable):
            # The workflow cannot answer (Temporal or its worker is down, or it completed
            # long ago): the app database's projection and stage log still tell the story.
            pass
    async with ctx.sessions() as session:
        changes = (
            await session.scalars(
                select(StageChange).where(StageChange.lead_id == lead_id).order_by(StageChange.id)
            )
        ).all()
    return {
        "lead_id": row.id,
        "stage": row.stage,
        "score": row.score,
        "grade": row.grade,
        "cadence": row.cadence,
        "step": row.step,
        "owner": row.owner,
        "next_touch_at": row.next_touch_at.isoformat() if row.next_touch_at else None,
        "doing": WAITING_TO_START if waiting else "",
        "history": [
            {
                "at": c.at.isoformat(),
                "what": f"stage {c.from_stage or 'new'} -> {c.to_stage}",
                "why": c.reason or "",
            }
            for c in changes
        ]
        + (
            [{"at": row.created_at.isoformat(), "what": "waiting to start", "why": WAITING_WHY}]
            if waiting
            else []
        ),
    }


WAITING_TO_START = "waiting to start: its workflow is started when Temporal can be reached"
WAITING_WHY = "recorded while the workflow service could not be reached"


@app.command("find")
def find(email: str = typer.Option(..., "--email")) -> None:
    """Lead ids with this email address."""
    from sqlalchemy import func

    from nurture.adapters.database import LeadRow

    async def run() -> None:
        async with context() as ctx, ctx.sessions() as session:
            ids = (
                await session.scalars(
                    select(LeadRow.id).where(func.lower(LeadRow.email) == email.strip().lower())
                )
            ).all()
        for lead_id in ids:
            typer.echo(lead_id)
        if not ids:
            raise typer.Exit(1)

    asyncio.run(run())


@app.command("list")
def list_(
    stage: str | None = typer.Option(None, "--stage", help="nurturing, mql, sql, won, ..."),
    owner: str | None = typer.Option(None, "--owner", help="An SDR id, or 'none'."),
    cadence: str | None = typer.Option(None, "--cadence", help="A cadence id, or 'none'."),
    grade: str | None = typer.Option(None, "--grade", help="A grade (A, B, ...), or 'none'."),
    stuck: bool = typer.Option(False, "--stuck", help="Only leads whose next touch is late."),
    sort: str = typer.Option("next_touch", "--sort", help="lead, stage, score, grade, ..."),
    desc: bool = typer.Option(False, "--desc", help="Sort in descending order."),
    page: int = typer.Option(1, "--page", min=1),
    per_page: int = typer.Option(50, "--per-page", min=1, max=500),
    as_json: bool = typer.Option(False, "--json", help="JSON rows instead of a table."),
) -> None:
    """Who is where: stage, score, grade, cadence/step, owner and next touch, one page."""
    from rich.console import Console
    from rich.table import Table

    from nurture.services.leadlist import BadListRequest, LeadQuery, list_leads

    query = LeadQuery(
        stage=stage, owner=owner, cadence=cadence, grade=grade, stuck=stuck,
        sort=sort, descending=desc, page=page, per_page=per_page,
    )  # fmt: skip
    try:
        query.checked()
    except BadListRequest as exc:
        fail(f"--{exc.field.replace('_', '-')}: {exc.message}", 2)

    async def run():  # type: ignore[no-untyped-def]
        async with context() as ctx, ctx.sessions() as session:
            return await list_leads(session, query)

    result = asyncio.run(run())
    if as_json:
        echo_json([line.to_json() for line in result.lines])
        return
    table = Table("lead", "stage", "score", "grade", "cadence / step", "owner", "next touch")
    for line in result.lines:
        local = line.next_touch_local
        table.add_row(
            line.lead_id,
            line.stage + (" (stuck)" if line.stuck else ""),
            str(line.score),
            line.grade or "-",
            f"{line.cadence or '-'} / {line.step or '-'}",
            line.owner or "unassigned",
            f"{local:%Y-%m-%d %H:%M} {line.timezone}" if local else "none (at rest)",
        )
    Console(soft_wrap=True).print(table)
    typer.echo(
        f"page {query.page} of {result.pages}, {result.total} leads"
        + (f"; next: --page {query.page + 1}" if query.page < result.pages else ""),
        err=True,
    )


def _signal(lead_id: str, name: str, arg: str, done: str) -> None:
    from temporalio.service import RPCError

    async def run() -> None:
        async with context() as ctx:
            client = await ctx.client()
            try:
                await client.get_workflow_handle(workflow_id(lead_id)).signal(name, arg)
            except RPCError as exc:
                fail(f"lead {lead_id} has no running workflow ({exc.message})")
            typer.echo(done)

    asyncio.run(run())


@app.command("pause")
def pause(
    lead_id: str = typer.Argument(...),
    why: str = typer.Option("paused by ops", help="Shown in the lead's history."),
) -> None:
    """Pause a lead's touches (events still count)."""
    _signal(lead_id, SIGNAL_PAUSE, why, f"paused {lead_id}")


@app.command("resume")
def resume(lead_id: str = typer.Argument(...), why: str = typer.Option("resumed by ops")) -> None:
    """Resume a paused lead."""
    _signal(lead_id, SIGNAL_RESUME, why, f"resumed {lead_id}")


@app.command("reassign")
def reassign(lead_id: str = typer.Argument(...), owner: str = typer.Option(..., "--owner")) -> None:
    """Give a lead another SDR (an active one of the playbook's team); its open call tasks
    move along and both SDRs are told."""
    from temporalio.service import RPCError

    from nurture.services import team

    async def run() -> None:
        async with context() as ctx:
            playbook = ctx.playbook()
            async with ctx.sessions() as session:
                try:
                    # Refused before Temporal is asked anything.
                    await team.check_owner(session, playbook, owner)
                    client = await ctx.client()
                    await team.reassign(session, client, playbook, lead_id, owner)
                except (team.OwnerRefused, LookupError) as exc:
                    fail(str(exc).strip("'\""))
                except RPCError as exc:
                    fail(f"lead {lead_id} has no running workflow ({exc.message})")
            typer.echo(f"{lead_id} now owned by {owner}; its open call tasks move to {owner}")

    asyncio.run(run())


@events_app.command("send")
def send(
    lead: str = typer.Option(..., "--lead"),
    type: str = typer.Option(..., "--type"),
    id: str | None = typer.Option(None, "--id", help="Event id (default: a new unique one)."),
    data: list[str] = typer.Option([], "--data", help="key=value (repeatable)."),
) -> None:
    """Record an event and signal the lead's workflow, as the webhook would."""
    import secrets

    from pydantic import ValidationError

    from nurture.domain.events import Event
    from nurture.services.intake import submit_event

    try:
        event = Event(
            id=id or f"cli-{secrets.token_hex(8)}",
            type=type,
            lead_id=lead,  # type: ignore[arg-type]
            occurred_at=datetime.now(UTC),
            data=_pairs(data, "--data"),
        )
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()), 2)

    async def run() -> None:
        async with context() as ctx:
            intake = await ctx.intake()
            result = await submit_event(intake, event)
            typer.echo(f"{result.status}: {event.id}")

    asyncio.run(run())
