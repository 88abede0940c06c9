"""`POST /inbound/email`: the mail providers' inbound-parse webhooks, and the ops page of
mail that matched nothing (`/mail/unmatched`).

The body is one raw RFC 5322 message (``Content-Type: message/rfc822``), signed as every
webhook (:mod:`nurture.web.webhooks`). ``202`` accepted, ``200`` already seen (the same
Message-ID): read once, whoever sends it again (the provider's retry, the mailbox reader).
"""

from __future__ import annotations

import logging
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

from nurture.services.mailback import list_unmatched, take_mail
from nurture.web.common import ServicesDep, SessionDep, render
from nurture.web.security import OpsDep
from nurture.web.webhooks import (
    _COMMON,
    _SIGNED,
    RECORDING_FAILURES,
    Problem,
    WebhookRefused,
    _unavailable,
    _why,
    verified_body,
)

log = logging.getLogger(__name__)

router = APIRouter()

MAIL_TYPES = frozenset({"message/rfc822", "message/global"})


class MailAccepted(BaseModel):
    """What a message was read as, and what it did (``duplicate``: read before)."""

    status: Literal["accepted", "duplicate"]
    kind: str
    mail: Literal["matched", "unmatched", "ignored"]
    lead_id: str | None = None
    event_id: str | None = None
    event_type: str | None = None


@router.post(
    "/inbound/email",
    tags=["webhooks"],
    status_code=202,
    response_model=MailAccepted,
    summary="Take in one received email (raw RFC 5322, signed)",
    responses={
        200: {"model": MailAccepted, "description": "Already read (same Message-ID): no effect"},
        202: {"model": MailAccepted, "description": "Read and acted on (or kept for a person)"},
        415: {"model": Problem, "description": "The body is not message/rfc822"},
        **_COMMON,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}},
        },
        "security": _SIGNED,
    },
)
async def post_inbound_email(request: Request, services: ServicesDep) -> JSONResponse:
    """Classify the message, tie it to a lead and record its event (or keep it for a person)."""
    body, _timestamp = await verified_body(request, services)
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype not in MAIL_TYPES:
        raise WebhookRefused(
            415, Problem(detail=f"Content-Type: {ctype or 'none'}; expected message/rfc822")
        )
    if not body.strip():
        raise WebhookRefused(422, Problem(detail="body: the message is empty"))
    try:
        intake = await services.intake()
        result = await take_mail(intake, body, source="webhook")
    except RECORDING_FAILURES as exc:
        log.warning("inbound mail not taken: %s", exc, exc_info=True)
        raise _unavailable(_why(exc)) from None
    answer = MailAccepted(
        status=result.status,
        kind=result.kind,
        mail=result.mail_status,
        lead_id=result.lead_id,
        event_id=result.event_id,
        event_type=result.event_type,
    )
    code = 200 if result.status == "duplicate" else 202
    return JSONResponse(answer.model_dump(mode="json"), status_code=code)


@router.get("/inbound/unmatched", response_class=HTMLResponse, include_in_schema=False)
async def unmatched_page(request: Request, viewer: OpsDep, session: SessionDep) -> Response:
    """Mail that came back and matched no lead, for ops to sort by hand."""
    return render(request, "mail_unmatched.html", {"rows": await list_unmatched(session)})
