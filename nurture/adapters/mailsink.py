"""The dev SMTP sink: an aiosmtpd server that keeps every message in ``received_mail``.

``make run`` points the app's SMTP settings at it, so a newcomer sees each email in the web
app (``/mail``) instead of in someone's inbox. It needs the ``dev`` extra (aiosmtpd); the
rest of this module (reading and parsing stored mail) does not, so the web app can import
it in production.

The tables must exist: run :func:`nurture.adapters.schema.migrate` before :meth:`MailSink.start`.
"""

from __future__ import annotations

import asyncio
import email.policy
import logging
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from nurture.adapters.database import ReceivedMail, make_engine, session_factory, utcnow

if TYPE_CHECKING:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)

# How long stop() waits for the handler's engine to close its connections.
_DISPOSE_TIMEOUT_S = 10.0


def _parse(raw: bytes) -> EmailMessage:
    # policy.default decodes RFC 2047 headers (=?UTF-8?B?...?=) into readable str.
    message = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)  # guaranteed by policy.default
    return message


def _raw_text(raw: bytes) -> str:
    # Mail is nearly always 7-bit (non-ASCII is base64/QP encoded); an 8-bit body in some
    # other charset still gets stored, with the odd byte replaced. NUL is not storable
    # in PostgreSQL text.
    return raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


class _StoreHandler:
    """aiosmtpd handler: runs on the controller's own thread and event loop.

    An async engine is bound to the loop it was first used on, so the handler makes its
    own, lazily, inside the controller's loop rather than sharing the caller's.
    """

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self.engine: AsyncEngine | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", errors="replace")
        try:
            message = _parse(raw)
            row = ReceivedMail(
                received_at=utcnow(),
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                subject=str(message["subject"]) if message["subject"] is not None else None,
                message_id=(str(message["message-id"]).strip() or None)
                if message["message-id"] is not None
                else None,
                raw=_raw_text(raw),
            )
            if self.engine is None:
                self.engine = make_engine(self._database_url)
            async with session_factory(self.engine)() as db, db.begin():
                db.add(row)
        except Exception:
            # A temporary failure: the sender keeps the message and may retry, so a dev
            # never silently loses an email to a sink that could not store it.
            log.exception("mail sink: could not store a message from %s", envelope.mail_from)
            return "451 Requested action aborted: local error in processing"
        return "250 Message accepted for delivery"


class MailSink:
    """An SMTP server on ``host:port`` that stores every message it receives.

    Example:
        >>> sink = MailSink("sqlite+aiosqlite:///.data/nurture.db")  # doctest: +SKIP
        >>> sink.start(); ...; sink.stop()  # doctest: +SKIP

    Also a context manager (``with MailSink(url, port=2525): ...``).
    """

    def __init__(self, database_url: str, host: str = "127.0.0.1", port: int = 1025) -> None:
        self.database_url = database_url
        self.host = host
        self.port = port
        self._handler = _StoreHandler(database_url)
        self._controller: Controller | None = None

    def start(self) -> None:
        """Start serving in a background thread; returns once the server accepts mail.

        Raises:
            RuntimeError: if already started, or aiosmtpd (the ``dev`` extra) is missing.
        """
        if self._controller is not None:
            raise RuntimeError("the mail sink is already running")
        try:
            from aiosmtpd.controller import Controller
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise RuntimeError("the mail sink needs aiosmtpd: pip install 'nurture[dev]'") from exc
        controller = Controller(
            self._handler,
            hostname=self.host,
            port=self.port,
            # Addresses and headers may be UTF-8 (RFC 6531); the app never needs to care.
            enable_SMTPUTF8=True,
        )
        controller.start()
        self._controller = controller
        log.info("mail sink listening on %s:%s", self.host, self.port)

    def stop(self) -> None:
        """Stop serving and close the sink's database connections. Idempotent."""
        controller, self._controller = self._controller, None
        if controller is None:
            return
        engine, self._handler.engine = self._handler.engine, None
        if engine is not None:
            # The engine belongs to the controller's loop: dispose of it there.
            future = asyncio.run_coroutine_threadsafe(engine.dispose(), controller.loop)
            try:
                future.result(timeout=_DISPOSE_TIMEOUT_S)
            except Exception:
                log.warning("mail sink: could not close its database engine", exc_info=True)
        controller.stop()

    def __enter__(self) -> MailSink:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def list_mail(session: AsyncSession, limit: int = 100) -> list[ReceivedMail]:
    """The most recent ``limit`` received messages, newest first."""
    result = await session.scalars(
        select(ReceivedMail)
        .order_by(ReceivedMail.received_at.desc(), ReceivedMail.id.desc())
        .limit(limit)
    )
    return list(result)


@dataclass
class ParsedMail:
    """A stored message taken apart for display.

    Attributes:
        headers: (name, value) pairs in message order, values decoded (RFC 2047).
        text: The text/plain body, if any.
        html: The text/html body, if any: untrusted, show it only sandboxed.
        attachments: (file name, content type) of each attachment.
    """

    headers: list[tuple[str, str]]
    text: str | None
    html: str | None
    attachments: list[tuple[str, str]] = field(default_factory=list)


def parse_mail(raw: str) -> ParsedMail:
    """Decode a stored message: headers (RFC 2047 decoded), text and HTML parts.

    Args:
        raw: :attr:`ReceivedMail.raw`.
    """
    message = _parse(raw.encode("utf-8", errors="replace"))
    headers = [(name, str(value)) for name, value in message.items()]
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    attachments = [
        (part.get_filename() or "(unnamed)", part.get_content_type())
        for part in message.iter_attachments()
    ]
    return ParsedMail(
        headers=headers,
        text=_content(text_part),
        html=_content(html_part),
        attachments=attachments,
    )


def _content(part: Any) -> str | None:
    if part is None:
        return None
    try:
        content = part.get_content()
    except (LookupError, ValueError):
        # An unknown charset or broken encoding: show what can be shown.
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", errors="replace")
    return content if isinstance(content, str) else None
