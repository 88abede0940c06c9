"""A flood of events at `POST /events`: written together, each one once, in the order posted.

The web app runs in-process on SQLite and PostgreSQL (``database_url``), its client on the
time-skipping server; a lead's workflow is started but no worker runs (a signal to it is
delivered all the same, which is all these tests need).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter

from sqlalchemy import event as sa_event
from sqlalchemy import select
from web_helpers import asgi_client, post_signed, signed

from nurture.adapters.database import EventRow, make_engine, session_factory
from nurture.domain.names import workflow_id
from nurture.web import create_app

pytest_plugins = ["dbfixtures"]


def _event(event_id: str, lead_id: str, **data: object) -> dict[str, object]:
    return {"id": event_id, "type": "page.visited", "lead_id": lead_id, "data": data}


async def _events(url: str) -> dict[str, EventRow]:
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as session:
            return {r.id: r for r in (await session.scalars(select(EventRow))).all()}
    finally:
        await engine.dispose()


async def test_a_flood_of_events_is_written_in_a_few_transactions(
    make_settings, time_env, migrated_url: str
) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(database_url=migrated_url)
    secret = settings.require_webhook_secret()
    lead = f"F-{secrets.token_hex(4)}"
    app = create_app(settings, client=time_env.client)
    async with asgi_client(app) as client:
        assert (await post_signed(client, secret, "/leads", {"id": lead})).status_code == 202
        commits = Counter[str]()
        sa_event.listen(app.state.engine.sync_engine, "commit", lambda _c: commits.update(["n"]))
        posts = 60
        answers = await asyncio.gather(
            *(
                post_signed(client, secret, "/events", _event(f"e{n}-{lead}", lead))
                for n in range(posts)
            )
        )

    assert {a.status_code for a in answers} == {202}
    assert {a.json()["results"][0]["status"] for a in answers} == {"delivered"}
    rows = await _events(migrated_url)
    assert sorted(rows) == sorted(f"e{n}-{lead}" for n in range(posts))
    assert {r.status for r in rows.values()} == {"delivered"}
    # One commit per event used to be three (the request's receipt, the event, its mark).
    assert commits["n"] < posts / 2, commits


async def test_repeats_in_one_flood_have_one_effect(
    make_settings, time_env, migrated_url: str
) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(database_url=migrated_url)
    secret = settings.require_webhook_secret()
    lead = f"D-{secrets.token_hex(4)}"
    async with asgi_client(create_app(settings, client=time_env.client)) as client:
        assert (await post_signed(client, secret, "/leads", {"id": lead})).status_code == 202
        same_id = _event(f"dup-{lead}", lead, url="/a")
        # The very same signed request sent three times (a replay), among other posts.
        body, headers = signed(secret, _event(f"replayed-{lead}", lead))
        answers = await asyncio.gather(
            *(post_signed(client, secret, "/events", same_id) for _ in range(5)),
            *(client.post("/events", content=body, headers=headers) for _ in range(3)),
            *(
                post_signed(client, secret, "/events", _event(f"o{n}-{lead}", lead))
                for n in range(10)
            ),
        )

    statuses = [a.json()["results"][0]["status"] for a in answers]
    assert statuses[:5].count("delivered") == 1 and statuses[:5].count("duplicate") == 4
    assert statuses[5:8].count("delivered") == 1 and statuses[5:8].count("duplicate") == 2
    assert statuses[8:] == ["delivered"] * 10
    history = await time_env.client.get_workflow_handle(workflow_id(lead)).fetch_history()
    signaled = b"".join(
        p.data
        for item in history.events
        if item.HasField("workflow_execution_signaled_event_attributes")
        for p in item.workflow_execution_signaled_event_attributes.input.payloads
    )
    assert signaled.count(f"dup-{lead}".encode()) == 1
    assert signaled.count(f"replayed-{lead}".encode()) == 1


async def test_a_batch_for_an_unknown_lead_is_delivered_in_the_order_posted(
    make_settings, time_env, migrated_url: str
) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(database_url=migrated_url)
    secret = settings.require_webhook_secret()
    lead = f"B-{secrets.token_hex(4)}"
    # Ids that sort differently from the order they are posted in.
    ids = [f"z-{lead}", f"a-{lead}", f"m-{lead}", f"b-{lead}"]
    async with asgi_client(create_app(settings, client=time_env.client)) as client:
        batch = {"events": [_event(i, lead, url=f"/{n}") for n, i in enumerate(ids)]}
        parked = await post_signed(client, secret, "/events", batch)
        assert [r["status"] for r in parked.json()["results"]] == ["parked"] * 4
        created = await post_signed(client, secret, "/leads", {"id": lead})
        assert created.json()["parked_delivered"] == 4

    history = await time_env.client.get_workflow_handle(workflow_id(lead)).fetch_history()
    order = [
        next(i for i in ids if i.encode() in p.data)
        for item in history.events
        if item.HasField("workflow_execution_signaled_event_attributes")
        for p in item.workflow_execution_signaled_event_attributes.input.payloads
    ]
    assert order == ids


async def test_a_flood_of_new_leads_shares_its_receipts_and_start_marks(
    make_settings, time_env, migrated_url: str
) -> None:  # type: ignore[no-untyped-def]
    """Each new lead writes its own row; its receipt and its `started` mark join the writer's
    shared transactions, and every lead is marked started once."""
    from nurture.adapters.database import LeadRow

    settings = make_settings(database_url=migrated_url)
    secret = settings.require_webhook_secret()
    tag = secrets.token_hex(4)
    app = create_app(settings, client=time_env.client)
    async with asgi_client(app) as client:
        assert (await post_signed(client, secret, "/leads", {"id": f"W-{tag}"})).status_code == 202
        commits = Counter[str]()
        sa_event.listen(app.state.engine.sync_engine, "commit", lambda _c: commits.update(["n"]))
        posts = 30
        answers = await asyncio.gather(
            *(post_signed(client, secret, "/leads", {"id": f"N{n}-{tag}"}) for n in range(posts))
        )
        # Another body: the same bytes signed in the same second would be a replay (200
        # `duplicate`), whichever second the flood ended in.
        again = await post_signed(client, secret, "/leads", {"id": f"N0-{tag}", "source": "again"})

    assert {a.status_code for a in answers} == {202}
    assert again.status_code == 200 and again.json()["status"] == "updated"
    # One transaction of its own per lead (its row), the receipts and marks shared.
    assert commits["n"] < 2 * posts + 2, commits
    engine = make_engine(migrated_url)
    try:
        async with session_factory(engine)() as session:
            rows = (
                await session.scalars(select(LeadRow).where(LeadRow.id.like(f"N%-{tag}")))
            ).all()
    finally:
        await engine.dispose()
    assert len(rows) == posts and all(r.started_at is not None for r in rows)
