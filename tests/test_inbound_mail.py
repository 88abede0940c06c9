"""`POST /inbound/email`: mail that comes back becomes events, once; what matches nothing is
kept for a person (`mail list --unmatched`, `/inbound/unmatched`); erase removes it.

The app runs in-process on a migrated SQLite file; the journeys that need a lead's workflow
run the real worker on the time-skipping server.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from conftest import SKELETON_PLAYBOOK, write_cadence_set
from sqlalchemy import select
from typer.testing import CliRunner
from webhookfixtures import Web, uid

from nurture.adapters.database import (
    EventRow,
    InboundMail,
    Suppression,
    make_engine,
    session_factory,
)
from nurture.cli import app as cli
from nurture.services.optouts import erase_personal_data
from nurture.web.security import SIGNATURE_HEADER, sign

pytest_plugins = ["webhookfixtures"]

CORPUS = Path(__file__).parent / "mail"
EXIT_ON_REPLY = """
    id: welcome
    name: Welcome series
    exit_on: [email.replied]
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


@pytest.fixture
def cli_env() -> Callable[[Web], dict[str, str]]:
    """The environment a CLI command needs to read the app's database and cadences."""

    def build(web: Web) -> dict[str, str]:
        return {
            "NURTURE_DATABASE_URL": web.settings.database_url,
            "NURTURE_CADENCES_DIR": str(web.settings.cadences_dir),
            "NURTURE_TEMPLATES_DIR": str(web.settings.templates_dir),
            "NURTURE_WEBHOOK_SECRET": web.secret,
        }

    return build


async def post_mail(web: Web, raw: bytes, content_type: str = "message/rfc822") -> httpx.Response:
    headers = {"Content-Type": content_type, SIGNATURE_HEADER: sign(web.secret, raw)}
    return await web.client.post("/inbound/email", content=raw, headers=headers)


def reply(to_message_id: str, sender: str, body: str = "Yes, let's talk next week.") -> bytes:
    return (
        f"From: Someone <{sender}>\r\nTo: Acme <hello@acme.example>\r\n"
        f"Subject: Re: Welcome\r\nMessage-ID: <{uid('r')}@mail.example>\r\n"
        f"In-Reply-To: {to_message_id}\r\nReferences: {to_message_id}\r\n"
        f"Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"\r\n{body}\r\n"
    ).encode()


async def rows(web: Web, model: type) -> list:  # type: ignore[type-arg]
    engine = make_engine(web.settings.database_url)
    try:
        async with session_factory(engine)() as session:
            return list((await session.scalars(select(model))).all())
    finally:
        await engine.dispose()


async def test_a_reply_ends_the_cadence_once(make_settings, time_env) -> None:  # type: ignore[no-untyped-def]
    from harness import running
    from web_helpers import asgi_client

    from nurture.web import create_app

    cadences_dir, templates_dir = write_cadence_set(
        Path(make_settings().cadences_dir).parent / "reply",
        SKELETON_PLAYBOOK,
        {"welcome": EXIT_ON_REPLY},
    )
    settings = make_settings(cadences_dir=cadences_dir, templates_dir=templates_dir)
    async with (
        running(time_env.client, settings) as stack,
        asgi_client(create_app(settings, client=time_env.client)) as client,
    ):
        web = Web(client, settings, settings.require_webhook_secret())
        lead = uid()
        address = f"{lead.lower()}@example.com"
        created = await web.post("/leads", {"id": lead, "email": address, "country": "US"})
        assert created.status_code == 202, created.text
        await stack.until(lead, lambda v: v.step == "pause")
        [sent] = await web.sends(lead)
        assert sent.message_id

        raw = reply(sent.message_id, address)
        first = await post_mail(web, raw)
        again = await post_mail(web, raw)

        assert first.status_code == 202, first.text
        assert first.json()["event_type"] == "email.replied"
        assert first.json()["lead_id"] == lead and first.json()["mail"] == "matched"
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
        view = await stack.until(
            lead, lambda v: any(h.what == "cadence stopped" for h in v.history)
        )
        assert view.next_touch_at is None
        events = [e for e in await web.events() if e.type == "email.replied"]
        assert len(events) == 1 and events[0].data.get("step") == "hello"
        # No word of the body in the event, nor in what the workflow was sent.
        assert "talk next week" not in json.dumps(events[0].data)
        assert not any("talk next week" in h.why for h in view.history)


async def test_unmatched_mail_is_kept_for_a_person(web: Web, cli_env) -> None:  # type: ignore[no-untyped-def]
    raw = reply("<nothing-we-sent@elsewhere.example>", "stranger@nowhere.example",
                "Who are you? Please call me back.\r\n\r\n> old quoted text")  # fmt: skip

    answer = await post_mail(web, raw)

    assert answer.status_code == 202, answer.text
    assert answer.json()["mail"] == "unmatched" and answer.json()["event_id"] is None
    [kept] = await rows(web, InboundMail)
    assert kept.sender == "stranger@nowhere.example"
    assert kept.excerpt == "Who are you? Please call me back."
    assert await web.events() == []

    listed = await asyncio.to_thread(
        CliRunner().invoke, cli, ["mail", "list", "--unmatched", "--json"], env=cli_env(web)
    )
    assert listed.exit_code == 0, listed.output
    [item] = json.loads(listed.output)
    assert item["sender"] == "stranger@nowhere.example" and item["kind"] == "reply"


async def test_bad_requests_are_refused_naming_what(web: Web) -> None:
    raw = (CORPUS / "gmail-reply.eml").read_bytes()
    unsigned = await web.client.post(
        "/inbound/email", content=raw, headers={"Content-Type": "message/rfc822"}
    )
    wrong_type = await post_mail(web, raw, content_type="application/json")
    empty = await post_mail(web, b"  \r\n")

    assert unsigned.status_code == 401
    assert wrong_type.status_code == 415 and "message/rfc822" in wrong_type.json()["detail"]
    assert empty.status_code == 422 and "body" in empty.json()["detail"]
    assert await rows(web, InboundMail) == []


async def test_a_complaint_unsubscribes_and_suppresses(web: Web) -> None:
    lead = uid()
    address = f"{lead.lower()}@yahoo.example"
    assert (await web.post("/leads", {"id": lead, "email": address})).status_code == 202
    raw = (
        (CORPUS / "arf-complaint.eml")
        .read_bytes()
        .replace(b"angry.reader@yahoo.example", address.encode())
        .replace(b"1764607447.4412.fbl", uid("fbl").encode())
    )

    answer = await post_mail(web, raw)

    assert answer.status_code == 202, answer.text
    assert answer.json()["event_type"] == "lead.unsubscribed"
    assert [s.email for s in await rows(web, Suppression)] == [address]
    assert (await web.lead(lead)).unsubscribed  # type: ignore[union-attr]


async def test_erase_removes_the_leads_received_mail(web: Web) -> None:
    lead = uid()
    address = f"{lead.lower()}@example.com"
    assert (await web.post("/leads", {"id": lead, "email": address})).status_code == 202
    answer = await post_mail(web, reply("<none@x.example>", address))
    assert answer.json()["lead_id"] == lead  # matched by the sender's address
    assert len(await rows(web, InboundMail)) == 1

    engine = make_engine(web.settings.database_url)
    try:
        await erase_personal_data(session_factory(engine), lead, datetime.now(UTC))
    finally:
        await engine.dispose()

    assert await rows(web, InboundMail) == []
    assert [e.type for e in await rows(web, EventRow)].count("email.replied") == 1


async def test_mail_answering_an_erased_leads_email_keeps_nothing(web: Web) -> None:
    from nurture.adapters.database import EmailSend

    lead = uid()
    address = f"{lead.lower()}@example.com"
    assert (await web.post("/leads", {"id": lead, "email": address})).status_code == 202
    sent_id = f"<{uid('m')}@acme.example>"
    engine = make_engine(web.settings.database_url)
    try:
        sessions = session_factory(engine)
        async with sessions() as session:
            session.add(
                EmailSend(
                    key=f"{lead}|0|welcome|hello|1", lead_id=lead, cycle=0, cadence="welcome",
                    step="hello", visit=1, template="welcome/hello", message_id=sent_id,
                    status="sent", sent_at=datetime.now(UTC),
                )
            )  # fmt: skip
            await session.commit()
        await erase_personal_data(sessions, lead, datetime.now(UTC))
    finally:
        await engine.dispose()

    # Weeks later the person answers the old email (its Message-ID is kept, the address not).
    answer = await post_mail(web, reply(sent_id, address, "Please call me on 555 0100."))

    assert answer.status_code == 202, answer.text
    assert answer.json()["mail"] == "ignored" and answer.json()["event_id"] is None
    [kept] = await rows(web, InboundMail)
    assert (kept.lead_id, kept.sender, kept.subject, kept.excerpt) == (lead, None, None, None)
    assert [e for e in await web.events() if e.type == "email.replied"] == []


async def test_the_unmatched_page_lists_mail_for_ops(web: Web) -> None:
    from web_helpers import add_user, log_in

    await post_mail(web, reply("<none@x.example>", "someone@nowhere.example"))
    engine = make_engine(web.settings.database_url)
    try:
        await add_user(session_factory(engine), "ops-1", "ops")
    finally:
        await engine.dispose()
    await log_in(web.client, "ops-1")

    page = await web.client.get("/inbound/unmatched")

    assert page.status_code == 200
    assert "someone@nowhere.example" in page.text


async def test_a_hard_bounce_suppresses_the_address_at_once(web: Web) -> None:
    lead = uid()
    address = f"{lead.lower()}@initrode.example"
    assert (await web.post("/leads", {"id": lead, "email": address})).status_code == 202
    raw = (
        (CORPUS / "postfix-dsn-hard.eml")
        .read_bytes()
        .replace(b"nobody@initrode.example", address.encode())
    )

    answer = await post_mail(web, raw)

    assert answer.status_code == 202, answer.text
    assert answer.json()["event_type"] == "email.bounced" and answer.json()["lead_id"] == lead
    [bounce] = [e for e in await web.events() if e.type == "email.bounced"]
    assert bounce.data["kind"] == "hard" and bounce.data["status"] == "5.1.1"
    [suppressed] = await rows(web, Suppression)
    assert suppressed.email == address and "hard bounce" in (suppressed.reason or "")


async def test_soft_bounces_suppress_on_the_third_in_30_days(web: Web) -> None:
    lead = uid()
    address = f"{lead.lower()}@umbrella.example"
    assert (await web.post("/leads", {"id": lead, "email": address})).status_code == 202
    dsn = (
        (CORPUS / "postfix-dsn-delayed.eml")
        .read_bytes()
        .replace(b"full@umbrella.example", address.encode())
    )

    for n in range(3):
        assert await rows(web, Suppression) == [], f"suppressed after {n} soft bounces"
        raw = dsn.replace(b"4ZkC7d1Q9fz9sRw@mx", f"{n}-{uid('q')}@mx".encode())
        answer = await post_mail(web, raw)
        assert answer.status_code == 202 and answer.json()["event_type"] == "email.bounced"

    [suppressed] = await rows(web, Suppression)
    assert suppressed.email == address and "3 soft bounces" in (suppressed.reason or "")


async def test_a_bounce_posted_as_an_event_suppresses_too(web: Web) -> None:
    lead = uid()
    address = f"{lead.lower()}@example.com"
    assert (await web.post("/leads", {"id": lead, "email": address})).status_code == 202
    posted = await web.post(
        "/events",
        {"id": uid("evt"), "type": "email.bounced", "lead_id": lead, "data": {"kind": "hard"}},
    )
    assert posted.status_code == 202, posted.text
    assert [s.email for s in await rows(web, Suppression)] == [address]


def payload_texts(node: object) -> list[str]:
    """The decoded ``data`` of every payload in a JSON history (kept there in base64)."""
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("data"), str) and "metadata" in node:
            found.append(base64.b64decode(node["data"]).decode("utf-8", "replace"))
        for value in node.values():
            found += payload_texts(value)
    elif isinstance(node, list):
        for value in node:
            found += payload_texts(value)
    return found


async def test_a_reply_tells_the_owner_and_nothing_of_it_reaches_temporal(  # type: ignore[no-untyped-def]
    make_settings, time_env, smtp_sink, tmp_path
) -> None:
    from harness import eventually, running
    from test_journeys import journey_settings
    from web_helpers import asgi_client

    from nurture.domain.names import workflow_id
    from nurture.web import create_app

    # The journeys' set: a visit to /pricing makes an MQL whose call task gives it an owner.
    settings = journey_settings(make_settings, tmp_path)
    async with (
        running(time_env.client, settings) as stack,
        asgi_client(create_app(settings, client=time_env.client)) as client,
    ):
        web = Web(client, settings, settings.require_webhook_secret())
        lead = uid()
        address = f"{lead.lower()}@example.com"
        created = await web.post(
            "/leads",
            {"id": lead, "email": address, "first_name": "Rei", "company": "Kumo", "country": "US"},
        )
        assert created.status_code == 202, created.text
        stack.started.add(lead)
        await stack.until(lead, lambda v: v.step == "pause")
        [welcome] = await web.sends(lead)
        visit = {"id": uid("evt"), "type": "page.visited", "lead_id": lead,
                 "data": {"url": "https://acme.example/pricing"}}  # fmt: skip
        assert (await web.post("/events", visit)).status_code == 202
        await stack.settle(lead, "mql")
        await stack.until(lead, lambda v: v.owner == "ben")

        raw = reply(str(welcome.message_id), address, "My mobile is 555 0199; Tuesday 3pm works.")
        first = await post_mail(web, raw)
        again = await post_mail(web, raw)  # the provider retries: read once
        assert first.status_code == 202 and first.json()["event_type"] == "email.replied"
        assert again.status_code == 200

        view = await stack.until(
            lead, lambda v: any(h.what.startswith("told ben") for h in v.history)
        )
        told = [h.what for h in view.history if h.what.startswith("told ")]
        assert told == ["told ben: the lead replied to welcome"]

        async def notices() -> list:  # type: ignore[type-arg]
            return [m for m in smtp_sink.messages if str(m["Subject"]) == f"Lead {lead} replied"]

        [notice] = await eventually(notices)
        assert str(notice["To"]) == "ben@example.com"
        text = notice.get_content()
        assert "replied to email welcome" in text
        assert "Rei (Kumo)" in text and f"/leads/{lead}" in text  # named from the database
        assert "555 0199" not in text and "Tuesday" not in text

        # Nothing of the reply, and nothing personal, in any run of the lead's workflow.
        texts: list[str] = []
        run_id: str | None = None
        while True:
            history = await time_env.client.get_workflow_handle(
                workflow_id(lead), run_id=run_id
            ).fetch_history()
            texts += payload_texts(json.loads(history.to_json()))
            started = history.events[0].workflow_execution_started_event_attributes
            if not started.continued_execution_run_id:
                break
            run_id = started.continued_execution_run_id
        everything = "\n".join(texts)
        assert f"Lead {lead} replied" in everything  # the notice's input was looked at
        for trace in ("555 0199", "Tuesday 3pm", address, "Rei", "Kumo"):
            assert trace not in everything, trace
