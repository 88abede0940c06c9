"""The published API against its own OpenAPI document, with schemathesis.

The app is served by uvicorn on a free port, with a real database and the time-skipping
Temporal server (no worker: started workflows just wait, and are terminated afterwards).
A ``before_call`` hook signs every webhook request over the exact bytes sent, as a real
sender would; unsigned or wrongly signed requests are covered in ``test_webhooks.py``.
Checks: no 5xx, responses (status, content type, body) as documented.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate as validate_openapi
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy import select
from web_helpers import LiveServer

from nurture.adapters.database import LeadRow, make_engine, session_factory
from nurture.adapters.schema import migrate
from nurture.domain.names import workflow_id
from nurture.web import create_app
from nurture.web.security import SIGNATURE_HEADER, sign

SIGNED_PATHS = ("/leads", "/events", "/inbound/email")
# The app refuses, on purpose, some bodies the schema cannot describe cheaply: text with NUL
# characters (PostgreSQL cannot store them), unknown IANA zones, an event's `events` key
# read as a batch. Every other check runs: no 5xx, documented status codes, content types
# and bodies, invalid data refused, the signature enforced.
STRICTER_THAN_SCHEMA = [positive_data_acceptance]
# Bounded: a handful of operations, so the whole run stays well under a minute.
MAX_EXAMPLES = 50


class Api:
    def __init__(self, server: LiveServer, secret: str) -> None:
        self.server = server
        self.url = server.url
        self.secret = secret


@pytest.fixture
async def api(make_settings, time_env) -> AsyncIterator[Api]:  # type: ignore[no-untyped-def]
    target = time_env.client.service_client.config.target_host
    # The CRM adapters configured (unconfigured, they answer 503 on purpose): fuzzed bodies
    # then meet their signature and organization checks.
    settings = make_settings(
        temporal_address=target,
        hubspot_client_secret="hubspot-client-secret",
        salesforce_org_id="00D5e000000KQ2eEAG",
    )
    await migrate(settings.database_url)
    # No client passed: the app connects its own, in the server thread's event loop.
    with LiveServer(create_app(settings)) as server:
        yield Api(server, settings.require_webhook_secret())
    engine = make_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            lead_ids = (await session.scalars(select(LeadRow.id))).all()
    finally:
        await engine.dispose()
    # The time-skipping server is shared: leave no worker-less workflow holding time back.
    for lead_id in lead_ids:
        with contextlib.suppress(Exception):
            await time_env.client.get_workflow_handle(workflow_id(lead_id)).terminate("test over")


# The secret of the app under test; the hook signs only while a test has set it.
_signing: dict[str, str] = {}


# `POST /inbound/email` takes one raw message: the fuzzer sends real-shaped ones (a reply, an
# auto-reply, a bounce from the corpus) and bytes that are no message at all.
_MAIL_CORPUS = Path(__file__).parent / "mail"
schemathesis.openapi.media_type(
    "message/rfc822",
    st.one_of(
        st.sampled_from(
            [(_MAIL_CORPUS / name).read_bytes() for name in
             ("gmail-reply.eml", "japanese-autoreply.eml", "postfix-dsn-hard.eml")]
        ),
        st.binary(min_size=1, max_size=2_000),
    ),
)  # fmt: skip


@schemathesis.auth(refresh_interval=None, retry_on=[]).apply_to(
    path_regex="^/(leads|events|inbound/email)$"
)
class WebhookSignature:
    """The signing hook: an auth provider that signs each webhook body it is given.

    Declared as auth (not a bare header), schemathesis also checks the signature is
    enforced: it re-sends each request unsigned and wrongly signed, expecting 401.
    """

    def get(self, case: Any, context: Any) -> str | None:
        return _signing.get("secret")

    def set(self, case: Any, data: str | None, context: Any) -> None:
        if data is None:
            return
        # requests sends a JSON body as `json.dumps(body, allow_nan=False)`: sign those bytes.
        if isinstance(case.body, bytes):
            body = case.body
        else:
            body = json.dumps(case.body, allow_nan=False).encode()
        case.headers = {**(case.headers or {}), SIGNATURE_HEADER: sign(data, body)}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_keeps_its_published_schema(api: Api, mode: GenerationMode) -> None:
    # Hypothesis is driven directly (schemathesis's pytest plugin does not run on pytest 9);
    # each operation gets its own bounded run so a failure names its operation.
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    _signing["secret"] = api.secret
    checked = []
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            try:
                strategy = operation.as_strategy(generation_mode=mode)
            except Exception:  # noqa: BLE001 - e.g. no negative data for a parameterless GET
                continue

            @given(case=strategy)
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def call(case: Any) -> None:
                case.call_and_validate(base_url=api.url, excluded_checks=STRICTER_THAN_SCHEMA)

            try:
                call()
            except Unsatisfiable:
                # No invalid input exists (a GET with only a free-form string in its path).
                assert mode == GenerationMode.NEGATIVE, operation.label
                continue
            checked.append(operation.label)
    finally:
        _signing.clear()

    assert "POST /leads" in checked and "POST /events" in checked
    if mode == GenerationMode.POSITIVE:
        assert "POST /inbound/email" in checked


def test_the_openapi_document_is_valid_and_complete(api: Api) -> None:
    import httpx

    document = httpx.get(f"{api.url}/openapi.json").json()
    validate_openapi(document)
    for path in SIGNED_PATHS:
        operation = document["paths"][path]["post"]
        assert {"200", "202", "401", "422", "503"} <= set(operation["responses"]), path
        assert operation["security"] == [{"webhookSignature": []}]
    assert "409" in document["paths"]["/leads"]["post"]["responses"]
    assert document["components"]["securitySchemes"]["webhookSignature"]["name"] == SIGNATURE_HEADER
    for name in ("Lead", "Event", "EventBatch"):
        assert name in document["components"]["schemas"]
    # Pages behind a login are not part of the API.
    assert not {"/inbox", "/login", "/ops", "/mail"} & set(document["paths"])
