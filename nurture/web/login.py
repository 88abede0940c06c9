"""`/login` and `/logout`: SDR and ops logins from the ``users`` table (scrypt hashes)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from functools import cache
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from nurture.auth import hash_password, verify_password
from nurture.db import User
from nurture.web.common import SessionDep, render
from nurture.web.security import (
    ROLES,
    ViewerDep,
    check_csrf,
    cross_site,
    current_viewer,
    safe_next,
    start_session,
)

router = APIRouter(include_in_schema=False)

# Password guessing: after this many failures for one user name, or from one address, within
# the window, logins answer 429 until the window passes. Kept per process (a restart or
# another replica starts afresh), which bounds guessing without a shared store.
MAX_FAILURES = 5
FAILURE_WINDOW_S = 15 * 60
# scrypt costs ~40 ms of CPU and 16 MiB each: a few at once, never a pile-up.
_HASHING = asyncio.Semaphore(4)


class _Failures:
    def __init__(self) -> None:
        self._seen: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._seen[key]
        while times and now - times[0] > FAILURE_WINDOW_S:
            times.popleft()
        if not times:
            self._seen.pop(key, None)
            return deque()
        return times

    def blocked(self, keys: list[str], now: float) -> bool:
        return any(len(self._recent(key, now)) >= MAX_FAILURES for key in keys)

    def add(self, keys: list[str], now: float) -> None:
        for key in keys:
            self._recent(key, now)
            self._seen[key].append(now)

    def clear(self, key: str) -> None:
        self._seen.pop(key, None)


def _failures(request: Request) -> _Failures:
    """The app's failure counts (per app, so each app instance counts its own)."""
    state = request.app.state
    if not hasattr(state, "login_failures"):
        state.login_failures = _Failures()
    return state.login_failures  # type: ignore[no-any-return]


@cache
def _decoy_hash() -> str:
    # Checked when the user id is unknown, so a wrong name costs as long as a wrong password.
    return hash_password("not a real password")


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, session: SessionDep, next: str | None = None) -> Response:
    """The login form (a signed-in user goes straight on)."""
    if await current_viewer(request, session) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", {"next": safe_next(next), "error": None, "username": ""})


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    session: SessionDep,
    username: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=1000)],
    next: Annotated[str | None, Form()] = None,
) -> Response:
    """Check the password; on success start a fresh session and go on to ``next``."""
    if cross_site(request.headers, request.app.state.settings.public_base):
        # Another site posting our login form would sign the user in as someone else.
        context = {"next": "/inbox", "error": "Sign in from this site's own page.", "username": ""}
        return render(request, "login.html", context, status_code=403)
    name = username.strip()
    keys = [f"user:{name.lower()}", f"ip:{request.client.host if request.client else '-'}"]
    now = time.monotonic()
    failures = _failures(request)
    if failures.blocked(keys, now):
        context = {
            "next": safe_next(next),
            "error": "Too many failed logins: wait 15 minutes, or ask ops to reset the password.",
            "username": username,
        }
        return render(request, "login.html", context, status_code=429)
    user = await session.get(User, name)
    stored = user.password_hash if user is not None else _decoy_hash()
    # scrypt takes tens of milliseconds of CPU: off the event loop, a few at a time.
    async with _HASHING:
        matches = await asyncio.to_thread(verify_password, password, stored)
    if user is None or not matches or user.role not in ROLES:
        failures.add(keys, now)
        context = {
            "next": safe_next(next),
            "error": "Unknown user or wrong password.",
            "username": username,
        }
        return render(request, "login.html", context, status_code=401)
    failures.clear(keys[0])
    start_session(request, user)
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/logout")
async def logout(
    request: Request, viewer: ViewerDep, csrf: Annotated[str | None, Form()] = None
) -> Response:
    """End the session."""
    check_csrf(viewer, csrf)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
