"""`POST /leads` and `POST /events`: the CRM's and the engagement tools' way in.

Order of work for every request, each step refusing before the next one runs:

1. read at most :data:`MAX_BODY_BYTES` of raw body (413);
2. verify ``X-Nurture-Signature`` on those exact bytes (401);
3. parse and validate the whole body (422 naming every bad field; a batch is all or nothing);
4. refuse a replay: a request whose signed ``"<t>.<body>"`` was already taken in is answered
   200 ``duplicate`` and has no effect (table ``webhook_receipts``, shared by both routes);
   the receipt is written in one transaction with what the request records (its events, or
   a new lead's row);
5. record durably, then start or signal (``nurture.services.parked``); 503 only when
   nothing could be recorded.

A request that was not taken in (refused, or failed) is forgotten again, so the sender's
resend of the very same bytes is not mistaken for a replay.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
)
from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError
from temporalio.service import RPCError

from nurture.adapters import metrics
from nurture.adapters.database import LeadRow, WebhookReceipt
from nurture.adapters.loader import CadenceSetInvalid
from nurture.adapters.temporal import TemporalUnavailable
from nurture.domain.events import Event, IncomingEvent, Lead
from nurture.domain.names import workflow_id
from nurture.services.ingest import Taken
from nurture.services.intake import Intake, lead_row
from nurture.services.parked import FINAL_STAGES, accept_recorded, submit_lead
from nurture.settings import SettingsError
from nurture.web.common import Services, ServicesDep
from nurture.web.security import (
    MAX_CLOCK_SKEW_S,
    MAX_SIGNATURE_AGE_S,
    SIGNATURE_HEADER,
    SignatureError,
    receipt_digest,
    verify_signature,
)

log = logging.getLogger(__name__)

# Generous for a batch of MAX_BATCH events; anything larger is not a webhook.
MAX_BODY_BYTES = 1_048_576
MAX_BATCH = 500
LEAD_ID_PATTERN = r"^[A-Za-z0-9._:\-]+$"
MAX_EMPLOYEES = 10_000_000
# Events carry flat-ish data; far deeper nesting is an attack or a bug, never a CRM field.
MAX_DEPTH = 32
# How long a taken-in request is remembered: longer than a signature can stay valid
# (MAX_SIGNATURE_AGE_S after a t up to MAX_CLOCK_SKEW_S in the future).
RECEIPT_TTL = timedelta(minutes=10)
assert RECEIPT_TTL.total_seconds() > MAX_SIGNATURE_AGE_S + MAX_CLOCK_SKEW_S

router = APIRouter(tags=["webhooks"])


# --- what may be posted -------------------------------------------------------------------


class PostedLead(Lead):
    """A lead as posted: :class:`nurture.domain.events.Lead` (which holds the limits of every
    field), strict about JSON types, with the limits the database and the scheduler need
    spelled out in the published schema."""

    model_config = ConfigDict(title="Lead")

    # Strict: a JSON API takes JSON types as the schema says; "12" is not a count, "yes" not
    # a boolean (pydantic's lax mode would coerce both).
    employees: StrictInt | None = Field(default=None, ge=0, le=MAX_EMPLOYEES)
    tier_account: StrictBool | None = None


class PostedEvent(IncomingEvent):
    """An event as posted (CONTRACT.md, "Leads and events"); unknown keys are ignored."""

    model_config = ConfigDict(title="Event")

    lead_id: str = Field(min_length=1, max_length=200, pattern=LEAD_ID_PATTERN)


class EventBatch(BaseModel):
    """Several events, accepted whole or refused whole."""

    model_config = ConfigDict(title="EventBatch")

    events: list[PostedEvent] = Field(min_length=1, max_length=MAX_BATCH)


# --- what is answered ---------------------------------------------------------------------


class Problem(BaseModel):
    """A refusal or failure, in words."""

    detail: str


class FieldError(BaseModel):
    """One invalid field: ``field`` is a readable path like ``events[2].type``."""

    field: str
    loc: list[str | int]
    msg: str
    index: int | None = Field(default=None, description="The batch item, for a batch")


class ValidationProblem(BaseModel):
    """A 422: every invalid field of the body (of every bad batch item)."""

    detail: str
    errors: list[FieldError]


class StageConflict(BaseModel):
    """A 409: the lead is won or closed and takes no more updates."""

    detail: str
    lead_id: str
    stage: str


class LeadAccepted(BaseModel):
    """A posted lead: created (202), recorded and waiting to start (202, ``pending_start``:
    Temporal could not be reached; its workflow starts when it can), updated (200), or a
    replay of a request already taken in (200, ``duplicate``: no effect)."""

    lead_id: str
    workflow_id: str
    status: Literal["created", "pending_start", "updated", "duplicate"]
    cadence: str | None = None
    parked_delivered: int = Field(description="Events that waited for this lead, now delivered")
    detail: str | None = None


class EventOutcome(BaseModel):
    """What happened to one posted event."""

    index: int
    event_id: str
    status: Literal["delivered", "parked", "recorded", "duplicate", "failed"]
    detail: str | None = None


class EventsAccepted(BaseModel):
    """The answer to `POST /events`: ``duplicate`` (200) when nothing in it was new (or the
    whole request is a replay of one already taken in)."""

    status: Literal["accepted", "duplicate"]
    results: list[EventOutcome]


class WebhookRefused(Exception):
    """Ends a webhook request with ``status_code`` and a JSON body."""

    def __init__(self, status_code: int, body: BaseModel) -> None:
        super().__init__(status_code)
        self.status_code = status_code
        self.body = body


async def refused_handler(_request: Request, exc: Exception) -> JSONResponse:
    """Answers a :class:`WebhookRefused` (registered by ``create_app``)."""
    assert isinstance(exc, WebhookRefused)
    headers = {"WWW-Authenticate": "Nurture-Signature"} if exc.status_code == 401 else None
    return JSONResponse(
        exc.body.model_dump(mode="json"), status_code=exc.status_code, headers=headers
    )


def _unavailable(why: str, what: str = "nothing was recorded") -> WebhookRefused:
    return WebhookRefused(503, Problem(detail=f"{what}: {why}; send it again later"))


# --- the steps ----------------------------------------------------------------------------


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise WebhookRefused(413, Problem(detail=f"the body is larger than {MAX_BODY_BYTES} bytes"))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise WebhookRefused(
                413, Problem(detail=f"the body is larger than {MAX_BODY_BYTES} bytes")
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def verified_body(request: Request, services: ServicesDep) -> tuple[bytes, int]:
    """The raw body and its signature's timestamp, once the signature checks out (401)."""
    body = await _read_body(request)
    try:
        secret = services.settings.require_webhook_secret()
    except SettingsError as exc:
        log.error("webhook refused: %s", exc)
        raise _unavailable("the webhook secret is not configured") from None
    try:
        timestamp = verify_signature(secret, request.headers.get(SIGNATURE_HEADER), body)
    except SignatureError as exc:
        raise WebhookRefused(401, Problem(detail=str(exc))) from None
    return body, timestamp


class Receipt:
    """A signed request taken in once: ``first`` is False for a replay; ``lead_inserted``:
    the new lead's row given to :func:`receipt` was inserted with it."""

    def __init__(self, first: bool, lead_inserted: bool = False) -> None:
        self.first = first
        self.lead_inserted = lead_inserted
        self.keep = True


@asynccontextmanager
async def receipt(
    services: Services, timestamp: int, body: bytes, *, lead: dict[str, Any] | None = None
) -> AsyncIterator[Receipt]:
    """Remember the signed request ``"<t>.<body>"``; forget it when not taken in.

    Yields ``first=False`` when it was already taken in (a replay, or the sender's resend
    of a request that worked). When the block raises, or sets ``keep = False``, the receipt
    is dropped, so a resend of a refused or failed request is handled again. ``lead``: a
    new lead's row, inserted with the receipt unless the lead exists (not for a replay).

    Raises:
        WebhookRefused: 503 when the database cannot be reached.
    """
    digest = receipt_digest(timestamp, body)
    try:
        # Through the writer (nurture.services.ingest): the receipt joins its next
        # transaction with other requests' writes, and it prunes old receipts.
        taken = await services.writer.take(digest, [], lead=lead)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("webhook not taken: %s", exc, exc_info=True)
        raise _unavailable("the database is unavailable") from None
    first = not taken.replay
    state = Receipt(first, taken.lead_inserted)
    try:
        yield state
    except BaseException:
        if first:
            await _forget(services, digest)
        raise
    if first and not state.keep:
        await _forget(services, digest)


async def _forget(services: Services, digest: str) -> None:
    try:
        async with services.sessions() as session:
            await session.execute(delete(WebhookReceipt).where(WebhookReceipt.digest == digest))
            await session.commit()
    except Exception:  # noqa: BLE001 - the original outcome matters more; it expires anyway
        log.warning("could not forget webhook receipt %s", digest[:12], exc_info=True)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is out of range")
    return value


def parse_json(body: bytes) -> Any:
    """The body as JSON (strict: no NaN or Infinity, no NUL or lone surrogates in strings).

    Raises:
        WebhookRefused: 422 saying where the body is not acceptable JSON.
    """
    try:
        value = json.loads(body, parse_constant=_reject_constant, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        raise _invalid("the body is not valid JSON", [([], str(exc)[:200], None)]) from None
    problem = _unstorable(value)
    if problem is not None:
        loc, why = problem
        raise _invalid("the body cannot be stored as sent", [(loc, why, None)])
    return value


def _unstorable(value: Any) -> tuple[list[str | int], str] | None:
    """Where the body holds what no database (or a sane payload) takes, and why; or None.

    Iterative, with a depth limit: a deeply nested body must get a 422, not exhaust the
    stack here or later in the JSON encoders of the database and Temporal.
    """
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, loc = stack.pop()
        if len(loc) > MAX_DEPTH:
            return loc, f"nested more than {MAX_DEPTH} levels deep"
        if isinstance(item, str):
            if not _storable_text(item):
                return loc, "text with a NUL character or an unpaired surrogate"
        elif isinstance(item, dict):
            for key, child in item.items():
                if not _storable_text(key):
                    # Named escaped: the key itself cannot be encoded into the JSON answer.
                    shown = key.encode("utf-8", "backslashreplace").decode()
                    return [*loc, shown], "a key with a NUL character or an unpaired surrogate"
                stack.append((child, [*loc, key]))
        elif isinstance(item, list):
            stack.extend((child, [*loc, index]) for index, child in enumerate(item))
    return None


def _storable_text(text: str) -> bool:
    # PostgreSQL text cannot hold NUL; lone surrogates cannot be encoded as UTF-8 at all.
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


Issue = tuple[list[str | int], str, int | None]


def _field(loc: list[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(body)"


def _invalid(detail: str, issues: list[Issue]) -> WebhookRefused:
    errors = [
        FieldError(field=_field(loc), loc=loc, msg=msg, index=index) for loc, msg, index in issues
    ]
    return WebhookRefused(422, ValidationProblem(detail=detail, errors=errors))


def _issues(exc: ValidationError, prefix: list[str | int], index: int | None) -> list[Issue]:
    return [([*prefix, *e["loc"]], e["msg"], index) for e in exc.errors(include_url=False)]


def validate_lead(payload: Any) -> PostedLead:
    """The posted lead, or 422 naming each bad field."""
    if not isinstance(payload, dict):
        raise _invalid("a lead is a JSON object", [([], "expected an object", None)])
    try:
        return PostedLead.model_validate(payload)
    except ValidationError as exc:
        raise _invalid("invalid lead", _issues(exc, [], None)) from None


def _validate_event(
    item: Any, prefix: list[str | int], index: int | None
) -> tuple[PostedEvent | None, list[Issue]]:
    if not isinstance(item, dict):
        return None, [(prefix, "an event is a JSON object", index)]
    try:
        event = PostedEvent.model_validate(item)
    except ValidationError as exc:
        return None, _issues(exc, prefix, index)
    if event.type == "lead.updated":
        # It may create the lead: its data must make a valid lead now, not fail later.
        try:
            PostedLead.model_validate({**event.data, "id": event.lead_id})
        except ValidationError as exc:
            issues = [
                (
                    [*prefix, *(("data", *e["loc"]) if e["loc"] != ("id",) else ("lead_id",))],
                    e["msg"],
                    index,
                )
                for e in exc.errors(include_url=False)
            ]
            return None, issues
    return event, []


def validate_events(payload: Any) -> tuple[list[PostedEvent], bool]:
    """The posted events and whether they came as a batch; 422 naming every bad item.

    An object with ``events`` and none of ``id``/``type``/``lead_id`` is a batch; any other
    object is one event (so an event's unknown ``events`` key is ignored like any extra key).
    """
    if not isinstance(payload, dict):
        raise _invalid('post an event or {"events": [...]}', [([], "expected an object", None)])
    is_batch = "events" in payload and not ({"id", "type", "lead_id"} & payload.keys())
    if not is_batch:
        single, problems = _validate_event(payload, [], None)
        if single is None:
            raise _invalid("invalid event", problems)
        return [single], False
    items = payload["events"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise _invalid("invalid batch", [(["events"], f"a list of 1 to {MAX_BATCH} events", None)])
    events: list[PostedEvent] = []
    issues: list[Issue] = []
    for index, item in enumerate(items):
        event, problems = _validate_event(item, ["events", index], index)
        issues += problems
        if event is not None:
            events.append(event)
    if issues:
        bad = sorted({i for _, _, i in issues if i is not None})
        raise _invalid(
            f"batch refused whole: item(s) {', '.join(map(str, bad))} invalid; nothing recorded",
            issues,
        )
    return events, True


# --- the endpoints ------------------------------------------------------------------------

_SIGNED: list[dict[str, list[str]]] = [{"webhookSignature": []}]
_COMMON: dict[int | str, dict[str, Any]] = {
    401: {
        "model": Problem,
        "description": "Missing or bad signature, or a timestamp out of its window",
    },
    413: {"model": Problem, "description": "The body is too large"},
    422: {
        "model": ValidationProblem,
        "description": "Invalid body; every bad field (and batch item) named",
    },
    503: {
        "model": Problem,
        "description": (
            "Nothing could be recorded (the database is unreachable, or the cadence files "
            "have problems); send it again later"
        ),
    },
}
RECORDING_FAILURES = (SQLAlchemyError, OSError, RPCError, TemporalUnavailable, CadenceSetInvalid)


@router.post(
    "/leads",
    status_code=202,
    response_model=LeadAccepted,
    summary="Create or update a lead (signed)",
    responses={
        200: {
            "model": LeadAccepted,
            "description": (
                "The lead existed and was updated (as lead.updated); or `duplicate`: this "
                "signed request was already taken in (a replay), and had no second effect"
            ),
        },
        202: {
            "model": LeadAccepted,
            "description": (
                "A new lead: its workflow was started; or `pending_start`: recorded while the "
                "workflow service could not be reached, started as soon as it can be"
            ),
        },
        409: {"model": StageConflict, "description": "The lead is won or closed"},
        **_COMMON,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Lead"}}},
        },
        "security": _SIGNED,
    },
)
async def post_lead(request: Request, services: ServicesDep) -> JSONResponse:
    """Create the lead (202) or update it (200); its parked events are delivered in order."""
    body, timestamp = await verified_body(request, services)
    # Validated before the replay check: the answer is the same either way (a refused
    # request leaves no receipt), and a new lead's row can then be written in the receipt's
    # own transaction instead of one of its own.
    lead = validate_lead(parse_json(body))
    try:
        # Refuse before any write when the cadence files are broken (as Intake.submit does).
        (await services.intake()).catalog.current()
    except RECORDING_FAILURES as exc:
        raise _unavailable(_why(exc), "the lead was not taken in") from None
    async with receipt(services, timestamp, body, lead=lead_row(lead)) as taken:
        if not taken.first:
            replay = LeadAccepted(
                lead_id=lead.id,
                workflow_id=workflow_id(lead.id),
                status="duplicate",
                parked_delivered=0,
            )
            return JSONResponse(replay.model_dump(mode="json"), status_code=200)
        return await _take_lead(services, lead, inserted=taken.lead_inserted)


async def _take_lead(services: Services, lead: PostedLead, *, inserted: bool) -> JSONResponse:
    """Start a lead whose row the request's transaction ``inserted``; or create or update
    one that existed (or was posted at the same moment) along the general path."""
    try:
        if not inserted:
            async with services.sessions() as session:
                existing = await session.get(LeadRow, lead.id)
                stage = existing.stage if existing is not None else None
            if stage in FINAL_STAGES:
                # Refused before any write: a won or closed (maybe erased) lead's row stays.
                raise _conflict(lead.id, str(stage))
        intake = await services.intake()
        submitted = await submit_lead(intake, lead, inserted=inserted)
    except RECORDING_FAILURES as exc:
        log.warning("lead %s not taken: %s", lead.id, exc, exc_info=True)
        raise _unavailable(_why(exc), "the lead was not taken in") from None
    result = submitted.result
    if result.status == "closed":
        raise _conflict(lead.id, result.stage or "closed")
    answer = LeadAccepted(
        lead_id=result.lead_id,
        workflow_id=result.workflow_id,
        status=result.status,
        cadence=result.cadence,
        parked_delivered=submitted.delivered,
        detail=PENDING_START if result.status == "pending_start" else None,
    )
    return JSONResponse(
        answer.model_dump(mode="json"), status_code=200 if result.status == "updated" else 202
    )


PENDING_START = (
    "recorded; the workflow service cannot be reached now, so its workflow starts (and the "
    "events waiting for it are delivered) as soon as it can: no need to send it again"
)


def _conflict(lead_id: str, stage: str) -> WebhookRefused:
    return WebhookRefused(
        409,
        StageConflict(
            detail=f"lead {lead_id} is {stage}: it takes no more updates",
            lead_id=lead_id,
            stage=stage,
        ),
    )


def _why(exc: Exception) -> str:
    if isinstance(exc, TemporalUnavailable | RPCError):
        return "the workflow service is unavailable"
    if isinstance(exc, CadenceSetInvalid):
        return "the cadence files have problems"
    return "the database is unavailable"


@router.post(
    "/events",
    status_code=202,
    response_model=EventsAccepted,
    summary="Post an event or a batch of events (signed)",
    responses={
        200: {
            "model": EventsAccepted,
            "description": (
                "Every event id was seen before, or this signed request was already taken "
                "in (a replay): no second effect"
            ),
        },
        202: {"model": EventsAccepted, "description": "Accepted; per-event statuses in the body"},
        **_COMMON,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/Event"},
                            {"$ref": "#/components/schemas/EventBatch"},
                        ]
                    }
                }
            },
        },
        "security": _SIGNED,
    },
)
async def post_events(request: Request, services: ServicesDep) -> JSONResponse:
    """Record each event, then signal its lead (or park it until the lead exists)."""
    body, timestamp = await verified_body(request, services)
    posted, _batch = validate_events(parse_json(body))
    events = [Event.model_validate(event.model_dump()) for event in posted]
    answer, status, _replay = await take_events(services, receipt_digest(timestamp, body), events)
    return JSONResponse(answer.model_dump(mode="json"), status_code=status)


async def take_events(
    services: Services, digest: str | None, events: list[Event]
) -> tuple[EventsAccepted, int, bool]:
    """Record ``events`` with the request's receipt (``digest``; None: no replay guard), then
    signal each to its lead (or park it): the one path of ``POST /events`` and the CRM
    adapters. Returns the answer, its HTTP status, and whether the request was a replay.

    Raises:
        WebhookRefused: 503 when nothing could be recorded, or when every event failed.
    """
    metrics.EVENTS.labels(outcome="received").inc(len(events))
    try:
        intake = await services.intake()
        # The request's receipt (the replay guard) and its events, durable together in a
        # transaction shared with the requests that arrived meanwhile (nurture.services.ingest).
        taken = await services.writer.take(digest, events)
    except TemporalUnavailable as exc:
        log.warning("events not taken: %s", exc)
        raise _unavailable(_why(exc)) from None
    except (SQLAlchemyError, OSError) as exc:
        log.warning("events not recorded: %s", exc, exc_info=True)
        raise _unavailable("the database is unavailable") from None
    if taken.replay:
        metrics.EVENTS.labels(outcome="duplicate").inc(len(events))
        replay = EventsAccepted(
            status="duplicate",
            results=[
                EventOutcome(
                    index=index,
                    event_id=event.id,
                    status="duplicate",
                    detail="this signed request was already received",
                )
                for index, event in enumerate(events)
            ],
        )
        return replay, 200, True
    results = await _dispatch_events(intake, events, taken)
    for result in results:
        metrics.EVENTS.labels(outcome=result.status).inc()
    if any(r.status == "failed" for r in results):
        # An event that failed is sent again by the sender: not a replay then.
        if digest is not None:
            await _forget(services, digest)
        if all(r.status == "failed" for r in results):
            raise _unavailable(results[0].detail or "unavailable")
    fresh = any(r.status not in ("duplicate", "failed") for r in results)
    answer = EventsAccepted(status="accepted" if fresh else "duplicate", results=results)
    return answer, 202 if fresh else 200, False


# Leads of one batch signaled at once, at most: a batch of 500 events must not open 500
# calls to Temporal together.
DISPATCH_CONCURRENCY = 16


async def _dispatch_events(intake: Intake, events: list[Event], taken: Taken) -> list[EventOutcome]:
    """Signal (or park) each recorded event: one lead's events in the order posted, leads
    side by side (a batch used to wait for one signal after another)."""
    results: list[EventOutcome | None] = [None] * len(events)
    by_lead: dict[str, list[int]] = {}
    for index, event in enumerate(events):
        by_lead.setdefault(event.lead_id, []).append(index)
    limit = asyncio.Semaphore(DISPATCH_CONCURRENCY)

    async def one_lead(indexes: list[int]) -> None:
        async with limit:
            for index in indexes:
                event = events[index]
                try:
                    outcome = await accept_recorded(
                        intake, event, fresh=taken.fresh[index], lead=taken.leads[index]
                    )
                except RECORDING_FAILURES as exc:
                    log.warning("event %s not handed over: %s", event.id, exc, exc_info=True)
                    results[index] = EventOutcome(
                        index=index, event_id=event.id, status="failed", detail=_why(exc)
                    )
                    continue
                results[index] = EventOutcome(index=index, event_id=event.id, status=outcome.status)

    await asyncio.gather(*(one_lead(indexes) for indexes in by_lead.values()))
    return [r for r in results if r is not None]


def add_schemas(openapi: dict[str, Any]) -> None:
    """Put the hand-read bodies' schemas and the signature scheme into an OpenAPI document.

    The endpoints read their raw body themselves (the signature covers the exact bytes), so
    FastAPI cannot infer these; the routes refer to them by ``$ref``.
    """
    components = openapi.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    published = {"PostedLead": "Lead", "PostedEvent": "Event", "EventBatch": "EventBatch"}
    for model in (PostedLead, PostedEvent, EventBatch):
        text = json.dumps(model.model_json_schema(ref_template="#/components/schemas/{model}"))
        # Published under the contract's names, not this module's class names.
        for class_name, name in published.items():
            prefix = '"#/components/schemas/'
            text = text.replace(f'{prefix}{class_name}"', f'{prefix}{name}"')
        schema = json.loads(text)
        for def_name, definition in schema.pop("$defs", {}).items():
            if def_name not in published:
                schemas.setdefault(def_name, definition)
        schemas[published[model.__name__]] = schema
    components.setdefault("securitySchemes", {})["webhookSignature"] = {
        "type": "apiKey",
        "in": "header",
        "name": SIGNATURE_HEADER,
        "description": (
            't=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>; several v1= may be '
            "given; refused when t is more than 300 s old or 60 s in the future. A request "
            "with the same t and body as one already taken in is a replay: answered 200 "
            "`duplicate`, with no effect"
        ),
    }
