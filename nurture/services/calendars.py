"""Public holidays per country, from the `holidays` package, for the lead machine.

The workflow never calls the package (see ``nurture.domain.calendars`` for why): the
`resolve_public_holidays` activity and `cadences simulate` call :func:`public_holidays`.
"""

from __future__ import annotations

from functools import lru_cache

import holidays

from nurture.domain.calendars import PublicHolidays, PublicHolidaysInput

# Names in English where the package has them (it defaults to the country's language).
LANGUAGE = "en_US"


@lru_cache(maxsize=512)
def _resolve(country: str, first_year: int, last_year: int) -> tuple[tuple[str, str], ...]:
    try:
        probe = holidays.country_holidays(country)
    except NotImplementedError:
        return ()  # a country the package does not know: no public holidays
    language = LANGUAGE if LANGUAGE in (probe.supported_languages or ()) else None
    found = holidays.country_holidays(
        country, years=range(first_year, last_year + 1), language=language
    )
    return tuple(sorted((day.isoformat(), str(name)) for day, name in found.items()))


def public_holidays(request: PublicHolidaysInput) -> PublicHolidays:
    """The national public holidays of ``request.country`` in its years (regional ones,
    such as a US state's, are not included); none for a country the package lacks."""
    dates = _resolve(request.country.upper(), request.first_year, request.last_year)
    return PublicHolidays(**request.model_dump(), dates=dict(dates))
