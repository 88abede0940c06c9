"""Helpers of the activity tests: a cadence set, leads in the app database, and a real SMTP
server that fails on purpose (:class:`FaultySink`). Their fixtures are in
``activityfixtures``; import the helpers you call from here::

    pytest_plugins = ["dbfixtures", "activityfixtures"]
    from activitysupport import FaultySink, add_lead, email_input
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from conftest import SKELETON_CADENCE, SKELETON_TEMPLATES, write_cadence_set
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from nurture.adapters.catalog import CadenceCatalog
from nurture.adapters.database import LeadRow
from nurture.domain import keys
from nurture.domain import messages as am
from nurture.services.intake import account_of
from nurture.settings import Settings

Sessions = async_sessionmaker[AsyncSession]

# A Monday morning, inside every send window.
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SENDER = "Acme <hello@acme.example>"
POSTAL = "Acme Inc., 1 Main St, Springfield"

# Two SDRs share the US (round robin between them); Ben also covers GB; Aiko has Japan.
PLAYBOOK = f"""
    scoring:
      points: {{email.opened: 1, email.clicked: 5}}
    grading:
      rules:
        - when: {{field: employees, at_least: 1000}}
          points: 30
      bands: {{A: 70, B: 40, C: 20, D: 0}}
    thresholds:
      mql: {{score: 40}}
      toss_up: {{score: 80, grades: [A, B]}}
      sales_follow_up: 14d
    routing:
      entry:
        - cadence: touches
      mql_cadence: touches
      recycle:
        default: {{after: 30d, cadence: touches}}
    limits:
      send_window: {{days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}}
    team:
      sdrs:
        - {{id: aiko, name: Aiko Sato, email: aiko@example.com, territories: [JP]}}
        - {{id: ben, name: Ben Carter, email: ben@example.com, territories: [US, GB]}}
        - {{id: carol, name: Carol Diaz, email: carol@example.com, territories: [US]}}
      ops:
        - {{id: olga, email: ops@acme.example}}
    sender:
      from: "{SENDER}"
      postal_address: "{POSTAL}"
"""

# Every template the tests send, named by a cadence so that the catalog validates them.
TOUCHES_CADENCE = """
    id: touches
    name: Every kind of touch
    steps:
      - id: hello
        type: email
        template: welcome/hello
      - id: ja
        type: email
        template: welcome/ja
      - id: bare
        type: email
        template: welcome/bare
      - id: intro-call
        type: call
        script: welcome/intro
"""

JA_SUBJECT = "【Acme】お問い合わせありがとうございます"

TEMPLATES = {
    **SKELETON_TEMPLATES,
    "email/welcome/ja.j2": """
        {% block subject %}【Acme】お問い合わせありがとうございます{% endblock %}
        {% block text %}{{ lead.last_name or "ご担当者" }} 様

        このたびはお問い合わせいただき、誠にありがとうございます。
        製品紹介：{{ link("https://acme.example/ja/tour") }}

        配信停止：{{ unsubscribe_url }}
        {{ sender.postal_address }}{% endblock %}
        {% block html %}<p>{{ lead.last_name or "ご担当者" }} 様</p>
        <p>このたびはお問い合わせいただき、誠にありがとうございます。</p>
        <p><a href="{{ unsubscribe_url }}">配信停止</a><br>
        {{ sender.postal_address }}</p>{% endblock %}
    """,
    # Forgets the unsubscribe link and the postal address: the activity must add them.
    "email/welcome/bare.j2": """
        {% block subject %}Quick question{% endblock %}
        {% block text %}Hi {{ lead.first_name or "there" }}, got a minute this week?{% endblock %}
        {% block html %}<html><body><p>Hi {{ lead.first_name or "there" }}, got a minute?</p>
        </body></html>{% endblock %}
    """,
    "call/welcome/intro.j2": """
        Call {{ lead.first_name or "the lead" }} {{ lead.last_name or "" }}
        at {{ lead.company or "their company" }}.
        Introduce yourself as {{ sdr.name if sdr else "the SDR" }};
        ask what made them get in touch.
    """,
}


def write_activity_set(root: Path) -> tuple[Path, Path]:
    """The playbook above, the skeleton's cadence and ``touches``, and every template."""
    return write_cadence_set(
        root,
        playbook=PLAYBOOK,
        cadences={"welcome": SKELETON_CADENCE, "touches": TOUCHES_CADENCE},
        templates=TEMPLATES,
    )


def catalog_for(settings: Settings) -> CadenceCatalog:
    return CadenceCatalog(settings.cadences_dir, settings.templates_dir)


async def run(activity_fn: Callable[..., Any], *args: Any) -> Any:
    """Run an activity method once in a real activity context (no retries)."""
    return await ActivityEnvironment().run(activity_fn, *args)


async def add_lead(sessions: Sessions, lead_id: str, **fields: Any) -> LeadRow:
    """Insert a lead as intake would (its account computed the same way)."""
    fields.setdefault("account", account_of(fields.get("email"), fields.get("company")))
    row = LeadRow(id=lead_id, **fields)
    async with sessions() as session:
        session.add(row)
        await session.commit()
    return row


def email_input(
    lead_id: str, step: str = "hello", template: str = "welcome/hello", **extra: Any
) -> am.SendEmailInput:
    """The workflow's input for one email touch (visit 1 of cycle 0 unless told)."""
    values: dict[str, Any] = {"cycle": 0, "cadence": "touches", "visit": 1, "now": NOW, **extra}
    key = keys.touch(lead_id, values["cycle"], values["cadence"], step, values["visit"])
    return am.SendEmailInput(key=key, lead_id=lead_id, step=step, template=template, **values)


def call_input(lead_id: str, step: str = "intro-call", **extra: Any) -> am.CallTaskInput:
    """The workflow's input for one call task (visit 1 of cycle 0 unless told)."""
    values: dict[str, Any] = {
        "cycle": 0,
        "cadence": "touches",
        "visit": 1,
        "script": "welcome/intro",
        "due_at": NOW + timedelta(days=1),
        "now": NOW,
        **extra,
    }
    key = keys.touch(lead_id, values["cycle"], values["cadence"], step, values["visit"])
    return am.CallTaskInput(key=key, lead_id=lead_id, step=step, **values)


# --- an SMTP server that fails on purpose ---------------------------------------------

# Faults for `FaultySink.data_faults` besides a reply line ("451 4.3.0 Try again later"):
DROP_AFTER_BODY = "drop after the body, kept"  # the server took the message, then vanished
DROP_BEFORE_KEEPING = "drop after the body, lost"  # vanished before keeping it
HANG_AFTER_BODY = "hang after the body, kept"  # keeps it, answers too late


@dataclass
class FaultySink:
    """A real aiosmtpd server on 127.0.0.1 that keeps messages, with scripted failures.

    ``rcpt_faults`` and ``data_faults`` are consumed in order, one per RCPT or DATA; when
    empty the server accepts. A DATA fault is a reply line or one of the drop/hang faults,
    which act after the whole body was received (the case SMTP cannot make safe).
    """

    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    mail_options: list[list[str]] = field(default_factory=list)
    rcpt_faults: list[str] = field(default_factory=list)
    data_faults: list[str] = field(default_factory=list)
    rcpt_seen: list[str] = field(default_factory=list)
    data_seen: int = 0
    connections: int = 0
    offer_8bitmime: bool = True
    hang_seconds: float = 1.0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802 - aiosmtpd hook
        self.connections += 1
        session.host_name = hostname
        if not self.offer_8bitmime:
            responses = [line for line in responses if "8BITMIME" not in line]
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        self.rcpt_seen.append(address)
        if self.rcpt_faults:
            return self.rcpt_faults.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.data_seen += 1
        fault = self.data_faults.pop(0) if self.data_faults else None
        if fault in (DROP_AFTER_BODY, HANG_AFTER_BODY, None):
            self._keep(envelope)
        if fault in (DROP_AFTER_BODY, DROP_BEFORE_KEEPING):
            # Vanish without answering: the client cannot tell whether the message was kept.
            server.transport.close()
            return "250 OK (never heard)"
        if fault == HANG_AFTER_BODY:
            await asyncio.sleep(self.hang_seconds)
            return "250 OK (too late)"
        return fault or "250 OK queued"

    def _keep(self, envelope) -> None:  # type: ignore[no-untyped-def]
        raw = envelope.original_content or envelope.content
        self.messages.append(email.message_from_bytes(raw, policy=email.policy.default))  # type: ignore[arg-type]
        self.mail_options.append(list(envelope.mail_options))


class Tap:
    """A TCP relay in front of a real SMTP server that keeps, per connection, every byte the
    client wrote: exactly what the server received, in order.

    ``idle`` is set while no connection is open: once a client has closed its connection and
    the server its own, everything the client wrote has been read (and, if it held no lone
    dot ending DATA, thrown away) by the server.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.connections: list[bytearray] = []
        self.open = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Tap:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Once every client has closed (each test closes its sender first)."""
        await self.idle.wait()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.idle.clear()
        written = bytearray()
        self.connections.append(written)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            await asyncio.gather(
                _pipe(reader, up_writer, written), _pipe(up_reader, writer, bytearray())
            )
        finally:
            self.open -= 1
            if self.open == 0:
                self.idle.set()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, keep: bytearray) -> None:
    try:
        while data := await source.read(65536):
            keep.extend(data)
            sink.write(data)
            await sink.drain()
    except OSError:
        pass
    finally:
        sink.close()


def data_block(written: bytes) -> bytes:
    """What a client wrote after DATA on one connection (the message as transmitted)."""
    head, found, block = bytes(written).partition(b"\r\nDATA\r\n")
    assert found, f"no DATA command on this connection: {head[-200:]!r}"
    return block
