"""`/login` and `/logout`: SDR and ops logins from the ``users`` table (scrypt hashes)."""

from __future__ import annotations

import asyncio
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
    current_viewer,
    safe_next,
    start_session,
)

router = APIRouter(include_in_schema=False)


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
    user = await session.get(User, username.strip())
    stored = user.password_hash if user is not None else _decoy_hash()
    # scrypt takes tens of milliseconds of CPU: off the event loop.
    matches = await asyncio.to_thread(verify_password, password, stored)
    if user is None or not matches or user.role not in ROLES:
        context = {
            "next": safe_next(next),
            "error": "Unknown user or wrong password.",
            "username": username,
        }
        return render(request, "login.html", context, status_code=401)
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
