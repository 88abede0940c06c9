"""Database fixtures shared by tests: import the ones a test module uses.

``database_url`` is parametrized: a fresh SQLite file always, and a fresh PostgreSQL
database when ``NURTURE_TEST_DATABASE_URL`` is set (CI sets it; skipped otherwise). Each
PostgreSQL test gets its own database, created from that URL's server and dropped after,
so tests (and engineers running them at the same time) never see each other's rows.

Usage: name it as a plugin in the test module (no imports that linters call unused)::

    pytest_plugins = ["dbfixtures"]
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from nurture.adapters.database import make_engine, session_factory
from nurture.adapters.schema import migrate

POSTGRES_ENV = "NURTURE_TEST_DATABASE_URL"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a fresh, empty database (no tables): SQLite, then PostgreSQL if set."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'nurture.db'}"
        return
    server_url = os.environ.get(POSTGRES_ENV)
    if not server_url:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    async for url in _fresh_postgres_database(server_url):
        yield url


async def _fresh_postgres_database(server_url: str) -> AsyncIterator[str]:
    name = f"nurture_test_{uuid.uuid4().hex[:16]}"
    # CREATE/DROP DATABASE cannot run inside a transaction.
    admin = create_async_engine(make_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as connection:
                # FORCE: a test that failed midway may have left a connection open.
                await connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.dispose()


@pytest.fixture
async def migrated_url(database_url: str) -> str:
    """A fresh database upgraded to the newest schema."""
    await migrate(database_url)
    return database_url


@pytest.fixture
async def sessions(migrated_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on a fresh, migrated database; its engine is disposed after."""
    engine = make_engine(migrated_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()
