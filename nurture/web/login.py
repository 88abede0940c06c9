"""`/login` and `/logout`: SDR and ops logins from the ``users`` table (scrypt hashes)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from nurture.adapters.database import User
from nurture.adapters.passwords import hash_password, verify_password
from nurture.services.demo import demo_logins
from nurture.web.common import SessionDep, get_services, render
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

# Password guessing is throttled per account name, and per address only far above what an
# office behind one NAT produces: colleagues who share an address must not lock one another
# out, but one address spraying many names is stopped.
#
# Per account: the first failures are free (typos), then each failure locks the name for
# twice as long as the one before, up to a cap; a correct password clears it, and so does a
# day without failures. A guesser gets a few dozen tries a day; a user who mistyped waits a
# minute. Unknown names are counted alike, so the throttle does not tell which names exist.
ACCOUNT_FREE_FAILURES = 5
ACCOUNT_FIRST_LOCK_S = 60.0
ACCOUNT_MAX_LOCK_S = 60 * 60.0
ACCOUNT_FORGET_S = 24 * 60 * 60.0
# Per address: a sliding window. A hundred failed logins from one address in a quarter of
# an hour is far beyond the typos of a whole office.
ADDRESS_MAX_FAILURES = 100
ADDRESS_WINDOW_S = 15 * 60.0
# Counts are kept per process (a restart or another replica starts afresh), which bounds
# guessing without a shared store; the oldest idle entries go first past these sizes, so
# a flood of made-up names or addresses cannot grow memory without bound.
MAX_ACCOUNTS_TRACKED = 50_000
MAX_ADDRESSES_TRACKED = 10_000
# scrypt costs ~40 ms of CPU and 16 MiB each: a few at once, never a pile-up.
_HASHING = asyncio.Semaphore(4)


@dataclass(frozen=True)
class Held:
    """A login refused before its password is checked: whose failures hold it, how long."""

    by: Literal["account", "address"]
    seconds: float


@dataclass(frozen=True)
class Attempt:
    """A login let through; already counted as a failure until it succeeds."""

    account: str
    address: str
    at: float


@dataclass
class _Account:
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    """Failed-login counts per account name and per address, on an injectable clock.

    Each attempt is counted as a failure when it is let through, before its password is
    checked, and refunded when it succeeds: many guesses sent at once for one name cannot
    all slip past the lock while the first ones are still hashing.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """Start with no failures; ``clock`` gives seconds (monotonic; tests move it)."""
        self._clock = clock
        self._accounts: OrderedDict[str, _Account] = OrderedDict()
        self._addresses: OrderedDict[str, deque[float]] = OrderedDict()

    def begin(self, account: str, address: str) -> Attempt | Held:
        """Let an attempt through (counted as a failure until :meth:`succeeded`), or hold it."""
        now = self._clock()
        state = self._accounts.get(account)
        if state is not None and now < state.locked_until:
            return Held("account", state.locked_until - now)
        failed = self._recent(address, now)
        if len(failed) >= ADDRESS_MAX_FAILURES:
            return Held("address", failed[0] + ADDRESS_WINDOW_S - now)
        if state is None or now - state.last_failure > ACCOUNT_FORGET_S:
            state = _Account()
        state.failures += 1
        state.last_failure = now
        if state.failures >= ACCOUNT_FREE_FAILURES:
            doublings = state.failures - ACCOUNT_FREE_FAILURES
            # Capped before the power, so a long siege cannot overflow the float.
            lock = ACCOUNT_FIRST_LOCK_S * 2 ** min(doublings, 32)
            state.locked_until = now + min(lock, ACCOUNT_MAX_LOCK_S)
        self._accounts[account] = state
        self._accounts.move_to_end(account)
        failed.append(now)
        self._addresses[address] = failed
        self._addresses.move_to_end(address)
        self._trim(now)
        return Attempt(account, address, now)

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the account starts afresh and the address gets its try back."""
        self._accounts.pop(attempt.account, None)
        failed = self._addresses.get(attempt.address)
        if failed is not None and attempt.at in failed:
            failed.remove(attempt.at)

    def _recent(self, address: str, now: float) -> deque[float]:
        failed = self._addresses.get(address, deque())
        while failed and now - failed[0] >= ADDRESS_WINDOW_S:
            failed.popleft()
        return failed

    def _trim(self, now: float) -> None:
        # The least recently failing entries go first, but never one still holding logins.
        while len(self._accounts) > MAX_ACCOUNTS_TRACKED:
            name, oldest = next(iter(self._accounts.items()))
            if now < oldest.locked_until:
                break
            del self._accounts[name]
        while len(self._addresses) > MAX_ADDRESSES_TRACKED:
            address = next(iter(self._addresses))
            if len(self._recent(address, now)) >= ADDRESS_MAX_FAILURES:
                break
            del self._addresses[address]


def _throttle(request: Request) -> LoginThrottle:
    """The app's throttle (per app, so each app instance counts its own)."""
    return request.app.state.login_throttle  # type: ignore[no-any-return]


def _held_message(held: Held) -> str:
    minutes = max(1, math.ceil(held.seconds / 60))
    wait = f"{minutes} minute{'s' if minutes != 1 else ''}"
    if held.by == "address":
        return f"Too many failed logins from this network: try again in {wait}."
    return (
        f"Too many failed logins for this name: try again in {wait}, "
        "or ask ops to reset the password."
    )


@cache
def _decoy_hash() -> str:
    # Checked when the user id is unknown, so a wrong name costs as long as a wrong password.
    return hash_password("not a real password")


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, session: SessionDep, next: str | None = None) -> Response:
    """The login form (a signed-in user goes straight on)."""
    if await current_viewer(request, session) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    context = {"next": safe_next(next), "error": None, "username": ""}
    return render(request, "login.html", {**context, **await _demo(request, session)})


async def _demo(request: Request, session: AsyncSession) -> dict[str, object]:
    """The demo logins for the sign-in page: only in `make run`'s own web app."""
    services = get_services(request)
    if not services.settings.demo_logins:
        return {}
    try:
        playbook = services.catalog.current().playbook
    except Exception:  # noqa: BLE001 - broken files: the form still works
        return {}
    return {"demo_logins": await demo_logins(session, playbook)}


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
    throttle = _throttle(request)
    attempt = throttle.begin(name.lower(), request.client.host if request.client else "-")
    if isinstance(attempt, Held):
        # Refused before hashing: a held guesser costs no scrypt work, and learns nothing
        # about the password it sent (a right one is held too).
        context = {"next": safe_next(next), "error": _held_message(attempt), "username": username}
        return render(request, "login.html", context, status_code=429)
    user = await session.get(User, name)
    stored = user.password_hash if user is not None else _decoy_hash()
    # scrypt takes tens of milliseconds of CPU: off the event loop, a few at a time.
    async with _HASHING:
        matches = await asyncio.to_thread(verify_password, password, stored)
    if user is None or not matches or user.role not in ROLES or user.deactivated_at is not None:
        # Already counted by `begin`.
        context = {
            "next": safe_next(next),
            "error": "Unknown user or wrong password.",
            "username": username,
        }
        context.update(await _demo(request, session))
        return render(request, "login.html", context, status_code=401)
    throttle.succeeded(attempt)
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
