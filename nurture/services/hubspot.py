"""HubSpot webhooks: the v3 request signature and the mapping of HubSpot's notifications to the
product's events (``POST /webhooks/hubspot``).

Signature (HubSpot's "Validating requests", v3): ``X-HubSpot-Signature-v3`` is the base64
HMAC-SHA256, keyed with the app's client secret (``NURTURE_HUBSPOT_CLIENT_SECRET``), of the
UTF-8 string ``method + uri + body + timestamp``, where ``timestamp`` is the
``X-HubSpot-Request-Timestamp`` header (Unix milliseconds) and ``uri`` is the full URL HubSpot
posted to, with the percent-encodings of ``: / ? @ ! $ ' ( ) * , ;`` decoded. A timestamp
older than 5 minutes is refused.

A request is a JSON array of up to 100 notifications. Each is mapped by its
``subscriptionType`` (``eventType`` in older payloads); generic ``object.*`` subscriptions
are read by their ``objectTypeId`` (``0-1`` contact, ``0-3`` deal). The contact's record
ID is the lead id (CONTRACT.md: a lead's id is the CRM's id).

======================================  ==================================================
HubSpot                                 product event
======================================  ==================================================
contact.creation                        ``lead.updated`` (creates the lead)
contact.propertyChange                  ``lead.updated``: email, firstname, lastname,
                                        company, jobtitle, phone, country, industry,
                                        numemployees, hs_analytics_source, hs_timezone
                                        to the lead's fields; any other property to
                                        ``fields.<property>``
  recent_conversion_event_name          ``form.submitted`` (data.form: the form's name)
  engagements_last_meeting_booked       ``meeting.booked``
  hs_email_optout = true                ``lead.unsubscribed``
contact.privacyDeletion                 ``lead.erased``
deal.propertyChange dealstage           ``opportunity.won`` (closedwon) or
  (or hs_is_closed_won / _lost = true)  ``opportunity.lost`` (closedlost), data.reason from
                                        the deal's ``closed_lost_reason`` change in the same
                                        request; for every contact the deal is associated
                                        with
contact/deal.associationChange          links a deal to a contact (CONTACT_TO_DEAL,
                                        DEAL_TO_CONTACT); ``associationRemoved`` unlinks
======================================  ==================================================

Anything else is answered and ignored (a portal may subscribe the app to more).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
import zoneinfo
from datetime import UTC, datetime
from functools import cache
from typing import Any

from nurture.services.crm_inbound import Ignored, Incoming, Link, Mapped, Outcome, short_hash

SOURCE = "hubspot"
SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
MAX_AGE_MS = 5 * 60 * 1000
# HubSpot's clock and ours drift a little; a timestamp far ahead is no honest request.
MAX_AHEAD_MS = 60 * 1000
MAX_NOTIFICATIONS = 100

# The percent-encodings HubSpot's v3 scheme decodes in the URI before signing.
_URI_DECODE = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_ENCODED = re.compile("|".join(_URI_DECODE), re.IGNORECASE)

# Contact properties that are a lead's own fields.
CONTACT_FIELDS = {
    "email": "email",
    "firstname": "first_name",
    "lastname": "last_name",
    "company": "company",
    "jobtitle": "title",
    "phone": "phone",
    "industry": "industry",
    "numemployees": "employees",
    "hs_analytics_source": "source",
}
FORM_PROPERTY = "recent_conversion_event_name"
MEETING_PROPERTY = "engagements_last_meeting_booked"
OPT_OUT_PROPERTY = "hs_email_optout"
LOST_REASON_PROPERTY = "closed_lost_reason"
WON_STAGES = frozenset({"closedwon"})
LOST_STAGES = frozenset({"closedlost"})
CONTACT_TYPE = "0-1"
DEAL_TYPE = "0-3"


class SignatureError(Exception):
    """A request whose v3 signature is missing, stale or wrong."""


def signature_uri(uri: str) -> str:
    """``uri`` as HubSpot signs it: the listed percent-encodings decoded."""
    return _ENCODED.sub(lambda m: _URI_DECODE[m.group(0).upper()], uri)


def sign(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """The ``X-HubSpot-Signature-v3`` value for a request."""
    source = method.encode() + signature_uri(uri).encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), source, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify(
    secret: str,
    method: str,
    uris: list[str],
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    now_ms: int | None = None,
) -> int:
    """Accept the request when its signature matches one of ``uris`` in time; returns the
    timestamp (ms).

    Several URIs: behind a proxy the URL HubSpot posted to (our public URL) is not the one
    this process sees; each candidate is the same request, and only a holder of the client
    secret can sign any of them.

    Raises:
        SignatureError: saying what is wrong.
    """
    if not signature:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    if not timestamp or not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 15:
        raise SignatureError(f"{TIMESTAMP_HEADER} must be Unix milliseconds")
    stamp = int(timestamp)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if now - stamp > MAX_AGE_MS:
        raise SignatureError(f"{TIMESTAMP_HEADER} is more than 5 minutes old")
    if stamp - now > MAX_AHEAD_MS:
        raise SignatureError(f"{TIMESTAMP_HEADER} is more than 60 s in the future")
    given = signature.strip().encode("latin-1", "replace")
    for uri in dict.fromkeys(uris):
        expected = sign(secret, method, uri, body, timestamp).encode()
        if hmac.compare_digest(expected, given):
            return stamp
    raise SignatureError(f"{SIGNATURE_HEADER} does not match")


# --- mapping -----------------------------------------------------------------------------


def map_notifications(payload: Any) -> Mapped:
    """HubSpot's notifications (the parsed JSON body) as product events, links and outcomes.

    Every problem is collected (``Mapped.problems``), so one answer names them all.
    """
    mapped = Mapped()
    if not isinstance(payload, list):
        mapped.problems.append(([], "HubSpot posts a JSON array of notifications"))
        return mapped
    if not 1 <= len(payload) <= MAX_NOTIFICATIONS:
        mapped.problems.append(([], f"a list of 1 to {MAX_NOTIFICATIONS} notifications"))
        return mapped
    # A deal's lost reason travels as its own property change, usually in the same request.
    reasons: dict[str, str] = {}
    for item in payload:
        if (
            isinstance(item, dict)
            and _object_type(item) == DEAL_TYPE
            and item.get("propertyName") == LOST_REASON_PROPERTY
            and isinstance(item.get("propertyValue"), str)
            and item.get("objectId") is not None
        ):
            reasons[str(item["objectId"])] = item["propertyValue"]
    for index, item in enumerate(payload):
        _map_one(mapped, index, item, reasons)
    return mapped


def _map_one(mapped: Mapped, index: int, item: Any, reasons: dict[str, str]) -> None:
    if not isinstance(item, dict):
        mapped.problems.append(([index], "a notification is a JSON object"))
        return
    kind = item.get("subscriptionType", item.get("eventType"))
    if not isinstance(kind, str) or not kind:
        mapped.problems.append(([index, "subscriptionType"], "Field required"))
        return
    head = _head(mapped, index, item)
    if head is None:
        return
    event_id, occurred_at, object_id = head
    action = kind.rpartition(".")[2]
    object_type = _object_type(item)
    if action == "associationChange":
        _link(mapped, index, item)
    elif object_type == CONTACT_TYPE:
        _contact(mapped, index, item, action, event_id, occurred_at, object_id)
    elif object_type == DEAL_TYPE and action == "propertyChange":
        _deal(mapped, index, item, event_id, occurred_at, object_id, reasons)
    else:
        mapped.ignored.append(Ignored(index, f"{kind}: not used by the product"))


def _object_type(item: dict[str, Any]) -> str | None:
    kind = str(item.get("subscriptionType", item.get("eventType")) or "")
    prefix = kind.partition(".")[0]
    if prefix == "object":
        value = item.get("objectTypeId")
        return str(value) if value is not None else None
    return {"contact": CONTACT_TYPE, "deal": DEAL_TYPE}.get(prefix, prefix or None)


def _head(mapped: Mapped, index: int, item: dict[str, Any]) -> tuple[str, str, str] | None:
    """The event id, occurrence time and object id of a notification (None: a problem)."""
    problems = len(mapped.problems)
    values: dict[str, int] = {}
    for name in ("objectId", "eventId", "portalId", "occurredAt"):
        value = item.get(name)
        if isinstance(value, str) and value.isascii() and value.isdigit():
            value = int(value)
        if value is None:
            if name == "objectId" and "fromObjectId" in item:
                continue  # an association change names its two objects instead
            mapped.problems.append(([index, name], "Field required"))
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            mapped.problems.append(([index, name], "a whole number"))
        else:
            values[name] = value
    if len(mapped.problems) > problems:
        return None
    try:
        at = datetime.fromtimestamp(values["occurredAt"] / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        mapped.problems.append(([index, "occurredAt"], "not a time in Unix milliseconds"))
        return None
    # HubSpot does not promise eventId is unique: the id also holds what the event is about,
    # and stays the same when HubSpot sends the notification again.
    fingerprint = short_hash(
        item.get("subscriptionType", item.get("eventType")),
        values.get("objectId"),
        item.get("propertyName"),
        item.get("propertyValue"),
        values["occurredAt"],
    )
    event_id = f"hubspot-{values['portalId']}-{values['eventId']}-{fingerprint}"
    return event_id, at.isoformat(), str(values.get("objectId", ""))


def _contact(
    mapped: Mapped,
    index: int,
    item: dict[str, Any],
    action: str,
    event_id: str,
    occurred_at: str,
    lead_id: str,
) -> None:
    def add(kind: str, data: dict[str, Any], origin: dict[str, str] | None = None) -> None:
        event = {
            "id": event_id,
            "type": kind,
            "lead_id": lead_id,
            "occurred_at": occurred_at,
            "data": data,
        }
        where = {"lead_id": "objectId", "occurred_at": "occurredAt", **(origin or {})}
        mapped.events.append(Incoming(index, event, where))

    if action == "creation":
        add("lead.updated", {})
    elif action == "privacyDeletion":
        add("lead.erased", {"via": "HubSpot privacy deletion"})
    elif action == "propertyChange":
        name = item.get("propertyName")
        if not isinstance(name, str) or not name:
            mapped.problems.append(([index, "propertyName"], "Field required"))
            return
        value = item.get("propertyValue")
        if value is not None and not isinstance(value, str | int | float | bool):
            mapped.problems.append(([index, "propertyValue"], "a single value"))
            return
        text = "" if value is None else str(value)
        if name == FORM_PROPERTY:
            if text:
                add("form.submitted", {"form": text[:200]}, {"form": "propertyValue"})
            else:
                mapped.ignored.append(Ignored(index, f"{name} cleared"))
        elif name == MEETING_PROPERTY:
            if text:
                add("meeting.booked", {"booked": text})
            else:
                mapped.ignored.append(Ignored(index, f"{name} cleared"))
        elif name == OPT_OUT_PROPERTY:
            if text.lower() == "true":
                add("lead.unsubscribed", {"via": "HubSpot email opt-out"})
            else:
                mapped.ignored.append(Ignored(index, f"{name} is {text or 'empty'}"))
        else:
            key, field_value = contact_field(name, text)
            if key.startswith("fields."):
                add("lead.updated", {"fields": {key[7:]: field_value}}, {"fields": "propertyValue"})
            else:
                add("lead.updated", {key: field_value}, {key: "propertyValue"})
    else:
        mapped.ignored.append(Ignored(index, f"contact.{action}: not used by the product"))


def contact_field(name: str, value: str) -> tuple[str, Any]:
    """A contact property as a lead field: ``(field, value)``, or ``("fields.<name>", value)``
    for a property that is not one of the lead's own. Empty text clears the field."""
    if name == "country":
        # HubSpot's country is free text ("Japan"); a lead's is ISO 3166 alpha-2.
        if len(value) == 2 and value.isalpha():
            return "country", value.upper()
        return "fields.country_name", value or None
    if name == "hs_timezone":
        zone = hubspot_zone(value)
        return ("timezone", zone) if zone or not value else ("fields.hs_timezone", value)
    target = CONTACT_FIELDS.get(name)
    if target is None:
        return f"fields.{name}", value
    if not value:
        return target, None
    if target == "employees":
        digits = value.replace(",", "").strip()
        if digits.isdigit():
            return target, int(digits)
        # HubSpot's default numemployees is a range ("25-50"): kept as the portal sent it.
        return "fields.numemployees", value
    return target, value


@cache
def _zones() -> dict[str, str]:
    return {z.lower(): z for z in zoneinfo.available_timezones()}


def hubspot_zone(value: str) -> str | None:
    """HubSpot's ``hs_timezone`` (``america_slash_new_york``) as an IANA zone, or None."""
    if not value:
        return None
    return _zones().get(value.replace("_slash_", "/").lower())


def _deal(
    mapped: Mapped,
    index: int,
    item: dict[str, Any],
    event_id: str,
    occurred_at: str,
    deal_id: str,
    reasons: dict[str, str],
) -> None:
    name = item.get("propertyName")
    value = str(item.get("propertyValue") or "")
    won = (name == "dealstage" and value in WON_STAGES) or (
        name == "hs_is_closed_won" and value.lower() == "true"
    )
    lost = (name == "dealstage" and value in LOST_STAGES) or (
        name == "hs_is_closed_lost" and value.lower() == "true"
    )
    if not (won or lost):
        why = f"deal {name} = {value!r}" if name != LOST_REASON_PROPERTY else "a lost reason"
        mapped.ignored.append(Ignored(index, f"{why}: not a deal outcome"))
        return
    data: dict[str, Any] = {"deal": deal_id}
    if lost and reasons.get(deal_id):
        data["reason"] = reasons[deal_id][:200]
    mapped.outcomes.append(
        Outcome(
            index=index,
            id=event_id,
            source=SOURCE,
            object_type="deal",
            object_id=deal_id,
            type="opportunity.won" if won else "opportunity.lost",
            occurred_at=occurred_at,
            data=data,
        )
    )


def _link(mapped: Mapped, index: int, item: dict[str, Any]) -> None:
    kind = str(item.get("associationType") or "").upper()
    # Which end is the contact: the association is reported from either side.
    ends = {
        "CONTACT_TO_DEAL": ("fromObjectId", "toObjectId"),
        "DEAL_TO_CONTACT": ("toObjectId", "fromObjectId"),
    }
    if kind not in ends:
        mapped.ignored.append(Ignored(index, f"association {kind or '?'}: not used by the product"))
        return
    contact_key, deal_key = ends[kind]
    contact, deal = item.get(contact_key), item.get(deal_key)
    for key, value in ((contact_key, contact), (deal_key, deal)):
        if value is None or isinstance(value, bool) or not str(value).isdigit():
            mapped.problems.append(([index, key], "a record ID"))
            return
    mapped.links.append(
        Link(
            source=SOURCE,
            object_type="deal",
            object_id=str(deal),
            lead_id=str(contact),
            removed=bool(item.get("associationRemoved")),
        )
    )
