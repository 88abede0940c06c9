"""Temporal clients made one way everywhere: the pydantic data converter, clear errors; and
:class:`TemporalGate`, which keeps a request from waiting on a Temporal that does not answer."""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from nurture.adapters import tracing
from nurture.adapters.codec import data_converter
from nurture.domain.names import SEARCH_ATTRIBUTES
from nurture.settings import Settings, SettingsError


class TemporalUnavailable(RuntimeError):
    """The Temporal server cannot be reached; the message says what to start."""


log = logging.getLogger(__name__)

T = TypeVar("T")

# Statuses that say the server could not be reached or did not answer in time, as opposed
# to an answer (not found, already started, invalid argument...).
UNREACHABLE = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.CANCELLED,
        RPCStatusCode.UNKNOWN,
        RPCStatusCode.RESOURCE_EXHAUSTED,
    }
)


def _pem(value: str | None, name: str) -> bytes | None:
    """A PEM given inline or as a file path."""
    if value is None:
        return None
    if value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    try:
        with open(value, "rb") as file:
            return file.read()
    except OSError as exc:
        raise SettingsError(f"{name}: cannot read {value}: {exc.strerror}") from None


def tls_config(settings: Settings) -> TLSConfig | bool:
    """mTLS from NURTURE_TEMPORAL_TLS_CERT/_KEY/_CA; plain TLS for an API key; else none.

    Raises:
        SettingsError: a certificate without its key (or the reverse), or an unreadable file.
    """
    cert = _pem(settings.temporal_tls_cert, "NURTURE_TEMPORAL_TLS_CERT")
    key = _pem(
        settings.temporal_tls_key.get_secret_value() if settings.temporal_tls_key else None,
        "NURTURE_TEMPORAL_TLS_KEY",
    )
    ca = _pem(settings.temporal_tls_ca, "NURTURE_TEMPORAL_TLS_CA")
    if (cert is None) != (key is None):
        raise SettingsError(
            "NURTURE_TEMPORAL_TLS_CERT and NURTURE_TEMPORAL_TLS_KEY go together (mTLS)"
        )
    if cert is not None or ca is not None:
        return TLSConfig(client_cert=cert, client_private_key=key, server_root_ca_cert=ca)
    # Temporal Cloud with an API key: TLS with the system's trust store.
    return settings.temporal_api_key is not None


async def connect(
    settings: Settings, *, lazy: bool = False, runtime: Runtime | None = None
) -> Client:
    """A client for the configured server and namespace, with the pydantic converter.

    With NURTURE_ENCRYPTION_KEYS every payload is encrypted (:mod:`nurture.adapters.codec`);
    with the TLS or API key settings it connects to a cluster or Temporal Cloud; with
    traces on it carries Temporal's tracing interceptor (workers made from it inherit it).

    Args:
        settings: The configuration.
        lazy: Connect on the first call instead of now (never fails here): for a process
            that must keep working, and recording, while Temporal is down (the web app).
        runtime: The SDK runtime (one whose metrics are exported); default the SDK's.
    """
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=data_converter(settings.encryption_spec),
            lazy=lazy,
            tls=tls_config(settings),
            api_key=api_key,
            interceptors=tracing.client_interceptors(),
            runtime=runtime,
        )
    except RuntimeError as exc:
        raise TemporalUnavailable(
            f"cannot reach the Temporal server at {settings.temporal_address} "
            f"(start it with `make run`, or set NURTURE_TEMPORAL_ADDRESS): {exc}"
        ) from exc


# Waits between attempts to reach Temporal at start: doubling from 1 s up to this.
CONNECT_BACKOFF_CAP_S = 30.0


async def connect_when_up(
    settings: Settings, *, runtime: Runtime | None = None, cap_s: float = CONNECT_BACKOFF_CAP_S
) -> Client:
    """Connect to Temporal, waiting for it when it is not up yet.

    A worker often starts beside its server (compose, a host reboot); exiting then would
    leave every lead waiting for a supervisor to try again. Each failed attempt says so on
    stderr. Once connected, the SDK itself rides out later outages.
    """
    delay, attempt = 1.0, 0
    while True:
        try:
            return await connect(settings, runtime=runtime)
        except TemporalUnavailable as exc:
            attempt += 1
            print(
                f"waiting for Temporal (attempt {attempt}, again in {delay:.0f} s): {exc}",
                file=sys.stderr,
                flush=True,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, cap_s)


async def ensure_search_attributes(client: Client, namespace: str) -> None:
    """Register the contract's search attributes when they are missing (idempotent)."""
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    missing = {
        name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.upper()}")
        for name, kind in SEARCH_ATTRIBUTES.items()
        if name not in listed.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )


_KEY_MAKERS: dict[str, Callable[[str], SearchAttributeKey[Any]]] = {
    "Keyword": SearchAttributeKey.for_keyword,
    "Int": SearchAttributeKey.for_int,
    "Datetime": SearchAttributeKey.for_datetime,
}


def search_attribute_key(name: str) -> SearchAttributeKey[Any]:
    """The contract's search attribute ``name``, typed as it is registered."""
    return _KEY_MAKERS[SEARCH_ATTRIBUTES[name]](name)


def search_attribute_keys() -> list[SearchAttributeKey[Any]]:
    """Every search attribute of the contract (for a dev server started with them)."""
    return [search_attribute_key(name) for name in SEARCH_ATTRIBUTES]


def typed_search_attributes(values: Mapping[str, object]) -> TypedSearchAttributes:
    """The contract's search attributes named in ``values``, typed as registered."""
    return TypedSearchAttributes(
        [SearchAttributePair(search_attribute_key(name), value) for name, value in values.items()]
    )


class TemporalGate:
    """Calls to Temporal bounded in time, and skipped for a while after one found it down.

    A webhook must answer within about a second whatever Temporal does; what could not be
    signaled or started in that time is already recorded, and the redelivery sweep
    (:mod:`nurture.services.parked`) hands it over later. Without a bound, a call to a
    server that went away waits through the SDK's retries (10 s and more); and without the
    memory of an outage, every request of a flood would wait its full bound. A call that
    times out while other calls are answered met a busy server, not a down one: it gives up
    alone, without shutting the gate. The sweep makes its calls
    through a gate of its own, so a shut request gate never stops it from trying.

    Args:
        timeout_s: The most one call may take (None: no bound beyond the SDK's own).
        cooldown_s: After a call found the server unreachable, how long other calls are
            refused at once instead of being tried.
    """

    def __init__(self, timeout_s: float | None = None, cooldown_s: float = 0.0) -> None:
        self.timeout_s = timeout_s
        self.cooldown_s = cooldown_s
        self._shut_until = 0.0
        # When a call last got an answer: a call that timed out while another was answered
        # met a slow server, not an unreachable one.
        self._answered_at = -math.inf
        # Set when a call found the server unreachable: the sweep waits on it, so what was
        # left undone is handed over soon after a short blip, not only at the next round.
        self.tripped = asyncio.Event()

    @property
    def shut(self) -> bool:
        """True while a recent call found the server unreachable."""
        return time.monotonic() < self._shut_until

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make()`` (one Temporal call) within the bound.

        Raises:
            TemporalUnavailable: the gate is shut, the call took longer than the bound, or
                the server could not be reached.
            RPCError: the server answered with an error (not found, invalid...).
        """
        if self.shut:
            raise TemporalUnavailable("Temporal was unreachable moments ago; not tried again yet")
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await make()
        except TimeoutError as exc:
            if self._answered_at >= started:
                # Another call got its answer while this one waited: the server is up and
                # slow (a busy worker shares it). Only this call gives up (its lead or event
                # is recorded, for the sweep, which is told to come soon); shutting the gate
                # would turn every request of the next seconds into `pending_start` too.
                self.tripped.set()
            else:
                self._trip()
            raise TemporalUnavailable(f"no answer from Temporal within {self.timeout_s} s") from exc
        except RPCError as exc:
            if exc.status in UNREACHABLE:
                self._trip()
                raise TemporalUnavailable(f"Temporal is unreachable: {exc.message}") from exc
            self._answered_at = time.monotonic()
            raise  # it answered: it is up
        except RuntimeError as exc:
            # A lazy client that cannot connect raises "Failed client connect: ...".
            if "connect" not in str(exc).lower():
                raise
            self._trip()
            raise TemporalUnavailable(f"Temporal is unreachable: {exc}") from exc
        self._answered_at = time.monotonic()
        return result

    def _trip(self) -> None:
        if self.cooldown_s and not self.shut:
            log.warning(
                "Temporal unreachable: calls wait %.0f s before trying again", self.cooldown_s
            )
        self._shut_until = time.monotonic() + self.cooldown_s
        self.tripped.set()
