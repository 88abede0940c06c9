"""Who may do what: webhook signatures, the login session, CSRF tokens.

Webhooks are signed with the shared webhook secret:
``X-Nurture-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``.
The CRM notifications this app sends use the same header but a key derived for that direction
(``nurture.activities.crm``), so one of them replayed to us does not verify.
The signature is checked on the raw bytes *before* anything parses them, so an unsigned body
never reaches the JSON parser or the database.

Pages use a signed session cookie (Starlette's ``SessionMiddleware``, itsdangerous inside)
holding only the user id and a CSRF token; the role is read from the ``users`` table on every
request, so a removed login or a changed role takes effect at once. The cookie's key comes
from the app-private secret (:mod:`nurture.adapters.secrets`), never from the webhook secret the
CRM and event sources hold: they must not be able to mint a session.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import itsdangerous
from fastapi import Depends, HTTPException, Request
from starlette.datastructures import MutableHeaders
from starlette.middleware.sessions import Session, SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nurture.adapters.database import User
from nurture.adapters.secrets import derived_key as derived_key

# Re-exported: the derivation of every key lives in nurture.adapters.secrets.
from nurture.adapters.signing import compute_signature, sign  # noqa: F401 - re-exported
from nurture.web.common import SessionDep

log = logging.getLogger(__name__)

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


def verify_signature(secret: str, header: str | None, body: bytes, now: float | None = None) -> int:
    """Accept ``body`` only when one of the header's ``v1`` signatures matches, in time.

    Args:
        secret: The shared webhook secret.
        header: The ``X-Nurture-Signature`` value, or None when absent.
        body: The raw request body, exactly as received.
        now: The current Unix time (tests pass one).

    Returns:
        The signature's timestamp ``t`` (with the body, it identifies the request).

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
    return t


def receipt_digest(timestamp: int, body: bytes) -> str:
    """The SHA-256 of ``"<t>.<body>"``: what identifies one signed request for replays."""
    return hashlib.sha256(f"{timestamp}.".encode() + body).hexdigest()


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


# --- middleware ---------------------------------------------------------------------------


class AppSessionMiddleware(SessionMiddleware):
    """Starlette's signed-cookie sessions, keyed by a key resolved on the first request.

    The key may live in the app database (:mod:`nurture.adapters.secrets`), which the app only
    reaches once its lifespan has started; it is resolved then and kept. While it cannot be
    resolved (the database is down), a request gets an empty session that is never saved:
    nobody is signed in, and pages needing the database fail as they would anyway.
    """

    def __init__(self, app: ASGIApp, key: Callable[[], Awaitable[str]], **options: Any) -> None:
        # A random stand-in until the real key is known; never used to sign (see __call__).
        super().__init__(app, secret_key=secrets.token_hex(32), **options)
        self._key = key
        self._ready = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not self._ready:
            try:
                key = await self._key()
            except Exception:  # noqa: BLE001 - serve without a session; retried next request
                log.warning(
                    "the session key is unavailable; serving without sessions", exc_info=True
                )
                scope["session"] = Session()
                await self.app(scope, receive, send)
                return
            self.signer = itsdangerous.TimestampSigner(key)
            self._ready = True
        await super().__call__(scope, receive, send)


# Sent with every page (HTML, and SVG pictures, which browsers can open as documents).
PAGE_HEADERS = (
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
)


class SecurityHeadersMiddleware:
    """Adds ``X-Content-Type-Options: nosniff`` to every response, and no framing and a
    same-origin referrer policy to pages. No Content-Security-Policy: the inbox's inline
    script would need ``'unsafe-inline'``, which would make one pointless."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                content_type = headers.get("content-type", "").lower()
                if content_type.startswith(("text/html", "image/svg+xml")):
                    for name, value in PAGE_HEADERS:
                        headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


# Forms (login, task outcomes, search) are small; the webhooks have their own, larger limit.
FORM_BODY_LIMIT = 64 * 1024
WEBHOOK_PATHS = frozenset({"/leads", "/events"})
# Paths with limits of their own (the CRM adapters', the codec endpoint's).
OWN_LIMIT_PATHS = WEBHOOK_PATHS | {
    "/webhooks/hubspot",
    "/webhooks/salesforce",
    "/codec/decode",
    "/codec/encode",
}


class BodyLimitMiddleware:
    """Refuses (413) a request body over ``FORM_BODY_LIMIT`` on every path but the webhooks,
    before a form parser buffers it: a login form must not be a way to fill the memory."""

    def __init__(self, app: ASGIApp, limit: int = FORM_BODY_LIMIT) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in OWN_LIMIT_PATHS:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _BodyTooLarge:
            await _too_large(send)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send) -> None:
    body = b"request body too large"
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def cross_site(request_headers: Mapping[str, str], public_url: str) -> bool:
    """True when a form post comes from another site (its Origin is not ours).

    Browsers send Origin on form posts; a post without one (a script, a test client) is
    not a cross-site form.
    """
    origin = request_headers.get("origin")
    if not origin or origin == "null":
        return origin == "null"
    host = request_headers.get("host", "")
    ours = {urlsplit(public_url).netloc, host}
    return urlsplit(origin).netloc not in ours
