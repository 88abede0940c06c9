"""The mailbox reader (`nurture mailbox`): every message of an IMAP folder, read once.

Each message goes through :func:`nurture.services.mailback.take_mail`, the very path of
``POST /inbound/email``: classified, tied to its lead, recorded, then signaled. Only then is
it marked on the server (``$NurtureProcessed`` and ``\\Seen``), never deleted. So:

- **nothing lost**: a message is marked only after its event is recorded; a crash before
  the mark reads it again, and the Message-ID dedup of ``inbound_mail`` (with the event id
  derived from it) gives it one effect. Two readers on one folder are one effect as well.
- **nothing twice**: unprocessed mail is searched by the missing keyword, not by
  ``UNSEEN``: a person who reads the mailbox neither hides mail from the reader nor makes
  it read twice.
- **a message that cannot be processed** (an error of the message, not of the database) is
  logged with its error and marked ``$NurtureFailed``, left unseen for a person, and the
  reader goes on: read again it would fail again, and stop every message behind it. After a
  fix, ``nurture mailbox --retry-failed`` takes the keyword off and reads them again.
- **an outage** (the database, the network) marks nothing: the reader waits and tries again.

It waits with IDLE where the server announces it (new mail is read at once), else polls;
either way the folder is searched afresh every ``NURTURE_MAILBOX_POLL_SECONDS``, so mail
that arrived while an IDLE was being renewed is never left behind. A lost connection or a
restarted server is met with reconnects, spaced by a capped exponential backoff (with
jitter, so several readers do not knock at once), each one logged; the reader never exits
on a network error. Stopping (``stop`` set: Ctrl-C, SIGTERM) ends it cleanly between two
messages, within about half a second when idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from temporalio.service import RPCError

from nurture.adapters.imap import (
    ImapMailbox,
    MailboxRefused,
    MailboxUnavailable,
    MailboxUrl,
)
from nurture.adapters.loader import CadenceSetInvalid
from nurture.adapters.temporal import TemporalUnavailable
from nurture.services import mailback
from nurture.services.intake import Intake

log = logging.getLogger(__name__)

T = TypeVar("T")

# A larger message is read by its header only: enough to tie a reply to its lead (by
# In-Reply-To) without holding an attachment of any size in memory.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
BACKOFF_FIRST_S = 1.0
BACKOFF_CAP_S = 60.0
# What is an outage, not a fault of the message: the message is left for the next try.
OUTAGES: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    PoolTimeout,
    OSError,
    RPCError,
    TemporalUnavailable,
    CadenceSetInvalid,
)


class MailOutage(Exception):
    """Processing stopped on an outage (the database, Temporal, broken cadence files)."""


@dataclass
class SweepReport:
    """What one pass over the folder did."""

    read: int = 0
    duplicates: int = 0
    failed: int = 0


def backoff(attempt: int, first: float = BACKOFF_FIRST_S, cap: float = BACKOFF_CAP_S) -> float:
    """The wait before reconnect ``attempt`` (0-based): doubling from ``first`` up to ``cap``,
    less up to a fifth at random."""
    base = min(cap, first * (2 ** min(attempt, 32)))
    return base * (1 - random.random() * 0.2)  # noqa: S311 - jitter, not a secret


class MailboxReader:
    """Reads one IMAP folder into :func:`mailback.take_mail` until ``stop`` is set.

    Args:
        intake: The product's intake (database, catalog, Temporal client).
        url: The folder (:func:`nurture.adapters.imap.parse_mailbox_url`).
        ca_file: A CA bundle to trust besides none (None: the system's trust store).
        poll_interval: Seconds between two searches of the folder (the longest an IDLE
            lasts before it is renewed, or the polling period without IDLE).
        idle: Use IDLE when the server announces it.
        backoff_first, backoff_cap: The reconnect backoff, in seconds.
    """

    def __init__(
        self,
        intake: Intake,
        url: MailboxUrl,
        *,
        ca_file: str | None = None,
        poll_interval: float = 60.0,
        idle: bool = True,
        backoff_first: float = BACKOFF_FIRST_S,
        backoff_cap: float = BACKOFF_CAP_S,
    ) -> None:
        self.intake = intake
        self.url = url
        self.ca_file = ca_file
        self.poll_interval = poll_interval
        self.idle = idle
        self.backoff_first = backoff_first
        self.backoff_cap = backoff_cap
        # One thread owns the connection: imaplib is blocking and not thread-safe.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailbox")
        self._halt = threading.Event()
        self.connections = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Read until ``stop`` is set; reconnect on every network error.

        Raises:
            MailboxRefused: when the very first connection is refused (login, folder,
                certificate, STARTTLS): a configuration error, said at once. Once connected,
                refusals too are retried (a password changed on the server, a folder
                renamed back), logged as errors.
        """
        relay = asyncio.create_task(self._relay(stop))
        attempt = 0
        try:
            while not stop.is_set():
                box = ImapMailbox(self.url, ca_file=self.ca_file)
                broken = True
                why = ""
                try:
                    await self._call(box.connect)
                    self.connections += 1
                    mode = "IDLE" if self.idle and box.supports_idle else "polling"
                    if self.connections == 1:
                        log.info("mailbox %s: connected (%s)", self.url.redacted(), mode)
                    else:
                        log.warning(
                            "mailbox %s: reconnected after %d attempt(s) (%s)",
                            self.url.redacted(),
                            attempt,
                            mode,
                        )
                    attempt = 0
                    await self._serve(box, stop)
                    broken = False
                except MailboxRefused as exc:
                    if self.connections == 0:
                        raise
                    log.error("mailbox %s: %s", self.url.redacted(), exc)
                    why = str(exc)
                except MailboxUnavailable as exc:
                    why = str(exc)
                except MailOutage as exc:
                    why = f"processing paused: {exc}"
                    broken = False
                except asyncio.CancelledError:
                    self._halt.set()  # an IDLE in the thread ends, so the close can run
                    raise
                except Exception as exc:  # noqa: BLE001 - a reader that exits reads nothing
                    log.exception("mailbox %s: unexpected error", self.url.redacted())
                    why = f"unexpected {type(exc).__name__}"
                finally:
                    await self._call(box.close, polite=not broken)
                if stop.is_set():
                    break
                delay = backoff(attempt, self.backoff_first, self.backoff_cap)
                attempt += 1
                log.warning(
                    "mailbox %s: %s; reconnecting in %.1f s (attempt %d)",
                    self.url.redacted(),
                    why,
                    delay,
                    attempt,
                )
                await _wait(stop, delay)
        finally:
            self._halt.set()
            relay.cancel()
            self._thread.shutdown(wait=False)
        log.info("mailbox %s: stopped", self.url.redacted())

    async def _serve(self, box: ImapMailbox, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.sweep(box, stop)
            if stop.is_set():
                return
            if self.idle and box.supports_idle:
                await self._call(box.wait_for_news, self.poll_interval, self._halt)
            else:
                await _wait(stop, self.poll_interval)

    async def sweep(self, box: ImapMailbox, stop: asyncio.Event | None = None) -> SweepReport:
        """Read every message of the folder not yet marked, oldest first.

        Raises:
            MailboxUnavailable: the connection broke (what was read so far is marked).
            MailOutage: the database or Temporal failed; the message is left unmarked.
        """
        report = SweepReport()
        for waiting in await self._call(box.unprocessed):
            if stop is not None and stop.is_set():
                break
            big = waiting.size > MAX_MESSAGE_BYTES
            raw = await self._call(box.fetch, waiting.uid, headers_only=big)
            if raw is None:
                continue  # moved or deleted by someone else meanwhile
            started = time.perf_counter()
            try:
                result = await mailback.take_mail(self.intake, raw, source="mailbox")
            except OUTAGES as exc:
                raise MailOutage(f"{type(exc).__name__}: {exc}") from exc
            except Exception:
                log.exception(
                    "mailbox %s: message UID %s could not be processed; marked %s for a "
                    "person (it stays unseen; `nurture mailbox --retry-failed` reads it again)",
                    self.url.redacted(),
                    waiting.uid,
                    "$NurtureFailed",
                )
                await self._call(box.mark_failed, waiting.uid)
                report.failed += 1
                continue
            await self._call(box.mark_processed, waiting.uid)
            report.read += 1
            if result.status == "duplicate":
                report.duplicates += 1
            log.info(
                "mailbox: UID %s%s: %s %s -> %s%s (%.0f ms)",
                waiting.uid,
                f" (header only: {waiting.size} bytes)" if big else "",
                result.status,
                result.kind,
                result.mail_status,
                f" {result.event_type} for lead {result.lead_id}" if result.event_type else "",
                (time.perf_counter() - started) * 1000,
            )
        return report

    async def read_once(self) -> SweepReport:
        """Connect, read what is waiting, disconnect (``nurture mailbox --once``).

        Raises:
            MailboxUnavailable, MailboxRefused: the mailbox could not be read.
            MailOutage: the database or Temporal failed (what was read is marked).
        """
        box = ImapMailbox(self.url, ca_file=self.ca_file)
        await self._call(box.connect)
        try:
            return await self.sweep(box)
        finally:
            await self._call(box.close)

    async def skip_existing(self) -> int:
        """Mark what the folder holds now as read without reading it (its backlog)."""
        box = ImapMailbox(self.url, ca_file=self.ca_file)
        await self._call(box.connect)
        try:
            return await self._call(box.skip_existing)
        finally:
            await self._call(box.close)

    async def retry_failed(self) -> int:
        """Take ``$NurtureFailed`` off the folder's messages so they are read again."""
        box = ImapMailbox(self.url, ca_file=self.ca_file)
        await self._call(box.connect)
        try:
            return await self._call(box.clear_failed)
        finally:
            await self._call(box.close)

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: fn(*args, **kwargs))

    async def _relay(self, stop: asyncio.Event) -> None:
        # The IMAP thread cannot await the loop's event: mirror it into a thread event.
        await stop.wait()
        self._halt.set()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
