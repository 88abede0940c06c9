"""The lead's public holidays, resolved outside the workflow (``nurture.domain.calendars``)."""

from __future__ import annotations

from temporalio import activity

from nurture.domain import messages as am
from nurture.services.calendars import public_holidays


@activity.defn(name=am.RESOLVE_PUBLIC_HOLIDAYS)
async def resolve_public_holidays(request: am.PublicHolidaysInput) -> am.PublicHolidays:
    """The public holidays of one country for a few years, as the lead will carry them."""
    return public_holidays(request)
