"""The CRM adapters: ``POST /webhooks/hubspot`` and ``POST /webhooks/salesforce``.

Each verifies the request as its vendor signs it (HubSpot's v3 signature; a Salesforce
Outbound Message's organization), maps the notifications to the product's events
(:mod:`nurture.services.hubspot`, :mod:`nurture.services.salesforce`), and hands them to the
same record-then-signal path as ``POST /events`` (:func:`nurture.web.webhooks.take_events`):
recorded durably, deduplicated by event id, delivered once, kept for a lead that does not
exist yet. A request is taken whole or refused whole, naming each bad field as the vendor
sent it (``[3].propertyValue``, ``Notification[0].sObject.Email``).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from nurture.domain.events import Event
from nurture.services import crm_inbound, hubspot, salesforce
from nurture.services.crm_inbound import Incoming, Mapped
from nurture.web.common import Services, ServicesDep
from nurture.web.security import receipt_digest
from nurture.web.webhooks import (
    EventOutcome,
    Issue,
    Problem,
    ValidationProblem,
    WebhookRefused,
    _forget,
    _invalid,
    _read_body,
    _unavailable,
    _validate_event,
    parse_json,
    take_events,
)

log = logging.getLogger(__name__)

router = APIRouter(tags=["crm"])


class CrmEvent(BaseModel):
    """What became of one product event made from a notification."""

    item: int = Field(description="The notification it came from (its index in the request)")
    event_id: str
    type: str
    lead_id: str
    status: Literal["delivered", "parked", "recorded", "duplicate", "failed"]
    detail: str | None = None


class CrmSkipped(BaseModel):
    """A notification that made no event now: ``ignored`` (not used by the product) or
    ``unmatched`` (a deal outcome whose lead is not known yet: kept, and delivered once a
    link to its lead arrives)."""

    item: int
    status: Literal["ignored", "unmatched"]
    detail: str


class CrmAccepted(BaseModel):
    """The answer to a CRM adapter: ``duplicate`` when nothing in it was new."""

    status: Literal["accepted", "duplicate"]
    events: list[CrmEvent]
    skipped: list[CrmSkipped]
    links: int = Field(description="Deal-to-lead links learned (or removed)")


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": CrmAccepted, "description": "Nothing new (or a replay): no second effect"},
    202: {"model": CrmAccepted, "description": "Accepted; per-event statuses in the body"},
    401: {"model": Problem, "description": "Missing or bad signature, or a stale timestamp"},
    413: {"model": Problem, "description": "The body is too large"},
    422: {"model": ValidationProblem, "description": "Invalid notifications, each field named"},
    503: {"model": Problem, "description": "Not configured, or nothing could be recorded"},
}


@router.post(
    "/webhooks/hubspot",
    status_code=202,
    response_model=CrmAccepted,
    summary="HubSpot webhook notifications (v3 signature)",
    responses=_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "array", "items": {}}}},
        },
        "parameters": [
            {"name": hubspot.SIGNATURE_HEADER, "in": "header", "schema": {"type": "string"}},
            {"name": hubspot.TIMESTAMP_HEADER, "in": "header", "schema": {"type": "string"}},
        ],
    },
)
async def hubspot_webhook(request: Request, services: ServicesDep) -> JSONResponse:
    """Contact changes, form submissions, meetings booked and deal outcomes from HubSpot."""
    body = await _read_body(request)
    secret = services.settings.hubspot_client_secret
    if secret is None or not secret.get_secret_value():
        log.error("HubSpot webhook refused: NURTURE_HUBSPOT_CLIENT_SECRET is not set")
        raise WebhookRefused(
            503,
            Problem(detail="the HubSpot adapter is off: NURTURE_HUBSPOT_CLIENT_SECRET is not set"),
        )
    try:
        stamp = hubspot.verify(
            secret.get_secret_value(),
            request.method,
            _signed_uris(request, services.settings.public_base),
            body,
            request.headers.get(hubspot.SIGNATURE_HEADER),
            request.headers.get(hubspot.TIMESTAMP_HEADER),
        )
    except hubspot.SignatureError as exc:
        raise WebhookRefused(401, Problem(detail=str(exc))) from None
    mapped = hubspot.map_notifications(parse_json(body))
    digest = receipt_digest(stamp, b"hubspot:" + body)
    answer, status = await _take(services, mapped, digest, prefix=[])
    return JSONResponse(answer.model_dump(mode="json"), status_code=status)


def _signed_uris(request: Request, public_base: str) -> list[str]:
    """The URLs HubSpot may have signed: ours as published (``NURTURE_PUBLIC_URL``, with or
    without its path, for a proxy that strips it) and the one this request arrived at."""
    tail = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    parts = urlsplit(public_base)
    return [public_base + tail, f"{parts.scheme}://{parts.netloc}{tail}", str(request.url)]


@router.post(
    "/webhooks/salesforce",
    summary="Salesforce Outbound Messages (SOAP; acknowledged with <Ack>true</Ack>)",
    responses={
        200: {
            "description": "The SOAP notificationsResponse with <Ack>true</Ack>",
            "content": {"text/xml": {}},
        },
        400: {"description": "Not an Outbound Message (a SOAP Fault)", "content": {"text/xml": {}}},
        401: {"description": "The token is missing or wrong", "content": {"text/xml": {}}},
        403: {"description": "Another organization", "content": {"text/xml": {}}},
        413: {"description": "The body is too large", "content": {"text/xml": {}}},
        422: {
            "description": "Invalid fields, each named (a SOAP Fault)",
            "content": {"text/xml": {}},
        },
        503: {
            "description": "Not configured, or nothing could be recorded (Salesforce retries)",
            "content": {"text/xml": {}},
        },
    },  # fmt: skip
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/xml": {"schema": {"type": "string"}}}}
    },
)
async def salesforce_webhook(request: Request, services: ServicesDep) -> Response:
    """Lead and opportunity changes from Salesforce workflow rules or flows."""
    try:
        await _salesforce(request, services)
    except WebhookRefused as exc:
        detail = _detail(exc.body)
        return _soap(salesforce.fault(detail, server=exc.status_code >= 500), exc.status_code)
    return _soap(salesforce.ACK, 200)


async def _salesforce(request: Request, services: ServicesDep) -> None:
    body = await _read_body(request)
    settings = services.settings
    if not settings.salesforce_org_id:
        log.error("Salesforce message refused: NURTURE_SALESFORCE_ORG_ID is not set")
        raise WebhookRefused(
            503,
            Problem(detail="the Salesforce adapter is off: NURTURE_SALESFORCE_ORG_ID is not set"),
        )
    if settings.salesforce_token is not None:
        given = request.query_params.get("token", "").encode("utf-8", "replace")
        wanted = settings.salesforce_token.get_secret_value().encode()
        if not hmac.compare_digest(given, wanted):
            raise WebhookRefused(401, Problem(detail="the endpoint's token is missing or wrong"))
    try:
        org, items = salesforce.parse(body)
    except salesforce.NotificationError as exc:
        raise WebhookRefused(400, Problem(detail=str(exc))) from None
    if not salesforce.same_org(org, settings.salesforce_org_id):
        raise WebhookRefused(
            403,
            Problem(
                detail=f"OrganizationId {org[:18]} is not this app's (NURTURE_SALESFORCE_ORG_ID)"
            ),
        )
    mapped = salesforce.map_notifications(items)
    # No replay guard by request: Salesforce resends a message with the same notification
    # ids, and the event ids made from them catch every repeat.
    await _take(services, mapped, None, prefix=["Notification"])


def _detail(body: BaseModel) -> str:
    if isinstance(body, ValidationProblem):
        named = "; ".join(f"{e.field}: {e.msg}" for e in body.errors)
        return f"{body.detail}: {named}"
    return str(getattr(body, "detail", "refused"))


def _soap(text: str, status: int) -> Response:
    return Response(text, status_code=status, media_type="text/xml; charset=utf-8")


async def _take(
    services: Services, mapped: Mapped, digest: str | None, prefix: list[str | int]
) -> tuple[CrmAccepted, int]:
    """Validate every event the request makes (422 naming each bad field), record and signal
    them, then keep what the request taught (links, outcomes waiting for their lead)."""
    issues: list[Issue] = [
        ([*prefix, *loc], msg, loc[0] if loc and isinstance(loc[0], int) else None)
        for loc, msg in mapped.problems
    ]
    try:
        resolved = await crm_inbound.resolve(services.sessions, mapped)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("CRM notifications not taken: %s", exc, exc_info=True)
        raise _unavailable("the database is unavailable") from None
    made = mapped.events + resolved.events
    events: list[Event] = []
    for incoming in made:
        posted, problems = _validate_event(incoming.event, [], None)
        issues += [
            (_vendor_loc(prefix, incoming, loc), msg, incoming.index) for loc, msg, _ in problems
        ]
        if posted is not None:
            events.append(Event.model_validate(posted.model_dump()))
    if issues:
        bad = sorted({i for _, _, i in issues if i is not None and i >= 0})
        which = f"notification(s) {', '.join(map(str, bad))} invalid" if bad else "invalid"
        raise _invalid(f"refused whole: {which}; nothing recorded", issues)
    replay = False
    outcomes: list[EventOutcome] = []
    status = 200
    if events:
        answer, status, replay = await take_events(services, digest, events)
        outcomes = answer.results
    if not replay:
        try:
            await crm_inbound.remember(services.sessions, mapped, resolved)
        except (SQLAlchemyError, OSError) as exc:
            # The events are recorded: a resend finds them (same ids) and writes these again.
            log.warning("CRM links not kept: %s", exc, exc_info=True)
            if digest is not None:
                await _forget(services, digest)
            raise _unavailable("the database is unavailable", "links not kept") from None
    results = [
        CrmEvent(
            item=made[o.index].index,
            event_id=o.event_id,
            type=events[o.index].type,
            lead_id=events[o.index].lead_id,
            status=o.status,
            detail=o.detail,
        )  # fmt: skip
        for o in outcomes
    ]
    skipped = [CrmSkipped(item=i.index, status="ignored", detail=i.why) for i in mapped.ignored]
    skipped += [
        CrmSkipped(
            item=o.index,
            status="unmatched",
            detail=f"{o.type} of {o.source} {o.object_type} {o.object_id}: its lead is not known "
            "yet; kept, and delivered once the CRM links it to a lead",
        )  # fmt: skip
        for o in resolved.unmatched
    ]
    learned = not replay and bool(mapped.links or resolved.unmatched)
    fresh = any(r.status not in ("duplicate", "failed") for r in results) or learned
    # `duplicate`: a replay, or events that were all seen before; a request of ignored
    # notifications only is accepted (200), with nothing to record.
    repeat = replay or (bool(results) and not fresh)
    accepted = CrmAccepted(
        status="duplicate" if repeat else "accepted",
        events=results,
        skipped=skipped,
        links=len(mapped.links),
    )
    return accepted, (202 if fresh else 200)


def _vendor_loc(
    prefix: list[str | int], incoming: Incoming, loc: list[str | int]
) -> list[str | int]:
    """An event's invalid field, named as the vendor sent it where known."""
    key = loc[1] if len(loc) > 1 and loc[0] == "data" else (loc[0] if loc else None)
    origin = incoming.origin.get(str(key)) if key is not None else None
    where: list[str | int] = list(origin.split(".")) if origin else [str(p) for p in loc]
    return [*prefix, incoming.index, *where] if incoming.index >= 0 else [*prefix, *where]
