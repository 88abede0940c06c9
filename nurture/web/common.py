"""What every part of the web app shares: templates, the database session, the Temporal link.

The app's long-lived resources live in one :class:`Services` object in ``app.state``, made by
the lifespan (never at import). The Temporal client connects lazily (on its first call), so
the app starts, serves its health check and records webhooks while Temporal is down or still
coming up; a test injects its own client instead. Calls on a request's path go through one
:class:`~nurture.adapters.temporal.TemporalGate`: bounded to about a second, and skipped for a few
seconds after one found Temporal unreachable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import Response
from temporalio.client import Client
from temporalio.runtime import Runtime

from nurture.adapters.catalog import CadenceCatalog
from nurture.adapters.temporal import TemporalGate, TemporalUnavailable, connect
from nurture.services.ingest import EventWriter
from nurture.services.intake import Intake
from nurture.settings import Settings
from nurture.web.script_text import script_html

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
# A lazy connect does no I/O; the bound only guards against a client that would.
TEMPORAL_CONNECT_TIMEOUT_S = 5.0
# A webhook sender gives up (and retries) after a few seconds: a start or signal that takes
# longer than this is left to the redelivery sweep, and the request answers at once.
REQUEST_TEMPORAL_TIMEOUT_S = 1.0
# After a call found Temporal unreachable, requests record and park without trying it for
# this long, so a flood during an outage does not wait a second per request.
REQUEST_TEMPORAL_COOLDOWN_S = 5.0
DEFAULT_TEMPORAL_UI_URL = "http://localhost:8233"

templates = Jinja2Templates(directory=TEMPLATES_DIR)


def _utc(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def _utc_short(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


templates.env.filters["utc"] = _utc
templates.env.filters["utc_short"] = _utc_short
templates.env.filters["script_html"] = script_html


class TemporalLink:
    """One Temporal client for the app: the injected one, or connected once on first use."""

    def __init__(
        self, settings: Settings, client: Client | None = None, runtime: Runtime | None = None
    ) -> None:
        self._settings = settings
        self._client = client
        self._runtime = runtime
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        """The client.

        Raises:
            TemporalUnavailable: when the server cannot be reached within a few seconds.
        """
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    async with asyncio.timeout(TEMPORAL_CONNECT_TIMEOUT_S):
                        self._client = await connect(
                            self._settings, lazy=True, runtime=self._runtime
                        )
                except TimeoutError as exc:
                    raise TemporalUnavailable(
                        f"no answer from the Temporal server at {self._settings.temporal_address} "
                        f"within {TEMPORAL_CONNECT_TIMEOUT_S:.0f} s"
                    ) from exc
            return self._client


@dataclass
class Services:
    """The app's resources for one lifespan."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    catalog: CadenceCatalog
    temporal: TemporalLink
    # The group-commit writer of the event path (nurture.services.ingest).
    writer: EventWriter
    temporal_ui_url: str = DEFAULT_TEMPORAL_UI_URL
    gate: TemporalGate = field(
        default_factory=lambda: TemporalGate(
            timeout_s=REQUEST_TEMPORAL_TIMEOUT_S, cooldown_s=REQUEST_TEMPORAL_COOLDOWN_S
        )
    )
    _intake: Intake | None = None

    async def intake(self) -> Intake:
        """The app's one :class:`Intake` on its client, its calls through :attr:`gate`.

        One for the app's life, not one per request: it caches what every event needs
        (the rule fields of the current cadence set).

        Raises:
            TemporalUnavailable: when a client cannot even be made.
        """
        if self._intake is None:
            client = await self.temporal.client()
            self._intake = Intake(
                self.settings, client, self.sessions, self.catalog, self.gate, self.writer
            )
        return self._intake

    def workflows_url(self, query: str = "") -> str:
        """The Temporal UI's workflow list, filtered by a visibility ``query`` when given."""
        from urllib.parse import quote

        base = self.temporal_ui_url.rstrip("/")
        namespace = quote(self.settings.temporal_namespace, safe="")
        url = f"{base}/namespaces/{namespace}/workflows"
        return f"{url}?query={quote(query, safe='')}" if query else url

    def workflow_url(self, workflow_id: str) -> str:
        """The lead's workflow in the Temporal Web UI."""
        from urllib.parse import quote

        base = self.temporal_ui_url.rstrip("/")
        namespace = quote(self.settings.temporal_namespace, safe="")
        return f"{base}/namespaces/{namespace}/workflows/{quote(workflow_id, safe='')}"


def get_services(request: Request) -> Services:
    """The app's :class:`Services` (a FastAPI dependency)."""
    return request.app.state.services  # type: ignore[no-any-return]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A database session for one request (a FastAPI dependency)."""
    async with get_services(request).sessions() as session:
        yield session


ServicesDep = Annotated[Services, Depends(get_services)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> Response:
    """A page from ``templates/``, with the signed-in user (if any) for the header."""
    values = {"viewer": getattr(request.state, "viewer", None), **(context or {})}
    return templates.TemplateResponse(request, name, values, status_code=status_code)
