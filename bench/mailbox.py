"""Benchmark: how long a message takes from its APPEND to the IMAP folder to its event
recorded in the app database, with IDLE and with polling.

One run on this machine:

- Debian's dovecot, started as the tests start it (``tests/imapserver.py``: 127.0.0.1, free
  ports, a throw-away certificate and store), read over IMAPS;
- a fresh SQLite app database, migrated; the bench cadence set of ``bench/webhooks.py``;
- one lead, taken in while Temporal is away (no server is run: what is measured ends when
  the event is recorded, before it is signaled), so each reply is matched by its sender's
  address and recorded as ``email.replied``, then parked;
- the real :class:`nurture.services.mailbox.MailboxReader` in this process, and beside it a
  watcher that looks for the event's row every 2 ms (the event id is derived from the
  Message-ID, so it is known before the APPEND).

IDLE: ``--messages`` replies (default 30), each APPENDed once the one before is recorded.
Polling: the reader with IDLE off and a period of ``--poll-seconds`` (default 5); each
message is APPENDed at a random moment of the period, so the figures spread over it, and
the mean is about half the period plus the processing.

Run from the repository root::

    .venv/bin/python bench/mailbox.py
    .venv/bin/python bench/mailbox.py --messages 10 --poll-seconds 2 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from imapserver import Dovecot, dovecot_unavailable  # noqa: E402
from webhooks import CADENCE, PLAYBOOK  # noqa: E402

from nurture.adapters.catalog import CadenceCatalog  # noqa: E402
from nurture.adapters.database import EventRow, make_engine, session_factory  # noqa: E402
from nurture.adapters.imap import parse_mailbox_url  # noqa: E402
from nurture.adapters.schema import migrate  # noqa: E402
from nurture.adapters.temporal import TemporalGate, connect  # noqa: E402
from nurture.domain.events import Lead  # noqa: E402
from nurture.services.intake import Intake  # noqa: E402
from nurture.services.mailback import event_id  # noqa: E402
from nurture.services.mailbox import MailboxReader  # noqa: E402
from nurture.settings import load_settings  # noqa: E402

TEMPLATES = {
    "email/bench/hello.j2": "{% block subject %}Hi{% endblock %}{% block text %}Hi{% endblock %}"
}


def reply(sender: str) -> tuple[str, bytes]:
    message_id = f"<{secrets.token_hex(8)}@bench.example>"
    raw = (
        f"From: <{sender}>\r\nTo: Acme <hello@acme.example>\r\nSubject: Re: Hi\r\n"
        f"Message-ID: {message_id}\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nYes, let's talk.\r\n"
    ).encode()
    return message_id, raw


async def until_recorded(sessions, wanted: str, timeout: float = 600.0) -> float:  # type: ignore[no-untyped-def]
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        async with sessions() as session:
            if await session.get(EventRow, wanted) is not None:
                return time.perf_counter()
        await asyncio.sleep(0.002)
    raise SystemExit(f"event {wanted} not recorded within {timeout} s")


async def measure(
    server: Dovecot, intake: Intake, folder: str, *, idle: bool, count: int, period: float
) -> list[float]:
    server.create_folder(folder)
    url = parse_mailbox_url(server.url(folder))
    reader = MailboxReader(intake, url, ca_file=str(server.cert), idle=idle, poll_interval=period)
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop))
    await asyncio.sleep(1.0)  # connected, first (empty) sweep done
    figures: list[float] = []
    try:
        for _ in range(count):
            if not idle:
                await asyncio.sleep(random.uniform(0, period))  # noqa: S311 - spread, not secret
            message_id, raw = reply("bench.lead@example.com")
            await asyncio.to_thread(server.append, raw, folder)
            appended = time.perf_counter()
            recorded = await until_recorded(intake.sessions, event_id(message_id))
            figures.append((recorded - appended) * 1000)
    finally:
        stop.set()
        await task
    return figures


def summary(figures: list[float]) -> dict[str, float]:
    ordered = sorted(figures)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 1),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
        "mean_ms": round(statistics.fmean(ordered), 1),
        "max_ms": round(ordered[-1], 1),
    }


async def main(args: argparse.Namespace) -> dict[str, object]:
    reason = dovecot_unavailable()
    if reason:
        raise SystemExit(reason)
    with tempfile.TemporaryDirectory(prefix="nurture-bench-mailbox-") as tmp:
        root = Path(tmp)
        (root / "cadences").mkdir()
        (root / "cadences" / "playbook.yaml").write_text(PLAYBOOK)
        (root / "cadences" / "rest.yaml").write_text(CADENCE)
        for name, body in TEMPLATES.items():
            (root / "templates" / name).parent.mkdir(parents=True, exist_ok=True)
            (root / "templates" / name).write_text(body)
        settings = load_settings(
            database_url=f"sqlite+aiosqlite:///{root / 'nurture.db'}",
            cadences_dir=root / "cadences",
            templates_dir=root / "templates",
            temporal_address="127.0.0.1:1",  # nothing there: events are recorded, then parked
        )
        await migrate(settings.database_url)
        engine = make_engine(settings.database_url)
        server = Dovecot(root / "dovecot")
        server.start()
        try:
            client = await connect(settings, lazy=True)
            intake = Intake(
                settings,
                client,
                session_factory(engine),
                CadenceCatalog(settings.cadences_dir, settings.templates_dir),
                TemporalGate(timeout_s=0.5, cooldown_s=3600.0),
            )
            await intake.submit(Lead(id="L-bench", email="bench.lead@example.com", country="US"))
            idle = await measure(
                server, intake, "Idle", idle=True, count=args.messages, period=60.0
            )
            polling = await measure(
                server,
                intake,
                "Polling",
                idle=False,
                count=max(5, args.messages // 3),
                period=args.poll_seconds,
            )
        finally:
            server.stop()
            await engine.dispose()
    return {
        "idle": summary(idle),
        "polling": {**summary(polling), "period_s": args.poll_seconds},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=30)
    parser.add_argument("--poll-seconds", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(main(arguments))
    if arguments.json:
        print(json.dumps(result, indent=2))
    else:
        for mode, figures in result.items():
            print(f"{mode:8} " + "  ".join(f"{k}={v}" for k, v in figures.items()))
