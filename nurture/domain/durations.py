"""Durations as marketers write them: ``90s``, ``15m``, ``4h``, ``2d``, ``3w``, ``N business days``.

Kept as the written string in the models (so snapshots and JSON Schema stay readable) and
parsed here on demand. Pure: no I/O, safe inside the workflow sandbox.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

DURATION_PATTERN = r"^\s*([1-9][0-9]*)\s*(s|m|h|d|w|business days?)\s*$"
_DURATION_RE = re.compile(DURATION_PATTERN)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

DURATION_HELP = (
    "a positive whole number and a unit: 90s, 15m, 4h, 2d, 3w, or '1 business day' / "
    "'N business days' (no compounds like 1d12h, no zero, no negatives)"
)


@dataclass(frozen=True)
class ParsedDuration:
    """A duration: either calendar time or a count of business (send-window) days."""

    amount: int
    unit: str  # s, m, h, d, w or "bd"

    @property
    def business(self) -> bool:
        return self.unit == "bd"

    @property
    def calendar(self) -> timedelta:
        """The calendar length; business days count as whole days here (an upper bound is not
        what callers need: they use :func:`nurture.domain.timing.add_business_days`)."""
        if self.business:
            return timedelta(days=self.amount)
        return timedelta(seconds=self.amount * _UNIT_SECONDS[self.unit])

    def __str__(self) -> str:
        if self.business:
            return f"{self.amount} business day{'s' if self.amount != 1 else ''}"
        return f"{self.amount}{self.unit}"


class DurationError(ValueError):
    """A duration string that does not follow the contract's syntax."""


@lru_cache(maxsize=1024)
def parse_duration(text: str) -> ParsedDuration:
    """Parse a duration string.

    Args:
        text: for example ``"2d"`` or ``"3 business days"``.

    Raises:
        DurationError: naming what is wrong and what is accepted.
    """
    if not isinstance(text, str):
        raise DurationError(f"expected a duration string, got {text!r}: {DURATION_HELP}")
    match = _DURATION_RE.match(text)
    if match is None:
        raise DurationError(f"'{text}' is not a duration: {DURATION_HELP}")
    amount = int(match.group(1))
    unit = match.group(2)
    parsed = ParsedDuration(amount, "bd" if unit.startswith("business") else unit)
    # Bounded so that every deadline a lead computes from it stays a real date (a wait of
    # 9999999999d would overflow in workflow code and fail the lead's every task).
    if amount > MAX_DURATION.days * 86400 or parsed.calendar > MAX_DURATION:
        raise DurationError(f"'{text}' is longer than {MAX_DURATION.days // 365} years")
    return parsed


# Longer than any nurture wait, recycle timer or follow-up a team writes on purpose.
MAX_DURATION = timedelta(days=3650)


# The latest deadline pure code computes: "never", in practice. Far enough below
# datetime.max that showing it in any time zone or adding a day to it cannot overflow, and
# inside what a protobuf Timestamp (up to 9999-12-31) can carry to Temporal.
NEVER = datetime(9000, 1, 1, tzinfo=UTC)


def later(at: datetime, delta: timedelta) -> datetime:
    """``at + delta``, but never past :data:`NEVER`: total over every aware datetime.

    Deadlines built from times that other systems sent (an event's ``occurred_at``) must
    not raise in workflow code, where an exception fails the workflow task on every retry.
    """
    if at >= NEVER or delta >= NEVER - at:
        return NEVER
    return at + delta
