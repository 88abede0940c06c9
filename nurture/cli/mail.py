"""`nurture mail list --unmatched`: mail that came back and matched no lead."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import desc, select

from nurture.cli.common import context, echo_json

mail_app = typer.Typer(help="Mail that comes back (replies, auto-replies, bounces).")


@mail_app.command("list")
def list_mail(
    unmatched: bool = typer.Option(False, "--unmatched", help="Only mail that matched no lead."),
    as_json: bool = typer.Option(False, "--json"),
    limit: int = typer.Option(200, min=1, max=10_000),
) -> None:
    """Received mail, newest first: what each was read as, and the lead it matched."""
    from nurture.adapters.database import InboundMail

    async def run() -> list[dict[str, object]]:
        async with context() as ctx, ctx.sessions() as session:
            query = select(InboundMail).order_by(
                desc(InboundMail.received_at), desc(InboundMail.id)
            )
            if unmatched:
                query = query.where(InboundMail.status == "unmatched")
            rows = (await session.scalars(query.limit(limit))).all()
            return [
                {
                    "id": m.id,
                    "received_at": m.received_at.isoformat(),
                    "source": m.source,
                    "kind": m.kind,
                    "why": m.why,
                    "status": m.status,
                    "lead_id": m.lead_id,
                    "event_id": m.event_id,
                    "sender": m.sender,
                    "subject": m.subject,
                    "excerpt": m.excerpt,
                }
                for m in rows
            ]

    rows = asyncio.run(run())
    if as_json:
        echo_json(rows)
        return
    table = Table("received (UTC)", "from", "subject", "read as", "lead")
    for row in rows:
        table.add_row(
            str(row["received_at"])[:16].replace("T", " "),
            str(row["sender"] or ""),
            str(row["subject"] or ""),
            f"{row['kind']} ({row['why']})",
            str(row["lead_id"] or row["status"]),
        )
    Console().print(table)
