"""The fault suite's SMTP server: accepts mail like a sink, and misbehaves on command.

Run as its own process (``python -m faults.sink --port P --log FILE``), so it never competes
with the suite's load generator for the GIL. Every outcome is one JSON line in ``--log``:

    {"what": "accepted", "mid": "<...>", "lead": "L-1", "step": "c/hello", "rcpt": 1}
    {"what": "dropped", ...}    the body was read, then the connection cut without a reply
    {"what": "421"} / {"what": "451"}    a scripted temporary refusal

Faults are scripted on stdin, one JSON object a line, and added to what is pending:

    {"mail_421": 5}             answer the next 5 MAIL commands with 421
    {"data_451": 5}             answer the next 5 bodies with 451 (message not taken)
    {"drop_leads": ["L-7"]}     read the body of each of these leads' next message, then
                                cut the connection before answering (delivery unknown)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from typing import Any

HEADER = re.compile(rb"^(message-id|x-nurture-lead|x-nurture-step):[ \t]*(.*?)\r?$", re.I | re.M)


class Script:
    """The pending faults, shared by the SMTP loop and the stdin reader."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mail_421 = 0
        self.data_451 = 0
        self.drop_leads: set[str] = set()

    def add(self, command: dict[str, Any]) -> None:
        with self.lock:
            self.mail_421 += int(command.get("mail_421", 0))
            self.data_451 += int(command.get("data_451", 0))
            self.drop_leads.update(command.get("drop_leads", []))

    def take(self, name: str) -> bool:
        with self.lock:
            if getattr(self, name) > 0:
                setattr(self, name, getattr(self, name) - 1)
                return True
            return False

    def take_drop(self, lead: str | None) -> bool:
        with self.lock:
            if lead is not None and lead in self.drop_leads:
                self.drop_leads.discard(lead)
                return True
            return False


class Handler:
    def __init__(self, script: Script, log_path: str) -> None:
        self.script = script
        self.log = open(log_path, "a", buffering=1)  # noqa: SIM115 - open for the process's life

    def note(self, what: str, **fields: object) -> None:
        self.log.write(json.dumps({"what": what, "at": time.time(), **fields}) + "\n")

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802 - aiosmtpd's hook
        if self.script.take("mail_421"):
            self.note("421")
            return "421 4.3.2 Service not available, closing transmission channel (scripted)"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        head = raw.split(b"\r\n\r\n", 1)[0]
        found = {m.group(1).lower().decode(): m.group(2).decode() for m in HEADER.finditer(head)}
        fields = {
            "mid": found.get("message-id"),
            "lead": found.get("x-nurture-lead"),
            "step": found.get("x-nurture-step"),
            "rcpt": len(envelope.rcpt_tos),
        }
        if self.script.take("data_451"):
            self.note("451", **fields)
            return "451 4.3.0 Requested action aborted: local error in processing (scripted)"
        if self.script.take_drop(fields["lead"]):
            self.note("dropped", **fields)
            server.transport.abort()  # the body is in; no reply will ever come
            return "250 never seen by the client"
        self.note("accepted", **fields)
        return "250 OK accepted"


def read_commands(script: Script) -> None:
    for line in sys.stdin:
        line = line.strip()
        if line:
            script.add(json.loads(line))
            print("ok", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    from aiosmtpd.controller import Controller

    script = Script()
    controller = Controller(Handler(script, args.log), hostname="127.0.0.1", port=args.port)
    controller.start()
    print("ready", flush=True)
    try:
        read_commands(script)  # until the suite closes our stdin
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
