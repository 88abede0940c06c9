"""The CRM adapters, `POST /webhooks/hubspot` and `POST /webhooks/salesforce`, on the vendors'
payloads (tests/fixtures/crm, sources in its README): signatures, the organization check, the
SOAP acknowledgement, the mapping to events, and the record-then-signal path they share with
`POST /events` (recorded, deduplicated, delivered once; a whole lead journey on the worker).
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from web_helpers import asgi_client
from webhookfixtures import Web

from nurture.adapters.database import CrmLink, CrmUnmatched, EventRow, make_engine, session_factory
from nurture.adapters.schema import migrate
from nurture.services import hubspot, salesforce
from nurture.web import create_app

pytest_plugins = ["webhookfixtures"]

FIXTURES = Path(__file__).parent / "fixtures" / "crm"
CLIENT_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
ORG_ID = "00D5e000000KQ2eEAG"
HUBSPOT_URL = "http://localhost:8000/webhooks/hubspot"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def hubspot_items(name: str, **ids: int) -> list[dict[str, Any]]:
    """A recorded HubSpot body, its record ids replaced (``5101=...``): the time-skipping
    server is shared by the session, so every test's leads must be its own."""
    text = fixture(name).decode()
    for old, new in ids.items():
        text = text.replace(old.lstrip("_"), str(new))
    return json.loads(text)  # type: ignore[no-any-return]


def new_id() -> int:
    return secrets.randbelow(10**11) + 10**11


async def post_hubspot(
    client: httpx.AsyncClient,
    body: bytes | list[Any],
    *,
    secret: str = CLIENT_SECRET,
    timestamp: int | None = None,
    url: str = HUBSPOT_URL,
) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    stamp = str(int(time.time() * 1000) if timestamp is None else timestamp)
    headers = {
        "Content-Type": "application/json",
        hubspot.SIGNATURE_HEADER: hubspot.sign(secret, "POST", url, raw, stamp),
        hubspot.TIMESTAMP_HEADER: stamp,
    }
    return await client.post("/webhooks/hubspot", content=raw, headers=headers)


async def post_salesforce(
    client: httpx.AsyncClient, body: bytes, query: str = ""
) -> httpx.Response:
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    return await client.post(f"/webhooks/salesforce{query}", content=body, headers=headers)


async def rows(web: Web, model: type) -> list[Any]:
    engine = make_engine(web.settings.database_url)
    try:
        async with session_factory(engine)() as session:
            return list((await session.scalars(select(model))).all())
    finally:
        await engine.dispose()


@pytest.fixture
async def crm_web(make_settings, time_env):  # type: ignore[no-untyped-def]
    """The app with both adapters configured (no worker)."""
    settings = make_settings(hubspot_client_secret=CLIENT_SECRET, salesforce_org_id=ORG_ID)
    await migrate(settings.database_url)
    async with asgi_client(create_app(settings, client=time_env.client)) as client:
        yield Web(client, settings, settings.require_webhook_secret())


@pytest.fixture
async def crm_stack(make_settings, time_env):  # type: ignore[no-untyped-def]
    """The app with both adapters plus a real worker on the time-skipping server."""
    from harness import running

    settings = make_settings(hubspot_client_secret=CLIENT_SECRET, salesforce_org_id=ORG_ID)
    async with (
        running(time_env.client, settings) as stack,
        asgi_client(create_app(settings, client=time_env.client)) as client,
    ):
        yield Web(client, settings, settings.require_webhook_secret()), stack


# --- HubSpot: the v3 signature ---------------------------------------------------------------


def test_hubspot_signature_known_answer() -> None:
    # The vector of HubSpot's own Python client (tests/spec/utils/test_signature.py).
    signature = hubspot.sign(
        CLIENT_SECRET,
        "POST",
        "https://www.example.com/webhook_uri",
        b"{'example_field':'example_value'}",
        "15000000",
    )
    assert signature == "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="


def test_hubspot_signs_the_uri_with_its_listed_encodings_decoded() -> None:
    encoded = "https://x.example/webhooks/hubspot?a=b%3Ac%2Cd%20e%40f"
    assert hubspot.signature_uri(encoded) == "https://x.example/webhooks/hubspot?a=b:c,d%20e@f"
    body, stamp = b"[]", "1764756000000"
    now = int(stamp)
    given = hubspot.sign(CLIENT_SECRET, "POST", encoded, body, stamp)
    decoded = "https://x.example/webhooks/hubspot?a=b:c,d%20e@f"
    assert hubspot.verify(CLIENT_SECRET, "POST", [decoded], body, given, stamp, now_ms=now) == now
    with pytest.raises(hubspot.SignatureError, match="5 minutes old"):
        hubspot.verify(CLIENT_SECRET, "POST", [decoded], body, given, stamp, now_ms=now + 300_001)
    with pytest.raises(hubspot.SignatureError, match="does not match"):
        hubspot.verify(CLIENT_SECRET, "POST", [decoded], body + b" ", given, stamp, now_ms=now)


@pytest.mark.parametrize(
    ("case", "status", "detail"),
    [
        ("good", 202, None),
        ("stale", 401, "more than 5 minutes old"),
        ("future", 401, "in the future"),
        ("wrong secret", 401, "does not match"),
        ("no signature", 401, "missing X-HubSpot-Signature-v3"),
        ("seconds, not ms", 401, "more than 5 minutes old"),
    ],
)
async def test_hubspot_requests_are_verified(crm_web: Web, case: str, status: int, detail) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps(hubspot_items("hubspot_docs_example.json", _1246978=new_id())).encode()
    now = int(time.time() * 1000)
    stamp = {"stale": now - 301_000, "future": now + 120_000, "seconds, not ms": now // 1000}
    if case == "no signature":
        response = await crm_web.client.post("/webhooks/hubspot", content=body)
    else:
        response = await post_hubspot(
            crm_web.client,
            body,
            secret="other" if case == "wrong secret" else CLIENT_SECRET,
            timestamp=stamp.get(case),
        )
    assert response.status_code == status, response.text
    if detail:
        assert detail in response.json()["detail"]
        assert await rows(crm_web, EventRow) == []


async def test_hubspot_behind_a_proxy_signs_our_public_url(make_settings, time_env) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(
        hubspot_client_secret=CLIENT_SECRET, public_url="https://nurture.acme.example"
    )
    await migrate(settings.database_url)
    body = hubspot_items("hubspot_docs_example.json", _1246978=new_id())
    async with asgi_client(create_app(settings, client=time_env.client)) as client:
        public = "https://nurture.acme.example/webhooks/hubspot"
        assert (await post_hubspot(client, body, url=public)).status_code == 202
        other = "https://elsewhere.example/webhooks/hubspot"
        assert (await post_hubspot(client, body, url=other)).status_code == 401


async def test_an_adapter_that_is_not_configured_answers_503(web: Web) -> None:
    response = await post_hubspot(web.client, hubspot_items("hubspot_docs_example.json"))
    assert response.status_code == 503
    assert "NURTURE_HUBSPOT_CLIENT_SECRET" in response.json()["detail"]
    response = await post_salesforce(web.client, fixture("salesforce_lead.xml"))
    assert response.status_code == 503
    assert "NURTURE_SALESFORCE_ORG_ID" in response.text and "<faultcode>" in response.text


# --- HubSpot: the mapping, on the documentation's example --------------------------------


async def test_the_hubspot_documentation_example_is_recorded_once(crm_web: Web) -> None:
    first, second = new_id(), new_id()
    body = hubspot_items("hubspot_docs_example.json", _1246965=first, _1246978=second)

    response = await post_hubspot(crm_web.client, body)

    assert response.status_code == 202, response.text
    answer = response.json()
    assert [(e["item"], e["type"], e["lead_id"]) for e in answer["events"]] == [
        (0, "lead.updated", str(first)),
        (1, "lead.updated", str(second)),
    ]
    events = {e.lead_id: e for e in await rows(crm_web, EventRow)}
    assert events[str(first)].data == {"fields": {"lifecyclestage": "subscriber"}}
    assert events[str(first)].occurred_at.isoformat().startswith("2016-05-02T19:11:47.945")
    # A lead.updated for a lead we do not know creates it (the contact's record id).
    assert await crm_web.lead(str(second)) is not None

    # HubSpot sends it again (a retry: a new timestamp): every event is a duplicate.
    again = await post_hubspot(crm_web.client, body)
    assert again.status_code == 200
    assert {e["status"] for e in again.json()["events"]} == {"duplicate"}
    assert len(await rows(crm_web, EventRow)) == 2


async def test_a_replayed_hubspot_request_has_no_second_effect(crm_web: Web) -> None:
    body = json.dumps(hubspot_items("hubspot_docs_example.json", _1246978=new_id())).encode()
    stamp = int(time.time() * 1000)
    assert (await post_hubspot(crm_web.client, body, timestamp=stamp)).status_code == 202
    replay = await post_hubspot(crm_web.client, body, timestamp=stamp)
    assert replay.status_code == 200
    assert replay.json()["status"] == "duplicate"


def test_contact_properties_map_to_lead_fields_and_events() -> None:
    mapped = hubspot.map_notifications(hubspot_items("hubspot_contact_journey.json"))
    assert mapped.problems == [] and mapped.ignored == []
    made = [(e.event["type"], e.event["data"]) for e in mapped.events]
    assert made == [
        ("lead.updated", {}),
        ("lead.updated", {"email": "kai.tanaka@initech.example"}),
        ("lead.updated", {"first_name": "Kai"}),
        ("lead.updated", {"country": "US"}),
        ("lead.updated", {"employees": 1200}),
        ("form.submitted", {"form": "Pricing guide download"}),
        ("meeting.booked", {"booked": "1764759600000"}),
    ]
    assert {e.event["lead_id"] for e in mapped.events} == {"5101"}
    assert len({e.event["id"] for e in mapped.events}) == 7
    assert hubspot.contact_field("country", "Japan") == ("fields.country_name", "Japan")
    assert hubspot.contact_field("hs_timezone", "america_slash_new_york") == (
        "timezone",
        "America/New_York",
    )
    assert hubspot.contact_field("numemployees", "25-50") == ("fields.numemployees", "25-50")


def test_a_lost_deal_carries_its_reason_from_the_same_request() -> None:
    mapped = hubspot.map_notifications(hubspot_items("hubspot_deal_lost.json"))
    [outcome] = mapped.outcomes
    assert (outcome.type, outcome.object_id, outcome.data) == (
        "opportunity.lost",
        "8801",
        {"deal": "8801", "reason": "Competitor"},
    )
    assert [i.index for i in mapped.ignored] == [1]  # the reason itself makes no event
    [link] = hubspot.map_notifications(hubspot_items("hubspot_deal_association.json")).links
    assert (link.object_type, link.object_id, link.lead_id, link.removed) == (
        "deal",
        "8801",
        "5101",
        False,
    )


async def test_bad_hubspot_input_is_refused_whole_naming_the_field(crm_web: Web) -> None:
    lead = new_id()
    body = hubspot_items("hubspot_contact_journey.json", _5101=lead)[:3]
    body[1]["propertyValue"] = "Kai <kai@initech.example>, eve@evil.example"
    del body[2]["occurredAt"]

    response = await post_hubspot(crm_web.client, body)

    assert response.status_code == 422, response.text
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"[1].propertyValue", "[2].occurredAt"}
    assert "nothing recorded" in response.json()["detail"]
    assert await rows(crm_web, EventRow) == []
    assert await crm_web.lead(str(lead)) is None

    not_a_list = await post_hubspot(crm_web.client, {"objectId": 1})  # type: ignore[arg-type]
    assert not_a_list.status_code == 422


async def test_a_deal_outcome_waits_for_its_contact_link(crm_web: Web) -> None:
    contact, deal = new_id(), new_id()
    lost = hubspot_items("hubspot_deal_lost.json", _8801=deal)
    response = await post_hubspot(crm_web.client, lost)
    assert response.status_code == 202, response.text
    assert [s["status"] for s in response.json()["skipped"]] == ["ignored", "unmatched"]
    assert [u.object_id for u in await rows(crm_web, CrmUnmatched)] == [str(deal)]
    assert await rows(crm_web, EventRow) == []

    link = hubspot_items("hubspot_deal_association.json", _8801=deal, _5101=contact)
    response = await post_hubspot(crm_web.client, link)

    assert response.status_code == 202, response.text
    [event] = response.json()["events"]
    assert (event["type"], event["lead_id"]) == ("opportunity.lost", str(contact))
    assert await rows(crm_web, CrmUnmatched) == []
    [row] = await rows(crm_web, CrmLink)
    assert (row.object_id, row.lead_id) == (str(deal), str(contact))
    [stored] = await rows(crm_web, EventRow)
    assert stored.data == {"deal": str(deal), "reason": "Competitor"}

    # The same loss sent again finds its event: no second one.
    again = await post_hubspot(crm_web.client, lost)
    assert {e["status"] for e in again.json()["events"]} == {"duplicate"}


async def test_a_hubspot_journey_reaches_sales_and_is_lost_with_its_reason(crm_stack) -> None:  # type: ignore[no-untyped-def]
    web, stack = crm_stack
    contact, deal = new_id(), new_id()
    journey = hubspot_items("hubspot_contact_journey.json", _5101=contact)

    response = await post_hubspot(web.client, journey)

    assert response.status_code == 202, response.text
    lead = str(contact)
    row = await web.lead(lead)
    assert row is not None
    assert (row.email, row.first_name, row.country, row.employees) == (
        "kai.tanaka@initech.example",
        "Kai",
        "US",
        1200,
    )
    # The meeting booked is a hand-raiser (the playbook): straight to sales.
    await stack.settle(lead, "sql")

    link = hubspot_items("hubspot_deal_association.json", _8801=deal, _5101=contact)
    assert (await post_hubspot(web.client, link)).status_code == 202
    lost = hubspot_items("hubspot_deal_lost.json", _8801=deal)
    response = await post_hubspot(web.client, lost)
    assert [e["status"] for e in response.json()["events"]] == ["delivered"]

    view = await stack.settle(lead, "lost")
    assert any("Competitor" in (h.why or "") or "competitor" in (h.why or "") for h in view.history)


# --- Salesforce ------------------------------------------------------------------------------


async def test_a_salesforce_lead_message_is_acknowledged_and_recorded(crm_web: Web) -> None:
    response = await post_salesforce(crm_web.client, fixture("salesforce_lead.xml"))

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    ack = response.text
    assert "<notificationsResponse" in ack and "<Ack>true</Ack>" in ack
    assert 'xmlns="http://soap.sforce.com/2005/09/outbound"' in ack
    [event] = await rows(crm_web, EventRow)
    assert (event.id, event.type, event.lead_id) == (
        "salesforce-04l5e00000Gx7QzAAJ",
        "lead.updated",
        "00Q5e00000AbCdEEAV",
    )
    lead = await crm_web.lead("00Q5e00000AbCdEEAV")
    assert lead is not None
    assert (lead.email, lead.company, lead.country, lead.employees, lead.source) == (
        "mia.jones@initech.example",
        "Initech",
        "US",
        2500,
        "Webinar",
    )
    assert lead.fields == {"Rating": "Hot", "Status": "Working - Contacted"}

    # Salesforce sends a message again until acknowledged: acknowledged, no second event.
    again = await post_salesforce(crm_web.client, fixture("salesforce_lead.xml"))
    assert again.status_code == 200 and "<Ack>true</Ack>" in again.text
    assert len(await rows(crm_web, EventRow)) == 1


async def test_another_organization_is_refused(crm_web: Web) -> None:
    body = fixture("salesforce_lead.xml").replace(ORG_ID.encode(), b"00D000000000001AAA")
    response = await post_salesforce(crm_web.client, body)
    assert response.status_code == 403
    assert "<soapenv:Fault>" in response.text and "OrganizationId" in response.text
    assert "<Ack>" not in response.text
    assert await rows(crm_web, EventRow) == []
    # The 15-character form of our own id is the same organization.
    assert salesforce.same_org(ORG_ID[:15], ORG_ID) and salesforce.same_org(ORG_ID, ORG_ID[:15])


async def test_hostile_or_broken_xml_is_refused(crm_web: Web) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b"<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'>"
        b"<soapenv:Body>&lol2;</soapenv:Body></soapenv:Envelope>"
    )
    for body in (bomb, b"<not xml", b"<a/>"):
        response = await post_salesforce(crm_web.client, body)
        assert response.status_code == 400, response.text
        assert "<faultcode>soapenv:Client</faultcode>" in response.text


async def test_bad_salesforce_fields_are_refused_naming_them(crm_web: Web) -> None:
    body = fixture("salesforce_lead.xml")
    body = body.replace(b"mia.jones@initech.example", b"not an address")
    body = body.replace(b"<sf:NumberOfEmployees>2500", b"<sf:NumberOfEmployees>lots")
    response = await post_salesforce(crm_web.client, body)
    assert response.status_code == 422
    assert "Notification[0].sObject.Email" in response.text
    assert "Notification[0].sObject.NumberOfEmployees" in response.text
    assert await rows(crm_web, EventRow) == []


async def test_a_token_guards_the_salesforce_endpoint_when_set(make_settings, time_env) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(salesforce_org_id=ORG_ID, salesforce_token="s3cret-token")
    await migrate(settings.database_url)
    async with asgi_client(create_app(settings, client=time_env.client)) as client:
        body = fixture("salesforce_lead.xml")
        assert (await post_salesforce(client, body)).status_code == 401
        assert (await post_salesforce(client, body, "?token=wrong")).status_code == 401
        assert (await post_salesforce(client, body, "?token=s3cret-token")).status_code == 200


async def test_a_lost_opportunity_reaches_the_lead_it_was_converted_from(crm_web: Web) -> None:
    lost = fixture("salesforce_opportunity_lost.xml")
    first = await post_salesforce(crm_web.client, lost)
    assert first.status_code == 200 and "<Ack>true</Ack>" in first.text
    assert [u.type for u in await rows(crm_web, CrmUnmatched)] == ["opportunity.lost"]

    converted = await post_salesforce(crm_web.client, fixture("salesforce_lead_converted.xml"))
    assert converted.status_code == 200, converted.text

    events = {e.type: e for e in await rows(crm_web, EventRow)}
    loss = events["opportunity.lost"]
    assert loss.lead_id == "00Q5e00000AbCdEEAV"
    assert loss.data == {"opportunity": "0065e00000XyZ12AAB", "reason": "No budget"}
    assert await rows(crm_web, CrmUnmatched) == []

    # Salesforce sends the loss again: acknowledged, nothing new.
    assert (await post_salesforce(crm_web.client, lost)).status_code == 200
    assert len([e for e in await rows(crm_web, EventRow) if e.type == "opportunity.lost"]) == 1


async def test_ops_see_failed_crm_posts_and_outcomes_waiting_for_their_lead(crm_web: Web) -> None:
    from web_helpers import add_user, log_in

    from nurture.adapters.database import CrmPost

    deal = new_id()
    await post_hubspot(crm_web.client, hubspot_items("hubspot_deal_lost.json", _8801=deal))
    engine = make_engine(crm_web.settings.database_url)
    try:
        sessions = session_factory(engine)
        async with sessions() as session:
            session.add(
                CrmPost(
                    key="stage-L-9-0-sql-1",
                    lead_id="L-9",
                    kind="lead.stage_changed",
                    payload={"id": "stage-L-9-0-sql-1"},
                    status="failed",
                    attempts=12,
                    last_error="CRM webhook refused the notification: 400 bad field",
                )  # fmt: skip
            )
            await session.commit()
        await add_user(sessions, "ops-1", "ops")
    finally:
        await engine.dispose()

    await log_in(crm_web.client, "ops-1")
    page = await crm_web.client.get("/ops")

    assert page.status_code == 200
    assert "CRM posts that failed" in page.text
    assert "400 bad field" in page.text and "stage-L-9-0-sql-1" in page.text
    assert "nurture crm retry --all-failed" in page.text
    assert f"deal {deal}" in page.text and "opportunity.lost" in page.text


async def test_ops_list_and_resend_failed_crm_posts_from_the_cli(tmp_path: Path) -> None:
    import asyncio
    import os
    import sys

    from nurture.adapters.database import CrmPost

    database = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    await migrate(database)
    engine = make_engine(database)
    try:
        async with session_factory(engine)() as session:
            session.add_all(
                [
                    CrmPost(key="tossup-L-1|0", lead_id="L-1", kind="lead.tossed_up",
                            payload={"id": "tossup-L-1|0"}, status="failed", attempts=12,
                            last_error="CRM webhook answered 503"),
                    CrmPost(key="tossup-L-2|0", lead_id="L-2", kind="lead.tossed_up",
                            payload={"id": "tossup-L-2|0"}, status="sent", attempts=1),
                ]
            )  # fmt: skip
            await session.commit()
    finally:
        await engine.dispose()
    env = {**os.environ, "NURTURE_DATABASE_URL": database, "NURTURE_WEBHOOK_SECRET": "x" * 32}
    root = Path(__file__).resolve().parent.parent

    async def cli(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(root / "starter.py"), "crm", *args, env=env, cwd=str(tmp_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        return proc.returncode or 0, out.decode(), err.decode()

    code, out, err = await cli("posts", "--status", "failed", "--json")
    assert code == 0, err
    [failed] = json.loads(out)
    assert (failed["key"], failed["attempts"], failed["last_error"]) == (
        "tossup-L-1|0",
        12,
        "CRM webhook answered 503",
    )
    code, out, err = await cli("retry", "--all-failed")
    assert (code, out.strip()) == (0, "1 CRM post(s) queued again"), err
    code, out, _ = await cli("posts", "--status", "pending", "--json")
    assert [(p["key"], p["attempts"]) for p in json.loads(out)] == [("tossup-L-1|0", 0)]
    code, _, err = await cli("retry", "999")
    assert code == 1 and "no failed CRM post with id 999" in err


async def test_notifications_the_product_does_not_use_are_answered_and_ignored(
    crm_web: Web,
) -> None:
    body = [
        {"eventId": 1, "subscriptionId": 9, "portalId": 62515, "appId": 54321,
         "occurredAt": 1764756000000, "subscriptionType": "company.creation",
         "attemptNumber": 0, "objectId": 42, "changeSource": "CRM_UI"},
        {"eventId": 2, "subscriptionId": 9, "portalId": 62515, "appId": 54321,
         "occurredAt": 1764756000000, "subscriptionType": "deal.propertyChange",
         "attemptNumber": 0, "objectId": 43, "propertyName": "dealstage",
         "propertyValue": "appointmentscheduled", "changeSource": "CRM_UI"},
    ]  # fmt: skip
    response = await post_hubspot(crm_web.client, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "accepted" and answer["events"] == []
    assert [s["status"] for s in answer["skipped"]] == ["ignored", "ignored"]
    assert await rows(crm_web, EventRow) == []
