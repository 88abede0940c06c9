"""Hostile input at `POST /leads` and `POST /events`: nothing wedges, nothing is lost, an
unsubscribe always holds.

The app runs in-process on a migrated SQLite file; the tests that need a lead's workflow run
the real worker on the time-skipping server and the aiosmtpd sink.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from harness import search_attributes
from temporalio.client import Client
from webhookfixtures import Web, uid

from nurture.adapters.database import EventRow, LeadRow, Suppression, make_engine, session_factory
from nurture.domain.events import Event
from nurture.domain.names import SIGNAL_EVENT, workflow_id
from nurture.services.optouts import unsubscribe_address
from nurture.web.security import SIGNATURE_HEADER, sign


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


# web, stack_web: the app in-process, alone or with a worker (tests/webhookfixtures.py).
pytest_plugins = ["webhookfixtures"]


def fields_named(response: httpx.Response) -> list[str]:
    return [e["field"] for e in response.json()["errors"]]


async def failed_workflow_tasks(client: Client, lead_id: str) -> list[str]:
    """The causes of every failed workflow task in the lead's current run, load aside.

    The SDK's deadlock detector fails a task that holds the CPU for 2 s without yielding,
    and Temporal retries it: on a 2-core machine also running other suites, a task's first
    run (the sandbox imports the workflow's modules) can take that long. That says how busy
    the machine was, not what the input did, so it is left out.
    """
    history = await client.get_workflow_handle(workflow_id(lead_id)).fetch_history()
    return [
        message
        for item in history.events
        if item.HasField("workflow_task_failed_event_attributes")
        and not (message := item.workflow_task_failed_event_attributes.failure.message).startswith(
            DEADLOCK_DETECTED
        )
    ]


DEADLOCK_DETECTED = "[TMPRL1101]"


# --- event times ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("occurred_at", "bound"),
    [
        pytest.param("9999-12-31T23:59:59Z", "in the future", id="year-9999"),
        pytest.param("3000-01-01T00:00:00Z", "in the future", id="year-3000"),
        pytest.param("0001-01-01T00:00:00Z", "2000-01-01", id="year-1"),
        pytest.param("1970-01-01T00:00:00Z", "2000-01-01", id="unix-epoch"),
        pytest.param("1999-12-31T23:59:59+00:00", "2000-01-01", id="just-before-2000"),
        pytest.param("9999-12-31T23:59:59-14:00", "", id="overflows-in-utc"),
    ],
)
async def test_event_times_out_of_bounds_are_refused(web: Web, occurred_at: str, bound: str):
    lead = uid("DT")
    response = await web.post(
        "/events",
        {"id": uid("dt"), "type": "email.clicked", "lead_id": lead, "occurred_at": occurred_at},
    )

    assert response.status_code == 422, response.text
    assert fields_named(response) == ["occurred_at"]
    assert bound in response.json()["errors"][0]["msg"]
    assert await web.count(EventRow) == 0


async def test_event_times_a_little_ahead_or_without_a_zone_are_taken(web: Web) -> None:
    lead = uid("DT")
    now = datetime.now(UTC)
    ahead = await web.post(
        "/events",
        {"id": uid("dt"), "type": "page.visited", "lead_id": lead,
         "occurred_at": iso(now + timedelta(hours=23))},
    )  # fmt: skip
    too_far = await web.post(
        "/events",
        {"id": uid("dt"), "type": "page.visited", "lead_id": lead,
         "occurred_at": iso(now + timedelta(hours=25))},
    )  # fmt: skip
    naive = await web.post(
        "/events",
        {"id": "dt-naive", "type": "page.visited", "lead_id": lead,
         "occurred_at": "2026-01-05T10:00:00"},
    )  # fmt: skip

    assert ahead.status_code == 202, ahead.text
    assert too_far.status_code == 422
    assert "24 hours" in too_far.json()["errors"][0]["msg"]
    assert naive.status_code == 202, naive.text
    engine = make_engine(web.settings.database_url)
    try:
        async with session_factory(engine)() as session:
            row = await session.get(EventRow, "dt-naive")
    finally:
        await engine.dispose()
    # A time without a zone is read as UTC (the zone of every stored timestamp).
    assert row is not None and row.occurred_at == datetime(2026, 1, 5, 10, tzinfo=UTC)


async def test_a_lead_survives_events_from_any_year(stack_web) -> None:  # type: ignore[no-untyped-def]
    """Even an event that never passed the web's checks cannot wedge the lead's workflow."""
    web, stack = stack_web
    lead = uid("DT-FUT")
    created = await web.post("/leads", {"id": lead, "country": "US"})
    assert created.status_code == 202, created.text
    stack.started.add(lead)
    await stack.until(lead, lambda v: v.step == "pause" or v.step == "hello")
    handle = stack.client.get_workflow_handle(workflow_id(lead))
    for year, event_id in ((9999, "dt-9999"), (1, "dt-0001"), (3000, "dt-3000")):
        await handle.signal(
            SIGNAL_EVENT,
            Event(
                id=event_id,
                type="email.clicked",
                lead_id=lead,
                occurred_at=datetime(
                    year, 12 if year > 1 else 1, 31 if year > 1 else 1, tzinfo=UTC
                ),
            ),
        )
        view = await stack.until(lead, lambda v, e=event_id: any(e in h.why for h in v.history))
        assert view.score >= 0
    await stack.until(lead, lambda v: v.score == 15)
    assert await failed_workflow_tasks(stack.client, lead) == []


# --- field limits -----------------------------------------------------------------------------

LONGEST_EMAIL = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 53 + ".example"
assert len(LONGEST_EMAIL) == 254


@pytest.mark.parametrize(
    ("field", "at_limit", "over"),
    [
        ("first_name", "N" * 200, "N" * 201),
        ("last_name", "名" * 200, "名" * 201),
        ("company", "C" * 300, "C" * 301),
        ("title", "T" * 300, "T" * 301),
        ("phone", "+" + "1" * 49, "+" + "1" * 50),
        ("email", LONGEST_EMAIL, "a" + LONGEST_EMAIL),
        ("industry", "i" * 200, "i" * 201),
        ("source", "s" * 200, "s" * 2049),
        ("timezone", "America/Argentina/ComodRivadavia", "Mars/Olympus"),
        ("country", "jp", "JPN"),
    ],
)
async def test_each_lead_field_has_a_limit_named_when_broken(
    web: Web, field: str, at_limit: str, over: str
) -> None:
    taken = await web.post("/leads", {"id": uid(), field: at_limit})
    lead = uid()
    refused = await web.post("/leads", {"id": lead, field: over})

    assert taken.status_code == 202, taken.text
    assert refused.status_code == 422, refused.text
    assert fields_named(refused) == [field]
    assert await web.lead(lead) is None  # refused before anything was written


async def test_a_megabyte_first_name_is_refused(web: Web) -> None:
    lead = uid()
    response = await web.post("/leads", {"id": lead, "first_name": "A" * 1_000_000})

    assert response.status_code == 422
    assert fields_named(response) == ["first_name"]
    assert "200" in response.json()["errors"][0]["msg"]
    assert await web.lead(lead) is None


async def test_free_fields_are_bounded_in_number_and_size(web: Web) -> None:
    many = {"id": uid(), **{f"field_{n}": n for n in range(51)}}
    big = {"id": uid(), "notes": "x" * 2_049}
    long_key = {"id": uid(), "fields": {"k" * 101: 1}}
    fine = {"id": uid(), "notes": "x" * 2_000, **{f"field_{n}": n for n in range(49)}}

    for body, field in ((many, "fields"), (big, "fields.notes"), (long_key, "fields")):
        response = await web.post("/leads", body)
        assert response.status_code == 422, response.text
        assert fields_named(response)[0].startswith(field)
    assert (await web.post("/leads", fine)).status_code == 202
    row = await web.lead(fine["id"])
    assert row is not None and len(row.fields) == 50


def nested(depth: int) -> object:
    value: object = "bottom"
    for _ in range(depth):
        value = {"level": value}
    return value


@pytest.mark.parametrize(
    ("data", "why"),
    [
        pytest.param({"notes": "n" * 40_000}, "32768 bytes", id="too-large"),
        pytest.param({"form": nested(8)}, "levels deep", id="too-deep"),
        pytest.param({"url": "/p?" + "q" * 2_048}, "url: at most 2048", id="long-url"),
        pytest.param({"step": ["hello", "pause"]}, "step: a single value", id="step-list"),
        pytest.param({"reason": "r" * 201}, "reason: at most 200", id="long-reason"),
    ],
)
async def test_event_data_is_bounded(web: Web, data: dict, why: str) -> None:
    response = await web.post(
        "/events", {"id": uid("e"), "type": "page.visited", "lead_id": uid(), "data": data}
    )

    assert response.status_code == 422, response.text
    assert fields_named(response) == ["data"]
    assert why in response.json()["errors"][0]["msg"]
    assert await web.count(EventRow) == 0


def test_the_data_limits_cover_every_key_the_workflow_sees() -> None:
    from nurture.domain.events import DECISION_DATA_LIMITS
    from nurture.services.intake import WORKFLOW_DATA_KEYS

    assert set(DECISION_DATA_LIMITS) == WORKFLOW_DATA_KEYS


async def test_event_data_within_its_limits_is_taken(web: Web) -> None:
    data = {"notes": "n" * 30_000, "deep": nested(7), "url": "/" + "u" * 2_047}
    response = await web.post(
        "/events", {"id": uid("e"), "type": "page.visited", "lead_id": uid(), "data": data}
    )
    assert response.status_code == 202, response.text


async def test_a_source_at_its_limit_fits_the_search_attribute(stack_web) -> None:  # type: ignore[no-untyped-def]
    """200 four-byte characters: 800 bytes, inside the 2,048 bytes of a Keyword."""
    web, stack = stack_web
    lead = uid()
    source = "🚀" * 200
    response = await web.post("/leads", {"id": lead, "source": source, "industry": "工" * 200})
    assert response.status_code == 202, response.text
    stack.started.add(lead)

    await stack.until(lead, lambda v: v.step == "pause")
    attributes = await search_attributes(stack.client, lead)
    assert attributes["LeadSource"] == source
    assert await failed_workflow_tasks(stack.client, lead) == []


# --- one address, and an unsubscribe that holds --------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("Sup <sup@supp.example.com>", id="display-name"),
        pytest.param("<sup@supp.example.com>", id="angle-brackets"),
        pytest.param("Evil <evil@attacker.example>, other@x.example", id="list"),
        pytest.param("sup@supp.example.com, other@x.example", id="bare-list"),
        pytest.param("sup@supp.example.com\r\nBcc: all@x.example", id="crlf"),
        pytest.param("sup@supp.example.com\n", id="trailing-newline"),
    ],
)
async def test_an_email_is_one_bare_address(web: Web, address: str) -> None:
    lead = uid()
    posted = await web.post("/leads", {"id": lead, "email": address})
    updated = await web.post(
        "/events",
        {"id": uid("e"), "type": "lead.updated", "lead_id": lead, "data": {"email": address}},
    )

    assert posted.status_code == 422, posted.text
    assert fields_named(posted) == ["email"]
    assert updated.status_code == 422, updated.text
    assert fields_named(updated) == ["data.email"]
    assert await web.lead(lead) is None and await web.count(EventRow) == 0


async def test_addresses_are_stored_in_one_spelling(web: Web) -> None:
    lead = uid()
    assert (
        await web.post("/leads", {"id": lead, "email": " Sup@SUPP.Example.COM "})
    ).status_code == 202
    assert (await web.lead(lead)).email == "sup@supp.example.com"  # type: ignore[union-attr]


async def test_unsubscribing_a_row_stored_with_a_display_name_suppresses_the_address(
    web: Web,
) -> None:
    engine = make_engine(web.settings.database_url)
    sessions = session_factory(engine)
    try:
        async with sessions() as session:
            session.add(LeadRow(id="OLD-1", email="Sup <sup@supp.example.com>", fields={}))
            session.add(LeadRow(id="NEW-1", email="sup@supp.example.com", fields={}))
            await session.commit()

        others = await unsubscribe_address(sessions, "OLD-1", "unsubscribed", datetime.now(UTC))

        assert others == ["NEW-1"]
        async with sessions() as session:
            assert await session.get(Suppression, "sup@supp.example.com") is not None
            assert (await session.get(LeadRow, "NEW-1")).unsubscribed  # type: ignore[union-attr]
    finally:
        await engine.dispose()


async def test_after_an_unsubscribe_no_spelling_of_the_address_is_mailed(
    stack_web, smtp_sink
) -> None:  # type: ignore[no-untyped-def]
    web, stack = stack_web
    first = uid("SUP")
    assert (
        await web.post("/leads", {"id": first, "email": "sup@supp.example.com"})
    ).status_code == 202
    stack.started.add(first)
    await stack.until(first, lambda v: v.step == "pause")
    assert len(smtp_sink.messages) == 1
    unsubscribed = await web.post(
        "/events", {"id": uid("e"), "type": "lead.unsubscribed", "lead_id": first}
    )
    assert unsubscribed.status_code == 202

    refused = [
        await web.post("/leads", {"id": uid("SUP"), "email": spelling})
        for spelling in ("Sup <sup@supp.example.com>", "<sup@supp.example.com>")
    ]
    again = uid("SUP")
    taken = await web.post("/leads", {"id": again, "email": "SUP@Supp.Example.com"})
    stack.started.add(again)

    assert [r.status_code for r in refused] == [422, 422]
    assert taken.status_code == 202, taken.text
    await stack.until(again, lambda v: v.step == "pause")
    assert [s.status for s in await web.sends(again)] == ["skipped"]
    assert len(smtp_sink.messages) == 1  # the first lead's welcome, before the unsubscribe


async def test_an_address_stored_with_a_line_break_fails_its_email_and_the_lead_goes_on(
    stack_web, smtp_sink
) -> None:  # type: ignore[no-untyped-def]
    """A row written before intake refused such addresses: the send cannot ever succeed."""
    web, stack = stack_web
    lead = uid("CRLF")
    engine = make_engine(web.settings.database_url)
    try:
        async with session_factory(engine)() as session:
            session.add(LeadRow(id=lead, email="ann@x.example\r\nBcc: all@x.example", fields={}))
            await session.commit()
    finally:
        await engine.dispose()
    response = await web.post("/leads", {"id": lead, "country": "US"})
    # The row was written but its workflow never started: intake starts it now.
    assert (response.status_code, response.json()["status"]) == (202, "created"), response.text
    stack.started.add(lead)

    view = await stack.until(lead, lambda v: v.step == "pause")
    failed = [h for h in view.history if h.what == "email hello: failed"]
    assert len(failed) == 1 and "cannot be sent to" in failed[0].why
    assert "ann@x.example" not in failed[0].why
    assert [s.status for s in await web.sends(lead)] == ["failed"]
    assert smtp_sink.messages == []
    assert await failed_workflow_tasks(stack.client, lead) == []


# --- the corpus -------------------------------------------------------------------------------
#
# Each refused body: (name, path, body, status, loc). ``body`` is JSON-able, or raw bytes
# posted as they are; ``loc`` is the start of the refused field's JSON location ([] for the
# body as a whole, None for a 413, which names no field).

NOW = datetime.now(UTC)
L = "HOSTILE-1"


def ev(**changes: object) -> dict:
    return {"id": "h-evt", "type": "page.visited", "lead_id": L, **changes}


def upd(**data: object) -> dict:
    return {"id": "h-upd", "type": "lead.updated", "lead_id": L, "data": data}


SQL = "x'; DROP TABLE leads; --"
SCRIPT = "<script>alert(document.cookie)</script>"
REFUSED: list[tuple[str, str, object, int, list | None]] = [
    # leads: the id
    ("no id", "/leads", {"email": "a@b.example"}, 422, ["id"]),
    ("id a number", "/leads", {"id": 123}, 422, ["id"]),
    ("id empty", "/leads", {"id": ""}, 422, ["id"]),
    ("id with a space", "/leads", {"id": "L 1"}, 422, ["id"]),
    ("id too long", "/leads", {"id": "L" * 201}, 422, ["id"]),
    ("id sql", "/leads", {"id": SQL}, 422, ["id"]),
    ("id crlf", "/leads", {"id": "L-1\r\nX: y"}, 422, ["id"]),
    ("id fullwidth", "/leads", {"id": "Ｌ－１"}, 422, ["id"]),
    ("id a list", "/leads", {"id": ["L-1"]}, 422, ["id"]),
    # leads: the email
    ("email a number", "/leads", {"id": L, "email": 42}, 422, ["email"]),
    ("email a list", "/leads", {"id": L, "email": ["a@b.example"]}, 422, ["email"]),
    ("email display name", "/leads", {"id": L, "email": "Sup <sup@supp.example.com>"}, 422, ["email"]),
    ("email brackets", "/leads", {"id": L, "email": "<sup@supp.example.com>"}, 422, ["email"]),
    ("email two", "/leads", {"id": L, "email": "Evil <evil@attacker.example>, other@x.example"}, 422, ["email"]),
    ("email crlf", "/leads", {"id": L, "email": "a@b.example\r\nBcc: c@d.example"}, 422, ["email"]),
    ("email script", "/leads", {"id": L, "email": f"{SCRIPT}@x.example"}, 422, ["email"]),
    ("email sql", "/leads", {"id": L, "email": "a@b.example' OR '1'='1"}, 422, ["email"]),
    ("email too long", "/leads", {"id": L, "email": "a" * 300 + "@b.example"}, 422, ["email"]),
    ("email no dot", "/leads", {"id": L, "email": "root@localhost"}, 422, ["email"]),
    ("email ip literal", "/leads", {"id": L, "email": "a@[127.0.0.1]"}, 422, ["email"]),
    ("email no at", "/leads", {"id": L, "email": "not-an-address"}, 422, ["email"]),
    # leads: contact fields
    ("first_name too long", "/leads", {"id": L, "first_name": "N" * 201}, 422, ["first_name"]),
    ("first_name a megabyte", "/leads", {"id": L, "first_name": "A" * 1_000_000}, 422, ["first_name"]),
    ("first_name crlf", "/leads", {"id": L, "first_name": "Ann\r\nBcc: x@y.example"}, 422, ["first_name"]),
    ("first_name an object", "/leads", {"id": L, "first_name": {"a": 1}}, 422, ["first_name"]),
    ("first_name nul", "/leads", {"id": L, "first_name": "A\x00B"}, 422, ["first_name"]),
    ("last_name a list", "/leads", {"id": L, "last_name": ["A", "B"]}, 422, ["last_name"]),
    ("last_name line separator", "/leads", {"id": L, "last_name": "A\u2028B"}, 422, ["last_name"]),
    ("company too long", "/leads", {"id": L, "company": "C" * 301}, 422, ["company"]),
    ("company surrogate", "/leads", {"id": L, "company": "\ud800"}, 422, ["company"]),
    ("title too long", "/leads", {"id": L, "title": "T" * 301}, 422, ["title"]),
    ("phone too long", "/leads", {"id": L, "phone": "1" * 51}, 422, ["phone"]),
    ("phone a number", "/leads", {"id": L, "phone": 5550100}, 422, ["phone"]),
    # leads: decision fields
    ("country three letters", "/leads", {"id": L, "country": "USA"}, 422, ["country"]),
    ("country digits", "/leads", {"id": L, "country": "1Z"}, 422, ["country"]),
    ("country a number", "/leads", {"id": L, "country": 12}, 422, ["country"]),
    ("timezone unknown", "/leads", {"id": L, "timezone": "Mars/Olympus"}, 422, ["timezone"]),
    ("timezone a path", "/leads", {"id": L, "timezone": "../../etc/passwd"}, 422, ["timezone"]),
    ("timezone too long", "/leads", {"id": L, "timezone": "Europe/" + "x" * 60}, 422, ["timezone"]),
    ("industry too long", "/leads", {"id": L, "industry": "i" * 201}, 422, ["industry"]),
    ("source over a keyword", "/leads", {"id": L, "source": "s" * 2_049}, 422, ["source"]),
    ("source crlf", "/leads", {"id": L, "source": "web\r\ninjected"}, 422, ["source"]),
    ("employees a string", "/leads", {"id": L, "employees": "12"}, 422, ["employees"]),
    ("employees negative", "/leads", {"id": L, "employees": -1}, 422, ["employees"]),
    ("employees huge", "/leads", {"id": L, "employees": 10**30}, 422, ["employees"]),
    ("employees a fraction", "/leads", {"id": L, "employees": 1.5}, 422, ["employees"]),
    ("tier_account yes", "/leads", {"id": L, "tier_account": "yes"}, 422, ["tier_account"]),
    # leads: free fields
    ("fields a list", "/leads", {"id": L, "fields": [1, 2]}, 422, ["fields"]),
    ("fields too many", "/leads", {"id": L, **{f"f{n}": n for n in range(51)}}, 422, ["fields"]),
    ("free field too big", "/leads", {"id": L, "notes": "x" * 3_000}, 422, ["fields", "notes"]),
    ("free field key too long", "/leads", {"id": L, "fields": {"k" * 101: 1}}, 422, ["fields"]),
    ("free field deep", "/leads", {"id": L, "x": nested(40)}, 422, ["x"]),
    # leads: the body
    ("an array", "/leads", [{"id": L}], 422, []),
    ("a string", "/leads", "lead", 422, []),
    ("null", "/leads", None, 422, []),
    ("not json", "/leads", b"{nope", 422, []),
    ("nan", "/leads", b'{"id": "L-1", "employees": NaN}', 422, []),
    ("infinity", "/leads", b'{"id": "L-1", "employees": 1e400}', 422, []),
    ("invalid utf-8", "/leads", b'{"id": "L-1", "first_name": "\xff\xfe"}', 422, []),
    ("empty body", "/leads", b"", 422, []),
    ("over a megabyte", "/leads", {"id": L, "first_name": "A" * 1_100_000}, 413, None),
    # events: the envelope
    ("no event id", "/events", {"type": "page.visited", "lead_id": L}, 422, ["id"]),
    ("event id crlf", "/events", ev(id="e\r\n1"), 422, ["id"]),
    ("event id too long", "/events", ev(id="e" * 201), 422, ["id"]),
    ("event id a number", "/events", ev(id=7), 422, ["id"]),
    ("unknown type", "/events", ev(type="email.teleported"), 422, ["type"]),
    ("type a number", "/events", ev(type=3), 422, ["type"]),
    ("type sql", "/events", ev(type=SQL), 422, ["type"]),
    ("lead_id with a space", "/events", ev(lead_id="L 1"), 422, ["lead_id"]),
    ("lead_id too long", "/events", ev(lead_id="L" * 201), 422, ["lead_id"]),
    ("lead_id script", "/events", ev(lead_id=SCRIPT), 422, ["lead_id"]),
    # events: times
    ("year 9999", "/events", ev(occurred_at="9999-12-31T23:59:59Z"), 422, ["occurred_at"]),
    ("year 3000", "/events", ev(occurred_at="3000-01-01T00:00:00Z"), 422, ["occurred_at"]),
    ("year 1", "/events", ev(occurred_at="0001-01-01T00:00:00Z"), 422, ["occurred_at"]),
    ("epoch", "/events", ev(occurred_at="1970-01-01T00:00:00Z"), 422, ["occurred_at"]),
    ("two days ahead", "/events", ev(occurred_at=iso(NOW + timedelta(days=2))), 422, ["occurred_at"]),
    ("unix seconds", "/events", ev(occurred_at=1767225600), 422, ["occurred_at"]),
    ("words", "/events", ev(occurred_at="yesterday"), 422, ["occurred_at"]),
    ("month 13", "/events", ev(occurred_at="2026-13-45T99:00:00Z"), 422, ["occurred_at"]),
    ("february 30", "/events", ev(occurred_at="2026-02-30T10:00:00Z"), 422, ["occurred_at"]),
    ("empty time", "/events", ev(occurred_at=""), 422, ["occurred_at"]),
    ("time a list", "/events", ev(occurred_at=["2026-01-01T00:00:00Z"]), 422, ["occurred_at"]),
    ("overflows in utc", "/events", ev(occurred_at="9999-12-31T23:59:59-14:00"), 422, ["occurred_at"]),
    # events: data
    ("data a list", "/events", ev(data=[1, 2]), 422, ["data"]),
    ("data a string", "/events", ev(data="x"), 422, ["data"]),
    ("data too big", "/events", ev(data={"notes": "n" * 40_000}), 422, ["data"]),
    ("data too deep", "/events", ev(data=nested(9)), 422, ["data"]),
    ("data far too deep", "/events", ev(data=nested(40)), 422, ["data"]),
    ("data url too long", "/events", ev(data={"url": "/" + "u" * 2_048}), 422, ["data"]),
    ("data step an object", "/events", ev(data={"step": {"a": 1}}), 422, ["data"]),
    ("data nul", "/events", ev(data={"note": "a\x00b"}), 422, ["data", "note"]),
    ("data key surrogate", "/events", ev(data={"\udc80": 1}), 422, ["data"]),
    # events: lead.updated sets lead fields, under the same rules
    ("update display name", "/events", upd(email="Sup <sup@supp.example.com>"), 422, ["data", "email"]),
    ("update crlf email", "/events", upd(email="a@b.example\nBcc: c@d.example"), 422, ["data", "email"]),
    ("update long source", "/events", upd(source="s" * 2_049), 422, ["data", "source"]),
    ("update bad zone", "/events", upd(timezone="Nowhere/Town"), 422, ["data", "timezone"]),
    ("update employees text", "/events", upd(employees="12"), 422, ["data", "employees"]),
    ("update long name", "/events", upd(first_name="N" * 201), 422, ["data", "first_name"]),
    # events: batches are all or nothing
    ("batch one bad time", "/events", {"events": [ev(id="b-0"), ev(id="b-1"), ev(id="b-2", occurred_at="9999-12-31T23:59:59Z")]}, 422, ["events", 2, "occurred_at"]),
    ("batch one bad email", "/events", {"events": [ev(id="b-3"), upd(email="<x@y.example>") | {"id": "b-4"}]}, 422, ["events", 1, "data", "email"]),
    ("batch item not an object", "/events", {"events": [ev(id="b-5"), "event"]}, 422, ["events", 1]),
    ("batch not a list", "/events", {"events": {"id": "b-6"}}, 422, ["events"]),
    ("batch empty", "/events", {"events": []}, 422, ["events"]),
    ("batch too many", "/events", {"events": [ev(id=f"m-{n}") for n in range(501)]}, 422, ["events"]),
    ("events an array", "/events", [ev()], 422, []),
]  # fmt: skip


async def test_hostile_bodies_are_refused_naming_the_field_and_nothing_is_recorded(
    web: Web,
) -> None:
    for name, path, payload, status, loc in REFUSED:
        if isinstance(payload, bytes):
            response = await web.client.post(
                path, content=payload, headers={SIGNATURE_HEADER: sign(web.secret, payload)}
            )
        else:
            response = await web.post(path, payload)

        assert 400 <= response.status_code < 500, f"{name}: {response.status_code}"
        assert response.status_code == status, f"{name}: {response.text[:300]}"
        if loc is not None:
            errors = response.json()["errors"]
            assert any(e["loc"][: len(loc)] == loc for e in errors), f"{name}: {errors}"
    # Nothing half-applied: no lead, no event (a refused batch records none of its items).
    assert await web.count(LeadRow) == 0
    assert await web.count(EventRow) == 0


# Valid, however odd: taken in, and no lead is left stuck by them.
ODD_LEADS: list[dict] = [
    {"id": "ODD-UNICODE", "email": "Yamada.Taro@Sorairo.Example.JP", "first_name": "太郎",
     "last_name": "山田", "company": "株式会社そらいろ", "country": "jp", "timezone": "Asia/Tokyo"},
    {"id": "ODD-HTML", "email": "ann@initech.example", "first_name": SCRIPT[:200],
     "company": "<b>Initech</b> & \"Sons\"", "title": SQL, "source": "🚀" * 200},
    {"id": "ODD-LIMITS", "email": LONGEST_EMAIL, "first_name": "N" * 200, "last_name": "ש" * 200,
     "company": "C" * 300, "title": "T" * 300, "phone": "+" + "1" * 49, "industry": "i" * 200,
     **{f"f{n}": "v" * 1_000 for n in range(50)}},
    {"id": "ODD-IDN", "email": "ünïcode@bücher.example", "first_name": "Zoë \u202eevil",
     "country": "DE"},
]  # fmt: skip
ODD_EVENTS: list[dict] = [
    {"id": "odd-1", "type": "page.visited", "lead_id": "ODD-UNICODE",
     "occurred_at": iso(NOW + timedelta(hours=23)), "data": {"url": "/pricing?q=" + "ü" * 100}},
    {"id": "odd-2", "type": "email.clicked", "lead_id": "ODD-HTML",
     "occurred_at": "2026-01-05T10:00:00", "data": {"step": SCRIPT[:200], "note": SQL}},
    {"id": "odd-3", "type": "form.submitted", "lead_id": "ODD-LIMITS",
     "occurred_at": "2000-01-01T00:00:00Z",
     "data": {"form": "demo\u0301", "fields": nested(7), "notes": "n" * 30_000}},
    {"id": "odd-4", "type": "lead.updated", "lead_id": "ODD-IDN",
     "data": {"email": "ZOE@Bücher.Example", "industry": "finance", "f": {"a": [1, 2]}}},
    {"id": "odd-5", "type": "call.completed", "lead_id": "ODD-UNICODE",
     "occurred_at": iso(NOW - timedelta(days=3)).replace("Z", "+09:00"),
     "data": {"outcome": "QUALIFIED ", "notes": "🚀" * 1_000}},
    {"id": "odd-6", "type": "page.visited", "lead_id": "ODD-NOT-YET", "data": {}},
]  # fmt: skip


def test_the_corpus_is_large() -> None:
    assert len(REFUSED) + len(ODD_LEADS) + len(ODD_EVENTS) >= 80


async def test_odd_but_valid_bodies_are_taken_and_leave_no_lead_stuck(stack_web, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    web, stack = stack_web
    for lead in ODD_LEADS:
        response = await web.post("/leads", lead)
        assert response.status_code == 202, f"{lead['id']}: {response.text[:300]}"
        stack.started.add(lead["id"])
    batch = await web.post("/events", {"events": ODD_EVENTS})
    assert batch.status_code == 202, batch.text[:500]
    assert [r["status"] for r in batch.json()["results"]] == ["delivered"] * 5 + ["parked"]

    for lead in ODD_LEADS:
        # Each answers its query, has left its first email step, and no task of it failed.
        view = await stack.until(
            lead["id"], lambda v: any(h.what.startswith("email hello: ") for h in v.history)
        )
        assert view.history, lead["id"]
        assert await failed_workflow_tasks(stack.client, lead["id"]) == [], lead["id"]
    # The lead's own first email: a qualified call tosses ODD-UNICODE up, and the SDR's
    # toss-up notice (kept in the same table) may or may not have gone out by now.
    sends = {
        lead["id"]: [s.status for s in await web.sends(lead["id"]) if s.step == "hello"]
        for lead in ODD_LEADS
    }
    assert sends == {lead["id"]: ["sent"] for lead in ODD_LEADS}
    # ODD-IDN's hello goes to its internationalized address: the one it was posted with, or
    # the one `lead.updated` gave it, whichever the send read (the update races the send).
    idn = [rcpts for _, rcpts in smtp_sink.envelopes if rcpts[0].endswith("@bücher.example")]
    assert idn in ([["ünïcode@bücher.example"]], [["zoe@bücher.example"]]), idn
    row = await web.lead("ODD-IDN")
    assert row is not None and row.email == "zoe@bücher.example"
