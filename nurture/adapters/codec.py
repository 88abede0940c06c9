"""Encrypted payloads: every payload Temporal stores is AES-GCM ciphertext when
``NURTURE_ENCRYPTION_KEYS`` is set.

Keys are ``id:base64key,...`` (16, 24 or 32 bytes each); the first encrypts, all decrypt, so
a key is rotated by putting the new one first and keeping the old ones until no history
that needs them is retained. Each encrypted payload names its key in its metadata
(``encryption-key-id``), never the key itself. A payload that is not encrypted (written
before keys were set) is passed through as is, so switching encryption on needs no
migration of leads in flight.

The Temporal UI and CLI cannot read these payloads by themselves: the web app serves the
codec endpoints (``POST /codec/decode`` and ``/codec/encode``, :mod:`nurture.web.codec`)
that the UI calls from the ops' browser.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
KEY_SIZES = (16, 24, 32)


class EncryptionKeyError(ValueError):
    """``NURTURE_ENCRYPTION_KEYS`` cannot be used; the message says why."""


class PayloadDecryptionError(ValueError):
    """An encrypted payload that no configured key opens (unknown key id or tampered)."""


def parse_keys(spec: str) -> list[tuple[str, bytes]]:
    """``id:base64key,...`` as ``[(id, key), ...]``, the encrypting key first.

    Raises:
        EncryptionKeyError: an entry without an id, a key that is not base64 or not 16, 24
            or 32 bytes, or an id given twice. The message never contains a key.
    """
    keys: list[tuple[str, bytes]] = []
    for position, entry in enumerate(spec.split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        key_id, sep, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not key_id or not encoded.strip():
            raise EncryptionKeyError(f"entry {position}: expected id:base64key")
        if not key_id.isascii() or not key_id.replace("-", "").replace("_", "").isalnum():
            raise EncryptionKeyError(f"entry {position}: key id may hold letters, digits, - and _")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise EncryptionKeyError(f"key '{key_id}': not valid base64") from None
        if len(key) not in KEY_SIZES:
            raise EncryptionKeyError(
                f"key '{key_id}': {len(key)} bytes; AES-GCM needs 16, 24 or 32 "
                "(make one with `openssl rand -base64 32`)"
            )
        if any(existing == key_id for existing, _ in keys):
            raise EncryptionKeyError(f"key id '{key_id}' is given twice")
        keys.append((key_id, key))
    if not keys:
        raise EncryptionKeyError("no keys given")
    return keys


class EncryptionCodec(PayloadCodec):
    """AES-GCM over each whole serialized payload (its metadata included).

    Args:
        keys: ``[(id, key), ...]``; the first encrypts.
    """

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise EncryptionKeyError("no keys given")
        self._encrypt_id = keys[0][0]
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}

    @classmethod
    def from_spec(cls, spec: str) -> EncryptionCodec:
        return cls(parse_keys(spec))

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        # The key id is bound as associated data: a payload relabelled to another key fails.
        sealed = self._ciphers[self._encrypt_id].encrypt(
            nonce, payload.SerializeToString(), self._encrypt_id.encode()
        )
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: self._encrypt_id.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # plain text: written before encryption was switched on
        key_id = payload.metadata.get(KEY_ID, b"").decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadDecryptionError(
                f"payload encrypted with key '{key_id}', which is not in NURTURE_ENCRYPTION_KEYS"
            )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, key_id.encode())
        except InvalidTag:
            raise PayloadDecryptionError(
                f"payload does not open with key '{key_id}' (altered, or another key of that id)"
            ) from None
        decoded = Payload()
        decoded.ParseFromString(plain)
        return decoded


def data_converter(encryption_keys: str | None) -> DataConverter:
    """The pydantic data converter, encrypting every payload when keys are given.

    With keys, failure messages and stack traces are encoded into a payload too (they can
    quote a value), so the UI shows them only through the codec endpoint.
    """
    if not encryption_keys:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec.from_spec(encryption_keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
