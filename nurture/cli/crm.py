"""`nurture crm ...`: the CRM outbox (posts to NURTURE_CRM_WEBHOOK_URL) and what came in
from HubSpot or Salesforce without a lead yet."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from nurture.cli.common import context, echo_json, fail
from nurture.services import crm_outbox

crm_app = typer.Typer(
    help="The CRM: posts to it (the outbox) and its outcomes waiting for a lead.",
    no_args_is_help=True,
)


@crm_app.command("posts")
def list_posts(
    status: str | None = typer.Option(None, help="pending, sent or failed."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The CRM outbox, newest first; `failed` posts gave up and need ops (`crm retry`)."""
    if status is not None and status not in ("pending", "sent", "failed"):
        fail(f"--status must be pending, sent or failed, not '{status}'", 2)

    async def run() -> list[dict[str, object]]:
        async with context() as ctx:
            posts = await crm_outbox.listing(ctx.sessions, status)
            return [crm_outbox.post_json(p) for p in posts]

    rows = asyncio.run(run())
    if as_json:
        echo_json(rows)
        return
    table = Table("id", "lead", "kind", "status", "attempts", "created (UTC)", "last error")
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["lead_id"]),
            str(row["kind"]),
            str(row["status"]),
            str(row["attempts"]),
            str(row["created_at"])[:16].replace("T", " "),
            str(row["last_error"] or ""),
        )
    Console().print(table)


@crm_app.command("retry")
def retry(
    post_id: int | None = typer.Argument(None, help="A failed post's id (`crm posts`)."),
    all_failed: bool = typer.Option(False, "--all-failed", help="Every failed post."),
) -> None:
    """Send failed posts again, with a fresh set of attempts (once the CRM is fixed)."""
    if (post_id is None) == (not all_failed):
        fail("give a post id or --all-failed", 2)

    async def run() -> int:
        async with context() as ctx:
            return await crm_outbox.retry_failed(ctx.sessions, post_id)

    count = asyncio.run(run())
    if post_id is not None and count == 0:
        fail(f"no failed CRM post with id {post_id}")
    typer.echo(f"{count} CRM post(s) queued again")


@crm_app.command("unmatched")
def list_unmatched(as_json: bool = typer.Option(False, "--json")) -> None:
    """Deal outcomes from the CRM whose lead is not known yet (delivered once it is)."""
    from nurture.adapters.database import CrmUnmatched

    async def run() -> list[dict[str, object]]:
        async with context() as ctx, ctx.sessions() as session:
            rows = await session.scalars(
                select(CrmUnmatched).order_by(CrmUnmatched.received_at.desc())
            )
            return [
                {
                    "id": r.id,
                    "source": r.source,
                    "object_type": r.object_type,
                    "object_id": r.object_id,
                    "type": r.type,
                    "data": r.data,
                    "occurred_at": r.occurred_at.isoformat() if r.occurred_at else None,
                    "received_at": r.received_at.isoformat(),
                }
                for r in rows.all()
            ]

    rows = asyncio.run(run())
    if as_json:
        echo_json(rows)
        return
    table = Table("received (UTC)", "source", "record", "event", "data")
    for row in rows:
        table.add_row(
            str(row["received_at"])[:16].replace("T", " "),
            str(row["source"]),
            f"{row['object_type']} {row['object_id']}",
            str(row["type"]),
            str(row["data"]),
        )
    Console().print(table)
