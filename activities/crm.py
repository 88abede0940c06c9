"""Signed posts to the CRM (NURTURE_CRM_WEBHOOK_URL): the same scheme as inbound webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
from temporalio.exceptions import ApplicationError


def signature(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The `X-Nurture-Signature` header value for ``body`` (same scheme as inbound)."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


async def post_signed(url: str, secret: str, payload: dict[str, object]) -> None:
    """POST ``payload`` as JSON, signed like inbound webhooks (`X-Nurture-Signature`).

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
