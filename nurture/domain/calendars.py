"""Whose holidays hold a lead: the playbook's own dates, global or per country, and with
``limits.public_holidays`` the public holidays of the lead's own country. Pure.

Where public holidays are computed, and why there. The dates come from the ``holidays``
package, whose answers change between releases (a new law, a corrected rule, a new
country). Workflow code must give the same answer when it replays a history, whatever
package the worker has by then. So the workflow never calls the package (the domain must
not import it: `make lint` checks). An activity resolves the lead's country's public
holidays for a bounded span of years (:data:`YEARS_AHEAD` after the current one) and the
lead carries only those dates, in :class:`PublicHolidays` in its state, across
continue-as-new. A replay reads the dates from the recorded activity result, so an
upgrade of the package reaches a lead the next time it resolves them (a new year, a new
country), never in the middle of a decision already taken. Asking the activity is a new
command, so a run asks only under the ``public-holidays`` patch; the simulator resolves
them with the same service function (``nurture.services.calendars``).

The span is small on purpose: it travels in every continue-as-new of the lead (about 20
dates a year for most countries).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from nurture.domain.cadence import ALL_COUNTRIES, COUNTRY_CODES, Limits

# A lead's public holidays are resolved for the current year and this many after it: a
# hold or a business-day count never looks further than about a year ahead.
YEARS_AHEAD = 1


class PublicHolidaysInput(BaseModel):
    """Which public holidays to resolve: one country, the years ``first_year..last_year``."""

    country: str
    first_year: int
    last_year: int

    def label(self) -> str:
        return f"public holidays of {self.country}, {self.first_year}-{self.last_year}"


class PublicHolidays(PublicHolidaysInput):
    """A country's public holidays for some years, as the lead carries them."""

    # ISO date -> the holiday's name (English where the package has it).
    dates: dict[str, str] = Field(default_factory=dict)

    def covers(self, wanted: PublicHolidaysInput) -> bool:
        return (
            self.country == wanted.country
            and self.first_year <= wanted.first_year
            and self.last_year >= wanted.last_year
        )


def country_code(country: str | None) -> str | None:
    """A lead's country as an ISO 3166 alpha-2 code, or None when it names none."""
    if not isinstance(country, str):
        return None
    code = country.strip().upper()
    return code if code in COUNTRY_CODES else None


def wanted(limits: Limits, country: str | None, now: datetime) -> PublicHolidaysInput | None:
    """The public holidays a lead needs now: none without ``public_holidays`` or a country."""
    code = country_code(country)
    if not limits.public_holidays or code is None:
        return None
    return PublicHolidaysInput(country=code, first_year=now.year, last_year=now.year + YEARS_AHEAD)


class LeadLimits(Limits):
    """The playbook's limits as they hold for one lead: ``holidays`` are that lead's dates
    (``all``, its country's, its public holidays), each labelled for its history."""

    holiday_labels: tuple[tuple[str, str], ...] = ()


def lead_limits(limits: Limits, country: str | None, public: PublicHolidays | None) -> Limits:
    """``limits`` for a lead of ``country`` holding ``public`` (its resolved public holidays).

    The playbook's own ``limits`` come back unchanged when nothing differs from its plain
    list, so leads of a playbook without per-country or public holidays are timed exactly
    as before.
    """
    code = country_code(country)
    own = limits.holiday_dates(code)
    use_public = (
        limits.public_holidays
        and public is not None
        and code is not None
        and public.country == code
    )
    if isinstance(limits.holidays, list) and not use_public:
        return limits
    labels: dict[str, str] = {
        day: f"holiday {day} in {source}" for day, source in own.items() if source != ALL_COUNTRIES
    }
    dates = dict.fromkeys(own)
    if use_public:
        assert public is not None
        for day, name in public.dates.items():
            dates[day] = None
            labels[day] = f"public holiday in {public.country} ({name}, {day})"
    values = {name: getattr(limits, name) for name in Limits.model_fields}
    values["holidays"] = sorted(dates)
    return LeadLimits.model_construct(**values, holiday_labels=tuple(sorted(labels.items())))
