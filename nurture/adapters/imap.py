"""The IMAP mailbox the product reads its own mail from (``NURTURE_MAILBOX_URL``).

``imaps://user:password@host:993/INBOX`` (TLS from the first byte), or ``imap://...:143/...``
upgraded with STARTTLS before the password is sent; never in clear. User and password are
percent-decoded (``%40`` for an ``@`` in a user name); the folder is the path, ``INBOX`` by
default.

Built on imap-tools: maintained, small, with IDLE and STARTTLS, over the standard
library's ``imaplib``, so it is the protocol as the RFCs and every server know it. Its calls
block: :class:`ImapMailbox` is used from one worker thread at a time (the reader gives it a
thread of its own), which keeps the event loop free for the database and Temporal. The
asyncio client (aioimaplib) was the alternative; imap-tools was chosen because it is the
standard library's client with the connection, login and IDLE handling done: one thread
blocked on a socket costs nothing here, and the protocol code stays the well-worn one.

What is read is marked on the server, never deleted and never expunged: a processed
message gets the keyword ``$NurtureProcessed`` and ``\\Seen``; one that could not be
processed gets ``$NurtureFailed`` (and stays unseen, for a person). Unread work is found by
``UNKEYWORD``, not by ``UNSEEN``, because people read that mailbox too.
"""

from __future__ import annotations

import imaplib
import logging
import re
import select
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

from imap_tools import MailBox, MailBoxStartTls
from imap_tools.errors import (
    ImapToolsError,
    MailboxFolderSelectError,
    MailboxLoginError,
    MailboxStarttlsError,
)

log = logging.getLogger(__name__)

PROCESSED = "$NurtureProcessed"
FAILED = "$NurtureFailed"
DEFAULT_PORTS = {"imaps": 993, "imap": 143}
# A read or write that takes longer than this means the connection is gone.
SOCKET_TIMEOUT_S = 60.0
# How often a thread blocked in IDLE looks whether it was asked to stop.
STOP_CHECK_S = 0.5

_FETCH_UID = re.compile(rb"UID (\d+)")
_FETCH_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
# Untagged responses that say the folder changed (new mail, or flags set elsewhere).
_NEWS = re.compile(rb"^\* \d+ (EXISTS|RECENT)\b", re.IGNORECASE)
_NEWS_RESPONSES = ("EXISTS", "RECENT")
FETCH_SLICE = 500


class MailboxUrlError(ValueError):
    """A NURTURE_MAILBOX_URL that cannot be used; the message says which part and why."""


class MailboxError(Exception):
    """Something the mailbox did not do."""


class MailboxUnavailable(MailboxError):
    """The connection could not be made, or broke: try again later."""


class MailboxRefused(MailboxError):
    """The server answered but will not serve this configuration (login refused, no such
    folder, no STARTTLS, keywords not kept, untrusted certificate): a person must act."""


@dataclass(frozen=True)
class MailboxUrl:
    """A parsed NURTURE_MAILBOX_URL; :meth:`redacted` is what logs may show."""

    scheme: Literal["imaps", "imap"]
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    folder: str = "INBOX"

    def redacted(self) -> str:
        return f"{self.scheme}://{self.user}@{self.host}:{self.port}/{self.folder}"


def parse_mailbox_url(url: str) -> MailboxUrl:
    """Read ``imaps://user:password@host[:port][/folder]`` (or ``imap://`` for STARTTLS).

    Raises:
        MailboxUrlError: naming the part that is wrong (never echoing the password).
    """
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise MailboxUrlError(f"not a mailbox URL ({_without_secret(exc)})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise MailboxUrlError(
            f"the scheme must be imaps:// (TLS) or imap:// (STARTTLS), not {scheme or 'none'!r}"
        )
    if not parts.hostname:
        raise MailboxUrlError("no host: expected imaps://user:password@host:993/INBOX")
    if not parts.username:
        raise MailboxUrlError("no user: expected imaps://user:password@host:993/INBOX")
    if parts.password is None or not parts.password:
        raise MailboxUrlError("no password: expected imaps://user:password@host:993/INBOX")
    if parts.query or parts.fragment:
        raise MailboxUrlError("a mailbox URL takes no ?query or #fragment")
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    if any(ch in folder for ch in "\r\n\0"):
        raise MailboxUrlError("the folder name holds a line break or NUL")
    return MailboxUrl(
        scheme=scheme,  # type: ignore[arg-type]
        host=parts.hostname,
        port=port or DEFAULT_PORTS[scheme],
        user=unquote(parts.username),
        password=unquote(parts.password),
        folder=folder,
    )


def _without_secret(exc: Exception) -> str:
    # urllib's messages quote the port text only; keep them, but never more than a line.
    return str(exc).splitlines()[0][:120]


@dataclass(frozen=True)
class Waiting:
    """A message found unprocessed: its UID (this connection's) and size in bytes."""

    uid: str
    size: int


class ImapMailbox:
    """One connection to the folder: login, search, fetch, mark, IDLE.

    Blocking; call it from one thread at a time. Every network or protocol failure comes
    out as :class:`MailboxUnavailable`, every refusal as :class:`MailboxRefused`.
    """

    def __init__(
        self, url: MailboxUrl, *, ca_file: str | None = None, timeout: float = SOCKET_TIMEOUT_S
    ) -> None:
        self.url = url
        self.ca_file = ca_file
        self.timeout = timeout
        self._box: MailBox | MailBoxStartTls | None = None
        self._capabilities: set[str] = set()

    # --- connection ---------------------------------------------------------------------

    def connect(self) -> None:
        """Open, secure, log in and select the folder; check it keeps our keywords."""
        context = ssl.create_default_context(cafile=self.ca_file)
        url = self.url
        try:
            if url.scheme == "imaps":
                box: MailBox | MailBoxStartTls = MailBox(
                    url.host, url.port, timeout=self.timeout, ssl_context=context
                )
            else:
                box = MailBoxStartTls(url.host, url.port, timeout=self.timeout, ssl_context=context)
        except ssl.SSLCertVerificationError as exc:
            raise MailboxRefused(
                f"the server's certificate is not trusted ({exc.verify_message}); "
                "set NURTURE_MAILBOX_CA to the CA that signed it"
            ) from None
        except (OSError, imaplib.IMAP4.error, ImapToolsError) as exc:
            if isinstance(exc, MailboxStarttlsError) or "STARTTLS" in str(exc):
                raise MailboxRefused(
                    f"{url.host}:{url.port} does not offer STARTTLS: use imaps:// (port 993)"
                ) from None
            raise MailboxUnavailable(f"cannot connect to {url.host}:{url.port}: {exc}") from None
        self._box = box
        try:
            if url.user.isascii() and url.password.isascii():
                box.login(url.user, url.password, initial_folder=None)
            else:
                box.login_utf8(url.user, url.password, initial_folder=None)
        except MailboxLoginError:
            self.close(polite=False)
            raise MailboxRefused(f"{url.host} refused the login of {url.user!r}") from None
        except (OSError, imaplib.IMAP4.error, ImapToolsError) as exc:
            self.close(polite=False)
            if "authenticat" in str(exc).lower():
                raise MailboxRefused(f"{url.host} refused the login of {url.user!r}") from None
            raise MailboxUnavailable(f"login to {url.host} failed: {exc}") from None
        try:
            box.folder.set(url.folder)
        except MailboxFolderSelectError:
            self.close(polite=False)
            raise MailboxRefused(
                f"{url.host} has no folder {url.folder!r} for {url.user!r}"
            ) from None
        except (OSError, imaplib.IMAP4.error, ImapToolsError) as exc:
            self.close(polite=False)
            raise MailboxUnavailable(f"selecting {url.folder!r} failed: {exc}") from None
        # No PERMANENTFLAGS at all means every flag is kept (RFC 3501, 7.1).
        said = box.client.untagged_responses.get("PERMANENTFLAGS")
        permanent = b" ".join(item for item in said or [] if isinstance(item, bytes))
        if said and b"\\*" not in permanent and PROCESSED.encode() not in permanent:
            self.close(polite=False)
            raise MailboxRefused(
                f"folder {url.folder!r} on {url.host} keeps no custom keywords "
                f"(PERMANENTFLAGS {permanent.decode(errors='replace')}): "
                f"the reader marks what it read with {PROCESSED}"
            )

        # What the server can do once logged in (it may differ from what it announced to a
        # stranger, and imaplib keeps only the latter).
        typ, data = self._do(box.client.capability)
        words = (data[0] or b"").split() if typ == "OK" and data and data[0] else []
        self._capabilities = {w.decode(errors="replace").upper() for w in words} or {
            c.upper() for c in box.client.capabilities
        }

    @property
    def supports_idle(self) -> bool:
        return self._box is not None and "IDLE" in self._capabilities

    def close(self, *, polite: bool = True) -> None:
        """Log out (``polite``, on a connection that still answers) and close."""
        box, self._box = self._box, None
        if box is None:
            return
        try:
            if polite:
                box.client.logout()  # shuts the socket down whatever the answer
            else:
                box.client.shutdown()
        except Exception:  # noqa: BLE001 - a broken connection is closed all the same
            pass

    # --- work -----------------------------------------------------------------------------

    def unprocessed(self) -> list[Waiting]:
        """Messages carrying neither of our keywords, oldest first."""
        client = self._client()
        # A NOOP first: servers (Dovecot among them) search the folder as they last showed
        # it, and take in mail delivered since only as a command ends. Without it a poll
        # would find a new message one poll late.
        typ, data = self._do(client.noop)
        if typ != "OK":
            raise MailboxUnavailable(f"NOOP failed: {data!r}")
        # From here on, what the server reports as new is news for wait_for_news.
        for name in _NEWS_RESPONSES:
            client.untagged_responses.pop(name, None)
        typ, data = self._do(client.uid, "SEARCH", "UNKEYWORD", PROCESSED, "UNKEYWORD", FAILED)
        if typ != "OK":
            raise MailboxUnavailable(f"SEARCH failed: {data!r}")
        uids = (data[0] or b"").split() if data else []
        if not uids:
            return []
        data = []
        # In slices: a first start on a folder with a backlog must not send one command
        # longer than servers take (Dovecot: 64 KiB).
        for start in range(0, len(uids), FETCH_SLICE):
            part = b",".join(uids[start : start + FETCH_SLICE]).decode()
            typ, answer = self._do(client.uid, "FETCH", part, "(UID RFC822.SIZE)")
            if typ != "OK":
                raise MailboxUnavailable(f"FETCH of sizes failed: {answer!r}")
            data.extend(answer or [])
        found: dict[int, int] = {}
        for item in data:
            line = item[0] if isinstance(item, tuple) else item
            if not isinstance(line, bytes):
                continue
            uid = _FETCH_UID.search(line)
            size = _FETCH_SIZE.search(line)
            if uid:
                found[int(uid.group(1))] = int(size.group(1)) if size else 0
        return [Waiting(str(uid), found[uid]) for uid in sorted(found)]

    def fetch(self, uid: str, *, headers_only: bool = False) -> bytes | None:
        """The raw message (``BODY.PEEK``: not marked seen), or None when it is gone."""
        part = "BODY.PEEK[HEADER]" if headers_only else "BODY.PEEK[]"
        typ, data = self._do(self._client().uid, "FETCH", uid, f"({part})")
        if typ != "OK":
            raise MailboxUnavailable(f"FETCH {uid} failed: {data!r}")
        for item in data or []:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
                return item[1]
        return None

    def mark_processed(self, uid: str) -> None:
        self._store(uid, f"({PROCESSED} \\Seen)")

    def mark_failed(self, uid: str) -> None:
        self._store(uid, f"({FAILED})")

    def clear_failed(self) -> int:
        """Take ``$NurtureFailed`` off every message of the folder; returns how many."""
        client = self._client()
        typ, data = self._do(client.uid, "SEARCH", "KEYWORD", FAILED)
        uids = (data[0] or b"").split() if typ == "OK" and data else []
        if uids:
            typ, data = self._do(
                client.uid, "STORE", b",".join(uids).decode(), "-FLAGS.SILENT", f"({FAILED})"
            )
            if typ != "OK":
                raise MailboxUnavailable(f"STORE failed: {data!r}")
        return len(uids)

    def skip_existing(self) -> int:
        """Mark every message not yet marked ``$NurtureProcessed`` without reading it (a
        backlog a person chose to leave out); returns how many."""
        client = self._client()
        typ, data = self._do(client.uid, "SEARCH", "UNKEYWORD", PROCESSED, "UNKEYWORD", FAILED)
        uids = (data[0] or b"").split() if typ == "OK" and data else []
        for start in range(0, len(uids), FETCH_SLICE):
            part = b",".join(uids[start : start + FETCH_SLICE]).decode()
            typ, answer = self._do(client.uid, "STORE", part, "+FLAGS.SILENT", f"({PROCESSED})")
            if typ != "OK":
                raise MailboxUnavailable(f"STORE failed: {answer!r}")
        return len(uids)

    def wait_for_news(self, timeout: float, stop: threading.Event) -> bool:
        """IDLE until the folder changes, ``timeout`` seconds pass or ``stop`` is set.

        Returns True when the server announced new mail (at once, without IDLE, when it
        did so since the last :meth:`unprocessed`). The server's responses are read
        here line by line (not with imap-tools' poll, which returns nothing at all when
        the connection closes), so a server that goes away is noticed at once.
        """
        box = self._box
        if box is None:
            raise MailboxUnavailable("not connected")
        client = box.client
        # Mail reported since the last search (in the answer to a FETCH or a STORE: servers
        # report changes with any command) is news already: no IDLE.
        if any(client.untagged_responses.get(name) for name in _NEWS_RESPONSES):
            return True
        self._do(box.idle.start)
        # What the server says as IDLE begins can arrive with its "+ idling" and be stored
        # by imaplib with the untagged responses instead of waiting on the wire.
        news = any(client.untagged_responses.get(name) for name in _NEWS_RESPONSES)
        done = False
        try:
            remaining = timeout
            while remaining > 0 and not stop.is_set() and not news:
                step = min(STOP_CHECK_S, remaining)
                remaining -= step
                if not self._readable(client, step):
                    continue
                while True:
                    line = self._do(client._get_line)  # noqa: SLF001 - IDLE has no public reader
                    if _NEWS.match(line):
                        news = True
                    if line.startswith(b"* BYE"):
                        said = line.decode(errors="replace").strip()
                        raise MailboxUnavailable(f"{self.url.host} closed the connection: {said}")
                    if not self._readable(client, 0):
                        break
            done = True
        finally:
            if done:
                self._do(box.idle.stop)
        return news

    # --- internals --------------------------------------------------------------------------

    def _client(self) -> imaplib.IMAP4:
        if self._box is None:
            raise MailboxUnavailable("not connected")
        return self._box.client

    def _store(self, uid: str, flags: str) -> None:
        # A raw STORE: imap-tools' flag() expunges after every store, which would delete
        # what a person marked \Deleted in this folder. We never expunge.
        typ, data = self._do(self._client().uid, "STORE", uid, "+FLAGS.SILENT", flags)
        if typ != "OK":
            raise MailboxUnavailable(f"STORE {flags} on {uid} failed: {data!r}")

    def _do(self, call, *args):  # type: ignore[no-untyped-def]
        try:
            return call(*args)
        except MailboxError:
            raise
        except (OSError, EOFError, imaplib.IMAP4.error, ImapToolsError, ValueError) as exc:
            # ValueError: imaplib on a socket already closed under it.
            raise MailboxUnavailable(f"connection to {self.url.host} lost: {exc}") from None

    @staticmethod
    def _readable(client: imaplib.IMAP4, timeout: float) -> bool:
        """Whether a line is waiting: already buffered (TLS or the reader's buffer), or on
        the socket within ``timeout`` seconds (a closed socket counts: the read says EOF)."""
        sock: socket.socket = client.sock
        pending = getattr(sock, "pending", None)
        if pending is not None and pending() > 0:
            return True
        reader = client.file
        old = sock.gettimeout()
        try:
            sock.settimeout(0)
            try:
                if reader.peek(1):  # type: ignore[attr-defined]
                    return True
            except (BlockingIOError, ssl.SSLWantReadError, InterruptedError):
                pass
        finally:
            sock.settimeout(old)
        ready, _, _ = select.select([sock], [], [], timeout)
        return bool(ready)
