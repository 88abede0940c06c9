"""Benchmark: SMTP sends over one reused connection versus one connection per message.

Both modes send the same N real messages (built by the email activity's ``build_message``,
text and html parts, list-unsubscribe headers) to the same local aiosmtpd sink, in one run:

- ``pooled``: :class:`activities.smtp.SmtpSender`, as the worker uses it (one connection,
  reused across sends);
- ``per-message``: a new ``aiosmtplib.SMTP`` for every message (connect, EHLO, MAIL, RCPT,
  DATA, QUIT), built with the same arguments ``SmtpSender`` uses.

The sink runs in a child process so that it does not compete with the client for the GIL,
as a real mail server would not; it counts what it accepts, and the script checks that
every message arrived.

Run from the repository root::

    .venv/bin/python bench/smtp_pool.py            # 500 messages per mode, 3 rounds
    .venv/bin/python bench/smtp_pool.py -n 1000 --rounds 5

Results and the machine they were taken on are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

import aiosmtplib

# Run as a script from anywhere: make the repository importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from activities.email import build_message, message_id  # noqa: E402
from activities.smtp import SmtpSender  # noqa: E402
from nurture.rendering import RenderedEmail  # noqa: E402

SENDER = "Acme <hello@acme.example>"
TEXT = (
    "Hi there,\n\nThanks for your interest in Acme. Three things people usually want first:\n"
    "- A 4-minute product tour: https://acme.example/tour\n"
    "- How customers use it: https://acme.example/customers\n"
    "- Pricing, in plain numbers: https://acme.example/pricing\n\n"
    "Unsubscribe with one click: http://localhost:8000/u/token\nAcme Inc., 1 Main St, Springfield\n"
)
HTML = "<p>" + TEXT.replace("\n\n", "</p><p>").replace("\n", "<br>") + "</p>"


# --- the sink (child process) ----------------------------------------------------------


class CountingHandler:
    """Accepts every message and counts it; no parsing, so the server is not the bottleneck."""

    def __init__(self, counter: Synchronized) -> None:  # type: ignore[type-arg]
        self.counter = counter

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        with self.counter.get_lock():
            self.counter.value += 1
        return "250 OK queued"


def serve_sink(port: int, counter: Synchronized, ready: multiprocessing.Event) -> None:  # type: ignore[type-arg]
    """Run an aiosmtpd sink on 127.0.0.1:``port`` until the process is terminated."""
    from aiosmtpd.controller import Controller

    controller = Controller(CountingHandler(counter), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


# --- the two ways of sending -------------------------------------------------------------


def make_messages(count: int, offset: int) -> list[EmailMessage]:
    """``count`` distinct messages, as the email activity builds them."""
    now = datetime.now(UTC)
    messages = []
    for i in range(offset, offset + count):
        key = f"L-{i}|0|inbound|welcome|1"
        messages.append(
            build_message(
                sender=SENDER,
                to=f"lead{i}@example.com",
                rendered=RenderedEmail(
                    subject=f"Thanks for getting in touch ({i})", text=TEXT, html=HTML
                ),
                message_id=message_id(key, SENDER),
                unsubscribe_url="http://localhost:8000/u/token",
                reply_to=None,
                date=now,
            )
        )
    return messages


async def send_pooled(port: int, messages: list[EmailMessage]) -> float:
    """Send over one reused connection; returns the elapsed seconds."""
    sender = SmtpSender("127.0.0.1", port)
    started = time.perf_counter()
    for message in messages:
        await sender.send(message, "hello@acme.example", [str(message["To"])])
    elapsed = time.perf_counter() - started
    await sender.close()
    return elapsed


async def send_per_message(port: int, messages: list[EmailMessage]) -> float:
    """Send each message over its own connection (connect, send, quit); elapsed seconds."""
    started = time.perf_counter()
    for message in messages:
        # The same arguments SmtpSender uses for its connection, so only reuse differs.
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30.0)
        await client.connect()
        await client.mail("hello@acme.example")
        await client.rcpt(str(message["To"]))
        await client.data(message.as_bytes())
        await client.quit()
    return time.perf_counter() - started


# --- the run -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def measure(
    name: str,
    send: Callable[[int, list[EmailMessage]], Awaitable[float]],
    port: int,
    messages: list[EmailMessage],
    counter: Synchronized,  # type: ignore[type-arg]
) -> float:
    """Send ``messages`` one way; check the sink got them all; returns messages per second."""
    before = counter.value
    elapsed = await send(port, messages)
    # The sink counts in its own process: give its last increment a moment to land.
    deadline = time.monotonic() + 5
    while counter.value - before < len(messages) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    arrived = counter.value - before
    if arrived != len(messages):
        raise SystemExit(f"{name}: the sink received {arrived} of {len(messages)} messages")
    return len(messages) / elapsed


async def run(count: int, rounds: int, port: int, counter: Synchronized) -> None:  # type: ignore[type-arg]
    # Warm up both paths (imports, first connection, the sink's first session).
    await send_pooled(port, make_messages(20, 0))
    await send_per_message(port, make_messages(20, 0))
    results: dict[str, list[float]] = {"pooled": [], "per-message": []}
    for round_no in range(rounds):
        # Alternate the order so that a slow moment of the machine does not favour one mode.
        order = [("pooled", send_pooled), ("per-message", send_per_message)]
        if round_no % 2:
            order.reverse()
        for name, send in order:
            rate = await measure(name, send, port, make_messages(count, round_no * count), counter)
            results[name].append(rate)
            print(
                f"round {round_no + 1}: {name:<12} {count} messages  {rate:8.0f} msgs/s", flush=True
            )
    pooled = statistics.median(results["pooled"])
    single = statistics.median(results["per-message"])
    print()
    print(f"pooled (one reused connection):   {pooled:8.0f} msgs/s  (median of {rounds} rounds)")
    print(f"one connection per message:       {single:8.0f} msgs/s  (median of {rounds} rounds)")
    print(f"ratio:                            {pooled / single:8.1f}x  (goal: >= 5x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-n", "--messages", type=int, default=500, help="messages per mode and round"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds (the median is reported)")
    args = parser.parse_args()

    port = free_port()
    counter = multiprocessing.Value("q", 0)
    ready = multiprocessing.Event()
    sink = multiprocessing.Process(target=serve_sink, args=(port, counter, ready), daemon=True)
    sink.start()
    try:
        if not ready.wait(30):
            raise SystemExit("the SMTP sink did not start")
        python = sys.version.split()[0]
        print(f"sink: aiosmtpd on 127.0.0.1:{port} (child process {sink.pid}); python {python}")
        asyncio.run(run(args.messages, args.rounds, port, counter))
    finally:
        sink.terminate()
        sink.join(10)


if __name__ == "__main__":
    main()
