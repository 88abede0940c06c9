"""A few reused SMTP connections per worker, with the failure cases told apart.

SMTP has no idempotency key, so what matters is *where* a failure happened. A server takes
a message only when it reads the line holding a lone dot that ends DATA (RFC 5321, 4.1.1.4)
and answers it; a connection that ends before that dot delivers nothing, whatever it
carried. So a send runs MAIL, RCPT, DATA and the whole body first, then asks its caller's
``claim`` (the outbox takes its row), and only then writes the dot: that one line is the
commit point. Before it nothing was sent (safe to retry); after it, until the reply, the
message may have gone out and the truth is unknowable (never resent automatically).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import io
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.message import EmailMessage

import aiosmtplib
from aiosmtplib.protocol import PERIOD_REGEX, SMTPProtocol, normalize_message_line_endings
from aiosmtplib.typing import SMTPStatus


class TransientSmtpError(Exception):
    """A 4xx reply, or a connection failure before the end of the message: retry later."""


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
    """The connection broke after the end of the message was sent, before the server's
    answer: the message may or may not be out."""


# Connections one sender keeps: sends run side by side on them (one message at a time each),
# so a worker's email activities do not queue behind one connection's round trips.
# Measured in docs/benchmarks.md ("SMTP connection reuse"); mail servers commonly allow
# 10 to 20 connections per client, so a few workers stay well inside that.
DEFAULT_CONNECTIONS = 4


class _Line:
    """One connection of the pool (opened on first use, reopened when it breaks)."""

    def __init__(self) -> None:
        self.client: aiosmtplib.SMTP | None = None


class NotClaimed(Exception):
    """The caller's claim said no at the commit point: the connection was closed before
    the end of the message, so nothing was sent."""


class SmtpSender:
    """Sends messages over a small pool of connections reused across sends (reconnects as
    needed); each connection carries one message at a time."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 30.0,
        connections: int = DEFAULT_CONNECTIONS,
    ) -> None:
        self._host = host
        self._port = port
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout = timeout
        if connections < 1:
            raise ValueError("an SMTP sender needs at least one connection")
        self._lines = [_Line() for _ in range(connections)]
        # Last in, first out: under light load one hot connection carries the sends, and
        # the others are opened only when sends overlap.
        self._idle: asyncio.LifoQueue[_Line] = asyncio.LifoQueue()
        for line in reversed(self._lines):
            self._idle.put_nowait(line)
        # Sends waiting for a free connection (none of them has written a word yet).
        self.waiting = 0

    async def _open(self, line: _Line) -> aiosmtplib.SMTP:
        """A new connection, logged in when credentials are set.

        Raises:
            TransientSmtpError: the server cannot be reached or refused the session.
        """
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            timeout=self._timeout,
            start_tls=self._starttls,
            tls_context=ssl.create_default_context() if self._starttls else None,
        )
        try:
            await client.connect()
            # EHLO now, so the extensions (8BITMIME, SMTPUTF8) are known before MAIL.
            if client.is_ehlo_or_helo_needed:
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
            if self._username:
                await client.login(self._username, self._password or "")
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            raise TransientSmtpError(f"cannot connect to {self._host}:{self._port}: {exc}") from exc
        line.client = client
        return client

    async def _drop(self, line: _Line) -> None:
        client, line.client = line.client, None
        if client is not None:
            # Closing a broken connection must not fail a send.
            with contextlib.suppress(Exception):
                client.close()

    async def send(
        self,
        message: EmailMessage,
        sender: str,
        recipients: list[str],
        *,
        claim: Callable[[], Awaitable[bool]] | None = None,
    ) -> str:
        """Send ``message``; returns the server's reply to the end of the message.

        Args:
            message: the message; serialized here, for what the server advertises.
            sender: the envelope sender (MAIL FROM), a bare address.
            recipients: the envelope recipients (RCPT TO), bare addresses.
            claim: called at the commit point: once the server has the envelope and the
                whole body, before the dot that ends DATA. False (another attempt has the
                message) closes the connection without the dot, so the server discards
                what it read and nothing is sent. The outbox marks its row ``sending``
                here, so a send whose process died before that (waiting for a connection,
                or mid-transaction) is known never to have been delivered, and is retried.

        Raises:
            NotClaimed: ``claim`` said no; nothing was sent.
            TransientSmtpError: nothing was sent; retry.
            PermanentSmtpError: refused for good (5xx), or an address that cannot be sent to.
            DeliveryUnknown: the end of the message was sent, and no answer came.
        """
        self.waiting += 1
        try:
            line = await self._idle.get()
        finally:
            self.waiting -= 1
        try:
            return await self._send(line, message, sender, recipients, claim)
        except (NotClaimed, TransientSmtpError, PermanentSmtpError, DeliveryUnknown):
            raise  # each path left the connection clean, or closed it
        except BaseException:
            # Cancelled (the activity ended) or the claim failed: the connection may be
            # anywhere in a transaction, even inside DATA, where any later word would be
            # body. Closed, never reused; if the dot had not been written, nothing is sent.
            await self._drop(line)
            raise
        finally:
            self._idle.put_nowait(line)

    async def _send(
        self,
        line: _Line,
        message: EmailMessage,
        sender: str,
        recipients: list[str],
        claim: Callable[[], Awaitable[bool]] | None,
    ) -> str:
        client, options = await self._begin(line, sender, recipients)
        try:
            for rcpt in recipients:
                await client.rcpt(rcpt, encoding=options.encoding)
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset(line, client)
            raise _classify(exc) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self._drop(line)
            raise TransientSmtpError(f"connection lost before the message was sent: {exc}") from exc
        except (ValueError, UnicodeError) as exc:
            await self._reset(line, client)
            raise PermanentSmtpError(553, f"5.1.3 cannot send to this address: {exc}") from exc
        try:
            protocol = await self._body(client, _flatten(message, options))
        except aiosmtplib.SMTPResponseException as exc:
            # DATA itself refused (no 354): nothing of the message was taken.
            await self._reset(line, client)
            raise _classify(exc) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self._drop(line)
            raise TransientSmtpError(f"connection lost before the message was sent: {exc}") from exc
        if claim is not None and not await claim():
            await self._drop(line)  # no dot: the server throws the partial message away
            raise NotClaimed("another attempt has this message")
        # The commit point: the lone dot. A connection found closed here never carried it.
        try:
            protocol.write(b".\r\n")
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self._drop(line)
            raise TransientSmtpError(
                f"connection lost before the end of the message was sent: {exc}"
            ) from exc
        try:
            response = await protocol.read_response(timeout=self._timeout)
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            await self._drop(line)
            raise DeliveryUnknown(f"connection lost while sending the message: {exc}") from exc
        if response.code != SMTPStatus.completed:
            # The server answered the message with an error: it did not take it.
            await self._reset(line, client)
            raise _classify(aiosmtplib.SMTPDataError(response.code, response.message))
        return f"{response.code} {response.message}"

    async def _body(self, client: aiosmtplib.SMTP, body: bytes) -> SMTPProtocol:
        """DATA, then the whole message, transparent (RFC 5321, 4.5.2), short of its end.

        What ``client.data`` sends, cut before the final dot: CRLF line endings, a dot
        doubled at the start of a line (aiosmtplib's own helpers), nothing after.

        Raises:
            SMTPResponseException: DATA was answered with something other than 354.
            SMTPServerDisconnected: the connection is gone.
        """
        start = await client.execute_command(b"DATA")
        if start.code != SMTPStatus.start_input:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        protocol = client.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("connection lost after DATA")
        protocol.write(PERIOD_REGEX.sub(b"..", normalize_message_line_endings(body)))
        return protocol

    async def _begin(
        self, line: _Line, sender: str, recipients: list[str]
    ) -> tuple[aiosmtplib.SMTP, _Envelope]:
        """Start a transaction (MAIL FROM) on the reused connection, or on a new one.

        No NOOP probe before each message: it would cost a round trip per send. A reused
        connection that the server closed while idle (a disconnect, or 421) fails at MAIL,
        before anything was sent, so it is replaced once, transparently.
        """
        client = line.client
        if client is not None and client.is_connected:
            try:
                return client, await self._mail(client, sender, recipients)
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code != 421:
                    await self._reset(line, client)
                    raise _classify(exc) from exc
            except (aiosmtplib.SMTPException, OSError):
                pass
            await self._drop(line)
        client = await self._open(line)
        try:
            return client, await self._mail(client, sender, recipients)
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset(line, client)
            raise _classify(exc) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self._drop(line)
            raise TransientSmtpError(f"connection lost before the message was sent: {exc}") from exc

    async def _mail(self, client: aiosmtplib.SMTP, sender: str, recipients: list[str]) -> _Envelope:
        """MAIL FROM with the options the message needs and the server offers."""
        envelope = _envelope(client, sender, recipients)
        await client.mail(sender, options=envelope.mail_options, encoding=envelope.encoding)
        return envelope

    async def _reset(self, line: _Line, client: aiosmtplib.SMTP) -> None:
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError):
            await self._drop(line)

    async def close(self) -> None:
        """QUIT every open connection (the sender opens them again if used after)."""
        for line in self._lines:
            client, line.client = line.client, None
            if client is not None and client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()


def _classify(exc: aiosmtplib.SMTPResponseException) -> Exception:
    if 400 <= exc.code < 500:
        return TransientSmtpError(f"{exc.code} {exc.message}")
    return PermanentSmtpError(exc.code, exc.message)


@dataclass(frozen=True)
class _Envelope:
    """How one message goes over one connection: MAIL options and the encodings they allow."""

    mail_options: list[str]
    encoding: str
    eight_bit: bool
    utf8: bool


def _envelope(client: aiosmtplib.SMTP, sender: str, recipients: list[str]) -> _Envelope:
    """The MAIL options for this message on this server (RFC 6152 8BITMIME, RFC 6531 SMTPUTF8).

    Raises:
        PermanentSmtpError: an address needs SMTPUTF8 and the server does not offer it.
    """
    options: list[str] = []
    utf8 = not all(address.isascii() for address in (sender, *recipients))
    if utf8:
        if not client.supports_extension("smtputf8"):
            raise PermanentSmtpError(
                553, "5.6.7 the address is not ASCII and the server does not offer SMTPUTF8"
            )
        options.append("SMTPUTF8")
    # A UTF-8 body (a Japanese email) is 8-bit: declare it where offered, else re-encode it.
    eight_bit = client.supports_extension("8bitmime")
    if eight_bit:
        options.append("BODY=8BITMIME")
    return _Envelope(options, "utf-8" if utf8 else "ascii", eight_bit, utf8)


def _flatten(message: EmailMessage, envelope: _Envelope) -> bytes:
    """The message as bytes for DATA: CRLF lines; 8-bit parts only where the server allows."""
    policy = email.policy.SMTPUTF8 if envelope.utf8 else email.policy.SMTP
    if not envelope.eight_bit:
        # Without 8BITMIME, 8-bit text parts are re-encoded (base64 or quoted-printable).
        policy = policy.clone(cte_type="7bit")
    buffer = io.BytesIO()
    BytesGenerator(buffer, policy=policy).flatten(message)
    return buffer.getvalue()
