"""Benchmark: SMTP sends over a few reused connections versus one connection per message.

Every mode sends the same N real messages (built by the email activity's ``build_message``:
text and html parts, list-unsubscribe headers) to the same local aiosmtpd sink, in one run,
through the same code (:class:`nurture.adapters.smtp.SmtpSender`), with the same number of
sends in flight (``--concurrency``, default 8: a worker runs many email activities at
once), so that only reuse differs:

- ``pooled``: one ``SmtpSender`` for all messages, as the worker uses it, with its pool of
  ``--connections`` reused connections (default: the sender's default, 4);
- ``one-reused``: the same with a single reused connection (the sender before the pool);
- ``per-message``: a new ``SmtpSender`` (so a new ``aiosmtplib.SMTP``) for every message:
  connect, EHLO, [STARTTLS, EHLO, AUTH,] MAIL, RCPT, DATA, QUIT.

Two set-ups, each with its own sink:

- ``plain``: no TLS, no AUTH (the embedded set-up of ``make run``);
- ``starttls+auth``: STARTTLS with a throw-away self-signed certificate (made with the
  ``openssl`` command; skipped when it is missing) and AUTH PLAIN, the production shape
  (``NURTURE_SMTP_STARTTLS``, ``NURTURE_SMTP_USERNAME``/``PASSWORD``).

The sink runs in a child process, so it does not compete with the client for the GIL (as a
real mail server would not); it counts what it accepts, and every round checks that all of
its messages arrived.

Run from the repository root::

    .venv/bin/python bench/smtp_pool.py            # 500 messages per mode, 3 rounds
    .venv/bin/python bench/smtp_pool.py --concurrency 1 --connections 1   # sends one by one
    .venv/bin/python bench/smtp_pool.py -n 1000 --rounds 5 --setup plain

Results, and the machine they were taken on, are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

# Run as a script from anywhere: make the repository importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nurture.activities.email import build_message, message_id  # noqa: E402
from nurture.adapters.smtp import DEFAULT_CONNECTIONS, SmtpSender  # noqa: E402
from nurture.domain.rendering import RenderedEmail  # noqa: E402

HOST = "127.0.0.1"
SENDER = "Acme <hello@acme.example>"
USERNAME, PASSWORD = "bench", "bench-password"
TEXT = (
    "Hi there,\n\nThanks for your interest in Acme. Three things people usually want first:\n"
    "- A 4-minute product tour: https://acme.example/tour\n"
    "- How customers use it: https://acme.example/customers\n"
    "- Pricing, in plain numbers: https://acme.example/pricing\n\n"
    "Unsubscribe with one click: http://localhost:8000/u/token\n"
    "Acme Inc., 1 Main St, Springfield\n"
)
HTML = "<p>" + TEXT.replace("\n\n", "</p><p>").replace("\n", "<br>") + "</p>"


@dataclass(frozen=True)
class Setup:
    """One way of talking to the sink: plain, or STARTTLS and AUTH."""

    name: str
    cert: Path | None = None
    key: Path | None = None

    @property
    def tls(self) -> bool:
        return self.cert is not None


# --- the sink (child process) ----------------------------------------------------------


class CountingHandler:
    """Accepts every message and counts it; no parsing, so the sink stays cheap."""

    def __init__(self, counter: Synchronized) -> None:  # type: ignore[type-arg]
        self.counter = counter

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        with self.counter.get_lock():
            self.counter.value += 1
        return "250 OK queued"


def accept_bench_login(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
    """aiosmtpd authenticator: the benchmark's one user."""
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ok = isinstance(auth_data, LoginPassword) and auth_data.login == USERNAME.encode()
    return AuthResult(success=ok and auth_data.password == PASSWORD.encode())


def serve_sink(port: int, setup: Setup, counter: Synchronized, ready: Event) -> None:  # type: ignore[type-arg]
    """Run an aiosmtpd sink on ``HOST:port`` until the process is terminated."""
    from aiosmtpd.controller import Controller

    # aiosmtpd warns on every AUTH about its own use of a deprecated attribute: keep quiet.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    options: dict[str, Any] = {}
    if setup.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(setup.cert), str(setup.key))
        options = {
            "tls_context": context,
            "require_starttls": True,
            "auth_required": True,
            "authenticator": accept_bench_login,
        }
    controller = Controller(CountingHandler(counter), hostname=HOST, port=port, **options)
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
        rendered = RenderedEmail(subject=f"Thanks for getting in touch ({i})", text=TEXT, html=HTML)
        messages.append(
            build_message(
                sender=SENDER,
                to=f"lead{i}@example.com",
                rendered=rendered,
                message_id=message_id(key, SENDER),
                unsubscribe_url="http://localhost:8000/u/token",
                reply_to=None,
                date=now,
            )
        )
    return messages


CONCURRENCY = 8  # sends in flight (--concurrency)
CONNECTIONS = DEFAULT_CONNECTIONS  # the pooled sender's connections (--connections)


def new_sender(port: int, setup: Setup, connections: int = 1) -> SmtpSender:
    if setup.tls:
        return SmtpSender(
            HOST, port, username=USERNAME, password=PASSWORD, starttls=True,
            connections=connections,
        )  # fmt: skip
    return SmtpSender(HOST, port, connections=connections)


async def in_flight(
    messages: list[EmailMessage], send: Callable[[EmailMessage], Awaitable[Any]]
) -> None:
    """``send`` every message, ``CONCURRENCY`` at a time."""
    queue = iter(messages)

    async def lane() -> None:
        for message in queue:
            await send(message)

    await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))


async def send_pooled(port: int, setup: Setup, messages: list[EmailMessage]) -> float:
    """Send over the pool's reused connections; returns the elapsed seconds (closing included)."""
    return await _reused(port, setup, messages, CONNECTIONS)


async def send_one_reused(port: int, setup: Setup, messages: list[EmailMessage]) -> float:
    """Send over one reused connection; returns the elapsed seconds (closing included)."""
    return await _reused(port, setup, messages, 1)


async def _reused(port: int, setup: Setup, messages: list[EmailMessage], connections: int) -> float:
    started = time.perf_counter()
    sender = new_sender(port, setup, connections)
    await in_flight(messages, lambda m: sender.send(m, "hello@acme.example", [str(m["To"])]))
    await sender.close()
    return time.perf_counter() - started


async def send_per_message(port: int, setup: Setup, messages: list[EmailMessage]) -> float:
    """Send each message over its own connection (connect, send, quit); elapsed seconds."""

    async def one(message: EmailMessage) -> None:
        sender = new_sender(port, setup)
        await sender.send(message, "hello@acme.example", [str(message["To"])])
        await sender.close()

    started = time.perf_counter()
    await in_flight(messages, one)
    return time.perf_counter() - started


Send = Callable[[int, Setup, list[EmailMessage]], Awaitable[float]]


# --- the run -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def self_signed_certificate(folder: Path) -> tuple[Path, Path] | None:
    """A throw-away certificate for 127.0.0.1, or None without the ``openssl`` command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def measure(
    send: Send,
    port: int,
    setup: Setup,
    messages: list[EmailMessage],
    counter: Synchronized,  # type: ignore[type-arg]
) -> float:
    """Send ``messages`` one way, check that the sink got them all; messages per second."""
    before = counter.value
    elapsed = await send(port, setup, messages)
    # The sink counts in its own process: give its last increment a moment to land.
    deadline = time.monotonic() + 5
    while counter.value - before < len(messages) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    arrived = counter.value - before
    if arrived != len(messages):
        raise SystemExit(f"{setup.name}: the sink received {arrived} of {len(messages)} messages")
    return len(messages) / elapsed


async def run(setup: Setup, count: int, rounds: int, port: int, counter: Synchronized) -> float:  # type: ignore[type-arg]
    """Warm up, then alternate the modes for ``rounds``; print and return the ratio."""
    await send_pooled(port, setup, make_messages(20, 0))
    await send_per_message(port, setup, make_messages(20, 0))
    modes: list[tuple[str, Send]] = [
        ("pooled", send_pooled), ("one-reused", send_one_reused), ("per-message", send_per_message),
    ]  # fmt: skip
    rates: dict[str, list[float]] = {name: [] for name, _ in modes}
    for round_no in range(rounds):
        # Alternate the order, so that a slow moment of the machine favours neither mode.
        for name, send in modes if round_no % 2 == 0 else modes[::-1]:
            messages = make_messages(count, round_no * count)
            rate = await measure(send, port, setup, messages, counter)
            rates[name].append(rate)
            print(
                f"  round {round_no + 1}: {name:<12} {count} messages {rate:8.0f} msgs/s",
                flush=True,
            )
    pooled = statistics.median(rates["pooled"])
    reused = statistics.median(rates["one-reused"])
    single = statistics.median(rates["per-message"])
    ratio = pooled / single
    print(f"  ({CONCURRENCY} sends in flight; medians of {rounds} rounds)")
    print(f"  pooled ({CONNECTIONS} reused connections): {pooled:8.0f} msgs/s")
    print(f"  one reused connection:          {reused:8.0f} msgs/s  ({reused / single:.1f}x)")
    print(f"  one connection per message:     {single:8.0f} msgs/s")
    print(f"  ratio pooled / per message:     {ratio:8.1f}x (goal: >= 5x)", flush=True)
    return ratio


def bench(setup: Setup, count: int, rounds: int) -> float:
    """Start a sink for ``setup`` in a child process and run the benchmark against it."""
    port = free_port()
    counter = multiprocessing.Value("q", 0)
    ready = multiprocessing.Event()
    sink = multiprocessing.Process(
        target=serve_sink, args=(port, setup, counter, ready), daemon=True
    )
    sink.start()
    try:
        if not ready.wait(30):
            raise SystemExit("the SMTP sink did not start")
        print(f"\n{setup.name}: aiosmtpd sink on {HOST}:{port} (child process {sink.pid})")
        return asyncio.run(run(setup, count, rounds, port, counter))
    finally:
        sink.terminate()
        sink.join(10)


def main() -> None:
    global CONCURRENCY, CONNECTIONS  # noqa: PLW0603 - the script's two knobs
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", "--messages", type=int, default=500, help="messages per mode, round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument(
        "--setup", choices=["plain", "starttls+auth", "both"], default="both", help="set-ups to run"
    )
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="sends in flight")
    parser.add_argument(
        "--connections", type=int, default=CONNECTIONS, help="the pooled sender's connections"
    )
    args = parser.parse_args()
    CONCURRENCY, CONNECTIONS = args.concurrency, args.connections
    python = sys.version.split()[0]
    print(
        f"python {python}, {os.cpu_count()} CPUs, {args.messages} messages per mode and round, "
        f"{CONCURRENCY} in flight, pool of {CONNECTIONS}; load average {os.getloadavg()[0]:.1f}"
    )

    ratios: dict[str, float] = {}
    if args.setup in ("plain", "both"):
        ratios["plain"] = bench(Setup("plain"), args.messages, args.rounds)
    if args.setup in ("starttls+auth", "both"):
        with tempfile.TemporaryDirectory() as folder:
            pair = self_signed_certificate(Path(folder))
            if pair is None:
                print("\nstarttls+auth: skipped (no `openssl` command to make a certificate)")
            else:
                # SmtpSender verifies certificates with the default trust store: trust ours.
                os.environ["SSL_CERT_FILE"] = str(pair[0])
                ratios["starttls+auth"] = bench(
                    Setup("starttls+auth", *pair), args.messages, args.rounds
                )
    print("\nsummary: " + ", ".join(f"{name} {ratio:.1f}x" for name, ratio in ratios.items()))


if __name__ == "__main__":
    main()
