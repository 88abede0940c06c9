"""`nurture mail list --unmatched`: mail that came back and matched no lead; and
`nurture mailbox`, the reader of the IMAP folder it comes back to."""

from __future__ import annotations

import asyncio
import logging
import signal

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import desc, select

from nurture.cli.common import context, echo_json, fail, settings_or_fail

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


def mailbox(
    if_configured: bool = typer.Option(
        False,
        "--if-configured",
        help="Exit 0, saying so, when NURTURE_MAILBOX_URL is unset (for a service that may "
        "have no mailbox to read).",
    ),
    retry_failed: bool = typer.Option(
        False,
        "--retry-failed",
        help="First take $NurtureFailed off the folder's messages, so they are read again.",
    ),
    once: bool = typer.Option(False, "--once", help="Read what is waiting, then exit."),
    skip_existing: bool = typer.Option(
        False,
        "--skip-existing",
        help="Mark every message the folder holds now $NurtureProcessed without reading it "
        "(on a first start against a mailbox with old mail), then exit.",
    ),
) -> None:
    """Read the mailbox of NURTURE_MAILBOX_URL: replies, auto-replies, bounces, complaints.

    Runs until Ctrl-C or SIGTERM: IDLE where the server has it, else polling every
    NURTURE_MAILBOX_POLL_SECONDS; reconnects after any network error. Each message takes
    the path of POST /inbound/email, then is marked $NurtureProcessed (never deleted).
    """
    settings = settings_or_fail()
    if settings.mailbox_url is None:
        if if_configured:
            typer.echo("no mailbox to read: NURTURE_MAILBOX_URL is not set")
            return
        fail(
            "NURTURE_MAILBOX_URL is not set: set it to imaps://user:password@host:993/INBOX "
            "(or imap://... for STARTTLS on port 143)",
            2,
        )
    # Ours at INFO (each message read, each reconnect); the libraries' warnings only.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("nurture").setLevel(logging.INFO)
    asyncio.run(
        _read_mailbox(settings, retry_failed=retry_failed, once=once, skip_existing=skip_existing)
    )


async def _read_mailbox(settings, *, retry_failed: bool, once: bool, skip_existing: bool) -> None:  # type: ignore[no-untyped-def]
    from nurture.adapters.imap import MailboxError
    from nurture.adapters.temporal import TemporalGate, connect
    from nurture.services.intake import Intake
    from nurture.services.mailbox import MailboxReader

    async with context() as ctx:
        from nurture.adapters.catalog import CadenceCatalog
        from nurture.adapters.loader import CadenceSetInvalid

        catalog = CadenceCatalog(settings.cadences_dir, settings.templates_dir)
        try:
            catalog.current()
        except CadenceSetInvalid as exc:
            fail(f"the cadence files have problems (run `nurture cadences validate`):\n{exc}", 2)
        # Lazy, and every call bounded: while Temporal is down, mail is still read and its
        # events recorded and parked, for the web app's redelivery sweep to hand over.
        client = await connect(settings, lazy=True)
        intake = Intake(
            settings, client, ctx.sessions, catalog, TemporalGate(timeout_s=5.0, cooldown_s=5.0)
        )
        reader = MailboxReader(
            intake,
            settings.mailbox,
            ca_file=settings.mailbox_ca,
            poll_interval=settings.mailbox_poll_seconds,
        )
        try:
            if skip_existing:
                skipped = await reader.skip_existing()
                typer.echo(f"{skipped} message(s) marked $NurtureProcessed without being read")
                return
            if retry_failed:
                cleared = await reader.retry_failed()
                typer.echo(f"{cleared} message(s) marked $NurtureFailed will be read again")
            if once:
                report = await reader.read_once()
                typer.echo(
                    f"read {report.read} message(s) ({report.duplicates} already seen), "
                    f"{report.failed} failed"
                )
                return
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            typer.echo(
                f"reading {settings.mailbox.redacted()} (Ctrl-C stops)",
            )
            await reader.run(stop)
        except MailboxError as exc:
            fail(f"mailbox {settings.mailbox.redacted()}: {exc}", 2)
