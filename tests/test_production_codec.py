"""Encrypted payloads: with NURTURE_ENCRYPTION_KEYS a lead's history on the real dev server
holds no plaintext facts (`temporal workflow show` sees ciphertext), and the web app's codec
endpoint gives them back to ops, to the CLI's --codec-endpoint, and to nobody else."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess

import pytest
from conftest import binary
from google.protobuf import json_format
from harness import running
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from web_helpers import add_user, asgi_client, live_server, log_in

from nurture.adapters.codec import (
    ENCODING,
    EncryptionCodec,
    EncryptionKeyError,
    PayloadDecryptionError,
    data_converter,
    parse_keys,
)
from nurture.adapters.database import make_engine, session_factory
from nurture.adapters.schema import migrate
from nurture.domain.names import workflow_id
from nurture.web import create_app

pytestmark = pytest.mark.devserver

FACT = "zirconium-smelting"  # an industry: a decision fact that reaches the workflow


def key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


async def test_keys_rotate_and_refuse_what_they_cannot_open():
    old, new = key(), key()
    before = EncryptionCodec.from_spec(f"k1:{old}")
    after = EncryptionCodec.from_spec(f"k2:{new},k1:{old}")
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"industry": "x"}')
    [sealed_old] = await before.encode([plain])
    [sealed_new] = await after.encode([plain])
    assert sealed_old.metadata["encoding"] == ENCODING
    assert sealed_old.metadata["encryption-key-id"] == b"k1"
    assert sealed_new.metadata["encryption-key-id"] == b"k2"
    assert b"industry" not in sealed_new.data
    # The rotated set reads both; plain payloads (from before encryption) pass through.
    assert await after.decode([sealed_old, sealed_new, plain]) == [plain, plain, plain]
    with pytest.raises(PayloadDecryptionError, match="k2"):
        await before.decode([sealed_new])
    # A payload relabelled to another key id does not open.
    forged = Payload(metadata={**sealed_new.metadata, "encryption-key-id": b"k1"})
    forged.data = sealed_new.data
    with pytest.raises(PayloadDecryptionError):
        await after.decode([forged])
    for bad, message in [
        ("k1", "id:base64key"),
        (f"k1:{base64.b64encode(b'short').decode()}", "16, 24 or 32"),
        ("k1:not base64!", "base64"),
        (f"k1:{old},k1:{new}", "twice"),
    ]:
        with pytest.raises(EncryptionKeyError, match=message) as caught:
            parse_keys(bad)
        assert old not in str(caught.value) and new not in str(caught.value)


async def test_history_is_ciphertext_and_the_codec_endpoint_decodes_it(
    dev_env, make_settings, smtp_sink
):
    token = secrets.token_urlsafe(16)
    settings = make_settings(
        encryption_keys=f"current:{key()},old:{key()}",
        codec_token=token,
        temporal_ui_url="http://ui.example:8080",
    )
    target = dev_env.client.service_client.config.target_host
    client = await Client.connect(
        target,
        namespace=dev_env.client.namespace,
        data_converter=data_converter(settings.encryption_spec),
    )
    lead_id = f"L-{secrets.token_hex(4)}"
    async with running(client, settings) as stack:
        await stack.add_lead(
            id=lead_id, email="mia@example.com", first_name="Mia", industry=FACT, country="US"
        )
        view = await stack.until(lead_id, lambda v: v.step == "pause")
        assert view.stage == "nurturing"  # the encrypting worker reads its own payloads
        await smtp_sink.wait_for(1)

        # What the Temporal CLI shows without the codec: no fact, only ciphertext.
        shown = await asyncio.to_thread(
            subprocess.run,
            [binary("temporal"), "workflow", "show", "--address", target,
             "--namespace", dev_env.client.namespace, "-w", workflow_id(lead_id), "-o", "json"],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        assert FACT not in shown.stdout
        assert not any(FACT in data for data in _payload_data(json.loads(shown.stdout)))
        assert base64.b64encode(ENCODING).decode() in shown.stdout
        # Search attributes stay plain (they never pass a codec, and hold no PII).
        assert "LeadStage" in shown.stdout

        # The raw history (no codec): the workflow's input as the UI would post it.
        history = await dev_env.client.get_workflow_handle(workflow_id(lead_id)).fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        payloads = [json_format.MessageToDict(p) for p in started.input.payloads]
        assert FACT not in json.dumps(payloads)

        await migrate(settings.database_url)
        app = create_app(settings, client=client)
        async with asgi_client(app) as web:
            body = {"payloads": payloads}
            refused = await web.post("/codec/decode", json=body)
            assert refused.status_code == 401
            wrong = await web.post(
                "/codec/decode", json=body, headers={"Authorization": "Bearer nope"}
            )
            assert wrong.status_code == 401

            decoded = await web.post(
                "/codec/decode",
                json=body,
                headers={
                    "Authorization": f"Bearer {token}",
                    "X-Namespace": "default",
                    "Origin": "http://ui.example:8080",
                },
            )
            assert decoded.status_code == 200, decoded.text
            assert decoded.headers["access-control-allow-origin"] == "http://ui.example:8080"
            [plain] = decoded.json()["payloads"]
            assert base64.b64decode(plain["metadata"]["encoding"]) == b"json/plain"
            assert FACT in base64.b64decode(plain["data"]).decode()

            # Round trip: encode gives ciphertext under the current key, decode reverses it.
            encoded = await web.post(
                "/codec/encode", json={"payloads": [plain]},
                headers={"Authorization": f"Bearer {token}"},
            )  # fmt: skip
            [sealed] = encoded.json()["payloads"]
            assert base64.b64decode(sealed["metadata"]["encryption-key-id"]) == b"current"
            assert FACT not in base64.b64decode(sealed["data"]).decode("latin-1")

            # The UI's preflight: allowed for its origin only.
            preflight = await web.options(
                "/codec/decode",
                headers={
                    "Origin": "http://ui.example:8080",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type,x-namespace",
                },
            )
            assert preflight.status_code == 204
            assert "X-Namespace" in preflight.headers["access-control-allow-headers"]
            other = await web.options("/codec/decode", headers={"Origin": "http://evil.example"})
            assert "access-control-allow-origin" not in other.headers

            # An ops login is enough (the UI sends the session cookie); an SDR's is not.
            engine = make_engine(settings.database_url)
            try:
                sessions = session_factory(engine)
                await add_user(sessions, "ops-1", "ops")
                await add_user(sessions, "aiko", "sdr")
            finally:
                await engine.dispose()
            await log_in(web, "aiko")
            assert (await web.post("/codec/decode", json=body)).status_code == 401
            await log_in(web, "ops-1")
            as_ops = await web.post("/codec/decode", json=body)
            assert as_ops.status_code == 200
            assert as_ops.json() == decoded.json()

            bad = await web.post(
                "/codec/decode",
                json={"payloads": "x"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert bad.status_code == 422 and "payloads" in bad.text

        # The CLI reads the history in plain text through the live endpoint.
        with live_server(create_app(settings, client=None)) as server:
            decoded_show = await asyncio.to_thread(
                subprocess.run,
                [binary("temporal"), "workflow", "show", "--address", target,
                 "--namespace", dev_env.client.namespace, "-w", workflow_id(lead_id),
                 "-o", "json", "--codec-endpoint", f"{server.url}/codec",
                 "--codec-auth", f"Bearer {token}"],
                capture_output=True, text=True, timeout=120, check=True,
                env={**os.environ},
            )  # fmt: skip
        # The JSON output keeps payload bytes in base64: decode them to look inside.
        assert base64.b64encode(ENCODING).decode() not in decoded_show.stdout
        datas = _payload_data(json.loads(decoded_show.stdout))
        assert any(FACT in data for data in datas)


def _payload_data(node: object) -> list[str]:
    """The decoded ``data`` of every payload in a JSON history."""
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("data"), str) and "metadata" in node:
            found.append(base64.b64decode(node["data"]).decode("utf-8", "replace"))
        for value in node.values():
            found += _payload_data(value)
    elif isinstance(node, list):
        for value in node:
            found += _payload_data(value)
    return found
