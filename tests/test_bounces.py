"""Bounces after the send (CONTRACT.md, "Accounts and people").

`email.bounced` with `data.kind: hard` suppresses the address at once; `soft` three times
within 30 days does too (counted over every lead with the address, by when each bounce
happened). Every lead with a suppressed address is told: its history says why, and its
next email is skipped, visibly, like after an unsubscribe. A bounce without a kind counts
as soft; a kind that is neither is refused (422 naming `data.kind`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import SKELETON_TEMPLATES, write_cadence_set
from harness import running
from pydantic import ValidationError

from nurture.adapters.database import LeadRow, Suppression, make_engine, session_factory
from nurture.adapters.schema import migrate
from nurture.domain.events import Event, IncomingEvent
from nurture.services.intake import record_event, submit_event
from nurture.services.optouts import apply_bounce, bounce_reason, soft_bounces_suppress
from nurture.web.leadinfo import load_lead
from nurture.web.webhooks import WebhookRefused, validate_events

pytest_plugins = ["dbfixtures"]

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


# --- the rule, pure ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "suppressed"),
    [
        ([0, 10, 29], True),
        ([0, 30], False),
        ([0, 20, 40], False),  # three, but spread over 40 days
        ([0, 15, 30], True),  # exactly 30 days apart still counts
        ([40, 0, 25, 50], True),  # reported out of order: 25, 40, 50 fall within 30 days
        ([0, 31, 62], False),
    ],
)
def test_three_soft_bounces_within_30_days_suppress(days: list[int], suppressed: bool) -> None:
    assert soft_bounces_suppress([T0 + timedelta(days=d) for d in days]) is suppressed


def test_the_reason_names_the_kind_and_the_status() -> None:
    assert bounce_reason("hard", "5.1.1") == "hard bounce (5.1.1)"
    assert bounce_reason("hard", None) == "hard bounce"
    assert bounce_reason("soft", "4.2.2") == "3 soft bounces in 30 days (4.2.2)"


def test_an_unknown_kind_is_refused_naming_data_kind_and_none_means_soft() -> None:
    base = {"id": "E-1", "type": "email.bounced", "lead_id": "L-1"}
    with pytest.raises(ValidationError) as refused:
        IncomingEvent.model_validate({**base, "data": {"kind": "blocked"}})
    [error] = refused.value.errors()
    assert error["loc"] == ("data", "kind")
    assert "hard" in error["msg"] and "soft" in error["msg"]
    assert IncomingEvent.model_validate({**base, "data": {"kind": " Hard "}}).data["kind"] == "hard"
    assert IncomingEvent.model_validate({**base, "data": {}}).data == {}
    # Other events may carry a `kind` of their own.
    other = IncomingEvent.model_validate({**base, "type": "page.visited", "data": {"kind": "x"}})
    assert other.data["kind"] == "x"
    with pytest.raises(WebhookRefused) as answered:
        validate_events({**base, "data": {"kind": "permanent"}})
    assert answered.value.status_code == 422
    assert [e.field for e in answered.value.body.errors] == ["data.kind"]  # type: ignore[attr-defined]


# --- counting over every lead with the address, in the app database ---------------------


@pytest.fixture
async def sessions(database_url: str):  # type: ignore[no-untyped-def]
    await migrate(database_url)
    engine = make_engine(database_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def bounce(sessions, event_id: str, lead_id: str, at: datetime, **data: object):  # type: ignore[no-untyped-def]
    event = Event(
        id=event_id, type="email.bounced", lead_id=lead_id, occurred_at=at, data=dict(data)
    )
    await record_event(sessions, event)
    return await apply_bounce(sessions, lead_id, event.data, at)


async def leads(sessions, *rows: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        for lead_id, email in rows:
            session.add(LeadRow(id=lead_id, email=email, fields={}))
        await session.commit()


async def suppression(sessions, address: str) -> str | None:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        row = await session.get(Suppression, address)
        return row.reason if row is not None else None


async def test_a_hard_bounce_suppresses_every_lead_with_the_address(sessions) -> None:  # type: ignore[no-untyped-def]
    await leads(sessions, ("H-1", "pat@bounce.example"), ("H-2", "Pat@Bounce.example"))
    await leads(sessions, ("H-3", "other@bounce.example"))

    done = await bounce(sessions, "B-1", "H-1", T0, kind="hard", status="5.1.1")

    assert done is not None and done.reason == "hard bounce (5.1.1)"
    assert done.leads == {"H-1": False, "H-2": False}
    assert await suppression(sessions, "pat@bounce.example") == "bounced: hard bounce (5.1.1)"
    assert await suppression(sessions, "other@bounce.example") is None
    async with sessions() as session:
        assert (await session.get(LeadRow, "H-2")).unsubscribed  # type: ignore[union-attr]
        assert not (await session.get(LeadRow, "H-3")).unsubscribed  # type: ignore[union-attr]


async def test_three_soft_bounces_in_30_days_suppress_across_leads(sessions) -> None:  # type: ignore[no-untyped-def]
    await leads(sessions, ("S-1", "sam@soft.example"), ("S-2", "sam@soft.example"))

    assert await bounce(sessions, "B-1", "S-1", T0, kind="soft") is None
    assert await bounce(sessions, "B-2", "S-2", T0 + timedelta(days=12), kind="soft") is None
    assert await suppression(sessions, "sam@soft.example") is None
    # A bounce with no kind counts as soft: the third within 30 days.
    done = await bounce(sessions, "B-3", "S-1", T0 + timedelta(days=25), status="4.2.2")

    assert done is not None and done.reason == "3 soft bounces in 30 days (4.2.2)"
    assert set(done.leads) == {"S-1", "S-2"}
    assert await suppression(sessions, "sam@soft.example") == (
        "bounced: 3 soft bounces in 30 days (4.2.2)"
    )


async def test_soft_bounces_spread_over_40_days_do_not_suppress(sessions) -> None:  # type: ignore[no-untyped-def]
    await leads(sessions, ("W-1", "wes@soft.example"))
    for n, day in enumerate((0, 20, 40)):
        assert (
            await bounce(sessions, f"B-{n}", "W-1", T0 + timedelta(days=day), kind="soft") is None
        )
    assert await suppression(sessions, "wes@soft.example") is None
    # A hard bounce among them still suppresses at once.
    assert await bounce(sessions, "B-9", "W-1", T0 + timedelta(days=41), kind="hard") is not None


# --- end to end: two leads, two cadences, one address -----------------------------------

PLAYBOOK = """
    thresholds:
      mql: {score: 40}
      toss_up: {score: 80}
    routing:
      entry:
        - when: {field: source, in: [webinar]}
          cadence: webinar
        - cadence: welcome
      mql_cadence: welcome
    limits:
      send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}
    sender:
      from: "Acme <hello@acme.example>"
      postal_address: "Acme Inc., 1 Main St, Springfield"
"""


def series(cadence_id: str) -> str:
    return f"""
        id: {cadence_id}
        name: {cadence_id}
        steps:
          - {{id: hello, type: email, template: welcome/hello}}
          - {{id: pause, type: wait, duration: 2d}}
          - {{id: follow-up, type: email, template: welcome/follow-up}}
    """


async def test_a_hard_bounce_stops_the_next_email_of_every_lead_with_the_address(
    time_env, make_settings, smtp_sink, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    cadences_dir, templates_dir = write_cadence_set(
        tmp_path / "set",
        PLAYBOOK,
        {"welcome": series("welcome"), "webinar": series("webinar")},
        SKELETON_TEMPLATES,
    )
    settings = make_settings(cadences_dir=cadences_dir, templates_dir=templates_dir)
    async with running(time_env.client, settings) as stack:
        await stack.add_lead(id="P-1", email="pat@bounce.example", source="web")
        await stack.add_lead(id="P-2", email="pat@bounce.example", source="webinar")
        await stack.add_lead(id="P-3", email="kim@bounce.example", source="web")
        await smtp_sink.wait_for(3)
        for lead_id, cadence in (("P-1", "welcome"), ("P-2", "webinar")):
            view = await stack.until(lead_id, lambda v: v.step == "pause")
            assert view.cadence == cadence

        result = await submit_event(
            stack.intake,
            Event(
                id="DSN-1",
                type="email.bounced",
                lead_id="P-1",
                occurred_at=await time_env.get_current_time(),
                data={"kind": "hard", "status": "5.1.1"},
            ),
        )
        assert result.status == "delivered"
        for lead_id in ("P-1", "P-2"):
            view = await stack.until(lead_id, lambda v: v.unsubscribed)
            assert any(h.what == "address suppressed: hard bounce (5.1.1)" for h in view.history)
        bounced = await stack.view("P-1")
        assert any(h.what == "email bounced" and h.why == "hard bounce" for h in bounced.history)
        other = await stack.view("P-2")
        assert any("same address as P-1" in h.why for h in other.history)

        # Two days on: the follow-ups of both leads are skipped, saying why; P-3 gets its own.
        await time_env.sleep(timedelta(days=2, minutes=5))
        await smtp_sink.wait_for(4)
        for lead_id in ("P-1", "P-2"):
            view = await stack.until(lead_id, lambda v: v.step == "(done)")
            skipped = [h for h in view.history if h.what == "email follow-up skipped"]
            assert [h.why for h in skipped] == ["address suppressed: hard bounce (5.1.1)"]
        assert [r[0] for _, r in smtp_sink.envelopes].count("pat@bounce.example") == 2

        # The lead page says why too.
        async with stack.sessions() as session:
            info = await load_lead(_Links(), session, "P-2")
        assert info is not None and info.suppressed == "bounced: hard bounce (5.1.1)"


class _Links:
    """What `load_lead` asks of the web app's services: where a workflow is shown."""

    def workflow_url(self, workflow_id: str) -> str:
        return f"https://temporal.invalid/{workflow_id}"
