"""Who may do what: webhook signatures, the login session, CSRF tokens.

Webhooks are signed like the CRM notifications this app sends (``activities.tasks.signature``):
``X-Nurture-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``.
The signature is checked on the raw bytes *before* anything parses them, so an unsigned body
never reaches the JSON parser or the database.

Pages use a signed session cookie (Starlette's ``SessionMiddleware``, itsdangerous inside)
holding only the user id and a CSRF token; the role is read from the ``users`` table on every
request, so a removed login or a changed role takes effect at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request

from nurture.db import User
from nurture.web.common import SessionDep

SIGNATURE_HEADER = "X-Nurture-Signature"
# A captured request can be replayed only this long; event ids catch replays inside it.
MAX_SIGNATURE_AGE_S = 300
# Clocks drift: allow the sender to be a little ahead, not arbitrarily.
MAX_CLOCK_SKEW_S = 60
# More candidates would only let a caller make us compute more comparisons.
MAX_SIGNATURES = 8
SESSION_COOKIE = "nurture_session"
SESSION_MAX_AGE_S = 12 * 3600
ROLES = ("sdr", "ops")


class SignatureError(Exception):
    """A webhook whose signature is missing, malformed, wrong or out of its time window."""


def compute_signature(secret: str, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` (the ``v1`` value)."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """A complete ``X-Nurture-Signature`` header value for ``body`` (for senders and tests)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={compute_signature(secret, body, t)}"


def verify_signature(
    secret: str, header: str | None, body: bytes, now: float | None = None
) -> None:
    """Accept ``body`` only when one of the header's ``v1`` signatures matches, in time.

    Args:
        secret: The shared webhook secret.
        header: The ``X-Nurture-Signature`` value, or None when absent.
        body: The raw request body, exactly as received.
        now: The current Unix time (tests pass one).

    Raises:
        SignatureError: saying what is wrong (missing, malformed, old, future, no match).
    """
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp: str | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamp = value.strip()
        elif key == "v1":
            candidates.append(value.strip())
    if (
        timestamp is None
        or not (timestamp.isascii() and timestamp.isdigit())
        or len(timestamp) > 12
    ):
        raise SignatureError(f"{SIGNATURE_HEADER} needs t=<unix seconds>")
    if not candidates:
        raise SignatureError(f"{SIGNATURE_HEADER} needs at least one v1=<hex signature>")
    if len(candidates) > MAX_SIGNATURES:
        raise SignatureError(f"at most {MAX_SIGNATURES} v1 signatures")
    t = int(timestamp)
    current = time.time() if now is None else now
    if current - t > MAX_SIGNATURE_AGE_S:
        raise SignatureError(f"signature timestamp is more than {MAX_SIGNATURE_AGE_S} s old")
    if t - current > MAX_CLOCK_SKEW_S:
        raise SignatureError(f"signature timestamp is more than {MAX_CLOCK_SKEW_S} s in the future")
    expected = compute_signature(secret, body, t).encode()
    # Bytes, not str: compare_digest refuses non-ASCII text, and headers may carry any latin-1.
    if not any(
        hmac.compare_digest(expected, c.lower().encode("latin-1", "replace")) for c in candidates
    ):
        raise SignatureError("signature does not match")


def derived_key(secret: str, purpose: str) -> str:
    """A key for ``purpose`` derived from the webhook secret, so no two uses share one key."""
    return hmac.new(secret.encode(), f"nurture:{purpose}".encode(), hashlib.sha256).hexdigest()


# --- the signed-in user -------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    """The signed-in user of a request."""

    id: str
    role: str
    csrf: str

    @property
    def is_ops(self) -> bool:
        return self.role == "ops"

    def owner_filter(self) -> str | None:
        """The SDR whose work this viewer may see; None means everyone's (ops)."""
        return None if self.is_ops else self.id


class LoginRequired(Exception):
    """Raised by a page dependency when nobody is signed in; answered with a redirect."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def login_url(next_path: str) -> str:
    """The login page, coming back to ``next_path`` afterwards."""
    return "/login?next=" + quote(next_path, safe="/")


def safe_next(value: str | None) -> str:
    """A local path to return to after login; anything else (``//evil``, URLs) goes home."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/inbox"


def start_session(request: Request, user: User) -> None:
    """Sign ``user`` in: a fresh session (no fixation) with its own CSRF token."""
    request.session.clear()
    request.session["user"] = user.id
    request.session["csrf"] = secrets.token_urlsafe(24)


async def current_viewer(request: Request, session: SessionDep) -> Viewer | None:
    """The signed-in user, or None; also kept in ``request.state.viewer`` for templates."""
    user_id = request.session.get("user")
    viewer: Viewer | None = None
    if isinstance(user_id, str):
        user = await session.get(User, user_id)
        csrf = request.session.get("csrf")
        if user is not None and user.role in ROLES and isinstance(csrf, str):
            viewer = Viewer(id=user.id, role=user.role, csrf=csrf)
        else:
            request.session.clear()
    request.state.viewer = viewer
    return viewer


async def require_viewer(
    request: Request, viewer: Annotated[Viewer | None, Depends(current_viewer)]
) -> Viewer:
    """A page dependency: the signed-in user, else a redirect to the login page."""
    if viewer is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(path)
    return viewer


async def require_ops(viewer: Annotated[Viewer, Depends(require_viewer)]) -> Viewer:
    """A page dependency: an ops user (403 for SDRs)."""
    if not viewer.is_ops:
        raise HTTPException(status_code=403, detail="this page is for ops")
    return viewer


def check_csrf(viewer: Viewer, token: str | None) -> None:
    """Refuse a form post whose CSRF token is not the session's (403)."""
    if not token or not hmac.compare_digest(token.encode(), viewer.csrf.encode()):
        raise HTTPException(
            status_code=403, detail="the form expired; reload the page and try again"
        )


ViewerDep = Annotated[Viewer, Depends(require_viewer)]
OpsDep = Annotated[Viewer, Depends(require_ops)]
