"""What CLI commands share: settings, database, Temporal client, and clear failures."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, NoReturn

import typer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from nurture.settings import Settings, SettingsError, load_settings


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def settings_or_fail() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        fail(str(exc), 2)


@dataclass
class Context:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    _client: Client | None = None

    async def client(self) -> Client:
        from nurture.adapters.temporal import TemporalUnavailable, connect

        if self._client is None:
            try:
                self._client = await connect(self.settings)
            except TemporalUnavailable as exc:
                fail(str(exc))
        return self._client

    def playbook(self):  # type: ignore[no-untyped-def]
        """The playbook on disk, validated; exit 1 naming the problems when it is not."""
        from nurture.adapters.loader import CadenceSetInvalid, load_cadence_set

        settings = self.settings
        try:
            return load_cadence_set(settings.cadences_dir, settings.templates_dir).playbook
        except CadenceSetInvalid as exc:
            fail(f"the cadence files have problems (nothing was changed):\n{exc}")

    async def intake(self):  # type: ignore[no-untyped-def]
        from nurture.adapters.catalog import CadenceCatalog
        from nurture.adapters.loader import CadenceSetInvalid
        from nurture.services.intake import Intake

        catalog = CadenceCatalog(self.settings.cadences_dir, self.settings.templates_dir)
        try:
            catalog.current()
        except CadenceSetInvalid as exc:
            fail(f"the cadence files have problems (run `nurture cadences validate`):\n{exc}")
        return Intake(self.settings, await self.client(), self.sessions, catalog)


@contextlib.asynccontextmanager
async def context() -> AsyncIterator[Context]:
    """Settings, a migrated database and (on demand) a Temporal client."""
    from nurture.adapters.database import make_engine, session_factory
    from nurture.adapters.schema import migrate

    settings = settings_or_fail()
    try:
        await migrate(settings.database_url)
    except Exception as exc:  # noqa: BLE001 - any driver error: say which database, not a traceback
        fail(f"cannot open the database {settings.database_url.split('@')[-1]}: {exc}")
    engine = make_engine(settings.database_url)
    try:
        yield Context(settings, engine, session_factory(engine))
    finally:
        await engine.dispose()
