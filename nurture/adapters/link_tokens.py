"""Signed tokens for unsubscribe links, tracked-click links and the open pixel.

A token carries what it points at and an HMAC over it, so the web app can act on it without a
login (RFC 8058 one-click) and a forged or edited token is refused. No personal data in a
token: the lead id and the send key only.

Tokens are keyed with the app's link key (:func:`nurture.adapters.secrets.link_key`), never with
the webhook secret the CRM and event sources hold.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any


class BadToken(ValueError):
    """A token that was not made by us (or was changed)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: str, body: str) -> str:
    digest = hmac.new(secret.encode(), f"{purpose}.{body}".encode(), hashlib.sha256).digest()
    return _b64(digest[:18])


def make_token(secret: str, purpose: str, payload: dict[str, Any]) -> str:
    """A URL-safe signed token for ``payload``.

    Bound to its purpose: an unsubscribe token does not work as a click token.
    """
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_mac(secret, purpose, body)}"


def read_token(secret: str, purpose: str, token: str) -> dict[str, Any]:
    """The payload of a token we made.

    Raises:
        BadToken: when the token is malformed or its signature does not match.
    """
    body, _, mac = token.partition(".")
    # Bytes: compare_digest raises TypeError for non-ASCII text, and a token is anyone's input.
    expected = _mac(secret, purpose, body).encode()
    if not body or not mac or not hmac.compare_digest(mac.encode("utf-8", "replace"), expected):
        raise BadToken("not a valid link")
    try:
        payload = json.loads(_unb64(body))
    except ValueError as exc:
        raise BadToken("not a valid link") from exc
    if not isinstance(payload, dict):
        raise BadToken("not a valid link")
    return payload


def unsubscribe_url(base: str, key: str, lead_id: str, send_key: str | None = None) -> str:
    """The unsubscribe link for a lead (and the send it is in); ``key``: the link key."""
    return f"{base}/u/{make_token(key, 'unsubscribe', {'l': lead_id, 'k': send_key})}"


def click_url(base: str, key: str, lead_id: str, send_key: str, url: str) -> str:
    """A tracked link to ``url`` in a send; ``key``: the link key."""
    return f"{base}/c/{make_token(key, 'click', {'l': lead_id, 'k': send_key, 'u': url})}"


def open_url(base: str, key: str, lead_id: str, send_key: str) -> str:
    """The open pixel of a send (an image in its HTML part); ``key``: the link key."""
    return f"{base}/o/{make_token(key, 'open', {'l': lead_id, 'k': send_key})}"
