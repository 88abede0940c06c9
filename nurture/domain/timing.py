"""When a lead may be touched: send windows in the lead's own time zone, holidays, business
days, the weekly email cap and the gap between touches (CONTRACT.md, ``limits``).

Pure and deterministic: it runs inside the Temporal workflow sandbox, so it never reads a
clock (every function takes the instant it reasons about), does no I/O besides ``zoneinfo``
loading tz data (which the sandbox allows), and imports nothing from temporalio.

Conventions:

* Every instant going in must be timezone-aware; every instant coming out is UTC.
* A send window is ``[start, end)`` in the lead's local wall-clock time, on the local dates
  whose weekday is in ``send_window.days`` and that are not in ``holidays``. The end is
  exclusive: 18:00 is already closed.
* A window whose start is not before its end is never open (the validator reports it);
  searching for an opening in one raises ``ValueError`` instead of looping.
* Searches give up after :data:`MAX_SEARCH_DAYS` days with a ``ValueError`` that says why
  (for example every send day listed as a holiday), so a workflow never spins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nurture.domain.cadence import WEEKDAYS, Limits
from nurture.domain.durations import parse_duration

__all__ = [
    "COUNTRY_ZONES",
    "MAX_SEARCH_DAYS",
    "WEEK",
    "TouchSlot",
    "add_business_days",
    "add_duration",
    "earliest_touch",
    "in_window",
    "lead_zone",
    "next_window_open",
    "prune_sends",
]

MAX_SEARCH_DAYS = 400
"""How far ahead a search for an open slot looks before it gives up with ``ValueError``."""

WEEK = timedelta(days=7)
"""The rolling period of ``max_emails_per_week``."""

UTC_ZONE = ZoneInfo("UTC")

# ISO 3166 alpha-2 -> the IANA zone where most of the country's people live: the default
# for a lead without a (valid) `timezone` (CONTRACT.md, "Leads and events"). Countries
# whose population is split across zones about evenly are left out (they fall back to UTC)
# rather than guessed.
COUNTRY_ZONES: dict[str, str] = {
    # Americas
    "US": "America/New_York",
    "CA": "America/Toronto",
    "MX": "America/Mexico_City",
    "BR": "America/Sao_Paulo",
    "AR": "America/Argentina/Buenos_Aires",
    "CL": "America/Santiago",
    "CO": "America/Bogota",
    "PE": "America/Lima",
    "VE": "America/Caracas",
    "EC": "America/Guayaquil",
    "UY": "America/Montevideo",
    "PY": "America/Asuncion",
    "BO": "America/La_Paz",
    "CR": "America/Costa_Rica",
    "PA": "America/Panama",
    "GT": "America/Guatemala",
    "HN": "America/Tegucigalpa",
    "SV": "America/El_Salvador",
    "NI": "America/Managua",
    "DO": "America/Santo_Domingo",
    "PR": "America/Puerto_Rico",
    "JM": "America/Jamaica",
    "CU": "America/Havana",
    "TT": "America/Port_of_Spain",
    # Europe
    "GB": "Europe/London",
    "IE": "Europe/Dublin",
    "FR": "Europe/Paris",
    "DE": "Europe/Berlin",
    "ES": "Europe/Madrid",
    "PT": "Europe/Lisbon",
    "IT": "Europe/Rome",
    "NL": "Europe/Amsterdam",
    "BE": "Europe/Brussels",
    "LU": "Europe/Luxembourg",
    "CH": "Europe/Zurich",
    "AT": "Europe/Vienna",
    "DK": "Europe/Copenhagen",
    "NO": "Europe/Oslo",
    "SE": "Europe/Stockholm",
    "FI": "Europe/Helsinki",
    "IS": "Atlantic/Reykjavik",
    "PL": "Europe/Warsaw",
    "CZ": "Europe/Prague",
    "SK": "Europe/Bratislava",
    "HU": "Europe/Budapest",
    "RO": "Europe/Bucharest",
    "BG": "Europe/Sofia",
    "GR": "Europe/Athens",
    "HR": "Europe/Zagreb",
    "SI": "Europe/Ljubljana",
    "RS": "Europe/Belgrade",
    "BA": "Europe/Sarajevo",
    "MK": "Europe/Skopje",
    "AL": "Europe/Tirane",
    "EE": "Europe/Tallinn",
    "LV": "Europe/Riga",
    "LT": "Europe/Vilnius",
    "UA": "Europe/Kyiv",
    "BY": "Europe/Minsk",
    "MD": "Europe/Chisinau",
    "RU": "Europe/Moscow",
    "TR": "Europe/Istanbul",
    "CY": "Asia/Nicosia",
    "MT": "Europe/Malta",
    # Middle East and Africa
    "IL": "Asia/Jerusalem",
    "AE": "Asia/Dubai",
    "SA": "Asia/Riyadh",
    "QA": "Asia/Qatar",
    "KW": "Asia/Kuwait",
    "BH": "Asia/Bahrain",
    "OM": "Asia/Muscat",
    "JO": "Asia/Amman",
    "LB": "Asia/Beirut",
    "IR": "Asia/Tehran",
    "IQ": "Asia/Baghdad",
    "EG": "Africa/Cairo",
    "MA": "Africa/Casablanca",
    "DZ": "Africa/Algiers",
    "TN": "Africa/Tunis",
    "NG": "Africa/Lagos",
    "GH": "Africa/Accra",
    "CI": "Africa/Abidjan",
    "SN": "Africa/Dakar",
    "CM": "Africa/Douala",
    "KE": "Africa/Nairobi",
    "ET": "Africa/Addis_Ababa",
    "TZ": "Africa/Dar_es_Salaam",
    "UG": "Africa/Kampala",
    "RW": "Africa/Kigali",
    "AO": "Africa/Luanda",
    "ZM": "Africa/Lusaka",
    "ZW": "Africa/Harare",
    "ZA": "Africa/Johannesburg",
    # Asia and Oceania
    "JP": "Asia/Tokyo",
    "CN": "Asia/Shanghai",
    "HK": "Asia/Hong_Kong",
    "MO": "Asia/Macau",
    "TW": "Asia/Taipei",
    "KR": "Asia/Seoul",
    "MN": "Asia/Ulaanbaatar",
    "IN": "Asia/Kolkata",
    "PK": "Asia/Karachi",
    "BD": "Asia/Dhaka",
    "LK": "Asia/Colombo",
    "NP": "Asia/Kathmandu",
    "SG": "Asia/Singapore",
    "MY": "Asia/Kuala_Lumpur",
    "ID": "Asia/Jakarta",
    "TH": "Asia/Bangkok",
    "VN": "Asia/Ho_Chi_Minh",
    "PH": "Asia/Manila",
    "MM": "Asia/Yangon",
    "KH": "Asia/Phnom_Penh",
    "KZ": "Asia/Almaty",
    "UZ": "Asia/Tashkent",
    "GE": "Asia/Tbilisi",
    "AM": "Asia/Yerevan",
    "AZ": "Asia/Baku",
    "AU": "Australia/Sydney",
    "NZ": "Pacific/Auckland",
    "FJ": "Pacific/Fiji",
}

_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # not strftime: locale-free
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)


# --- zones -------------------------------------------------------------------------------


def _load_zone(key: object) -> ZoneInfo | None:
    if not isinstance(key, str) or not key.strip():
        return None
    try:
        return ZoneInfo(key.strip())
    # Lead data comes from a CRM: a typo, a bare region ("America" is a directory) or a
    # path-like key must fall back, never fail the lead's workflow.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def lead_zone(timezone: str | None, country: str | None) -> ZoneInfo:
    """The time zone a lead's send window is read in.

    Args:
        timezone: the lead's IANA zone name (case-sensitive, as IANA spells it), if any.
        country: the lead's ISO 3166 alpha-2 country code (any case), if any.

    Returns:
        The lead's zone if it names a real IANA zone; else the country's most populous zone
        from :data:`COUNTRY_ZONES`; else UTC.
    """
    zone = _load_zone(timezone)
    if zone is None and isinstance(country, str):
        zone = _load_zone(COUNTRY_ZONES.get(country.strip().upper()))
    return zone or UTC_ZONE


# --- the send window ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    """``limits.send_window`` and ``limits.holidays`` parsed once."""

    days: frozenset[int]  # date.weekday() numbers
    start: time
    end: time | None  # None: the window closes at midnight ("24:00")
    holidays: frozenset[date]
    # What a holiday is, where it is more than a date (a country's, a public one).
    labels: tuple[tuple[date, str], ...] = ()

    def holiday(self, day: date, zone: ZoneInfo) -> str:
        """A holiday in words: ``holiday 2026-12-25 in Asia/Tokyo``, or its label."""
        for labelled, label in self.labels:
            if labelled == day:
                return label
        return f"holiday {day.isoformat()} in {zone}"

    def open_on(self, day: date) -> bool:
        return day.weekday() in self.days and day not in self.holidays

    def searchable(self) -> None:
        """Raise when no instant can ever be inside the window (so searches never spin)."""
        if not self.days:
            raise ValueError("limits.send_window.days is empty: the send window never opens")
        if self.end is not None and self.start >= self.end:
            raise ValueError(
                f"limits.send_window: start {self.start:%H:%M} is not before end "
                f"{self.end:%H:%M}: the send window never opens"
            )


def _parse_holiday(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"limits.holidays: {value!r} is not a date (YYYY-MM-DD)")


@lru_cache(maxsize=256)
def _window_from(
    days: tuple[str, ...],
    start: str,
    end: str,
    holidays: tuple[object, ...],
    labels: tuple[tuple[str, str], ...] = (),
) -> _Window:
    return _Window(
        days=frozenset(WEEKDAYS.index(day) for day in days),
        start=time.fromisoformat(start),
        end=None if end == "24:00" else time.fromisoformat(end),
        holidays=frozenset(_parse_holiday(h) for h in holidays),
        labels=tuple((_parse_holiday(d), label) for d, label in labels),
    )


def _window(limits: Limits) -> _Window:
    # Limits holds lists (unhashable), so the cache is keyed on its parts. A lead's own
    # limits (nurture.domain.calendars.lead_limits) carry its holidays' labels too.
    sw = limits.send_window
    holidays = limits.holidays
    if isinstance(holidays, dict):
        holidays = holidays.get("all", [])  # a playbook's map: only what holds for every lead
    labels = getattr(limits, "holiday_labels", ())
    return _window_from(tuple(sw.days), sw.start, sw.end, tuple(holidays), labels)


def _utc(at: datetime, name: str = "at") -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        # A naive instant would be read in the worker's zone: wrong by hours, silently.
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {at.isoformat()}")
    return at.astimezone(UTC)


def _open(at: datetime, zone: ZoneInfo, window: _Window) -> bool:
    local = at.astimezone(zone)
    clock = local.time()
    return (
        window.open_on(local.date())
        and window.start <= clock
        and (window.end is None or clock < window.end)
    )


def in_window(at: datetime, zone: ZoneInfo, limits: Limits) -> bool:
    """Whether ``at`` is inside the lead's send window.

    Args:
        at: an aware instant.
        zone: the lead's zone (see :func:`lead_zone`).
        limits: the playbook's limits.

    Returns:
        True when ``at``'s local date is a send day that is not a holiday and its local time
        is in ``[start, end)``. Always False for a window whose start is not before its end.

    Raises:
        ValueError: ``at`` is naive, or a holiday is not a YYYY-MM-DD date.
    """
    return _open(_utc(at), zone, _window(limits))


def _offset(zone: ZoneInfo, at: datetime) -> timedelta:
    offset = at.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


def _transitions(zone: ZoneInfo, lo: datetime, hi: datetime) -> list[datetime]:
    """The instants in ``(lo, hi]`` where ``zone``'s UTC offset changes, to the second.

    zoneinfo keeps its transition table private, so they are found by bisection. Assumes
    the offset does not change and change back between ``lo`` and ``hi`` (tz data has no
    such pair within a day, the span this is called on). ``lo`` must be whole seconds.
    """
    found: list[datetime] = []
    while (before := _offset(zone, lo)) != _offset(zone, hi):
        a, b = lo, hi
        while b - a > _SECOND:
            mid = a + timedelta(seconds=int((b - a).total_seconds()) // 2)
            if _offset(zone, mid) == before:
                a = mid
            else:
                b = mid
        found.append(b)
        lo = b
    return found


def _pieces(zone: ZoneInfo, lo: datetime, hi: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Split ``[lo, hi)`` into spans of constant UTC offset."""
    bounds = [lo, *_transitions(zone, lo, hi), hi]
    for start, end in zip(bounds, bounds[1:], strict=False):
        if start < end:
            yield start, end


def _first_open_in(lo: datetime, hi: datetime, zone: ZoneInfo, window: _Window) -> datetime | None:
    """The earliest open instant in ``[lo, hi)``, a span of constant UTC offset.

    In such a span local time runs like UTC, so the window can only open at ``lo`` itself
    (the span may start at a DST change that jumps into the window) or where the local
    clock reaches ``start`` on a send day. Checking those candidates in order is exact.
    """
    offset = _offset(zone, lo)
    candidates = [lo]
    day = (lo + offset).date()
    last_day = (hi + offset).date()
    while day <= last_day:
        if window.open_on(day):
            opening = datetime.combine(day, window.start, tzinfo=UTC) - offset
            if lo < opening < hi:
                candidates.append(opening)
        day += _DAY
    for candidate in candidates:
        if _open(candidate, zone, window):
            return candidate
    return None


def _next_open(at: datetime, zone: ZoneInfo, window: _Window) -> datetime:
    window.searchable()
    # Walk UTC time a day at a time, splitting each day where the offset changes. Working
    # in UTC (not local dates) is what makes DST gaps and repeated hours come out right: an
    # opening inside a gap becomes the instant the clocks jump, and a repeated hour that
    # re-enters the window is found at the instant the clocks go back.
    chunk = at.replace(microsecond=0)
    for _ in range(MAX_SEARCH_DAYS + 1):
        for lo, hi in _pieces(zone, chunk, chunk + _DAY):
            found = _first_open_in(max(lo, at), hi, zone, window) if hi > at else None
            if found is not None:
                return found
        chunk += _DAY
    raise ValueError(
        f"the send window never opens within {MAX_SEARCH_DAYS} days after {at.isoformat()} "
        f"in {zone}: check limits.send_window.days and limits.holidays"
    )


def next_window_open(at: datetime, zone: ZoneInfo, limits: Limits) -> datetime:
    """The earliest instant at or after ``at`` inside the send window.

    Args:
        at: an aware instant.
        zone: the lead's zone; holidays are dates in this zone's calendar, so
            2026-12-25 in Asia/Tokyo is a different UTC span than in America/New_York.
        limits: the playbook's limits.

    Returns:
        ``at`` itself (in UTC) when it is inside the window; else the instant the window
        next opens on a send day that is not a holiday, in UTC. When DST skips the start
        time (a window opening at 02:30 on a spring-forward night), the window opens at
        the instant the clocks jump past it.

    Raises:
        ValueError: the window has no days or its start is not before its end; no opening
            exists within :data:`MAX_SEARCH_DAYS` days; ``at`` is naive; a holiday is not
            a date.
    """
    return _next_open(_utc(at), zone, _window(limits))


# --- durations ---------------------------------------------------------------------------


def _next_send_day(day: date, window: _Window) -> date:
    for _ in range(MAX_SEARCH_DAYS):
        day += _DAY
        if window.open_on(day):
            return day
    raise ValueError(
        f"no send day within {MAX_SEARCH_DAYS} days after {day.isoformat()}: "
        "check limits.send_window.days and limits.holidays"
    )


def add_business_days(at: datetime, days: int, zone: ZoneInfo, limits: Limits) -> datetime:
    """``at`` plus ``days`` business days, as :func:`add_duration` defines them.

    Args:
        at: an aware instant.
        days: how many business days, at least 1.
        zone: the lead's zone.
        limits: the playbook's limits (which days are send days, which are holidays).

    Returns:
        The landing instant in UTC, always inside the send window.

    Raises:
        ValueError: ``days`` < 1, or see :func:`next_window_open`.
    """
    if days < 1:
        raise ValueError(f"business days must be at least 1, got {days}")
    window = _window(limits)
    window.searchable()
    local = _utc(at).astimezone(zone)
    day = local.date()
    for _ in range(days):
        day = _next_send_day(day, window)
    # fold=0 reads a wall time the way java.time does: one skipped by a DST gap moves on by
    # the gap's length (02:30 -> 03:30), a repeated one takes its first occurrence.
    landing = datetime.combine(day, local.time().replace(fold=0), tzinfo=zone)
    return _next_open(landing.astimezone(UTC), zone, window)


def add_duration(at: datetime, duration: str, zone: ZoneInfo, limits: Limits) -> datetime:
    """``at`` plus a duration as marketers write it (CONTRACT.md, "Durations").

    Calendar units (``90s``, ``15m``, ``4h``, ``2d``, ``3w``) are plain elapsed time: ``2d``
    is 48 hours, so across a DST change the local clock time shifts by the hour. They
    ignore the send window; touches go through :func:`earliest_touch` for that.

    ``N business days`` counts send-window days: the local dates after ``at``'s local date
    whose weekday is in ``limits.send_window.days`` and that are not holidays; ``at``'s own
    date never counts, whether or not it is a send day (Saturday + 1 business day is
    Monday; Friday + 1 is Monday). The result lands on the N-th such date at the same local
    time of day as ``at``. If that time is outside the window it moves *forward* to the next
    opening: before the start it waits for the start that same day; at or after the end it
    goes to the next send day's start. So Friday 20:00 + 1 business day is Monday 20:00,
    which is after hours, so Tuesday 09:00; Friday 07:00 + 1 is Monday 09:00. Moving forward,
    never back, keeps the promise "at least N business days later".

    Args:
        at: an aware instant.
        duration: for example ``"2d"`` or ``"3 business days"``.
        zone: the lead's zone.
        limits: the playbook's limits.

    Returns:
        The resulting instant in UTC.

    Raises:
        nurture.domain.durations.DurationError: ``duration`` is not a valid duration (a ValueError).
        ValueError: see :func:`next_window_open` (business days only).
    """
    parsed = parse_duration(duration)
    if parsed.business:
        return add_business_days(at, parsed.amount, zone, limits)
    return _utc(at) + parsed.calendar


# --- touches ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TouchSlot:
    """When a touch may happen, and why it could not happen sooner.

    Attributes:
        at: the instant (UTC) the touch may happen.
        reasons: one short sentence per limit that held the touch back, with local times;
            empty when the touch may happen at once.
    """

    at: datetime
    reasons: list[str] = field(default_factory=list)

    @property
    def deferred(self) -> bool:
        """Whether any limit held the touch back."""
        return bool(self.reasons)


def _clock(at: datetime, zone: ZoneInfo, ref: datetime) -> str:
    """``at`` on the lead's wall clock, e.g. ``Mon 09:00``; with the date when it is not
    within the six days after ``ref``'s local date (a bare weekday would be ambiguous)."""
    local = at.astimezone(zone)
    label = f"{_DAY_NAMES[local.weekday()]} {local:%H:%M}"
    if 0 <= (local.date() - ref.astimezone(zone).date()).days < 7:
        return label
    return f"{_DAY_NAMES[local.weekday()]} {local:%Y-%m-%d %H:%M}"


def _ago(elapsed: timedelta) -> str:
    seconds = max(0, int(elapsed.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m" if minutes else f"{seconds}s"


def _holidays_between(
    after: datetime, before: datetime, zone: ZoneInfo, window: _Window
) -> Iterable[str]:
    """Holidays on send days strictly between two instants' local dates, in words: the
    days a reader would otherwise have expected the touch on."""
    first = after.astimezone(zone).date()
    last = before.astimezone(zone).date()
    return [
        window.holiday(h, zone)
        for h in sorted(window.holidays)
        if first < h < last and h.weekday() in window.days
    ]


def earliest_touch(
    now: datetime,
    zone: ZoneInfo,
    limits: Limits,
    *,
    channel: Literal["email", "call"],
    emails_sent: list[datetime],
    last_touch: datetime | None,
) -> TouchSlot:
    """The earliest instant at or after ``now`` when a touch respects every limit at once.

    The limits: the send window and holidays (both channels); ``min_gap_between_touches``
    since ``last_touch`` (both channels); ``max_emails_per_week`` (email only), a rolling
    seven days: with the cap at N and N or more sends in the last seven days, the touch
    waits until the N-th most recent send is seven days old (a send exactly seven days old
    no longer counts). A touch over a limit is deferred, never dropped.

    The gap and the cap each say "not before instant X" and stay satisfied once met, so
    all limits hold at once at the first window opening at or after the latest of ``now``
    and those instants: a cap that ends at night is pushed to the next morning, and no
    iteration is needed.

    Args:
        now: the current instant (the workflow's clock), aware.
        zone: the lead's zone.
        limits: the playbook's limits.
        channel: ``"email"`` or ``"call"``.
        emails_sent: when emails to this lead were sent (older ones are ignored; see
            :func:`prune_sends`).
        last_touch: the last email or call to this lead, if any.

    Returns:
        The slot, with one reason per limit that held it back, for example
        ``"3 emails in the last 7 days (max 3); next allowed Thu 14:02"``.

    Raises:
        ValueError: see :func:`next_window_open`; an unknown channel; a naive instant.
    """
    if channel not in ("email", "call"):
        raise ValueError(f"channel must be 'email' or 'call', got {channel!r}")
    now = _utc(now, "now")
    window = _window(limits)
    reasons: list[str] = []
    ready = now

    if last_touch is not None and limits.min_gap_between_touches is not None:
        last = _utc(last_touch, "last_touch")
        gap = limits.min_gap_between_touches
        allowed = add_duration(last, gap, zone, limits)
        if allowed > now:
            reasons.append(
                f"last touch {_ago(now - last)} ago; minimum gap {gap}; "
                f"next allowed {_clock(allowed, zone, now)}"
            )
            ready = max(ready, allowed)

    cap = limits.max_emails_per_week
    if channel == "email" and cap is not None:
        # Sends stamped after `now` (another worker's clock) still count as recent.
        recent = prune_sends(emails_sent, now)
        if len(recent) >= cap:
            allowed = recent[-cap] + WEEK
            noun = "email" if len(recent) == 1 else "emails"
            reasons.append(
                f"{len(recent)} {noun} in the last 7 days (max {cap}); "
                f"next allowed {_clock(allowed, zone, now)}"
            )
            ready = max(ready, allowed)

    at = _next_open(ready, zone, window)
    if at > ready:
        local_day = ready.astimezone(zone).date()
        opening = _clock(at, zone, now)
        if local_day in window.holidays and local_day.weekday() in window.days:
            reasons.append(f"{window.holiday(local_day, zone)}; next opening {opening}")
        else:
            reasons.append(
                f"outside the send window ({_clock(ready, zone, now)} {zone}); "
                f"next opening {opening}"
            )
        reasons.extend(_holidays_between(ready, at, zone, window))
    return TouchSlot(at=at, reasons=reasons)


# What held a touch back, as a closed set of labels (metrics count holds by these).
HOLD_KINDS = (
    "min_gap",
    "weekly_cap",
    "holiday",
    "send_window",
    "paused",
    "sending_paused",
    "out_of_office",
)


def hold_kinds(reasons: list[str]) -> list[str]:
    """The labels of :data:`HOLD_KINDS` for the ``reasons`` of a :class:`TouchSlot`."""
    kinds: list[str] = []
    for reason in reasons:
        if reason.startswith("last touch"):
            kind = "min_gap"
        elif "in the last 7 days" in reason:
            kind = "weekly_cap"
        elif reason.startswith(("holiday", "public holiday")):
            kind = "holiday"
        else:
            kind = "send_window"
        if kind not in kinds:
            kinds.append(kind)
    return kinds


def prune_sends(emails_sent: list[datetime], now: datetime) -> list[datetime]:
    """The sends that still count toward ``max_emails_per_week``, oldest first, in UTC.

    Keeps those less than seven days before ``now`` (and any stamped after it). Dropping
    the rest loses nothing: a send seven days old can never count again, so the workflow's
    state stays bounded.

    Args:
        emails_sent: send instants, aware, in any order.
        now: the current instant, aware.
    """
    cutoff = _utc(now, "now") - WEEK
    return sorted(s for s in (_utc(x, "emails_sent") for x in emails_sent) if s > cutoff)
