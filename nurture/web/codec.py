"""The codec endpoint for the Temporal UI and CLI: ``POST /codec/decode`` and
``POST /codec/encode`` (Temporal's remote codec protocol).

With ``NURTURE_ENCRYPTION_KEYS`` set, histories hold only ciphertext; the UI (its "Codec
Server" setting, or ``TEMPORAL_CODEC_ENDPOINT`` of the UI server) sends the payloads it
shows here from the ops' browser and displays what comes back. The browser calls across
origins, so the UI's origin (NURTURE_TEMPORAL_UI_URL) gets CORS answers, credentials
included. Callers are a signed-in ops user (the UI with "include cross-origin credentials")
or a holder of ``NURTURE_CODEC_TOKEN`` (``Authorization: Bearer ...``, as the
``temporal`` CLI's ``--codec-auth`` sends it). Without keys both endpoints give the
payloads back unchanged.
"""

from __future__ import annotations

import hmac
import json
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from pydantic import BaseModel, Field
from temporalio.api.common.v1 import Payload

from nurture.adapters.codec import EncryptionCodec, PayloadDecryptionError
from nurture.web.common import SessionDep
from nurture.web.security import current_viewer

router = APIRouter(prefix="/codec", tags=["codec"])

# Temporal refuses payloads over 2 MB; a decode request carries a page of them.
CODEC_BODY_LIMIT = 16 * 1024 * 1024
CORS_HEADERS = "Content-Type, X-Namespace, Authorization"


class CodecPayloads(BaseModel):
    """Payloads in Temporal's JSON form (metadata values and data base64)."""

    payloads: list[dict[str, Any]] = Field(default_factory=list)


def _ui_origin(request: Request) -> str:
    url = str(request.app.state.settings.temporal_ui_url)
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _cors(request: Request, response: Response) -> Response:
    origin = request.headers.get("origin")
    if origin and origin == _ui_origin(request):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Vary"] = "Origin"
    return response


def _codec(request: Request) -> EncryptionCodec | None:
    codec = getattr(request.app.state, "codec", None)
    if codec is None:
        spec = request.app.state.settings.encryption_spec
        codec = EncryptionCodec.from_spec(spec) if spec else False
        request.app.state.codec = codec
    return codec or None


async def _authorized(request: Request, session: Any) -> bool:
    token = request.app.state.settings.codec_token
    given = request.headers.get("authorization", "")
    if token is not None and given.lower().startswith("bearer "):
        return hmac.compare_digest(given[7:].strip().encode(), token.get_secret_value().encode())
    viewer = await current_viewer(request, session)
    return viewer is not None and viewer.is_ops


def _parse(body: bytes) -> list[Payload]:
    if len(body) > CODEC_BODY_LIMIT:
        raise HTTPException(status_code=413, detail="payloads: request too large")
    try:
        document = json.loads(body)
    except ValueError:
        raise HTTPException(status_code=422, detail="body: not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("payloads"), list):
        raise HTTPException(status_code=422, detail="payloads: expected a list")
    payloads = []
    for index, item in enumerate(document["payloads"]):
        try:
            payloads.append(json_format.ParseDict(item, Payload()))
        except (json_format.ParseError, TypeError, AttributeError) as exc:
            raise HTTPException(
                status_code=422, detail=f"payloads[{index}]: not a payload: {exc}"
            ) from None
    return payloads


def _answer(request: Request, payloads: list[Payload]) -> Response:
    body = {"payloads": [json_format.MessageToDict(p) for p in payloads]}
    return _cors(request, JSONResponse(body))


async def _run(request: Request, session: Any, decode: bool) -> Response:
    if not await _authorized(request, session):
        return _cors(
            request,
            JSONResponse(
                {"detail": "sign in as ops, or send Authorization: Bearer <NURTURE_CODEC_TOKEN>"},
                status_code=401,
            ),
        )
    payloads = _parse(await request.body())
    codec = _codec(request)
    if codec is None:
        return _answer(request, payloads)
    try:
        result = await (codec.decode(payloads) if decode else codec.encode(payloads))
    except PayloadDecryptionError as exc:
        raise HTTPException(status_code=422, detail=f"payloads: {exc}") from None
    return _answer(request, result)


_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": CodecPayloads.model_json_schema()}},
    },
    "responses": {
        "200": {
            "description": "The payloads, decoded (or encoded), in the same order",
            "content": {"application/json": {"schema": CodecPayloads.model_json_schema()}},
        },
        "401": {"description": "Neither an ops login nor the codec token"},
        "413": {"description": "Too large"},
        "422": {"description": "Not payloads, or a payload no configured key opens"},
    },
}


@router.post("/decode", openapi_extra=_DOC, response_class=Response)
async def decode(request: Request, session: SessionDep) -> Response:
    """Decrypt payloads for the Temporal UI or CLI (plain payloads pass unchanged)."""
    return await _run(request, session, decode=True)


@router.post("/encode", openapi_extra=_DOC, response_class=Response)
async def encode(request: Request, session: SessionDep) -> Response:
    """Encrypt payloads with the current key (what the UI sends, e.g. a signal's input)."""
    return await _run(request, session, decode=False)


@router.options("/decode", include_in_schema=False)
@router.options("/encode", include_in_schema=False)
async def preflight(request: Request) -> Response:
    """The browser's CORS preflight: allowed for the Temporal UI's origin only."""
    response = Response(status_code=204)
    if request.headers.get("origin") == _ui_origin(request):
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
    return _cors(request, response)
