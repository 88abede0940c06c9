"""Secrets the app keeps to itself: the keys of the login session and of email links.

The webhook secret (``NURTURE_WEBHOOK_SECRET``) is shared with the CRM and every event
source, so it only verifies inbound webhooks and signs outbound CRM posts. What only this
app may make — the signed session cookie and the unsubscribe and click link tokens — is
keyed from an app-private secret instead: ``NURTURE_APP_SECRET`` when set, else a random
one made once and kept in the app database (table ``app_secrets``), so every process (the
web app and its replicas, the workers) agrees on it without configuration.

Each use gets its own key, derived with :func:`derived_key` and a purpose name, so no two
uses share key material.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import weakref

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nurture.adapters.database import AppSecret, insert_once
from nurture.settings import Settings

# The row of `app_secrets` that keys sessions and links when NURTURE_APP_SECRET is unset.
APP_SECRET_NAME = "app"
SESSION_PURPOSE = "session"
LINK_PURPOSE = "links"

Sessions = async_sessionmaker[AsyncSession]

# Per process and per database (one session factory each): a secret never changes once made.
_cache: weakref.WeakKeyDictionary[Sessions, dict[str, str]] = weakref.WeakKeyDictionary()


def derived_key(secret: str, purpose: str) -> str:
    """A key for ``purpose`` derived from ``secret``: hex HMAC-SHA256(secret, "nurture:<purpose>").

    Different purposes give unrelated keys, so no two uses of one secret share a key.
    """
    return hmac.new(secret.encode(), f"nurture:{purpose}".encode(), hashlib.sha256).hexdigest()


async def app_secret(sessions: Sessions, name: str) -> str:
    """The app's secret ``name`` from the database, made (randomly) on first use.

    Safe when several processes ask at once: one insert wins, the others read its value.
    Cached per process once read.

    Raises:
        SQLAlchemyError: when the database cannot be reached.
    """
    known = _cache.get(sessions, {}).get(name)
    if known is not None:
        return known
    value = await _load_or_create(sessions, name)
    _cache.setdefault(sessions, {})[name] = value
    return value


async def _load_or_create(sessions: Sessions, name: str) -> str:
    async with sessions() as session:
        # Another process making it at the same time wins or loses; both read one value.
        row, _created = await insert_once(
            session, AppSecret, {"name": name}, value=secrets.token_hex(32)
        )
        await session.commit()
        return row.value


async def app_key(settings: Settings, sessions: Sessions, purpose: str) -> str:
    """The key for ``purpose``, derived from NURTURE_APP_SECRET or the database's secret."""
    configured = settings.app_secret.get_secret_value() if settings.app_secret else ""
    base = configured or await app_secret(sessions, APP_SECRET_NAME)
    return derived_key(base, purpose)


async def link_key(settings: Settings, sessions: Sessions) -> str:
    """The key of unsubscribe and click link tokens (:mod:`nurture.adapters.link_tokens`)."""
    return await app_key(settings, sessions, LINK_PURPOSE)


async def session_key(settings: Settings, sessions: Sessions) -> str:
    """The key of the signed login session cookie."""
    return await app_key(settings, sessions, SESSION_PURPOSE)
