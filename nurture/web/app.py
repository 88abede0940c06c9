"""The FastAPI app: :func:`create_app` builds it from the settings.

The database engine is made in the lifespan (never at import) and kept, with the cadence
catalog and the Temporal link, in one :class:`~nurture.web.common.Services` in ``app.state``.
The Temporal client is the one passed in, or connected on first use.

Routes: ``/health``; the signed webhooks ``POST /leads`` and ``POST /events``
(:mod:`nurture.web.webhooks`); the CRM adapters ``POST /webhooks/hubspot`` and
``POST /webhooks/salesforce`` (:mod:`nurture.web.crm`); the email links ``/u/<token>`` and
``/c/<token>`` (:mod:`nurture.web.links`); ``/login``; and the signed-in pages ``/inbox``,
``/leads`` (the list), ``/leads/<id>``, ``/cadences``, and for ops ``/ops``, ``/mail`` and
``/reports``.

The session cookie is keyed from the app-private secret (:mod:`nurture.adapters.secrets`), resolved
on the first request; every response gets basic security headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client

from nurture.adapters import metrics, tracing
from nurture.adapters.catalog import CadenceCatalog
from nurture.adapters.database import ReceivedMail, make_engine, session_factory
from nurture.adapters.mailsink import list_mail, parse_mail
from nurture.adapters.secrets import session_key
from nurture.services import metrics as metrics_refresh
from nurture.services.ingest import EventWriter
from nurture.settings import Settings
from nurture.web import (
    cadences,
    codec,
    crm,
    inbound,
    inbox,
    leads,
    links,
    login,
    pages,
    reports,
    webhooks,
)
from nurture.web.common import (
    TEMPLATES_DIR,
    Services,
    SessionDep,
    TemporalLink,
    get_session,
    render,
    templates,
)
from nurture.web.security import (
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    AppSessionMiddleware,
    BodyLimitMiddleware,
    LoginRequired,
    OpsDep,
    SecurityHeadersMiddleware,
    login_url,
    require_ops,
    require_viewer,
)

__all__ = ["TEMPLATES_DIR", "create_app", "get_session", "templates"]

log = logging.getLogger(__name__)

# A health check that hangs is worse than one that fails: orchestrators wait on it.
HEALTH_TIMEOUT_S = 5.0


# Requests using the database at once before others queue (and wait, not fail) for a
# connection. The web app's own size: its concurrency is its requests, not activity slots.
WEB_DB_POOL_SIZE = 20
REDELIVER_EVERY_S = 30.0
# The sweep is nobody's request: it may wait longer on Temporal than a webhook does.
SWEEP_TEMPORAL_TIMEOUT_S = 10.0


async def _redeliver_forever(services: Services, every_s: float) -> None:
    """Start leads and deliver events that were recorded while Temporal could not be
    reached: a recorded lead or event never waits for a human."""
    from nurture.adapters.temporal import TemporalGate
    from nurture.services.parked import START_GRACE, redeliver

    gate = services.gate
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(every_s):
                await gate.tripped.wait()
        if gate.tripped.is_set():
            # A request just found Temporal unreachable (or slow): try again once its cooldown
            # and the sweep's grace for fresh leads have passed, not a whole round later.
            gate.tripped.clear()
            await asyncio.sleep(max(gate.cooldown_s, START_GRACE.total_seconds()) + 1)
        try:
            # Its own gate: the requests' gate may be shut for a cooldown; the sweep is the
            # one that tries anyway.
            intake = (await services.intake()).via(TemporalGate(SWEEP_TEMPORAL_TIMEOUT_S))
            count = await redeliver(intake)
            if count:
                log.info("redelivered %d parked events", count)
        except Exception:  # noqa: BLE001 - keep sweeping; the next round retries
            log.warning("redelivery of parked events failed; retrying later", exc_info=True)


def create_app(
    settings: Settings,
    client: Client | None = None,
    *,
    temporal_ui_url: str | None = None,
    login_clock: Callable[[], float] = time.monotonic,
    redeliver_every_s: float = REDELIVER_EVERY_S,
) -> FastAPI:
    """Build the web app for ``settings``; the database engine lives as long as the app.

    Args:
        settings: The configuration (``load_settings()`` at the edge).
        client: A Temporal client to use (tests pass theirs); None connects on first use.
        temporal_ui_url: The Temporal Web UI's base for workflow links; default
            ``settings.temporal_ui_url`` (NURTURE_TEMPORAL_UI_URL).
        login_clock: Seconds on a monotonic clock, for the failed-login throttle's lockouts
            (tests pass one they move).
        redeliver_every_s: How often the sweep starts waiting leads and delivers parked
            events (:func:`nurture.services.parked.redeliver`).
    """
    ui_url = temporal_ui_url or str(settings.temporal_ui_url).rstrip("/")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Metrics (NURTURE_METRICS_PORT): the endpoint, the SDK's metrics through the
        # client's runtime, and the database gauges.
        telemetry = metrics.Telemetry()
        metrics_server = None
        if settings.metrics_port is not None and client is None:
            telemetry = metrics.temporal_telemetry({"process": "web"})
        if settings.metrics_port is not None:
            metrics_server = metrics.serve(settings.metrics_port)
        engine = make_engine(settings.database_url, pool_size=WEB_DB_POOL_SIZE)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        writer = EventWriter(app.state.sessions, webhooks.RECEIPT_TTL)
        app.state.services = Services(
            settings=settings,
            sessions=app.state.sessions,
            catalog=CadenceCatalog(settings.cadences_dir, settings.templates_dir),
            temporal=TemporalLink(settings, client, runtime=telemetry.runtime),
            temporal_ui_url=ui_url,
            writer=writer,
        )
        sweeper = asyncio.create_task(_redeliver_forever(app.state.services, redeliver_every_s))
        gauges = (
            asyncio.create_task(metrics_refresh.refresh_forever(app.state.sessions))
            if metrics_server is not None
            else None
        )
        try:
            yield
        finally:
            sweeper.cancel()
            if gauges is not None:
                gauges.cancel()
            if metrics_server is not None:
                metrics_server.shutdown()
            await writer.close()
            await engine.dispose()

    app = FastAPI(
        title="Nurture",
        version="0.1.0",
        description="Lead nurture orchestrator: signed webhooks in, email links, SDR pages.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.login_throttle = login.LoginThrottle(login_clock)

    async def cookie_key() -> str:
        # app.state.sessions exists once the lifespan has started (before any request).
        return await session_key(settings, app.state.sessions)

    app.add_middleware(
        AppSessionMiddleware,
        key=cookie_key,
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE_S,
        same_site="lax",
        https_only=str(settings.public_url).startswith("https://"),
    )
    # Added last, so outermost: it also covers what the session layer answers.
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(WebhookTimingMiddleware)
    app.add_exception_handler(webhooks.WebhookRefused, webhooks.refused_handler)
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for module in (webhooks, crm, inbound, links, login, inbox, leads, pages, codec):
        app.include_router(module.router)
    # The report pages come from their own module; every page needs a login (CONTRACT.md),
    # and these are for ops: they show every SDR's leads and activity.
    app.include_router(reports.router, dependencies=[Depends(require_ops)], include_in_schema=False)
    app.include_router(cadences.router, dependencies=[Depends(require_viewer)])
    app.include_router(router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    tracing.instrument_app(app)
    return app


# Paths whose answer time is measured (nurture_webhook_duration_seconds).
TIMED_PATHS = frozenset(
    {"/leads", "/events", "/inbound/email", "/webhooks/hubspot", "/webhooks/salesforce"}
)


class WebhookTimingMiddleware:
    """Times each webhook request, labelled by path and status."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path") if scope["type"] == "http" else None
        if path not in TIMED_PATHS or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            metrics.WEBHOOK_SECONDS.labels(path=path, status=str(status)).observe(
                time.perf_counter() - started
            )


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        webhooks.add_schemas(schema)
        app.openapi_schema = schema
    return app.openapi_schema


async def _to_login(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(login_url(exc.next_path), status_code=303)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Pages get an HTML error page; everything else FastAPI's JSON."""
    assert isinstance(exc, StarletteHTTPException)
    if "text/html" in request.headers.get("accept", "") and exc.status_code in (403, 404):
        return render(
            request,
            "error.html",
            {"status": exc.status_code, "detail": exc.detail},
            exc.status_code,
        )
    return await http_exception_handler(request, exc)


router = APIRouter()


class Health(BaseModel):
    """The answer of ``GET /health``."""

    status: Literal["ok", "error"]
    database: Literal["ok", "unavailable"]


@router.get("/health", responses={503: {"model": Health}})
async def health(request: Request, response: Response) -> Health:
    """Liveness and database reachability; 503 when the database does not answer."""
    engine: AsyncEngine = request.app.state.engine
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:
        log.warning("health: database unavailable", exc_info=True)
        response.status_code = 503
        return Health(status="error", database="unavailable")
    return Health(status="ok", database="ok")


@router.get("/mail", response_class=HTMLResponse, include_in_schema=False)
async def mail_list(request: Request, viewer: OpsDep, session: SessionDep) -> Response:
    """The dev SMTP sink's messages, newest first (ops: they hold every lead's address)."""
    messages = await list_mail(session, limit=200)
    return render(request, "mail_list.html", {"messages": messages})


@router.get("/mail/{mail_id}", response_class=HTMLResponse, include_in_schema=False)
async def mail_detail(
    request: Request, mail_id: int, viewer: OpsDep, session: SessionDep
) -> Response:
    """One received message: headers, text part, and the HTML part in a sandboxed frame.

    Remote images stay unloaded (the frame inherits the page's policy): the email's open
    pixel must not count an open when ops look at the copy the sink caught.
    """
    mail = await session.get(ReceivedMail, mail_id)
    if mail is None:
        raise HTTPException(status_code=404, detail="no such message")
    page = render(request, "mail_detail.html", {"mail": mail, "parsed": parse_mail(mail.raw)})
    page.headers["Content-Security-Policy"] = "img-src data:"
    return page
