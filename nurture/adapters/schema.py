"""Upgrade the app database to the newest schema, programmatically.

The migrations ship inside the package (``nurture/adapters/migrations``), so no ``alembic.ini`` is
needed at runtime: :func:`alembic_config` builds the configuration in code.

Several processes may start at once (``make run`` starts the worker and the web app), so
an upgrade holds a database-wide lock: the first process upgrades, the others wait and
then find the schema already at head.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection

from nurture.adapters.database import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Alembic keeps the running migration in module globals (``alembic.context``), so two
# upgrades at once in one process corrupt each other ("KeyError: 'script'"). This lock
# serializes them across event loops and threads: a web app and a worker embedded in one
# process (``starter.py dev``, the tests) each migrate at start-up.
_IN_PROCESS = threading.Lock()

# An arbitrary constant naming this app's migration lock among PostgreSQL advisory locks.
_PG_MIGRATION_LOCK = 0x6E757274  # "nurt"


def alembic_config(url: str) -> Config:
    """An Alembic configuration for the package's migrations and the database ``url``.

    Also the way to write a new revision, for example
    ``alembic.command.revision(alembic_config(url), "add x", autogenerate=True)``.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolates `%`, which URL-encoded passwords contain.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (default: the newest).

    Safe to call on every start and from several processes at once.

    Args:
        url: An async SQLAlchemy URL (``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``).
        revision: The Alembic revision to upgrade to.
    """
    config = alembic_config(url)
    # Poll rather than block: the holder may be another task of this very event loop, and a
    # cancelled waiter must not be left holding the lock.
    while not _IN_PROCESS.acquire(blocking=False):
        await asyncio.sleep(0.02)
    try:
        engine = make_engine(url)
        try:
            async with engine.connect() as connection:
                await lock_for_migration(connection)
                await connection.run_sync(_upgrade, config, revision)
                await connection.commit()
        finally:
            await engine.dispose()
    finally:
        _IN_PROCESS.release()


async def lock_for_migration(connection: AsyncConnection) -> None:
    """Take the database-wide migration lock on ``connection``; released at commit.

    Call it first thing on a fresh connection, before any other statement.
    """
    if connection.dialect.name == "sqlite":
        # Batch migrations copy and drop tables; enforced foreign keys would cascade those
        # drops into the child tables. The pragma only takes effect outside a transaction.
        await connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
        # A write lock from the start makes the upgrade atomic and serializes processes
        # (the others wait up to the busy timeout); SQLite's DDL is transactional.
        await connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif connection.dialect.name == "postgresql":
        # Released at commit; PostgreSQL's DDL is transactional too.
        await connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
        )


def _upgrade(connection: Connection, config: Config, revision: str) -> None:
    # env.py runs on this connection instead of opening its own (Alembic cookbook:
    # "sharing a connection across one or more programmatic migration commands").
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
