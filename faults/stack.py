"""The real parts the scenarios run and break: servers, the product's processes, a proxy.

Everything listens on 127.0.0.1 on free ports, in a temporary folder that the suite removes.
The product runs exactly as production runs it: ``python worker.py`` and ``python starter.py
serve`` in their own processes, configured only through the NURTURE_* variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from nurture.adapters.signing import sign
from nurture.domain.names import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SECRET = "faults-webhook-secret"
# What worker.py prints once it polls.
WORKER_READY = "worker polling task queue"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def binary(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        sys.exit(f"{name} is not installed (make venv)")
    return found


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


def daytime_zone() -> str:
    """A fixed-offset zone where it is about noon now, far from any day boundary."""
    shift = (12 - datetime.now(UTC).hour + 12) % 24 - 12
    return "UTC" if shift == 0 else f"Etc/GMT{-shift:+d}"  # Etc/ signs are inverted


# --- the cadence set --------------------------------------------------------------------

PLAYBOOK = """
scoring:
  points: {page.visited: 1, email.opened: 0}
grading:
  rules: []
  bands: {A: 70, B: 40, C: 20, D: 0}
thresholds:
  mql: {score: 1000000}
  toss_up: {score: 2000000, grades: [A]}
  sales_follow_up: 14d
routing:
  entry:
    - when: {field: source, in: [rest]}
      cadence: rest
    - when: {field: source, in: [race]}
      cadence: race
    - when: {field: source, in: [timers]}
      cadence: timers
    - when: {field: source, in: [two]}
      cadence: two
    - cadence: three
  mql_cadence: rest
  recycle:
    default: {after: 30d, cadence: rest}
limits:
  send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}
team:
  sdrs:
    - {id: ben, name: Ben Carter, email: ben@example.com, territories: [US]}
sender:
  from: "Acme <hello@acme.example>"
  postal_address: "Acme Inc., 1 Main St, Springfield"
"""

CADENCES = {
    # Three emails a few seconds apart: the kill scenario's and most others' cadence.
    "three": """
id: three
name: Three emails
steps:
  - {id: first, type: email, template: f/one}
  - {id: pause-1, type: wait, duration: 3s}
  - {id: second, type: email, template: f/two}
  - {id: pause-2, type: wait, duration: 3s}
  - {id: third, type: email, template: f/three}
""",
    # Two emails a second apart: the shape whose CPU per lead docs/benchmarks.md measured.
    "two": """
id: two
name: Two emails
steps:
  - {id: first, type: email, template: f/one}
  - {id: pause, type: wait, duration: 1s}
  - {id: second, type: email, template: f/two}
""",
    # Only waits: events are scored and nothing is sent (the webhook flood).
    "rest": """
id: rest
name: Rest
steps:
  - {id: wait, type: wait, duration: 30d}
""",
    # An email, a call task (its SDR is told by email), a pause, an email.
    "race": """
id: race
name: Race
steps:
  - {id: first, type: email, template: f/one}
  - {id: call, type: call, script: f/call}
  - {id: pause, type: wait, duration: 3s}
  - {id: second, type: email, template: f/two}
""",
    # An email, a long wait for the server to be stopped in, an email.
    "timers": """
id: timers
name: Timers
steps:
  - {id: first, type: email, template: f/one}
  - {id: wait, type: wait, duration: 40s}
  - {id: second, type: email, template: f/two}
""",
}

TEMPLATES = {
    "email/f/one.j2": "{% block subject %}One{% endblock %}{% block text %}Hello "
    '{{ lead.first_name or "there" }}. {{ unsubscribe_url }} {{ sender.postal_address }}'
    "{% endblock %}",
    "email/f/two.j2": "{% block subject %}Two{% endblock %}{% block text %}Again. "
    "{{ unsubscribe_url }} {{ sender.postal_address }}{% endblock %}",
    "email/f/three.j2": "{% block subject %}Three{% endblock %}{% block text %}Last. "
    "{{ unsubscribe_url }} {{ sender.postal_address }}{% endblock %}",
    "call/f/call.j2": "Call {{ lead.first_name or 'them' }}.",
}


def write_cadence_set(folder: Path) -> tuple[Path, Path]:
    cadences, templates = folder / "cadences", folder / "templates"
    cadences.mkdir(parents=True)
    (cadences / "playbook.yaml").write_text(PLAYBOOK.lstrip())
    for name, text in CADENCES.items():
        (cadences / f"{name}.yaml").write_text(text.lstrip())
    for name, text in TEMPLATES.items():
        path = templates / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return cadences, templates


# --- processes --------------------------------------------------------------------------


class Proc:
    """One process of ours, restartable, its output in a log file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.command, self.env, self.log = name, command, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            self.command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
        )
        out.close()
        self.starts += 1

    def wait_for(self, text: str, timeout: float = 120) -> None:
        """Until ``text`` shows in this start's output (the log only grows)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (
                self.log.exists()
                and self.log.read_text(errors="replace").count(text) >= self.starts
            ):
                return
            if not self.alive():
                raise RuntimeError(f"{self.name} exited: see {self.log}")
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not say {text!r} within {timeout} s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind."""
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 20) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGCONT)  # a frozen process cannot stop
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def temporal_command(port: int, db_file: Path | None) -> list[str]:
    command = [
        binary("temporal"),
        "server",
        "start-dev",
        "--headless",
        "--ip",
        HOST,
        "--port",
        str(port),
        "--ui-port",
        str(free_port()),
        "--log-level",
        "error",
    ]
    if db_file is not None:
        command += [
            "--db-filename",
            str(db_file),
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
        ]
    for name, kind in SEARCH_ATTRIBUTES.items():
        command += ["--search-attribute", f"{name}={kind}"]
    return command


@dataclass
class Sink:
    """The scripted SMTP server (:mod:`faults.sink`) in its own process."""

    port: int
    log: Path
    proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "faults.sink", "--port", str(self.port), "--log", str(self.log)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the SMTP sink did not start")

    def script(self, **faults: object) -> None:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(faults) + "\n")
        self.proc.stdin.flush()
        self.proc.stdout.readline()

    def lines(self) -> list[dict[str, object]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def accepted(self) -> list[dict[str, object]]:
        return [line for line in self.lines() if line["what"] == "accepted"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Stack:
    """One scenario's world: a Temporal dev server, the sink, an app database, and as many
    workers and web apps as it asks for."""

    def __init__(self, folder: Path, database_url: str | None = None, persisted: bool = False):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.temporal_port = free_port()
        self.temporal_db = folder / "temporal.db" if persisted else None
        self.temporal = Proc(
            "temporal",
            temporal_command(self.temporal_port, self.temporal_db),
            dict(os.environ),
            folder / "temporal.log",
        )
        self.sink = Sink(free_port(), folder / "sink.jsonl")
        self.database_url = database_url or f"sqlite+aiosqlite:///{folder / 'app.db'}"
        cadences, templates = write_cadence_set(folder / "set")
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "NURTURE_DATABASE_URL": self.database_url,
            "NURTURE_TEMPORAL_ADDRESS": f"{HOST}:{self.temporal_port}",
            "NURTURE_TASK_QUEUE": "nurture",
            "NURTURE_WEBHOOK_SECRET": SECRET,
            "NURTURE_CADENCES_DIR": str(cadences),
            "NURTURE_TEMPLATES_DIR": str(templates),
            "NURTURE_SMTP_HOST": HOST,
            "NURTURE_SMTP_PORT": str(self.sink.port),
        }
        self.workers: list[Proc] = []
        self.webs: list[Proc] = []
        self.web_ports: list[int] = []

    def start_temporal(self) -> None:
        self.temporal.start()
        wait_port(self.temporal_port, 90, self.temporal.proc)

    def add_worker(self, env: dict[str, str] | None = None) -> Proc:
        n = len(self.workers)
        worker = Proc(
            f"worker-{n}",
            [sys.executable, "worker.py"],
            {**self.env, **(env or {})},
            self.folder / f"worker-{n}.log",
        )
        worker.start()
        self.workers.append(worker)
        return worker

    def add_web(self, env: dict[str, str] | None = None) -> int:
        n, port = len(self.webs), free_port()
        web = Proc(
            f"web-{n}",
            [sys.executable, "starter.py", "serve", "--port", str(port)],
            {**self.env, **(env or {})},
            self.folder / f"web-{n}.log",
        )
        web.start()
        wait_port(port, 90, web.proc)
        self.webs.append(web)
        self.web_ports.append(port)
        return port

    def start(self, workers: int = 1, webs: int = 1) -> None:
        self.sink.start()
        self.start_temporal()
        for _ in range(webs):  # the web app migrates the database before it listens
            self.add_web()
        for _ in range(workers):
            self.add_worker()
        for worker in self.workers:
            worker.wait_for(WORKER_READY)

    def stop(self) -> None:
        for proc in [*self.webs, *self.workers]:
            proc.stop()
        self.temporal.stop()
        self.sink.stop()

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
        """``python starter.py ARGS`` against this stack; its standard output."""
        done = subprocess.run(
            [sys.executable, "starter.py", *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"starter.py {' '.join(args)}: exit {done.returncode}: {done.stderr}"
            )
        return done.stdout


# --- a TCP proxy we can cut -------------------------------------------------------------


class Proxy:
    """Forwards ``127.0.0.1:port`` to a target; :meth:`cut` makes the target unreachable
    for whoever uses the proxy (open connections reset, new ones refused) and
    :meth:`restore` brings it back. The real server never notices."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, HOST, self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            writer.close()
            return
        self.pipes |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self.pipes -= {writer, up_writer}

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for pipe in list(self.pipes):
            transport = pipe.transport
            transport.abort()  # type: ignore[attr-defined]
        self.pipes.clear()

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()


# --- a minimal keep-alive HTTP/1.1 client (cheap enough for 50 senders) ------------------


class Conn:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.resent = False

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()
    ) -> tuple[int, bytes]:
        head = [f"{method} {path} HTTP/1.1", f"Host: {HOST}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers]
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        status_line = b""
        self.resent = False
        for attempt in range(2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
            assert self.reader is not None
            self.writer.write(data)
            try:
                status_line = await self.reader.readline()
            except ConnectionError:
                status_line = b""
            if status_line:
                break
            # The server closed the connection without an answer (an idle keep-alive
            # connection it timed out): send again on a new one, as a webhook sender does.
            self.resent = attempt == 0
            await self.close()
        if not status_line:
            raise ConnectionError("no answer")
        assert self.reader is not None
        status = int(status_line.split()[1])
        length, close = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value.strip())
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        payload = await self.reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


def signed(payload: object, secret: str = SECRET) -> tuple[bytes, list[tuple[str, str]]]:
    body = json.dumps(payload).encode()
    return body, [("Content-Type", "application/json"), ("X-Nurture-Signature", sign(secret, body))]


async def post(conn: Conn, path: str, payload: object, secret: str = SECRET) -> tuple[int, bytes]:
    body, headers = signed(payload, secret)
    return await conn.request("POST", path, body, headers)


@dataclass
class Answers:
    """What a load got back: a count per status, and the requests each status answered."""

    statuses: Counter[int] = field(default_factory=Counter)
    by_status: dict[int, list[int]] = field(default_factory=dict)
    errors: int = 0
    # Requests sent twice because the first went unanswered, with the second's status.
    resent: Counter[int] = field(default_factory=Counter)

    def add(self, n: int, status: int) -> None:
        self.statuses[status] += 1
        self.by_status.setdefault(status, []).append(n)


async def send_all(
    port: int | Callable[[int], int],
    requests: Sequence[tuple[str, object, str]],
    senders: int,
    timeout: float,
) -> Answers:
    """POST ``requests`` ((path, payload, secret) each) from ``senders`` connections at once,
    each one request at a time; ``port`` may pick the web app by request number."""
    answers = Answers()
    queue = iter(range(len(requests)))
    pick = port if callable(port) else (lambda _n: port)
    conns: dict[int, Conn] = {}

    async def sender() -> None:
        mine: dict[int, Conn] = {}
        try:
            for n in queue:
                path, payload, secret = requests[n]
                target = pick(n)
                conn = mine.setdefault(target, Conn(target))
                try:
                    status, _ = await post(conn, path, payload, secret)
                except (ConnectionError, OSError, asyncio.IncompleteReadError):
                    answers.errors += 1
                    await conn.close()
                    continue
                answers.add(n, status)
                if conn.resent:
                    answers.resent[status] += 1
        finally:
            for conn in mine.values():
                await conn.close()

    del conns
    async with asyncio.timeout(timeout):
        await asyncio.gather(*(sender() for _ in range(senders)))
    return answers


def lead(lead_id: str, source: str) -> dict[str, object]:
    return {
        "id": lead_id,
        "email": f"{lead_id.lower()}@example.com",
        "first_name": "Ann",
        "country": "US",
        "timezone": daytime_zone(),
        "source": source,
    }


async def eventually(check: Callable[[], object], timeout: float, every: float = 1.0) -> bool:
    """Poll ``check`` (sync or async) until it is truthy or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every)


def dedent(text: str) -> str:
    return textwrap.dedent(text).strip()
