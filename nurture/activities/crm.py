"""Signed posts to the CRM (NURTURE_CRM_WEBHOOK_URL), through an outbox.

The lead's activities (``handoff``, ``record_transition``) only record a post
(:func:`nurture.services.crm_outbox.enqueue`); :class:`CrmSender`, a background task of every
worker, sends what is due with bounded retries and marks a post ``failed`` for ops once its
attempts are spent. A CRM that refuses or is down therefore never holds a lead: before the
outbox, the post ran inside the activity, which Temporal retried forever.

The header is the inbound scheme's (``X-Nurture-Signature: t=<unix seconds>,v1=<hex>``), but
the HMAC key is not the webhook secret itself: it is a key derived from it for this one
direction, so a notification of ours replayed to our own ``POST /leads`` or ``POST /events``
does not verify there. The CRM verifies a post like this::

    key = hmac.new(webhook_secret.encode(), b"nurture:crm-outbound", sha256).hexdigest()
    v1 = hmac.new(key.encode(), f"{t}.".encode() + raw_body, sha256).hexdigest()

(the derived key is the 64-character lowercase hex string, used as the HMAC key's bytes),
refuses a ``t`` older than a few minutes, and drops a repeated payload ``id`` (a post is
sent at least once: a sender that dies mid-post sends it again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nurture.adapters import metrics
from nurture.adapters.secrets import derived_key
from nurture.adapters.signing import sign
from nurture.services import crm_outbox
from nurture.services.crm_outbox import Policy

log = logging.getLogger(__name__)

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


class CrmPostFailed(Exception):
    """The CRM did not take a post: unreachable, 5xx or 429 (``refused`` False), or 4xx."""

    def __init__(self, message: str, *, refused: bool) -> None:
        super().__init__(message)
        self.refused = refused


async def post_signed(
    url: str, secret: str, payload: dict[str, object], client: httpx.AsyncClient | None = None
) -> None:
    """POST ``payload`` as JSON, signed with the outbound key (see the module docstring).

    Raises:
        CrmPostFailed: saying what the CRM answered (or why it could not be reached).
    """
    body = json.dumps(payload, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "X-Nurture-Signature": signature(secret, body)}
    try:
        if client is None:
            async with httpx.AsyncClient(timeout=10) as own:
                response = await own.post(url, content=body, headers=headers)
        else:
            response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise CrmPostFailed(
            f"CRM webhook unreachable: {type(exc).__name__}: {exc}", refused=False
        ) from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise CrmPostFailed(f"CRM webhook answered {response.status_code}", refused=False)
    if response.status_code >= 400:
        raise CrmPostFailed(
            f"CRM webhook refused the notification: {response.status_code} {response.text[:200]}",
            refused=True,
        )


class CrmSender:
    """Sends the CRM outbox's due posts, oldest first, until cancelled (one per worker).

    Several workers may run one each: a post is claimed with a compare-and-set before it is
    sent, so it is posted by one of them at a time.

    Args:
        url: ``NURTURE_CRM_WEBHOOK_URL``.
        secret: The webhook secret (the outbound key is derived from it).
        sessions: The app database.
        policy: Attempts and waits (:class:`nurture.services.crm_outbox.Policy`).
        every_s: How often to look for due posts when there was nothing to send.
    """

    def __init__(
        self,
        url: str,
        secret: str,
        sessions: async_sessionmaker[AsyncSession],
        policy: Policy | None = None,
        every_s: float = 2.0,
    ) -> None:
        self.url = url
        self.secret = secret
        self.sessions = sessions
        self.policy = policy or Policy()
        self.every_s = every_s

    async def send_due(self, now: datetime | None = None) -> int:
        """One round: attempt every post due at ``now``; returns how many were attempted."""
        now = now or datetime.now(UTC)
        attempted = 0
        async with httpx.AsyncClient(timeout=10) as client:
            for post in await crm_outbox.due(self.sessions, now):
                if not await crm_outbox.claim(self.sessions, post, now, self.policy):
                    continue  # another worker's sender has it
                attempted += 1
                error: str | None = None
                try:
                    await post_signed(self.url, self.secret, post.payload, client)
                except CrmPostFailed as exc:
                    error = str(exc)
                status = await crm_outbox.settle(
                    self.sessions, post, datetime.now(UTC), self.policy, error
                )
                result = "sent" if error is None else ("retry" if status == "pending" else "failed")
                metrics.CRM_POSTS.labels(result=result).inc()
                if status == "failed":
                    log.warning(
                        "CRM post %s failed for good after %d attempts: %s",
                        post.key,
                        post.attempts,
                        error,
                    )
        return attempted

    async def run(self) -> None:
        """Send due posts until cancelled; a failed round is logged and tried again."""
        while True:
            attempted = 0
            try:
                attempted = await self.send_due()
            except Exception:  # noqa: BLE001 - keep sending; the next round retries
                log.warning("CRM sender: a round failed; retrying", exc_info=True)
            if not attempted:
                with contextlib.suppress(TimeoutError):
                    await asyncio.sleep(self.every_s)
