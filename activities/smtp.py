"""One reused SMTP connection per worker, with the failure cases told apart.

SMTP has no idempotency key, so what matters is *where* a failure happened: before the
message body was handed over nothing was sent (safe to retry); after it, the message may
have gone out, and the truth is unknowable (never resent automatically).
"""

from __future__ import annotations

import asyncio
import ssl
from email.message import EmailMessage

import aiosmtplib


class TransientSmtpError(Exception):
    """A 4xx reply or a connection failure before the body was sent: retry later."""


class PermanentSmtpError(Exception):
    """A 5xx reply: the server refused the message for good."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message

    @property
    def bad_address(self) -> bool:
        """A 5.1.x status (bad mailbox or address): the address must be suppressed."""
        return self.message.lstrip().startswith("5.1.")


class DeliveryUnknown(Exception):
    """The connection broke after the body was sent: the message may or may not be out."""


class SmtpSender:
    """Sends messages over one connection that is reused across sends (reconnects as needed)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self._host = host
        self._port = port
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout = timeout
        self._client: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()

    async def _connected(self) -> aiosmtplib.SMTP:
        client = self._client
        if client is not None and client.is_connected:
            try:
                await client.noop()
                return client
            except (aiosmtplib.SMTPException, OSError):
                await self._drop()
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            timeout=self._timeout,
            start_tls=self._starttls,
            tls_context=ssl.create_default_context() if self._starttls else None,
        )
        await client.connect()
        if self._username:
            await client.login(self._username, self._password or "")
        self._client = client
        return client

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a broken connection must not fail a send
                pass

    async def send(self, message: EmailMessage, sender: str, recipients: list[str]) -> str:
        """Send ``message``; returns the server's reply to the body.

        Raises:
            TransientSmtpError: nothing was sent; retry.
            PermanentSmtpError: refused for good (5xx).
            DeliveryUnknown: the body may have been sent.
        """
        async with self._lock:
            try:
                client = await self._connected()
            except (aiosmtplib.SMTPException, OSError) as exc:
                await self._drop()
                raise TransientSmtpError(f"cannot connect to {self._host}:{self._port}: {exc}") from exc
            try:
                await client.mail(sender)
                for rcpt in recipients:
                    await client.rcpt(rcpt)
            except aiosmtplib.SMTPResponseException as exc:
                await self._reset(client)
                raise _classify(exc) from exc
            except (aiosmtplib.SMTPException, OSError) as exc:
                await self._drop()
                raise TransientSmtpError(f"connection lost before the message was sent: {exc}") from exc
            try:
                response = await client.data(message.as_bytes())
            except aiosmtplib.SMTPResponseException as exc:
                # The server answered the body with an error: it did not take the message.
                await self._reset(client)
                raise _classify(exc) from exc
            except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
                await self._drop()
                raise DeliveryUnknown(f"connection lost while sending the message: {exc}") from exc
            return f"{response.code} {response.message}"

    async def _reset(self, client: aiosmtplib.SMTP) -> None:
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError):
            await self._drop()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()


def _classify(exc: aiosmtplib.SMTPResponseException) -> Exception:
    if 400 <= exc.code < 500:
        return TransientSmtpError(f"{exc.code} {exc.message}")
    return PermanentSmtpError(exc.code, exc.message)
