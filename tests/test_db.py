"""The app database: migrations, constraints and time handling, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nurture.adapters.database import (
    AppSecret,
    Base,
    CallTask,
    EmailSend,
    EventRow,
    LeadRow,
    Opportunity,
    StageChange,
    Suppression,
    insert_once,
    make_engine,
)
from nurture.adapters.schema import alembic_config, migrate
from nurture.domain.keys import touch as touch_key

# database_url, migrated_url, sessions: fresh databases (SQLite; PostgreSQL when configured).
pytest_plugins = ["dbfixtures"]

Sessions = async_sessionmaker[AsyncSession]

TABLES = {
    "leads",
    "stage_changes",
    "email_sends",
    "call_tasks",
    "events",
    "suppressions",
    "opportunities",
    "users",
    "received_mail",
    "app_secrets",
    "webhook_receipts",
    "sending_switch",
    "crm_posts",
    "crm_links",
    "crm_unmatched",
    "playbook_rollouts",
    "inbound_mail",
    "governor_locks",
    "touch_grants",
}


def _head(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def _schema_facts(connection: Connection) -> tuple[set[str], str | None, list[object]]:
    tables = set(inspect(connection).get_table_names())
    version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    diff = compare_metadata(context, Base.metadata)
    return tables, version, diff


def _reflected_names(connection: Connection) -> set[str]:
    inspector = inspect(connection)
    names: set[str | None] = set()
    for table in TABLES:
        names.add(inspector.get_pk_constraint(table)["name"])
        names |= {fk["name"] for fk in inspector.get_foreign_keys(table)}
        names |= {uq["name"] for uq in inspector.get_unique_constraints(table)}
        names |= {ck["name"] for ck in inspector.get_check_constraints(table)}
        names |= {ix["name"] for ix in inspector.get_indexes(table)}
    return {name for name in names if name}


def _model_names() -> set[str]:
    names = set()
    for table in Base.metadata.sorted_tables:
        names |= {str(c.name) for c in table.constraints} | {str(i.name) for i in table.indexes}
    return names


async def test_migrate_upgrades_an_empty_database_to_the_models(database_url: str) -> None:
    await migrate(database_url)
    await migrate(database_url)  # a second start finds it at head and changes nothing

    engine = make_engine(database_url)
    try:
        async with engine.connect() as connection:
            tables, version, diff = await connection.run_sync(_schema_facts)
            names = await connection.run_sync(_reflected_names)
    finally:
        await engine.dispose()

    assert tables == TABLES | {"alembic_version"}
    assert version == _head(database_url) == "0011"
    # The hand-written migration and the ORM models describe the same schema, down to the
    # constraint names that later batch migrations on SQLite will refer to.
    assert diff == []
    assert names == _model_names()
    assert "ck_email_sends_status" in names


# Each process migrates, then writes and reads a row at once (the first thing a web app or
# worker does): none may see "database is locked" or a half-made schema.
_MIGRATE_AND_USE = """
import asyncio, sys
from nurture.adapters.database import LeadRow, make_engine, session_factory
from nurture.adapters.schema import migrate

async def main(url, lead_id):
    await migrate(url)
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as db, db.begin():
            db.add(LeadRow(id=lead_id))
    finally:
        await engine.dispose()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_processes_starting_together_migrate_once(database_url: str) -> None:
    # Real processes (as `make run` and compose start the web app, the worker and the CLI)
    # and, in this process, several upgrades at once on one event loop.
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _MIGRATE_AND_USE,
            database_url,
            f"L-{n}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        for n in range(4)
    ]
    await asyncio.gather(*(migrate(database_url) for _ in range(3)))
    outputs = [await process.communicate() for process in processes]
    for process, (output, _) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output.decode(errors="replace")

    engine = make_engine(database_url)
    try:
        async with engine.connect() as connection:
            versions = (await connection.execute(text("SELECT * FROM alembic_version"))).all()
            leads = (await connection.execute(text("SELECT id FROM leads ORDER BY id"))).all()
    finally:
        await engine.dispose()
    assert versions == [(_head(database_url),)]
    assert [row[0] for row in leads] == ["L-0", "L-1", "L-2", "L-3"]


async def test_migrations_run_down_and_up_from_the_alembic_command(database_url: str) -> None:
    # Without a shared connection, env.py makes its own async engine (the CLI path); the
    # command is synchronous and runs its own event loop, hence the thread.
    config = alembic_config(database_url)
    await asyncio.to_thread(command.upgrade, config, "head")
    await asyncio.to_thread(command.downgrade, config, "base")

    engine = make_engine(database_url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    assert tables <= {"alembic_version"}

    await migrate(database_url)


def _send(key: str, lead_id: str = "L-1") -> EmailSend:
    return EmailSend(
        key=key,
        lead_id=lead_id,
        cycle=1,
        cadence="inbound",
        step="welcome",
        visit=1,
        template="inbound/welcome",
        to_address="ann@example.com",
    )


async def test_email_send_key_refuses_a_duplicate(sessions: Sessions) -> None:
    key = touch_key("L-1", 1, "inbound", "welcome", 1)
    async with sessions() as db, db.begin():
        db.add(LeadRow(id="L-1", email="ann@example.com"))
        db.add(_send(key))

    with pytest.raises(IntegrityError):
        async with sessions() as db, db.begin():
            db.add(_send(key))

    async with sessions() as db:
        rows = (await db.scalars(select(EmailSend))).all()
    assert [(r.key, r.status, r.attempts) for r in rows] == [
        ("L-1|1|inbound|welcome|1", "queued", 0)
    ]


async def test_insert_once_gives_concurrent_callers_the_same_row(sessions: Sessions) -> None:
    async with sessions() as db, db.begin():
        db.add(LeadRow(id="L-1"))

    async def claim(owner: str) -> tuple[int, str | None, bool]:
        async with sessions() as db:
            row, created = await insert_once(
                db, Opportunity, {"key": "L-1|0"}, lead_id="L-1", cycle=0, owner=owner,
                trigger="threshold",
            )  # fmt: skip
            await db.commit()
            return row.id, row.owner, created

    claims = await asyncio.gather(*(claim(f"sdr-{n}") for n in range(8)))

    assert sum(created for _id, _owner, created in claims) == 1
    [winner] = [(row_id, owner) for row_id, owner, created in claims if created]
    assert {(row_id, owner) for row_id, owner, _created in claims} == {winner}
    async with sessions() as db:
        rows = (await db.scalars(select(Opportunity))).all()
    assert [(r.id, r.owner, r.trigger) for r in rows] == [(*winner, "threshold")]


async def test_insert_once_keeps_the_callers_other_changes(sessions: Sessions) -> None:
    async with sessions() as db, db.begin():
        db.add(LeadRow(id="L-1"))
        db.add(AppSecret(name="link", value="first"))

    async with sessions() as db:
        lead = await db.get(LeadRow, "L-1")
        assert lead is not None
        lead.owner = "ben"  # pending when the key turns out to be taken
        secret, created = await insert_once(db, AppSecret, {"name": "link"}, value="second")
        await db.commit()
    assert (secret.value, created) == ("first", False)

    async with sessions() as db:
        lead = await db.get(LeadRow, "L-1")
        assert lead is not None and lead.owner == "ben"
        # Only a conflict on the key is a "found": a send for a missing lead still fails.
        with pytest.raises(IntegrityError):
            await insert_once(
                db, EmailSend, {"key": "L-404|0|inbound|welcome|1"}, lead_id="L-404", cycle=0,
                cadence="inbound", step="welcome", visit=1, template="welcome/first",
            )  # fmt: skip


async def test_constraints_hold_on_both_databases(sessions: Sessions) -> None:
    async with sessions() as db, db.begin():
        db.add(LeadRow(id="L-1"))
        db.add(EventRow(id="evt-1", lead_id="L-1", type="email.opened", status="delivered"))

    # A send for a lead that does not exist (SQLite enforces foreign keys too).
    with pytest.raises(IntegrityError):
        async with sessions() as db, db.begin():
            db.add(_send("L-404|1|inbound|welcome|1", lead_id="L-404"))
    # A status outside the documented set.
    with pytest.raises(IntegrityError):
        async with sessions() as db, db.begin():
            send = _send("L-1|1|inbound|welcome|1")
            send.status = "maybe"
            db.add(send)
    # A repeated event id, whatever its body: the first wins.
    with pytest.raises(IntegrityError):
        async with sessions() as db, db.begin():
            db.add(EventRow(id="evt-1", lead_id="L-2", type="email.clicked", status="parked"))

    async with sessions() as db:
        event = await db.get(EventRow, "evt-1")
    assert event is not None
    assert (event.lead_id, event.type, event.data) == ("L-1", "email.opened", {})


async def test_times_are_stored_in_utc_and_read_back_aware(sessions: Sessions) -> None:
    tokyo = timezone(timedelta(hours=9))
    touch = datetime(2026, 11, 23, 9, 30, tzinfo=tokyo)  # 00:30 UTC
    async with sessions() as db, db.begin():
        db.add(LeadRow(id="L-1", next_touch_at=touch))
        db.add(LeadRow(id="L-2", next_touch_at=datetime(2026, 11, 23, 1, 0, tzinfo=UTC)))

    async with sessions() as db:
        lead = await db.get(LeadRow, "L-1")
        # Comparing with an aware bound in another zone orders by the instant.
        due = (
            await db.scalars(
                select(LeadRow.id).where(
                    LeadRow.next_touch_at <= datetime(2026, 11, 23, 9, 45, tzinfo=tokyo)
                )
            )
        ).all()
    assert lead is not None and lead.next_touch_at is not None
    assert lead.next_touch_at == touch
    assert lead.next_touch_at.utcoffset() == timedelta(0)
    assert lead.created_at.tzinfo is not None
    assert due == ["L-1"]


async def test_naive_times_are_refused(sessions: Sessions) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        async with sessions() as db, db.begin():
            db.add(LeadRow(id="L-1", next_touch_at=datetime(2026, 11, 23, 9, 30)))


async def test_call_task_ids_are_short_and_suppressions_lower_case(sessions: Sessions) -> None:
    async with sessions() as db, db.begin():
        db.add(LeadRow(id="L-1", fields={"plan": "pro"}))
        task = CallTask(
            key=touch_key("L-1", 1, "inbound", "first-call", 1),
            lead_id="L-1",
            cycle=1,
            cadence="inbound",
            step="first-call",
            visit=1,
            owner="aiko",
            due_at=datetime(2026, 11, 24, 0, 0, tzinfo=UTC),
        )
        db.add(task)
        db.add(Suppression(email=" Ann@Example.COM ", reason="unsubscribed"))

    async with sessions() as db, db.begin():
        lead = await db.get(LeadRow, "L-1")
        assert lead is not None
        lead.fields["seats"] = 12  # in-place change of a JSON column is saved

    async with sessions() as db:
        stored = await db.get(CallTask, task.id)
        suppressed = (await db.scalars(select(Suppression.email))).all()
        lead = await db.get(LeadRow, "L-1")
    assert re.fullmatch(r"T-[0-9a-f]{10}", task.id)
    assert stored is not None and stored.status == "open"
    assert suppressed == ["ann@example.com"]
    assert lead is not None and lead.fields == {"plan": "pro", "seats": 12}
    assert (lead.stage, lead.score, lead.unsubscribed, lead.do_not_contact) == (
        "nurturing",
        0,
        False,
        False,
    )


async def test_sqlite_engine_makes_its_directory_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "deeper" / "still" / "nurture.db"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.connect() as connection:
            journal = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar()
            busy = (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar()
            foreign_keys = (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar()
    finally:
        await engine.dispose()
    assert path.exists()
    assert (journal, busy, foreign_keys) == ("wal", 30_000, 1)


async def test_leads_already_nurtured_count_as_started_after_the_upgrade(database_url: str) -> None:
    # A lead whose workflow logged its first stage change has certainly been started; one
    # without is left for the sweep to start (or to find running).
    await migrate(database_url, "0002")
    engine = make_engine(database_url)
    try:
        async with engine.begin() as connection:
            for lead_id in ("L-run", "L-half"):
                await connection.execute(
                    text(
                        "INSERT INTO leads (id, fields, stage, score, unsubscribed,"
                        " do_not_contact, created_at, updated_at) VALUES (:id, '{}',"
                        " 'nurturing', 0, false, false, :at, :at)"
                    ),
                    {"id": lead_id, "at": datetime(2026, 11, 1, tzinfo=UTC)},
                )
            await connection.execute(
                text(
                    "INSERT INTO stage_changes (lead_id, cycle, to_stage, at)"
                    " VALUES ('L-run', 0, 'nurturing', :at)"
                ),
                {"at": datetime(2026, 11, 1, tzinfo=UTC)},
            )
        await migrate(database_url)
        async with async_sessionmaker(engine)() as session:
            started = {
                row.id: row.started_at for row in (await session.scalars(select(LeadRow))).all()
            }
    finally:
        await engine.dispose()
    assert started["L-run"] is not None and started["L-half"] is None


async def test_duplicate_stage_changes_are_folded_into_one_by_the_upgrade(
    database_url: str,
) -> None:
    # Attempts of `record_transition` that ran at once could each add the same transition
    # before 0010; the upgrade keeps the first row of each and then refuses a second one.
    await migrate(database_url, "0009")
    engine = make_engine(database_url)
    at = datetime(2026, 11, 1, tzinfo=UTC)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO leads (id, fields, stage, score, unsubscribed,"
                    " do_not_contact, created_at, updated_at) VALUES ('L-1', '{}',"
                    " 'mql', 0, false, false, :at, :at)"
                ),
                {"at": at},
            )
            # Through the table, so `at` is stored as the application stores it.
            table = StageChange.__table__
            for to_stage, reason in (("mql", "first"), ("mql", "twin"), ("sql", "only")):
                await connection.execute(
                    insert(table).values(
                        lead_id="L-1", cycle=0, to_stage=to_stage, at=at, reason=reason
                    )
                )
        await migrate(database_url)
        async with async_sessionmaker(engine)() as session:
            rows = (await session.scalars(select(StageChange).order_by(StageChange.id))).all()
            kept = [(row.to_stage, row.reason) for row in rows]
            session.add(StageChange(lead_id="L-1", cycle=0, to_stage="sql", at=at))
            with pytest.raises(IntegrityError):
                await session.commit()
    finally:
        await engine.dispose()
    assert kept == [("mql", "first"), ("sql", "only")]
