"""The `X-Nurture-Signature` scheme, shared by inbound webhooks and outbound CRM posts.

`t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>.<raw body>")>`. Standard library only, so
the worker can sign without importing the web app.
"""

from __future__ import annotations

import hashlib
import hmac
import time


def compute_signature(secret: str, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` (the ``v1`` value)."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """A complete ``X-Nurture-Signature`` header value for ``body``."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={compute_signature(secret, body, t)}"
