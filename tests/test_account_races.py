"""Leads of one account deciding at the same instant, each on its own connections (as
separate workers would): the governor's reservation and the sticky assignment of an
account's SDR are race-free, on SQLite and PostgreSQL (``database_url``).
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from web_helpers import asgi_client, post_signed

from nurture.adapters.catalog import CadenceCatalog
from nurture.adapters.database import LeadRow, TouchGrant, make_engine, session_factory
from nurture.domain import messages as am
from nurture.domain.cadence import AccountLimits, Limits, SendWindow
from nurture.services import accounts, team
from nurture.services.optouts import erase_personal_data
from nurture.web import create_app

pytest_plugins = ["dbfixtures"]

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ALWAYS = SendWindow(
    days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start="00:00", end="24:00"
)
SECRET = "k" * 32


async def _add_leads(url: str, leads: list[dict[str, object]]) -> None:
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as session:
            for lead in leads:
                session.add(LeadRow(**lead))
            await session.commit()
    finally:
        await engine.dispose()


async def _reserve(url: str, request: am.ReserveTouchInput) -> am.ReserveTouchResult:
    # Its own engine: its own connections, as another worker's activity would have.
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as session:
            return (await accounts.reserve(session, SECRET, request)).result
    finally:
        await engine.dispose()


def _ask(
    lead_id: str, limits: Limits, *, step: str = "e1", at: datetime = NOW
) -> am.ReserveTouchInput:
    return am.ReserveTouchInput(
        key=f"{lead_id}|0|burst|{step}|1",
        lead_id=lead_id,
        stage="nurturing",
        channel="email",
        limits=limits,
        zone="UTC",
        now=at,
    )


async def test_leads_of_one_account_asking_at_once_get_one_slot(migrated_url: str) -> None:
    ids = [f"A-{n}" for n in range(8)]
    await _add_leads(
        migrated_url,
        [
            {"id": i, "email": f"p{n}@initech.example", "account": "initech.example"}
            for n, i in enumerate(ids)
        ],
    )
    limits = Limits(send_window=ALWAYS, account=AccountLimits(min_gap_between_touches="1d"))
    answers = await asyncio.gather(*(_reserve(migrated_url, _ask(i, limits)) for i in ids))

    granted = [i for i, a in zip(ids, answers, strict=True) if a.granted]
    assert len(granted) == 1
    held = [a for a in answers if not a.granted]
    assert {a.at for a in held} == {NOW + timedelta(days=1)}
    assert all(a.reasons[0].startswith("initech.example: last touch 0s ago") for a in held)
    # A retry of the granted touch re-finds its grant; it takes no second slot.
    again = await _reserve(migrated_url, _ask(granted[0], limits))
    assert again.granted and again.at == NOW
    # A held one asking again at its time gets the next slot, and only it.
    later = NOW + timedelta(days=1)
    second = await asyncio.gather(
        *(_reserve(migrated_url, _ask(i, limits, at=later)) for i in ids if i != granted[0])
    )
    assert sum(1 for a in second if a.granted) == 1
    engine = make_engine(migrated_url)
    try:
        async with session_factory(engine)() as session:
            grants = (await session.scalars(select(TouchGrant))).all()
    finally:
        await engine.dispose()
    assert len(grants) == 2
    # The person is a keyed hash, never the address.
    assert all(g.person and "@" not in g.person for g in grants)


async def test_one_address_under_several_lead_ids_gets_one_slot(migrated_url: str) -> None:
    ids = ["W-1", "F-1", "F-2"]
    await _add_leads(
        migrated_url,
        [
            {
                "id": i,
                "email": "ann@gmail.com" if n else "Ann@Gmail.com",
                "account": "company:initech",
            }
            for n, i in enumerate(ids)
        ],
    )
    limits = Limits(send_window=ALWAYS, min_gap_between_touches="20h")
    answers = await asyncio.gather(*(_reserve(migrated_url, _ask(i, limits)) for i in ids))
    assert sum(1 for a in answers if a.granted) == 1
    held = [a for a in answers if not a.granted]
    assert all(a.at == NOW + timedelta(hours=20) for a in held)
    assert all(a.reasons[0].startswith("this address (several lead ids)") for a in held)


async def test_a_conversation_holds_the_account_until_it_ends(migrated_url: str) -> None:
    await _add_leads(
        migrated_url,
        [
            {
                "id": "A-1",
                "email": "a@initech.example",
                "account": "initech.example",
                "stage": "sql",
                "owner": "aiko",
            },
            {"id": "A-2", "email": "b@initech.example", "account": "initech.example"},
            {
                "id": "A-3",
                "email": "c@initech.example",
                "account": "initech.example",
                "stage": "won",
            },
            {"id": "B-1", "email": "d@globex.example", "account": "globex.example"},
        ],
    )
    limits = Limits(send_window=ALWAYS, account=AccountLimits(one_conversation=True))
    held = await _reserve(migrated_url, _ask("A-2", limits))
    assert held.conversation and held.reasons == [
        "initech.example is in conversation with aiko via A-1"
    ]
    assert (await _reserve(migrated_url, _ask("B-1", limits))).granted  # another account
    engine = make_engine(migrated_url)
    try:
        async with session_factory(engine)() as session:
            # The leads a release tells: the account's others in a touch stage.
            assert await accounts.held_leads(session, "A-1") == ["A-2"]
            (await session.get(LeadRow, "A-1")).stage = "lost"  # type: ignore[union-attr]
            await session.commit()
    finally:
        await engine.dispose()
    assert (await _reserve(migrated_url, _ask("A-2", limits))).granted


async def test_first_leads_of_one_account_taken_in_at_once_get_one_sdr(
    make_settings, time_env, migrated_url: str
) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(database_url=migrated_url)
    secret = settings.require_webhook_secret()
    run = secrets.token_hex(3)
    # Six companies, two people each, in a country no SDR covers: the whole team rotates.
    leads = [
        {"id": f"S{run}-{c}-{p}", "email": f"p{p}@co{c}-{run}.example", "country": "FR"}
        for c in range(6)
        for p in range(2)
    ]
    async with asgi_client(create_app(settings, client=time_env.client)) as client:
        answers = await asyncio.gather(
            *(post_signed(client, secret, "/leads", lead) for lead in leads)
        )
    assert {a.status_code for a in answers} == {202}
    catalog = CadenceCatalog(settings.cadences_dir, settings.templates_dir)
    playbook = catalog.current().playbook

    async def assign(lead_id: str) -> str | None:
        engine = make_engine(migrated_url)
        try:
            async with session_factory(engine)() as session:
                return await team.assign(session, playbook, lead_id)
        finally:
            await engine.dispose()

    owners = await asyncio.gather(*(assign(str(lead["id"])) for lead in leads))
    by_account: dict[str, set[str | None]] = {}
    for lead, owner in zip(leads, owners, strict=True):
        by_account.setdefault(str(lead["email"]).split("@")[1], set()).add(owner)
    assert all(len(found) == 1 and None not in found for found in by_account.values())
    engine = make_engine(migrated_url)
    try:
        async with session_factory(engine)() as session:
            rows = (await session.scalars(select(LeadRow))).all()
    finally:
        await engine.dispose()
    stored: dict[str | None, set[str | None]] = {}
    for row in rows:
        stored.setdefault(row.account, set()).add(row.owner)
    assert all(len(found) == 1 for found in stored.values())
    # A later lead of each account, assigned alone, follows its account's SDR.
    await _add_leads(
        migrated_url,
        [
            {
                "id": f"S{run}-late",
                "email": f"late@co3-{run}.example",
                "account": f"co3-{run}.example",
                "country": "FR",
            }
        ],
    )
    assert await assign(f"S{run}-late") == by_account[f"co3-{run}.example"].pop()


async def test_erase_takes_the_persons_hash_and_account_from_the_grants(
    migrated_url: str,
) -> None:
    await _add_leads(
        migrated_url,
        [
            {
                "id": "E-1",
                "email": "mia@gmail.com",
                "company": "Mia Consulting",
                "account": "company:mia consulting",
            }
        ],
    )
    limits = Limits(send_window=ALWAYS, min_gap_between_touches="1d")
    assert (await _reserve(migrated_url, _ask("E-1", limits))).granted
    engine = make_engine(migrated_url)
    try:
        sessions = session_factory(engine)
        await erase_personal_data(sessions, "E-1", NOW)
        async with sessions() as session:
            grant = await session.get(TouchGrant, "E-1|0|burst|e1|1")
    finally:
        await engine.dispose()
    assert grant is not None and (grant.person, grant.account) == (None, None)
    assert grant.at == NOW
