"""`POST /leads` and `POST /events`: signatures, validation, idempotency, parked events.

The app runs in-process (httpx's ASGI transport, lifespan included) on a migrated SQLite file;
tests that need a lead's workflow run the real worker on the time-skipping server.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import pytest
from sqlalchemy.exc import OperationalError
from temporalio.client import Client
from web_helpers import asgi_client, post_signed, wait_until
from webhookfixtures import Web, uid

from nurture.activities.crm import outbound_key
from nurture.activities.crm import signature as outbound_signature
from nurture.domain.names import workflow_id
from nurture.services import parked
from nurture.services.intake import Intake
from nurture.settings import Settings
from nurture.web import create_app
from nurture.web.security import (
    SIGNATURE_HEADER,
    SignatureError,
    compute_signature,
    sign,
    verify_signature,
)

# web, stack_web: the app in-process, alone or with a worker (tests/webhookfixtures.py).
pytest_plugins = ["webhookfixtures"]


def event(
    lead_id: str, kind: str = "page.visited", event_id: str | None = None, **data: object
) -> dict:
    return {"id": event_id or uid("evt"), "type": kind, "lead_id": lead_id, "data": data}


# --- signatures -----------------------------------------------------------------------------


def _header(secret: str, body: bytes, case: str) -> dict[str, str]:
    now = int(time.time())
    good = compute_signature(secret, body, now)
    headers = {"Content-Type": "application/json"}
    values = {
        "valid": f"t={now},v1={good}",
        "wrong secret": f"t={now},v1={compute_signature('not-the-secret', body, now)}",
        "old": f"t={now - 301},v1={compute_signature(secret, body, now - 301)}",
        # Well past the 60 s allowance: the request may be handled seconds after `now` on a
        # busy machine (the exact edges are tested with a fixed clock below).
        "future": f"t={now + 600},v1={compute_signature(secret, body, now + 600)}",
        "two v1, one good": f"t={now},v1={'0' * 64},v1={good}",
        "no timestamp": f"v1={good}",
        "garbage": "hello",
        "tampered body": f"t={now},v1={compute_signature(secret, body + b' ', now)}",
    }
    if case != "missing header":
        headers[SIGNATURE_HEADER] = values[case]
    return headers


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("valid", 202),
        ("tampered body", 401),
        ("wrong secret", 401),
        ("old", 401),
        ("future", 401),
        ("two v1, one good", 202),
        ("missing header", 401),
        ("no timestamp", 401),
        ("garbage", 401),
    ],
)
async def test_signature_vectors(web: Web, case: str, status: int) -> None:
    body = json.dumps(event(uid(), event_id="evt-sig")).encode()
    response = await web.client.post(
        "/events", content=body, headers=_header(web.secret, body, case)
    )

    assert response.status_code == status, response.text
    rows = await web.events()
    if status == 202:
        assert [r.id for r in rows] == ["evt-sig"]
    else:
        assert response.json()["detail"]
        assert response.headers["www-authenticate"] == "Nurture-Signature"
        assert rows == []  # refused before anything was parsed or recorded


async def test_lead_webhook_is_signed_too(web: Web) -> None:
    body = json.dumps({"id": uid(), "email": "a@b.example"}).encode()
    response = await web.client.post(
        "/leads", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401
    assert await web.lead(json.loads(body)["id"]) is None


def test_outbound_posts_use_the_scheme_with_their_own_key() -> None:
    body = b'{"id": "e"}'
    now = int(time.time())
    key = outbound_key("s3cret")
    # The CRM verifies our posts with the derived key, exactly as we verify theirs...
    verify_signature(key, outbound_signature("s3cret", body, now), body, now=now)
    # The edges of the window: exactly 300 s old and 60 s ahead still pass.
    verify_signature(key, outbound_signature("s3cret", body, now - 300), body, now=now)
    verify_signature(key, outbound_signature("s3cret", body, now + 60), body, now=now)
    with pytest.raises(SignatureError, match="old"):
        verify_signature(key, outbound_signature("s3cret", body, now - 301), body, now=now)
    with pytest.raises(SignatureError, match="future"):
        verify_signature(key, outbound_signature("s3cret", body, now + 61), body, now=now)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(key, f"t={now},v1={'é' * 64}", body, now=now)
    # ...but one of our posts is no inbound webhook: replayed to us, it does not verify.
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature("s3cret", outbound_signature("s3cret", body, now), body, now=now)


# --- validation -----------------------------------------------------------------------------


async def test_invalid_events_are_refused_naming_the_field(web: Web) -> None:
    lead = uid()
    missing = await web.post("/events", {"type": "page.visited", "lead_id": lead})
    unknown = await web.post("/events", {"id": "e1", "type": "email.teleported", "lead_id": lead})
    no_lead = await web.post("/events", {"id": "e2", "type": "page.visited"})
    not_json = await web.client.post(
        "/events", content=b"{nope", headers={SIGNATURE_HEADER: sign(web.secret, b"{nope")}
    )

    assert missing.status_code == 422
    assert [e["field"] for e in missing.json()["errors"]] == ["id"]
    assert unknown.status_code == 422
    assert [e["field"] for e in unknown.json()["errors"]] == ["type"]
    assert no_lead.status_code == 422
    assert [e["field"] for e in no_lead.json()["errors"]] == ["lead_id"]
    assert not_json.status_code == 422
    assert await web.events() == []


async def test_bodies_no_database_could_store_are_refused(web: Web) -> None:
    lead = uid()
    nul = await web.post("/events", event(lead, note="a\x00b"))
    deep: object = "bottom"
    for _ in range(40):
        deep = [deep]
    nested = await web.post("/events", event(lead, deep=deep))
    number = await web.post("/events", event(lead) | {"occurred_at": 1767225600})
    count = await web.post("/leads", {"id": lead, "employees": "12"})

    assert nul.status_code == 422
    assert nul.json()["errors"][0]["field"] == "data.note"
    assert nested.status_code == 422 and "levels deep" in nested.json()["errors"][0]["msg"]
    assert number.status_code == 422
    assert number.json()["errors"][0]["field"] == "occurred_at"
    assert count.status_code == 422 and count.json()["errors"][0]["field"] == "employees"
    assert await web.events() == []


async def test_unknown_extra_keys_are_ignored(web: Web) -> None:
    payload = event(uid(), event_id="evt-extra") | {"campaign": "spring", "events": "not a batch"}
    response = await web.post("/events", payload)
    assert response.status_code == 202, response.text
    assert response.json()["results"] == [
        {"index": 0, "event_id": "evt-extra", "status": "parked", "detail": None}
    ]


async def test_a_batch_with_a_bad_item_is_refused_whole(web: Web) -> None:
    lead = uid()
    batch = {
        "events": [
            event(lead, event_id="b-0"),
            {"id": "b-1", "type": "nope", "lead_id": lead},
            event(lead, event_id="b-2"),
            {"id": "b-3", "type": "page.visited"},
        ]
    }
    response = await web.post("/events", batch)

    assert response.status_code == 422
    body = response.json()
    assert "1, 3" in body["detail"]
    assert {(e["index"], e["field"]) for e in body["errors"]} == {
        (1, "events[1].type"),
        (3, "events[3].lead_id"),
    }
    assert await web.events() == []


async def test_a_batch_answers_per_item_and_202_when_anything_is_new(web: Web) -> None:
    lead = uid()
    first = await web.post("/events", event(lead, event_id="d-0"))
    assert first.status_code == 202
    response = await web.post(
        "/events", {"events": [event(lead, event_id="d-0"), event(lead, event_id="d-1")]}
    )
    again = await web.post(
        "/events", {"events": [event(lead, event_id="d-0"), event(lead, event_id="d-1")]}
    )

    assert response.status_code == 202
    assert [(r["event_id"], r["status"]) for r in response.json()["results"]] == [
        ("d-0", "duplicate"),
        ("d-1", "parked"),
    ]
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert len(await web.events()) == 2


async def test_invalid_leads_are_refused_naming_the_field(web: Web) -> None:
    no_id = await web.post("/leads", {"email": "a@b.example"})
    bad = await web.post(
        "/leads", {"id": uid(), "email": "not-an-address", "timezone": "Mars/Olympus"}
    )
    not_object = await web.post("/leads", [{"id": uid()}])

    assert no_id.status_code == 422
    assert [e["field"] for e in no_id.json()["errors"]] == ["id"]
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"email", "timezone"}
    assert not_object.status_code == 422


async def test_503_when_nothing_can_be_recorded(time_env) -> None:  # type: ignore[no-untyped-def]
    # Nothing listens on port 1: the database is "down".
    settings = Settings(
        database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none", webhook_secret="s"
    )
    async with asgi_client(create_app(settings, client=time_env.client)) as client:
        response = await post_signed(client, "s", "/events", event(uid()))
        lead = await post_signed(client, "s", "/leads", {"id": uid()})
    assert response.status_code == 503
    assert "nothing was recorded" in response.json()["detail"]
    assert lead.status_code == 503


# --- idempotency and delivery, with the real worker ------------------------------------------


async def _signals(client: Client, lead_id: str, event_id: str) -> int:
    history = await client.get_workflow_handle(workflow_id(lead_id)).fetch_history()
    count = 0
    for item in history.events:
        if item.HasField("workflow_execution_signaled_event_attributes"):
            attrs = item.workflow_execution_signaled_event_attributes
            count += sum(event_id.encode() in p.data for p in attrs.input.payloads)
    return count


async def test_duplicate_event_ids_posted_at_once_have_one_effect(stack_web, time_env) -> None:  # type: ignore[no-untyped-def]
    web, stack = stack_web
    lead = uid()
    created = await web.post(
        "/leads", {"id": lead, "email": f"{lead.lower()}@example.com", "country": "US"}
    )
    assert created.status_code == 202, created.text
    assert created.json()["status"] == "created"
    await stack.until(lead, lambda v: v.step == "pause")

    payload = event(lead, "page.visited", event_id=uid("evt"), url="/blog")
    answers = await asyncio.gather(*(web.post("/events", payload) for _ in range(6)))

    assert sorted(a.status_code for a in answers) == [200] * 5 + [202]
    assert [a.json()["results"][0]["status"] for a in answers].count("delivered") == 1
    assert [r.id for r in await web.events()] == [payload["id"]]
    view = await stack.until(lead, lambda v: v.score == 2)
    assert sum("page.visited" in h.why for h in view.history if h.what.startswith("score")) == 1
    assert await _signals(time_env.client, lead, payload["id"]) == 1


async def test_parked_events_are_delivered_in_order_when_the_lead_is_created(stack_web) -> None:  # type: ignore[no-untyped-def]
    web, stack = stack_web
    lead = uid()
    ids = [uid("evt"), uid("evt")]
    for event_id, kind in zip(ids, ["page.visited", "email.clicked"], strict=True):
        answer = await web.post("/events", event(lead, kind, event_id=event_id, url="/blog"))
        assert answer.status_code == 202
        assert answer.json()["results"][0]["status"] == "parked"
    assert {r.status for r in await web.events()} == {"parked"}

    created = await web.post(
        "/leads", {"id": lead, "email": f"{lead.lower()}@example.com", "country": "US"}
    )

    assert created.status_code == 202, created.text
    assert created.json()["parked_delivered"] == 2
    rows = await web.events()
    assert [(r.id, r.status) for r in rows] == [(ids[0], "delivered"), (ids[1], "delivered")]
    # page.visited (+2) then email.clicked (+5), applied in the order they arrived.
    view = await stack.until(lead, lambda v: v.score == 7)
    scores = [h.why for h in view.history if h.what.startswith("score")]
    assert ids[0] in scores[0] and ids[1] in scores[1]

    again = await web.post("/leads", {"id": lead, "first_name": "Ann"})
    assert again.status_code == 200
    assert again.json()["status"] == "updated"
    assert (await web.lead(lead)).first_name == "Ann"  # type: ignore[union-attr]


async def test_lead_updated_for_an_unknown_lead_creates_it(stack_web) -> None:  # type: ignore[no-untyped-def]
    web, stack = stack_web
    lead = uid()
    clicked = await web.post("/events", event(lead, "email.clicked", event_id=uid("evt")))
    assert clicked.json()["results"][0]["status"] == "parked"

    update = event(
        lead, "lead.updated", email=f"{lead.lower()}@example.com", first_name="Kai", country="US"
    )
    response = await web.post("/events", update)

    assert response.status_code == 202, response.text
    assert response.json()["results"][0]["status"] == "delivered"
    row = await web.lead(lead)
    assert row is not None and row.first_name == "Kai" and row.country == "US"
    assert {r.status for r in await web.events()} == {"delivered"}
    view = await stack.until(lead, lambda v: v.score == 5)
    assert view.stage == "nurturing"

    # A lead.updated for a known lead lands in its row too (emails go to the new address).
    moved = await web.post(
        "/events", event(lead, "lead.updated", email=f"new-{lead.lower()}@example.com")
    )
    assert moved.json()["results"][0]["status"] == "delivered"
    assert (await web.lead(lead)).email == f"new-{lead.lower()}@example.com"  # type: ignore[union-attr]
    await stack.until(lead, lambda v: sum(h.what == "lead updated" for h in v.history) >= 2)

    # Personal data stays out of Temporal, on the parked path too (CONTRACT.md).
    history = await stack.client.get_workflow_handle(workflow_id(lead)).fetch_history()
    # Serialized protobuf keeps payload bytes as they are (JSON would base64 them).
    raw = b"".join(item.SerializeToString() for item in history.events)
    assert f"{lead.lower()}@example.com".encode() not in raw
    assert b"Kai" not in raw
    assert b'"country"' in raw  # the decision fields of the same events did go through


async def test_posting_a_closed_lead_answers_409_naming_its_stage(stack_web) -> None:  # type: ignore[no-untyped-def]
    web, stack = stack_web
    lead = uid()
    assert (
        await web.post("/leads", {"id": lead, "email": f"{lead.lower()}@example.com"})
    ).status_code == 202
    await stack.until(lead, lambda v: v.step == "pause")
    assert (await web.post("/events", event(lead, "lead.do_not_contact"))).status_code == 202

    async def closed() -> bool:
        row = await web.lead(lead)
        return row is not None and row.stage == "closed"

    await wait_until(closed)
    response = await web.post("/leads", {"id": lead, "first_name": "Again"})

    assert response.status_code == 409
    assert response.json()["stage"] == "closed"
    assert "closed" in response.json()["detail"]
    assert (await web.lead(lead)).first_name is None  # type: ignore[union-attr]
    late = await web.post("/events", event(lead, "page.visited"))
    assert late.json()["results"][0]["status"] == "recorded"


async def test_a_lead_started_whose_start_could_not_be_noted_is_taken_not_refused(
    stack_web,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The database stays locked (or goes away) between the start and its note: the lead is
    # recorded and running, so the answer is 202 (503 only when nothing was recorded), and
    # the redelivery sweep notes the start later.
    web, stack = stack_web

    async def locked(self: Intake, lead_id: str) -> bool:
        raise OperationalError("UPDATE leads", {}, Exception("database is locked"))

    monkeypatch.setattr(Intake, "mark_started", locked)
    lead = {"id": uid("MARK"), "email": "mark@example.com", "country": "US"}
    answer = await web.post("/leads", lead)
    stack.started.add(lead["id"])
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "created"
    view = await stack.until(lead["id"], lambda v: bool(v.history))
    assert view.stage == "nurturing"
    row = await web.lead(lead["id"])
    assert row is not None and row.started_at is None

    monkeypatch.undo()
    monkeypatch.setattr(parked, "START_GRACE", timedelta(0))
    # The sweep (here called directly; the web app's own may run it first) notes the start.
    # The sweep (called here as the web app calls it, again and again) notes the start; a
    # pass may miss a row that the lead's own activities touch at that very moment.
    for _ in range(100):
        await parked.start_waiting(stack.intake)
        row = await web.lead(lead["id"])
        if row is not None and row.started_at is not None:
            break
        await asyncio.sleep(0.05)
    row = await web.lead(lead["id"])
    assert row is not None and row.started_at is not None
