"""nurture.domain.timing: send windows in the lead's zone, holidays, business days, caps and gaps.

Dates used: 2026-12-25 and 2027-01-01 are Fridays (and holidays in the playbook); New York
springs forward on Sunday 2027-03-14 at 02:00 and falls back on Sunday 2027-11-07 at 02:00.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nurture.domain.cadence import WEEKDAYS, Limits, SendWindow
from nurture.domain.durations import DurationError
from nurture.domain.timing import (
    COUNTRY_ZONES,
    MAX_SEARCH_DAYS,
    TouchSlot,
    add_business_days,
    add_duration,
    earliest_touch,
    in_window,
    lead_zone,
    next_window_open,
    prune_sends,
)

NY = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
WEEKDAYS_ONLY = ["mon", "tue", "wed", "thu", "fri"]
ALL_DAYS = list(WEEKDAYS)

# The playbook's limits (CONTRACT.md).
PLAYBOOK = Limits(
    max_emails_per_week=3,
    min_gap_between_touches="20h",
    send_window=SendWindow(days=WEEKDAYS_ONLY, start="09:00", end="18:00"),
    holidays=["2026-12-25", "2027-01-01"],
)
EVERY_DAY = Limits(send_window=SendWindow(days=ALL_DAYS, start="09:00", end="18:00"))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(zone: ZoneInfo, *args: int) -> datetime:
    """A wall-clock time in ``zone``, as the UTC instant the functions take."""
    return datetime(*args, tzinfo=zone).astimezone(UTC)


def window(start: str, end: str, days: list[str] | None = None, **kw: object) -> Limits:
    # Built without validation: the models refuse a window that never opens, and timing must
    # still fail cleanly (not spin) on one that got past them.
    return Limits.model_construct(
        send_window=SendWindow.model_construct(
            days=ALL_DAYS if days is None else days, start=start, end=end
        ),
        **kw,
    )


# --- lead_zone -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "country", "expected"),
    [
        ("Asia/Tokyo", "US", "Asia/Tokyo"),  # the lead's own zone wins over its country
        (" Europe/Berlin ", None, "Europe/Berlin"),
        ("Not/AZone", "JP", "Asia/Tokyo"),  # a bad zone falls back to the country
        ("asia/tokyo", "GB", "Europe/London"),  # IANA names are case-sensitive
        ("America", "DE", "Europe/Berlin"),  # a directory of tzdata, not a zone
        ("../../etc/passwd", "in", "Asia/Kolkata"),  # path-like keys are refused
        ("", " us ", "America/New_York"),
        (None, "BR", "America/Sao_Paulo"),
        ("Not/AZone", "ZZ", "UTC"),  # unknown country -> UTC
        ("Not/AZone", None, "UTC"),
        (None, None, "UTC"),
        (None, "", "UTC"),
    ],
)
def test_lead_zone_fallbacks(tz: str | None, country: str | None, expected: str) -> None:
    assert lead_zone(tz, country).key == expected


def test_country_zones_are_real_zones() -> None:
    assert len(COUNTRY_ZONES) >= 80
    for code, key in COUNTRY_ZONES.items():
        assert len(code) == 2 and code.isupper(), code
        assert ZoneInfo(key).key == key
    expected = {
        "US": "America/New_York",
        "JP": "Asia/Tokyo",
        "GB": "Europe/London",
        "DE": "Europe/Berlin",
        "IN": "Asia/Kolkata",
        "AU": "Australia/Sydney",
        "BR": "America/Sao_Paulo",
        "CN": "Asia/Shanghai",
        "CA": "America/Toronto",
        "RU": "Europe/Moscow",
        "MX": "America/Mexico_City",
    }
    assert {code: COUNTRY_ZONES[code] for code in expected} == expected


# --- in_window -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "zone", "limits", "expected"),
    [
        # The same UTC instants read in two zones: Tokyo is 14 hours ahead of New York.
        (utc(2026, 12, 24, 1, 0), TOKYO, PLAYBOOK, True),  # Thu 10:00 JST
        (utc(2026, 12, 24, 1, 0), NY, PLAYBOOK, False),  # Wed 20:00 EST
        (utc(2026, 12, 24, 16, 0), TOKYO, PLAYBOOK, False),  # Fri 25th 01:00 JST
        (utc(2026, 12, 24, 16, 0), NY, PLAYBOOK, True),  # Thu 11:00 EST
        (utc(2026, 12, 25, 1, 0), TOKYO, PLAYBOOK, False),  # Fri 10:00 JST, a holiday
        (utc(2026, 12, 25, 15, 0), NY, PLAYBOOK, False),  # Fri 10:00 EST, a holiday
        (utc(2026, 12, 25, 15, 0), TOKYO, PLAYBOOK, False),  # Sat 00:00 JST
        (utc(2026, 12, 26, 1, 0), TOKYO, PLAYBOOK, False),  # Sat 10:00 JST
        # Edges: start inclusive, end exclusive.
        (local(NY, 2026, 12, 24, 9, 0), NY, PLAYBOOK, True),
        (local(NY, 2026, 12, 24, 8, 59, 59), NY, PLAYBOOK, False),
        (local(NY, 2026, 12, 24, 17, 59, 59), NY, PLAYBOOK, True),
        (local(NY, 2026, 12, 24, 18, 0), NY, PLAYBOOK, False),
        # All seven days: the weekend is open, holidays still are not.
        (local(NY, 2026, 12, 26, 10, 0), NY, EVERY_DAY, True),
        (local(NY, 2026, 12, 26, 10, 0), NY, PLAYBOOK, False),
        # A window whose start is not before its end is never open.
        (local(NY, 2026, 12, 24, 12, 0), NY, window("18:00", "09:00"), False),
        (local(NY, 2026, 12, 24, 9, 0), NY, window("09:00", "09:00"), False),
        # "24:00" closes the window at midnight: 00:00-24:00 is open every minute of the day.
        (local(NY, 2026, 12, 24, 23, 59, 30), NY, window("00:00", "24:00"), True),
        (local(NY, 2026, 12, 24, 23, 59, 30), NY, window("00:00", "23:59"), False),
        (local(NY, 2026, 12, 24, 0, 0), NY, window("00:00", "24:00"), True),
    ],
)
def test_in_window(at: datetime, zone: ZoneInfo, limits: Limits, expected: bool) -> None:
    assert in_window(at, zone, limits) is expected


def test_in_window_accepts_any_aware_instant() -> None:
    tokyo_wall = datetime(2026, 12, 24, 10, 0, tzinfo=TOKYO)
    assert in_window(tokyo_wall, TOKYO, PLAYBOOK)
    assert not in_window(tokyo_wall, NY, PLAYBOOK)


# --- next_window_open ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "zone", "limits", "expected"),
    [
        # Inside: the instant itself.
        (local(NY, 2026, 12, 23, 12, 34, 56), NY, PLAYBOOK, local(NY, 2026, 12, 23, 12, 34, 56)),
        # Before the start: the same day's start.
        (local(NY, 2026, 12, 24, 7, 0), NY, PLAYBOOK, local(NY, 2026, 12, 24, 9, 0)),
        # The end is exclusive: 18:00 waits for the next send day.
        (local(NY, 2026, 12, 23, 18, 0), NY, PLAYBOOK, local(NY, 2026, 12, 24, 9, 0)),
        # Thursday evening before Christmas: Friday is a holiday, then the weekend.
        (local(NY, 2026, 12, 24, 18, 30), NY, PLAYBOOK, utc(2026, 12, 28, 14, 0)),
        (local(TOKYO, 2026, 12, 24, 18, 30), TOKYO, PLAYBOOK, utc(2026, 12, 28, 0, 0)),
        # New Year's Day (a Friday) in each zone's own calendar.
        (local(TOKYO, 2026, 12, 31, 18, 30), TOKYO, PLAYBOOK, utc(2027, 1, 4, 0, 0)),
        (local(NY, 2027, 1, 1, 10, 0), NY, PLAYBOOK, utc(2027, 1, 4, 14, 0)),
        # 2027-01-01 00:30 UTC is still a working Thursday evening in New York: closed
        # by the hour, and the next day is the holiday.
        (utc(2027, 1, 1, 0, 30), NY, PLAYBOOK, utc(2027, 1, 4, 14, 0)),
        # Saturday with every day open.
        (local(NY, 2026, 12, 26, 7, 0), NY, EVERY_DAY, local(NY, 2026, 12, 26, 9, 0)),
        # Across the spring-forward weekend: Monday 09:00 is EDT, 13:00 UTC, not 14:00.
        (local(NY, 2027, 3, 12, 18, 30), NY, PLAYBOOK, utc(2027, 3, 15, 13, 0)),
        (local(NY, 2027, 3, 13, 18, 30), NY, EVERY_DAY, utc(2027, 3, 14, 13, 0)),
        # A start time skipped by the spring-forward gap: open when the clocks jump to 03:00.
        (utc(2027, 3, 14, 5, 0), NY, window("02:30", "05:00"), utc(2027, 3, 14, 7, 0)),
        # The window lies entirely in the gap that night: the next night's 02:00 EDT.
        (utc(2027, 3, 14, 5, 0), NY, window("02:00", "02:45"), utc(2027, 3, 15, 6, 0)),
        # Fall back: at 01:45 EDT the 01:00-01:30 window is closed, but it opens again when
        # the clocks go back from 02:00 EDT to 01:00 EST (06:00 UTC).
        (utc(2027, 11, 7, 5, 45), NY, window("01:00", "01:30"), utc(2027, 11, 7, 6, 0)),
        # A window from midnight opens at the next local midnight.
        (
            local(TOKYO, 2026, 12, 22, 23, 30),
            TOKYO,
            window("00:00", "01:00"),
            local(TOKYO, 2026, 12, 23, 0, 0),
        ),
    ],
)
def test_next_window_open(at: datetime, zone: ZoneInfo, limits: Limits, expected: datetime) -> None:
    result = next_window_open(at, zone, limits)
    assert result == expected
    assert result.tzinfo is UTC
    assert in_window(result, zone, limits)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (window("09:00", "18:00", days=[]), "days is empty"),
        (window("18:00", "09:00"), "start 18:00 is not before end 09:00"),
        (window("09:00", "09:00"), "not before end"),
        # Every Monday for 70 weeks is a holiday: nothing within the search horizon.
        (
            window(
                "09:00",
                "18:00",
                days=["mon"],
                holidays=[str(date(2026, 12, 7) + timedelta(weeks=i)) for i in range(70)],
            ),
            f"within {MAX_SEARCH_DAYS} days",
        ),
        (window("09:00", "18:00", holidays=["25/12/2026"]), "'25/12/2026' is not a date"),
        (window("09:00", "18:00", holidays=["2026-02-30"]), "is not a date"),
    ],
)
def test_next_window_open_refuses_impossible_windows(limits: Limits, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        next_window_open(utc(2026, 12, 1, 12, 0), NY, limits)


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_window_open(datetime(2026, 12, 1, 12, 0), NY, PLAYBOOK)
    with pytest.raises(ValueError, match="timezone-aware"):
        in_window(datetime(2026, 12, 1, 12, 0), NY, PLAYBOOK)


# --- add_duration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "duration", "zone", "limits", "expected"),
    [
        # Calendar units: plain elapsed time, whatever the window says.
        (utc(2026, 12, 5, 1, 0), "90s", NY, PLAYBOOK, utc(2026, 12, 5, 1, 1, 30)),
        (utc(2026, 12, 5, 1, 0), "15m", NY, PLAYBOOK, utc(2026, 12, 5, 1, 15)),
        (utc(2026, 12, 5, 1, 0), "4h", NY, PLAYBOOK, utc(2026, 12, 5, 5, 0)),
        (utc(2026, 12, 5, 1, 0), "3w", NY, PLAYBOOK, utc(2026, 12, 26, 1, 0)),
        # "2d" is 48 hours: across spring-forward, 10:00 EST becomes 11:00 EDT.
        (local(NY, 2027, 3, 13, 10, 0), "2d", NY, PLAYBOOK, local(NY, 2027, 3, 15, 11, 0)),
        # Business days: the next send days, same local time.
        (
            local(NY, 2026, 12, 21, 10, 0),
            "1 business day",
            NY,
            PLAYBOOK,
            local(NY, 2026, 12, 22, 10, 0),
        ),
        (
            local(NY, 2026, 12, 21, 10, 0),
            "3 business days",
            NY,
            PLAYBOOK,
            local(NY, 2026, 12, 24, 10, 0),
        ),
        # Over the weekend and a holiday, in each zone's own calendar.
        (
            local(NY, 2026, 12, 24, 10, 0),
            "1 business day",
            NY,
            PLAYBOOK,
            local(NY, 2026, 12, 28, 10, 0),
        ),
        (
            local(NY, 2026, 12, 24, 10, 0),
            "2 business days",
            NY,
            PLAYBOOK,
            local(NY, 2026, 12, 29, 10, 0),
        ),
        (
            local(TOKYO, 2026, 12, 31, 10, 0),
            "1 business day",
            TOKYO,
            PLAYBOOK,
            local(TOKYO, 2027, 1, 4, 10, 0),
        ),
        (
            local(NY, 2026, 12, 23, 10, 0),
            "6 business days",
            NY,
            PLAYBOOK,
            local(NY, 2027, 1, 4, 10, 0),
        ),  # 24, 28, 29, 30, 31; the 1st is a holiday; the 4th
        # Friday evening + 1 business day: Monday 20:00 is after hours -> Tuesday 09:00.
        (
            local(NY, 2026, 12, 18, 20, 0),
            "1 business day",
            NY,
            PLAYBOOK,
            local(NY, 2026, 12, 22, 9, 0),
        ),
        # Before the window: moved to that day's start, not to the next day.
        (
            local(NY, 2026, 12, 18, 7, 0),
            "1 business day",
            NY,
            PLAYBOOK,
            local(NY, 2026, 12, 21, 9, 0),
        ),
        # A weekend start counts from the next send day: Saturday + 1 is Monday.
        (
            local(NY, 2026, 12, 19, 10, 0),
            "1 business day",
            NY,
            PLAYBOOK,
            local(NY, 2026, 12, 21, 10, 0),
        ),
        # Across spring-forward the local time is kept, so the UTC time moves by an hour.
        (local(NY, 2027, 3, 12, 10, 0), "1 business day", NY, PLAYBOOK, utc(2027, 3, 15, 14, 0)),
        # Landing on a wall time the DST gap skips: moved on by the gap (02:30 -> 03:30 EDT).
        (
            local(NY, 2027, 3, 13, 2, 30),
            "1 business day",
            NY,
            window("00:00", "23:59"),
            utc(2027, 3, 14, 7, 30),
        ),
    ],
)
def test_add_duration(
    at: datetime, duration: str, zone: ZoneInfo, limits: Limits, expected: datetime
) -> None:
    assert add_duration(at, duration, zone, limits) == expected


@pytest.mark.parametrize(
    "duration", ["0d", "1d12h", "-2d", "soon", "2 days", "9999999999d", "3651d", "99999999999s"]
)
def test_add_duration_refuses_bad_durations(duration: str) -> None:
    with pytest.raises(DurationError):
        add_duration(utc(2026, 12, 1), duration, NY, PLAYBOOK)


def test_add_business_days_needs_a_positive_count() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        add_business_days(utc(2026, 12, 1), 0, NY, PLAYBOOK)


# --- earliest_touch --------------------------------------------------------------------

SENDS_FRI_MON_TUE = [
    local(NY, 2026, 12, 4, 14, 2),  # Fri
    local(NY, 2026, 12, 7, 10, 0),  # Mon
    local(NY, 2026, 12, 8, 10, 0),  # Tue
]


def touch(
    case_id: str,
    now: datetime,
    zone: ZoneInfo,
    *,
    at: datetime,
    reasons: list[str],
    limits: Limits = PLAYBOOK,
    channel: str = "email",
    sent: list[datetime] | None = None,
    last: datetime | None = None,
) -> object:
    """One row of the earliest_touch table, named and keyword-only so it reads as a sentence."""
    return pytest.param(now, zone, limits, channel, sent or [], last, at, reasons, id=case_id)


@pytest.mark.parametrize(
    ("now", "zone", "limits", "channel", "sent", "last", "at", "reasons"),
    [
        touch(
            "nothing-in-the-way",
            local(NY, 2026, 12, 9, 10, 0),
            NY,
            at=local(NY, 2026, 12, 9, 10, 0),
            reasons=[],
        ),
        touch(
            "tokyo-weekend",
            local(TOKYO, 2026, 12, 5, 10, 15),
            TOKYO,
            channel="call",
            at=local(TOKYO, 2026, 12, 7, 9, 0),
            reasons=["outside the send window (Sat 10:15 Asia/Tokyo); next opening Mon 09:00"],
        ),
        touch(
            "ny-holiday",
            local(NY, 2026, 12, 25, 10, 0),
            NY,
            at=local(NY, 2026, 12, 28, 9, 0),
            reasons=["holiday 2026-12-25 in America/New_York; next opening Mon 09:00"],
        ),
        touch(
            # The same instant is Saturday 00:00 in Tokyo: a weekend, not a holiday.
            "same-instant-in-tokyo",
            local(NY, 2026, 12, 25, 10, 0),
            TOKYO,
            at=local(TOKYO, 2026, 12, 28, 9, 0),
            reasons=["outside the send window (Sat 00:00 Asia/Tokyo); next opening Mon 09:00"],
        ),
        touch(
            "evening-before-a-holiday",
            local(NY, 2026, 12, 24, 19, 0),
            NY,
            at=local(NY, 2026, 12, 28, 9, 0),
            reasons=[
                "outside the send window (Thu 19:00 America/New_York); next opening Mon 09:00",
                "holiday 2026-12-25 in America/New_York",
            ],
        ),
        touch(
            "min-gap-into-the-night",
            local(NY, 2026, 12, 8, 10, 0),
            NY,
            channel="call",
            last=local(NY, 2026, 12, 8, 4, 0),
            at=local(NY, 2026, 12, 9, 9, 0),
            reasons=[
                "last touch 6h ago; minimum gap 20h; next allowed Wed 00:00",
                "outside the send window (Wed 00:00 America/New_York); next opening Wed 09:00",
            ],
        ),
        touch(
            "min-gap-met-exactly",
            local(NY, 2026, 12, 8, 10, 0),
            NY,
            last=local(NY, 2026, 12, 7, 14, 0),
            at=local(NY, 2026, 12, 8, 10, 0),
            reasons=[],
        ),
        touch(
            "min-gap-hours-and-minutes",
            local(NY, 2026, 12, 8, 10, 0),
            NY,
            channel="call",
            last=local(NY, 2026, 12, 8, 0, 30),
            at=local(NY, 2026, 12, 9, 9, 0),
            reasons=[
                "last touch 9h 30m ago; minimum gap 20h; next allowed Tue 20:30",
                "outside the send window (Tue 20:30 America/New_York); next opening Wed 09:00",
            ],
        ),
        touch(
            "cap-defers-until-the-oldest-is-a-week-old",
            local(NY, 2026, 12, 10, 10, 0),
            NY,
            sent=SENDS_FRI_MON_TUE,
            at=local(NY, 2026, 12, 11, 14, 2),
            reasons=["3 emails in the last 7 days (max 3); next allowed Fri 14:02"],
        ),
        touch(
            "cap-does-not-hold-back-calls",
            local(NY, 2026, 12, 10, 10, 0),
            NY,
            channel="call",
            sent=SENDS_FRI_MON_TUE,
            at=local(NY, 2026, 12, 10, 10, 0),
            reasons=[],
        ),
        touch(
            "a-send-exactly-a-week-old-no-longer-counts",
            local(NY, 2026, 12, 11, 14, 2),
            NY,
            sent=SENDS_FRI_MON_TUE,
            at=local(NY, 2026, 12, 11, 14, 2),
            reasons=[],
        ),
        touch(
            # Four sends (the cap was lowered): the third most recent decides.
            "over-the-cap",
            local(NY, 2026, 12, 10, 10, 0),
            NY,
            sent=[local(NY, 2026, 12, 3, 11, 0), *SENDS_FRI_MON_TUE],
            at=local(NY, 2026, 12, 11, 14, 2),
            reasons=["4 emails in the last 7 days (max 3); next allowed Fri 14:02"],
        ),
        touch(
            # The cap ends Wednesday 20:00; the window pushes that to Thursday morning.
            "cap-into-the-night-then-window",
            local(NY, 2026, 12, 9, 10, 0),
            NY,
            sent=[local(NY, 2026, 12, 2, 20, 0), *SENDS_FRI_MON_TUE[1:]],
            at=local(NY, 2026, 12, 10, 9, 0),
            reasons=[
                "3 emails in the last 7 days (max 3); next allowed Wed 20:00",
                "outside the send window (Wed 20:00 America/New_York); next opening Thu 09:00",
            ],
        ),
        touch(
            # Gap, cap, evening, a holiday and a weekend, all at once.
            "combined",
            local(NY, 2026, 12, 23, 12, 0),
            NY,
            sent=[
                local(NY, 2026, 12, 16, 9, 0),  # more than a week old: does not count
                local(NY, 2026, 12, 17, 19, 0),
                local(NY, 2026, 12, 18, 10, 0),
                local(NY, 2026, 12, 22, 9, 0),
            ],
            last=local(NY, 2026, 12, 23, 11, 0),
            at=local(NY, 2026, 12, 28, 9, 0),
            reasons=[
                "last touch 1h ago; minimum gap 20h; next allowed Thu 07:00",
                "3 emails in the last 7 days (max 3); next allowed Thu 19:00",
                "outside the send window (Thu 19:00 America/New_York); next opening Mon 09:00",
                "holiday 2026-12-25 in America/New_York",
            ],
        ),
        touch(
            # A business-day gap counts send days: Thursday + 1 is Monday, past Christmas.
            "business-day-gap",
            local(NY, 2026, 12, 24, 15, 0),
            NY,
            limits=Limits(min_gap_between_touches="1 business day", holidays=["2026-12-25"]),
            channel="call",
            last=local(NY, 2026, 12, 24, 10, 0),
            at=local(NY, 2026, 12, 28, 10, 0),
            reasons=["last touch 5h ago; minimum gap 1 business day; next allowed Mon 10:00"],
        ),
        touch(
            # Far away: the label carries the date, as a bare weekday would be ambiguous.
            "far-opening-has-a-date",
            local(NY, 2026, 12, 1, 10, 0),
            NY,
            limits=window("09:00", "18:00", days=["mon"], holidays=["2026-12-07", "2026-12-14"]),
            channel="call",
            at=local(NY, 2026, 12, 21, 9, 0),
            reasons=[
                "outside the send window (Tue 10:00 America/New_York); "
                "next opening Mon 2026-12-21 09:00",
                "holiday 2026-12-07 in America/New_York",
                "holiday 2026-12-14 in America/New_York",
            ],
        ),
    ],
)
def test_earliest_touch(
    now: datetime,
    zone: ZoneInfo,
    limits: Limits,
    channel: str,
    sent: list[datetime],
    last: datetime | None,
    at: datetime,
    reasons: list[str],
) -> None:
    slot = earliest_touch(now, zone, limits, channel=channel, emails_sent=sent, last_touch=last)
    assert slot == TouchSlot(at=at, reasons=reasons)
    assert slot.deferred is bool(reasons)


def test_earliest_touch_refuses_an_unknown_channel() -> None:
    with pytest.raises(ValueError, match="channel"):
        earliest_touch(
            utc(2026, 12, 9, 15), NY, PLAYBOOK, channel="sms", emails_sent=[], last_touch=None
        )


def test_prune_sends_keeps_the_last_seven_days_sorted() -> None:
    now = utc(2026, 12, 10, 12, 0)
    sends = [
        now + timedelta(minutes=1),  # a worker clock ahead of ours still counts
        now - timedelta(days=7),  # exactly a week old: gone
        now - timedelta(days=7) + timedelta(microseconds=1),
        now - timedelta(days=30),
        datetime(2026, 12, 10, 21, 0, tzinfo=TOKYO),  # 12:00 UTC, given in another zone
    ]
    assert prune_sends(sends, now) == [
        now - timedelta(days=7) + timedelta(microseconds=1),
        now,
        now + timedelta(minutes=1),
    ]
    assert prune_sends([], now) == []


# --- properties ------------------------------------------------------------------------

# Zones with awkward rules: DST at midnight (Havana, Santiago, Asuncion), half-hour DST
# (Lord Howe), odd offsets (Kathmandu, Chatham, St Johns), DST paused for Ramadan
# (Casablanca), a southern-hemisphere DST (Sydney), a skipped day (Apia, 2011).
ZONES = [
    "America/New_York",
    "Asia/Tokyo",
    "Europe/London",
    "America/Havana",
    "America/Santiago",
    "America/Asuncion",
    "America/Sao_Paulo",
    "Australia/Lord_Howe",
    "Australia/Sydney",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "America/St_Johns",
    "Africa/Casablanca",
    "Pacific/Apia",
    "Asia/Tehran",
    "UTC",
]


@cache
def _dst_change_days(key: str, year: int) -> tuple[datetime, ...]:
    """UTC days of ``year`` in which ``key``'s offset changes: found by sampling midnights,
    independently of the bisection under test."""
    zone = ZoneInfo(key)
    day = datetime(year, 1, 1, tzinfo=UTC)
    found = []
    while day.year == year:
        following = day + timedelta(days=1)
        if day.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            found.append(day)
        day = following
    return tuple(found)


# Window edges: anywhere, or at the small hours when clocks usually change.
CLOCK = st.integers(0, 24 * 60 - 2) | st.sampled_from([0, 30, 60, 90, 120, 150, 180, 1380])


@st.composite
def limits_strategy(draw: st.DrawFn, around: date) -> Limits:
    start = draw(CLOCK)
    end = draw(st.integers(start + 1, min(start + 120, 24 * 60 - 1)) | st.integers(start + 1, 1439))
    days = draw(st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=7, unique=True))
    holidays = draw(
        st.lists(st.integers(-2, 20).map(lambda d: around + timedelta(days=d)), max_size=6)
    )
    gap = draw(st.none() | st.sampled_from(["90s", "20h", "2d", "1 business day"]))
    return Limits(
        max_emails_per_week=draw(st.none() | st.integers(1, 4)),
        min_gap_between_touches=gap,
        send_window=SendWindow(
            days=days,
            start=f"{start // 60:02d}:{start % 60:02d}",
            end=f"{end // 60:02d}:{end % 60:02d}",
        ),
        holidays=[h.isoformat() for h in holidays],
    )


@st.composite
def touch_case(draw: st.DrawFn) -> tuple:
    key = draw(st.sampled_from(ZONES))
    zone = ZoneInfo(key)
    now = draw(
        st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1)).map(
            lambda d: d.replace(tzinfo=UTC)
        )
    )
    # Half the time, start within a day or two of a DST change, where the bugs live.
    changes = _dst_change_days(key, now.year)
    if changes and draw(st.booleans()):
        now = draw(st.sampled_from(changes)) + timedelta(
            minutes=draw(st.integers(-12 * 60, 48 * 60))
        )
    limits = draw(limits_strategy(now.date()))
    offsets = st.integers(-10 * 24 * 60, 0).map(lambda m: now + timedelta(minutes=m))
    sends = draw(st.lists(offsets, max_size=6))
    last = draw(st.none() | offsets)
    channel = draw(st.sampled_from(["email", "call"]))
    return now, zone, limits, channel, sends, last


def _no_opening_before(start: datetime, end: datetime, zone: ZoneInfo, limits: Limits) -> bool:
    """Brute force: no whole minute in (start, end) is inside the window. Every opening is at
    a whole minute in these zones (windows are HH:MM, offsets and DST changes whole minutes
    since 2000)."""
    minute = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while minute < end:
        if in_window(minute, zone, limits):
            return False
        minute += timedelta(minutes=1)
    return True


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(touch_case())
def test_earliest_touch_properties(case: tuple) -> None:
    now, zone, limits, channel, sends, last = case
    slot = earliest_touch(now, zone, limits, channel=channel, emails_sent=sends, last_touch=last)
    at = slot.at
    assert at >= now
    assert in_window(at, zone, limits)
    wall = at.astimezone(zone)
    assert WEEKDAYS[wall.weekday()] in limits.send_window.days
    assert wall.date().isoformat() not in limits.holidays
    if last is not None and limits.min_gap_between_touches is not None:
        assert at >= add_duration(last, limits.min_gap_between_touches, zone, limits)
    if channel == "email" and limits.max_emails_per_week is not None:
        in_last_week = [s for s in sends if s > at - timedelta(days=7)]
        assert len(in_last_week) < limits.max_emails_per_week
    assert slot.deferred is (at > now)


@settings(max_examples=120, deadline=None, database=None)
@given(touch_case())
def test_next_window_open_is_the_earliest(case: tuple) -> None:
    now, zone, limits, *_ = case
    at = next_window_open(now, zone, limits)
    assert at >= now
    assert in_window(at, zone, limits)
    if in_window(now, zone, limits):
        assert at == now
    elif at - now <= timedelta(days=3):  # keep the brute force cheap
        assert _no_opening_before(now, at, zone, limits)


@settings(max_examples=100, deadline=None, database=None)
@given(touch_case(), st.integers(1, 5))
def test_business_days_land_in_the_window(case: tuple, days: int) -> None:
    now, zone, limits, *_ = case
    at = add_business_days(now, days, zone, limits)
    assert at > now
    assert in_window(at, zone, limits)
    # At least `days` send days were passed: the landing's local date is past the N-th.
    day, passed = now.astimezone(zone).date(), 0
    landing_day = at.astimezone(zone).date()
    while day < landing_day:
        day += timedelta(days=1)
        if WEEKDAYS[day.weekday()] in limits.send_window.days and (
            day.isoformat() not in limits.holidays
        ):
            passed += 1
    assert passed >= days


@st.composite
def dst_case(draw: st.DrawFn) -> tuple[datetime, ZoneInfo, Limits]:
    """An instant within a day of a DST change and a short window in the small hours, where
    the clocks jump: the cases a random instant almost never hits."""
    key = draw(st.sampled_from([k for k in ZONES if _dst_change_days(k, 2010)]))
    changes = _dst_change_days(key, draw(st.integers(2000, 2039))) or _dst_change_days(key, 2010)
    now = draw(st.sampled_from(changes)) + timedelta(minutes=draw(st.integers(-24 * 60, 36 * 60)))
    start = draw(st.integers(0, 4 * 60))
    end = draw(st.integers(start + 1, start + 3 * 60))
    return (
        now,
        ZoneInfo(key),
        window(f"{start // 60:02d}:{start % 60:02d}", f"{end // 60:02d}:{end % 60:02d}"),
    )


@settings(max_examples=150, deadline=None, database=None)
@given(dst_case())
def test_next_window_open_is_the_earliest_around_dst_changes(
    case: tuple[datetime, ZoneInfo, Limits],
) -> None:
    now, zone, limits = case
    at = next_window_open(now, zone, limits)
    assert at >= now
    assert in_window(at, zone, limits)
    assert in_window(now, zone, limits) is (at == now)
    assert _no_opening_before(now, at, zone, limits)
