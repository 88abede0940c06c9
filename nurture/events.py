"""Leads and events as other systems post them (CONTRACT.md, "Leads and events").

Pure pydantic models with no import side effects: the workflow sandbox passes this module
through.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

EVENT_TYPES: tuple[str, ...] = (
    "lead.updated",
    "email.opened",
    "email.clicked",
    "email.replied",
    "email.bounced",
    "page.visited",
    "form.submitted",
    "webinar.registered",
    "webinar.attended",
    "meeting.booked",
    "call.completed",
    "handoff.rejected",
    "opportunity.won",
    "opportunity.lost",
    "lead.unsubscribed",
    "lead.do_not_contact",
    "lead.erased",
)

EventType = Literal[
    "lead.updated",
    "email.opened",
    "email.clicked",
    "email.replied",
    "email.bounced",
    "page.visited",
    "form.submitted",
    "webinar.registered",
    "webinar.attended",
    "meeting.booked",
    "call.completed",
    "handoff.rejected",
    "opportunity.won",
    "opportunity.lost",
    "lead.unsubscribed",
    "lead.do_not_contact",
    "lead.erased",
]

# Engagement: behaviour that scores and can wake a wait.
ENGAGEMENT_TYPES: frozenset[str] = frozenset(
    {
        "email.opened",
        "email.clicked",
        "email.replied",
        "page.visited",
        "form.submitted",
        "webinar.registered",
        "webinar.attended",
        "meeting.booked",
    }
)

CALL_OUTCOMES: tuple[str, ...] = (
    "connected",
    "qualified",
    "meeting_booked",
    "voicemail",
    "no_answer",
    "wrong_number",
    "not_interested",
    "call_back_later",
)
CallOutcome = Literal[
    "connected",
    "qualified",
    "meeting_booked",
    "voicemail",
    "no_answer",
    "wrong_number",
    "not_interested",
    "call_back_later",
]
TOSS_UP_OUTCOMES: frozenset[str] = frozenset({"qualified", "meeting_booked"})

# Lead fields that identify a person: never in workflow input, ids or search attributes.
PERSONAL_FIELDS: tuple[str, ...] = ("email", "first_name", "last_name", "company", "title", "phone")


class Event(BaseModel):
    """One CRM or engagement event. Unknown extra keys are ignored."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=200)
    type: EventType
    lead_id: str = Field(min_length=1, max_length=200)
    occurred_at: datetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class Lead(BaseModel):
    """A lead as the CRM posts it. Only ``id`` is required; unknown keys go to ``fields``."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:\-]+$")
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    title: str | None = None
    phone: str | None = None
    country: str | None = Field(default=None, min_length=2, max_length=2)
    timezone: str | None = None
    industry: str | None = None
    employees: int | None = Field(default=None, ge=0)
    tier_account: bool | None = None
    source: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)

    @field_validator("country")
    @classmethod
    def _upper_country(cls, value: str | None) -> str | None:
        return value.upper() if value else value

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        value = value.strip()
        local, at, domain = value.rpartition("@")
        if not at or not local or "." not in domain:
            raise ValueError("not an email address")
        return value

    def model_post_init(self, __context: Any) -> None:
        # Unknown keys of a posted lead are free fields, kept apart from the known ones.
        extra = self.__pydantic_extra__ or {}
        if extra:
            self.fields = {**self.fields, **extra}
            self.__pydantic_extra__ = {}

    def facts(self) -> LeadFacts:
        """What the workflow may carry: decision fields, never personal data."""
        return LeadFacts(
            id=self.id,
            country=self.country,
            timezone=self.timezone,
            industry=self.industry,
            employees=self.employees,
            tier_account=self.tier_account,
            source=self.source,
            fields=dict(self.fields),
            has_email=bool(self.email),
        )


class LeadFacts(BaseModel):
    """The non-personal part of a lead that rules decide on (CONTRACT.md: PII stays out)."""

    id: str
    country: str | None = None
    timezone: str | None = None
    industry: str | None = None
    employees: int | None = None
    tier_account: bool | None = None
    source: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    has_email: bool = False

    def value(self, name: str) -> Any:
        """A field by name: a known attribute, else a free field, else None."""
        if name in LeadFacts.model_fields and name not in ("fields", "has_email"):
            return getattr(self, name)
        return self.fields.get(name)
