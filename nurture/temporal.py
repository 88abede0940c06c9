"""Temporal clients made one way everywhere: the pydantic data converter, clear errors."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from nurture import SEARCH_ATTRIBUTES
from nurture.settings import Settings


class TemporalUnavailable(RuntimeError):
    """The Temporal server cannot be reached; the message says what to start."""


async def connect(settings: Settings) -> Client:
    """A client for the configured server and namespace, with the pydantic converter."""
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
        )
    except RuntimeError as exc:
        raise TemporalUnavailable(
            f"cannot reach the Temporal server at {settings.temporal_address} "
            f"(start it with `make run`, or set NURTURE_TEMPORAL_ADDRESS): {exc}"
        ) from exc


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
