"""Leads and events as other systems post them (CONTRACT.md, "Leads and events").

Pure pydantic models with no import side effects: the workflow sandbox passes this module
through.
"""

from __future__ import annotations

import json
import unicodedata
import zoneinfo
from datetime import UTC, datetime, timedelta
from email.utils import getaddresses
from functools import cache
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# Re-exported: the vocabulary is defined in nurture.domain.vocabulary, and read from here too.
from nurture.domain.vocabulary import CALL_OUTCOMES as CALL_OUTCOMES
from nurture.domain.vocabulary import ENGAGEMENT_TYPES as ENGAGEMENT_TYPES
from nurture.domain.vocabulary import EVENT_TYPES as EVENT_TYPES
from nurture.domain.vocabulary import TOSS_UP_OUTCOMES as TOSS_UP_OUTCOMES
from nurture.domain.vocabulary import CallOutcome as CallOutcome
from nurture.domain.vocabulary import EventType

# Lead fields that identify a person: never in workflow input, ids or search attributes.
PERSONAL_FIELDS: tuple[str, ...] = ("email", "first_name", "last_name", "company", "title", "phone")


# --- limits at intake (docs/limits.md) -----------------------------------------------------
#
# Every value that reaches a lead's workflow, its search attributes, a page or an email header
# is bounded where it comes in, so a hostile or broken sender gets a 422 naming the field
# instead of a lead that never starts (Temporal terminates a workflow whose Keyword search
# attribute exceeds 2,048 bytes), a workflow that fails on every task, or a 1 MB page.

# Contact fields: generous for any real name, company or title, small enough for a page.
MAX_NAME = 200
MAX_COMPANY = 300
MAX_TITLE = 300
MAX_PHONE = 50
# RFC 5321 limits a forward path to 256 octets, angle brackets included (RFC 3696 erratum).
MAX_EMAIL = 254
# Decision fields travel in the workflow; `source` is the LeadSource search attribute. 200
# characters are at most 800 bytes of UTF-8, well inside Temporal's 2,048-byte Keyword.
MAX_KEYWORD = 200
MAX_TIMEZONE = 64
# Free fields (unknown keys of a posted lead): the ones rules read travel in the workflow.
MAX_FREE_FIELDS = 50
MAX_FREE_FIELD_KEY = 100
MAX_FREE_FIELD_BYTES = 2_048
# Event data: a form's fields or a call's notes fit; a document does not.
MAX_EVENT_DATA_BYTES = 32_768
MAX_EVENT_DATA_DEPTH = 8
MAX_EVENT_ID = 200
# The data keys decisions read reach the workflow's state and history (which is carried
# into every continue-as-new): each is one short value. Mirrors
# ``nurture.services.intake.WORKFLOW_DATA_KEYS`` (a test keeps the two equal).
DECISION_DATA_LIMITS: dict[str, int] = {
    "step": 200,
    "cadence": 200,
    "form": 200,
    "url": 2_048,
    "outcome": 200,
    "task": 200,
    "reason": 200,
    "scanner": 200,
    "via": 200,
    "key": 200,
    "until": 40,
    "kind": 20,
    "suppressed": 200,
}

# `email.bounced` data.kind (CONTRACT.md, "Accounts and people"); none given means soft.
BOUNCE_KINDS = ("hard", "soft")

# Event times. The earliest is before any real CRM or engagement tool and after the
# defaults bad data falls back to (0001-01-01, 1900-01-01, the Unix epoch). The latest
# allows every honest clock error (a sender's local time read as UTC is off by at most 14
# hours) and nothing more: a future engagement would hold the lead's decay clock until then.
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_EVENT_AHEAD = timedelta(hours=24)


def _single_line(value: str) -> str:
    # Names and companies end up in email headers (a subject greeting the lead) and pages:
    # a line break there fails every send of the lead; other control characters are noise.
    for char in value:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            raise ValueError(f"a control character or line break ({char!r}) is not allowed")
    return value


Name = Annotated[str, StringConstraints(max_length=MAX_NAME), AfterValidator(_single_line)]
Company = Annotated[str, StringConstraints(max_length=MAX_COMPANY), AfterValidator(_single_line)]
Title = Annotated[str, StringConstraints(max_length=MAX_TITLE), AfterValidator(_single_line)]
Phone = Annotated[str, StringConstraints(max_length=MAX_PHONE), AfterValidator(_single_line)]
Keyword = Annotated[str, StringConstraints(max_length=MAX_KEYWORD), AfterValidator(_single_line)]


def _json_size(value: object) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def _depth(value: object) -> int:
    """How deeply ``value`` nests lists and objects (a scalar is 0). Iterative."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
            deepest = max(deepest, level + 1)
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
            deepest = max(deepest, level + 1)
    return deepest


def _free_value(value: JsonValue) -> JsonValue:
    if _json_size(value) > MAX_FREE_FIELD_BYTES:
        raise ValueError(f"a free field holds at most {MAX_FREE_FIELD_BYTES} bytes as JSON")
    return value


FreeFieldKey = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_FREE_FIELD_KEY),
    AfterValidator(_single_line),
]
FreeFields = Annotated[
    dict[FreeFieldKey, Annotated[JsonValue, AfterValidator(_free_value)]],
    Field(max_length=MAX_FREE_FIELDS),
]


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def normalize_email(value: str) -> str:
    """One bare address, in the one spelling every comparison uses.

    Parsed by email-validator (no DNS lookups): a display name (``Ann <ann@x.example>``),
    angle brackets, a list of addresses, a line break or any other character outside an
    address is refused, since a CRM sends a bare address and anything else is a mistake or
    an attempt to reach someone else. The domain is normalized (IDNA, lowercase) and so is
    the local part: mailbox providers treat it case-insensitively, and one spelling per
    address makes a suppression hold whatever case a lead comes with.

    Raises:
        ValueError: saying why it is not one address.
    """
    # Imported here: it compiles large regular expressions, which the worker, whose
    # workflows import this module, never needs.
    from email_validator import EmailNotValidError, validate_email

    # Spaces around a value are a copy-and-paste habit, not part of the address.
    text = value.strip(" ")
    if len(text) > MAX_EMAIL:
        raise ValueError(f"at most {MAX_EMAIL} characters")
    try:
        parsed = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not one email address: {exc}") from None
    return parsed.normalized.lower()


def address_key(value: str) -> str:
    """The spelling an address is compared and suppressed by.

    :func:`normalize_email` of it; for a row stored before intake normalized addresses,
    the one address in it (``Ann <ann@x.example>`` is ann's, so unsubscribing it holds
    for every lead with ann's address); else its trimmed lowercase text, which is what
    suppressions were keyed by before.
    """
    try:
        return normalize_email(value)
    except ValueError:
        pass
    found = [address for _name, address in getaddresses([value]) if address]
    if len(found) == 1 and not any(char in value for char in "\r\n"):
        try:
            return normalize_email(found[0])
        except ValueError:
            pass
    return value.strip().lower()


def event_time(value: datetime) -> datetime:
    """``value`` in UTC; a time without a zone is read as UTC, the zone of every stored time.

    Raises:
        ValueError: when the instant cannot be represented in UTC.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range") from None


def check_event_time(value: datetime, now: datetime) -> datetime:
    """``value`` (in UTC) when it lies between 2000-01-01 and 24 hours after ``now``.

    Raises:
        ValueError: naming the bound it breaks.
    """
    value = event_time(value)
    if value < EARLIEST_EVENT_TIME:
        raise ValueError("must not be before 2000-01-01T00:00:00Z")
    if value > now + MAX_EVENT_AHEAD:
        hours = int(MAX_EVENT_AHEAD.total_seconds() // 3600)
        raise ValueError(f"must not be more than {hours} hours in the future")
    return value


class Event(BaseModel):
    """One CRM or engagement event. Unknown extra keys are ignored.

    Lenient on purpose: the workflow decodes every signaled event with this model, also when
    it replays an old history, so the limits of new input live in :class:`IncomingEvent`.
    """

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=200)
    type: EventType
    lead_id: str = Field(min_length=1, max_length=200)
    occurred_at: datetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("occurred_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        # Aware and in UTC, so comparing it with the workflow's clock never raises.
        return None if value is None else event_time(value)


class IncomingEvent(Event):
    """An event as another system posts it: :class:`Event` within the intake limits."""

    id: str = Field(min_length=1, max_length=MAX_EVENT_ID)

    @field_validator("id")
    @classmethod
    def _printable_id(cls, value: str) -> str:
        return _single_line(value)

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _iso_text(cls, value: object) -> object:
        # Numbers would be read as Unix seconds or milliseconds, by size: a guess, refused.
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("an ISO 8601 date-time, for example 2026-11-22T10:00:00Z")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _within_bounds(cls, value: datetime | None) -> datetime | None:
        return None if value is None else check_event_time(value, datetime.now(UTC))

    @field_validator("data")
    @classmethod
    def _bounded_data(cls, value: dict[str, Any]) -> dict[str, Any]:
        if _depth(value) > MAX_EVENT_DATA_DEPTH:
            raise ValueError(f"nested more than {MAX_EVENT_DATA_DEPTH} levels deep")
        if _json_size(value) > MAX_EVENT_DATA_BYTES:
            raise ValueError(f"at most {MAX_EVENT_DATA_BYTES} bytes as JSON")
        for key, limit in DECISION_DATA_LIMITS.items():
            item = value.get(key)
            if isinstance(item, dict | list):
                raise ValueError(f"{key}: a single value, not a list or an object")
            if isinstance(item, str) and len(item) > limit:
                raise ValueError(f"{key}: at most {limit} characters")
        if "callback" in value:
            check_callback(value["callback"], datetime.now(UTC))
        return value

    @model_validator(mode="after")
    def _bounce_kind(self) -> IncomingEvent:
        # A bounce's kind decides whether its address is suppressed: a kind nobody knows
        # would be a guess either way, so it is refused; a bounce that says none is soft.
        if self.type == "email.bounced" and "kind" in self.data:
            kind = self.data["kind"]
            known = kind.strip().lower() if isinstance(kind, str) else None
            if known not in BOUNCE_KINDS:
                raise ValidationError.from_exception_data(
                    type(self).__name__,
                    [
                        {
                            "type": PydanticCustomError(
                                "bounce_kind",
                                "a bounce is hard (the address does not exist: suppressed at "
                                "once) or soft (a full mailbox, a server down: three in 30 days "
                                "suppress); leave kind out for soft",
                            ),
                            "loc": ("data", "kind"),
                            "input": kind,
                        }
                    ],
                )
            self.data["kind"] = known
        return self


# How far ahead a `call_back_later` outcome may ask for its callback.
MAX_CALLBACK_AHEAD = timedelta(days=366)


def parse_callback(value: object) -> datetime:
    """A callback time's text as ISO 8601, naive (the lead's local time) or with an offset.

    Raises:
        ValueError: naming ``callback``: not text, or not an ISO 8601 date-time.
    """
    if not isinstance(value, str):
        raise ValueError("callback: an ISO 8601 date-time, for example 2026-12-08T10:00")
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"callback: '{value[:40]}' is not an ISO 8601 date-time (2026-12-08T10:00)"
        ) from None


def check_callback(value: object, now: datetime) -> datetime:
    """A callback time as the SDR gives it: ISO 8601 (without an offset: the lead's local
    time), not in the past by more than a day, at most a year ahead.

    Raises:
        ValueError: naming ``callback`` and what is wrong.
    """
    at = parse_callback(value)
    probe = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    if probe < now - timedelta(days=1):
        raise ValueError("callback: in the past")
    if probe > now + MAX_CALLBACK_AHEAD:
        raise ValueError("callback: more than a year ahead")
    return at


# --- accounts (CONTRACT.md, "Account stickiness") -------------------------------------

FREE_MAIL = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.jp",
        "hotmail.com",
        "outlook.com",
        "live.com",
        "icloud.com",
        "me.com",
        "aol.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "mail.ru",
        "proton.me",
        "protonmail.com",
        "qq.com",
        "163.com",
        "naver.com",
        "yandex.ru",
    }
)
_COMPANY_SUFFIXES = (
    " inc",
    " inc.",
    " ltd",
    " ltd.",
    " llc",
    " gmbh",
    " co.",
    " corp",
    " corp.",
    " k.k.",
    " plc",
    " sa",
    " ag",
)


def account_key(email: str | None, company: str | None) -> str | None:
    """The account a lead belongs to: its email domain, or its normalized company name for
    free-mail addresses (so every lead of one company gets the same SDR).

    A domain (``initech.example``) or ``company:<name>``: no person's data, so it travels
    into the workflow as the ``account`` decision field that rules and ``tier_accounts``
    read (CONTRACT.md, "Accounts and people").
    """
    domain = email.rpartition("@")[2].lower() if email and "@" in email else None
    if domain and domain not in FREE_MAIL:
        return domain
    if company:
        name = " ".join(company.lower().replace(",", " ").split())
        for suffix in _COMPANY_SUFFIXES:
            if name.endswith(suffix):
                name = name[: -len(suffix)].strip()
        return f"company:{name}" if name else None
    return None


class Lead(BaseModel):
    """A lead as the CRM posts it. Only ``id`` is required; unknown keys go to ``fields``.

    Every limit of docs/limits.md is checked here, so the web app, the CSV import and the
    CLI refuse the same values.
    """

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:\-]+$")
    email: str | None = Field(default=None, description="One bare address (no display name)")
    first_name: Name | None = None
    last_name: Name | None = None
    company: Company | None = None
    title: Title | None = None
    phone: Phone | None = None
    country: str | None = Field(default=None, pattern=r"^[A-Za-z]{2}$")
    timezone: str | None = Field(
        default=None, max_length=MAX_TIMEZONE, description="An IANA time zone, e.g. Asia/Tokyo"
    )
    industry: Keyword | None = None
    employees: int | None = Field(default=None, ge=0)
    tier_account: bool | None = None
    source: Keyword | None = None
    fields: FreeFields = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _free_fields(cls, data: Any) -> Any:
        # Unknown keys of a posted lead are free fields, kept apart from the known ones, and
        # checked (and named in errors, as `fields.<key>`) like the ones posted in `fields`.
        if not isinstance(data, dict):
            return data
        extra = {k: v for k, v in data.items() if k not in cls.model_fields}
        if not extra:
            return data
        given = data.get("fields")
        known = {k: v for k, v in data.items() if k in cls.model_fields}
        if given is not None and not isinstance(given, dict):
            return known  # `fields` itself is refused; the extras wait for a valid body
        return {**known, "fields": {**(given or {}), **extra}}

    @field_validator("country")
    @classmethod
    def _upper_country(cls, value: str | None) -> str | None:
        return value.upper() if value else value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        # A zone the scheduler cannot load would fail the lead's workflow on every attempt.
        if value is not None and value not in _zones():
            raise ValueError("not an IANA time zone (for example Europe/Berlin)")
        return value

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        return normalize_email(value)

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
            account=account_key(self.email, self.company),
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
    # The account key (`account_key`): computed from the email and company by the intake,
    # never posted; kept current by `lead.updated`.
    account: str | None = None

    def value(self, name: str) -> Any:
        """A field by name: a known attribute, else a free field, else None."""
        if name == "account" and self.account is None:
            # A run started before the account was carried read a free field of that name.
            return self.fields.get(name)
        if name in LeadFacts.model_fields and name not in ("fields", "has_email"):
            return getattr(self, name)
        return self.fields.get(name)
