"""Send windows in the lead's own time zone, weekends, holidays and frequency caps, end to end.

The expected send times are computed here by brute force (minute by minute), apart from
the product's timing module, so the test checks the rule rather than the implementation.
"""

from __future__ import annotations

import email.utils
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from conftest import SKELETON_TEMPLATES, write_cadence_set
from harness import running

CADENCE = """
    id: welcome
    name: Welcome
    steps:
      - {id: hello, type: email, template: welcome/hello}
      - {id: pause, type: wait, duration: 1h}
      - {id: follow-up, type: email, template: welcome/follow-up}
"""


def window_playbook(holidays: list[str], extra_limits: str = "") -> str:
    return f"""
    thresholds:
      mql: {{score: 40}}
      toss_up: {{score: 80}}
    routing:
      entry:
        - cadence: welcome
      mql_cadence: welcome
    limits:
      send_window: {{days: [mon, tue, wed, thu, fri], start: "09:00", end: "18:00"}}
      holidays: [{", ".join(holidays)}]
      {extra_limits}
    sender:
      from: "Acme <hello@acme.example>"
      postal_address: "Acme Inc., 1 Main St, Springfield"
    """


async def skip_to_saturday_noon_utc(env) -> datetime:  # type: ignore[no-untyped-def]
    """Move the time-skipping server's clock to the next Saturday 12:00 UTC; returns it."""
    now = await env.get_current_time()
    days = (5 - now.weekday()) % 7 or 7
    target = (now + timedelta(days=days)).replace(hour=12, minute=0, second=0, microsecond=0)
    await env.sleep(target - now)
    return await env.get_current_time()


def first_opening(after: datetime, zone: str, holidays: set[str]) -> datetime:
    """The first minute at or after ``after`` that is Mon–Fri 09:00–18:00 local, not a holiday."""
    tz = ZoneInfo(zone)
    at = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(60 * 24 * 14):
        local = at.astimezone(tz)
        if (
            local.weekday() < 5
            and local.date().isoformat() not in holidays
            and 9 <= local.hour < 18
        ):
            return at
        at += timedelta(minutes=1)
    raise AssertionError("no opening within two weeks")


async def test_first_email_waits_for_the_window_in_each_leads_zone(
    time_env, make_settings, smtp_sink, tmp_path
):
    # Fix the clock: skip to the coming Saturday 12:00 UTC (07:00 in New York, 21:00 in
    # Tokyo), so both leads are outside their window whatever the hour the suite runs at.
    now = await skip_to_saturday_noon_utc(time_env)
    # The next Monday (in New York) is a holiday: both leads must skip it as a send day.
    ny_today = now.astimezone(ZoneInfo("America/New_York")).date()
    monday = ny_today + timedelta(days=(7 - ny_today.weekday()) % 7 or 7)
    holidays = {monday.isoformat()}
    cadences_dir, templates_dir = write_cadence_set(
        tmp_path / "set",
        window_playbook(sorted(holidays)),
        {"welcome": CADENCE},
        SKELETON_TEMPLATES,
    )
    settings = make_settings(cadences_dir=cadences_dir, templates_dir=templates_dir)
    async with running(time_env.client, settings) as stack:
        await stack.add_lead(id="T-NY", email="ny@example.com", first_name="Nia", country="US")
        await stack.add_lead(id="T-JP", email="jp@example.com", first_name="Jun", country="JP")
        created = await time_env.get_current_time()
        expected = {
            "T-NY": first_opening(created, "America/New_York", holidays),
            "T-JP": first_opening(created, "Asia/Tokyo", holidays),
        }
        for lead_id, at in expected.items():
            view = await stack.until(
                lead_id, lambda v: v.next_touch_at is not None and v.step == "hello"
            )
            assert at - created > timedelta(hours=2), (lead_id, at, created)
            assert abs(view.next_touch_at - at) < timedelta(minutes=2), (
                lead_id,
                view.next_touch_at,
                at,
            )
            deferral = [h for h in view.history if "deferred" in h.what]
            assert deferral and (
                "outside the send window" in deferral[-1].why or "holiday" in deferral[-1].why
            )
        assert expected["T-NY"] != expected["T-JP"]

        # Move past both openings: each email goes out at its own local morning, not before.
        latest = max(expected.values())
        await time_env.sleep(latest - created + timedelta(minutes=5))
        await smtp_sink.wait_for(2)
        dates: dict[str, datetime] = {}
        for message, (_, rcpts) in zip(smtp_sink.messages, smtp_sink.envelopes, strict=True):
            # The first message to each address is its welcome (the follow-up comes 1h later).
            dates.setdefault(
                rcpts[0].split("@")[0], email.utils.parsedate_to_datetime(str(message["Date"]))
            )
        assert abs(dates["ny"] - expected["T-NY"]) < timedelta(minutes=3)
        assert abs(dates["jp"] - expected["T-JP"]) < timedelta(minutes=3)
        for address, zone in (("ny", "America/New_York"), ("jp", "Asia/Tokyo")):
            local = dates[address].astimezone(ZoneInfo(zone))
            assert local.weekday() < 5 and 9 <= local.hour < 18
            assert local.date().isoformat() not in holidays


CAPPED = """
    id: welcome
    name: Welcome
    steps:
      - {id: one, type: email, template: welcome/hello}
      - {id: two, type: email, template: welcome/follow-up}
      - {id: three, type: email, template: welcome/hello}
      - {id: four, type: email, template: welcome/follow-up}
"""

ALWAYS_OPEN_CAPPED = """
    thresholds:
      mql: {score: 40}
      toss_up: {score: 80}
    routing:
      entry:
        - cadence: welcome
      mql_cadence: welcome
    limits:
      max_emails_per_week: 2
      min_gap_between_touches: 20h
      send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}
    sender:
      from: "Acme <hello@acme.example>"
      postal_address: "Acme Inc., 1 Main St, Springfield"
"""


async def test_frequency_caps_defer_touches_and_never_drop_them(
    time_env, make_settings, smtp_sink, tmp_path
):
    cadences_dir, templates_dir = write_cadence_set(
        tmp_path / "set", ALWAYS_OPEN_CAPPED, {"welcome": CAPPED}, SKELETON_TEMPLATES
    )
    settings = make_settings(cadences_dir=cadences_dir, templates_dir=templates_dir)
    async with running(time_env.client, settings) as stack:
        await stack.add_lead(id="C-1", email="cap@example.com", first_name="Cap")
        await smtp_sink.wait_for(1)
        view = await stack.until("C-1", lambda v: v.step == "two" and v.next_touch_at is not None)
        assert any("minimum gap 20h" in h.why for h in view.history)

        await time_env.sleep(timedelta(hours=20, minutes=5))
        await smtp_sink.wait_for(2)
        view = await stack.until("C-1", lambda v: v.step == "three" and v.next_touch_at is not None)
        assert any("max 2" in h.why for h in view.history)

        # The weekly cap holds the third email for the rest of the 7 days, then it goes.
        await time_env.sleep(timedelta(days=5))
        assert len(smtp_sink.messages) == 2
        await time_env.sleep(timedelta(days=9))
        await smtp_sink.wait_for(4)
        dates = [email.utils.parsedate_to_datetime(str(m["Date"])) for m in smtp_sink.messages]
        assert dates[1] - dates[0] >= timedelta(hours=20)
        assert dates[2] - dates[0] >= timedelta(days=7)
        for first, later in zip(dates, dates[2:], strict=False):
            assert later - first >= timedelta(days=7), "more than 2 emails within 7 days"
        view = await stack.until("C-1", lambda v: v.step == "(done)")
        assert [
            h.what for h in view.history if h.what.startswith("email") and h.what.endswith("sent")
        ] == [
            "email one: sent",
            "email two: sent",
            "email three: sent",
            "email four: sent",
        ]
