"""Signed posts to the CRM (NURTURE_CRM_WEBHOOK_URL).

The header is the inbound scheme's (``X-Nurture-Signature: t=<unix seconds>,v1=<hex>``), but
the HMAC key is not the webhook secret itself: it is a key derived from it for this one
direction, so a notification of ours replayed to our own ``POST /leads`` or ``POST /events``
does not verify there. The CRM verifies a post like this::

    key = hmac.new(webhook_secret.encode(), b"nurture:crm-outbound", sha256).hexdigest()
    v1 = hmac.new(key.encode(), f"{t}.".encode() + raw_body, sha256).hexdigest()

(the derived key is the 64-character lowercase hex string, used as the HMAC key's bytes),
refuses a ``t`` older than a few minutes, and drops a repeated payload ``id``.
"""

from __future__ import annotations

import json

import httpx
from temporalio.exceptions import ApplicationError

from nurture.adapters.secrets import derived_key
from nurture.adapters.signing import sign

OUTBOUND_PURPOSE = "crm-outbound"


def outbound_key(secret: str) -> str:
    """The key outbound posts are signed with: derived from the webhook secret."""
    return derived_key(secret, OUTBOUND_PURPOSE)


def signature(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The `X-Nurture-Signature` header value for an outbound ``body``.

    Args:
        secret: the webhook secret (the derived outbound key is computed here).
        body: the exact bytes posted.
        timestamp: Unix seconds; now by default.
    """
    return sign(outbound_key(secret), body, timestamp)


async def post_signed(url: str, secret: str, payload: dict[str, object]) -> None:
    """POST ``payload`` as JSON, signed with the outbound key (see the module docstring).

    Every failure is retryable, a refusal (4xx) included: the workflow does not catch
    activity errors, so a non-retryable one would fail the lead's whole workflow over a CRM
    misconfiguration. Retrying instead leaves the lead visibly stuck on this activity (the
    error names the answer) until ops fix the CRM side; the payload's ``id`` lets the CRM
    drop a repeat.

    Raises:
        ApplicationError: ``CrmUnavailable`` (unreachable, 5xx, 429) or ``CrmRefused`` (4xx).
    """
    body = json.dumps(payload, sort_keys=True).encode()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(
                url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Nurture-Signature": signature(secret, body),
                },
            )
    except httpx.HTTPError as exc:
        raise ApplicationError(
            f"CRM webhook unreachable: {type(exc).__name__}: {exc}", type="CrmUnavailable"
        ) from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise ApplicationError(
            f"CRM webhook answered {response.status_code}", type="CrmUnavailable"
        )
    if response.status_code >= 400:
        raise ApplicationError(
            f"CRM webhook refused the notification: {response.status_code} {response.text[:200]}",
            type="CrmRefused",
        )
