"""The FastAPI app: :func:`create_app` builds it from the settings.

The database engine is made in the lifespan (never at import), kept in ``app.state`` and
handed to endpoints through the :func:`get_session` dependency.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from nurture.db import ReceivedMail, make_engine, session_factory
from nurture.mailsink import list_mail, parse_mail
from nurture.settings import Settings

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
# A health check that hangs is worse than one that fails: orchestrators wait on it.
HEALTH_TIMEOUT_S = 5.0

templates = Jinja2Templates(directory=TEMPLATES_DIR)


def _utc(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


templates.env.filters["utc"] = _utc


def create_app(settings: Settings) -> FastAPI:
    """Build the web app for ``settings``; the database engine lives as long as the app.

    Args:
        settings: The configuration (``load_settings()`` at the edge).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(title="Nurture", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.include_router(router)
    return app


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A database session for one request (a FastAPI dependency)."""
    async with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

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


@router.get("/mail", response_class=HTMLResponse)
async def mail_list(request: Request, session: SessionDep) -> HTMLResponse:
    """The dev SMTP sink's messages, newest first."""
    messages = await list_mail(session, limit=200)
    return templates.TemplateResponse(request, "mail_list.html", {"messages": messages})


@router.get("/mail/{mail_id}", response_class=HTMLResponse)
async def mail_detail(request: Request, mail_id: int, session: SessionDep) -> HTMLResponse:
    """One received message: headers, text part, and the HTML part in a sandboxed frame."""
    mail = await session.get(ReceivedMail, mail_id)
    if mail is None:
        raise HTTPException(status_code=404, detail="no such message")
    return templates.TemplateResponse(
        request, "mail_detail.html", {"mail": mail, "parsed": parse_mail(mail.raw)}
    )
