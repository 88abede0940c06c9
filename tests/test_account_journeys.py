"""Leads of one company as live workflows: a real worker, database and SMTP sink on the
time-skipping server. The account shares its caps, talks through one lead at a time, and
one address under two lead ids is one person; no touch is lost or sent twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from harness import record_histories, running
from sqlalchemy import select
from test_journeys import CADENCES, PLAYBOOK, event, journey_settings

from nurture.adapters.database import NOTIFICATION_CADENCE, EmailSend, TouchGrant
from nurture.services.intake import submit_event

ACCOUNT_PLAYBOOK = PLAYBOOK.replace(
    """    limits:
""",
    """    limits:
      account:
        min_gap_between_touches: 1d
        one_conversation: true
""",
)


def _to(sink, address: str) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for _sender, rcpts in sink.envelopes if address in rcpts)


def _sent_at(view, step: str) -> datetime:  # type: ignore[no-untyped-def]
    return next(h.at for h in view.history if h.what == f"email {step}: sent")


async def _grants(stack) -> list[TouchGrant]:  # type: ignore[no-untyped-def]
    async with stack.sessions() as session:
        return list((await session.scalars(select(TouchGrant).order_by(TouchGrant.at))).all())


async def _sends(stack) -> list[EmailSend]:  # type: ignore[no-untyped-def]
    async with stack.sessions() as session:
        return list(
            (
                await session.scalars(
                    select(EmailSend).where(
                        EmailSend.status == "sent", EmailSend.cadence != NOTIFICATION_CADENCE
                    )
                )
            ).all()
        )


async def test_two_leads_of_one_account_share_its_gap_and_lose_nothing(
    time_env, make_settings, smtp_sink, tmp_path
):  # type: ignore[no-untyped-def]
    settings = journey_settings(make_settings, tmp_path, ACCOUNT_PLAYBOOK)
    async with running(time_env.client, settings) as stack:
        await stack.add_lead(id="A-1", email="ann@initech.example", country="US")
        await smtp_sink.wait_for(1)
        await stack.add_lead(id="A-2", email="bob@initech.example", country="US")
        # A-1 took the account's slot; A-2's welcome waits a day, visibly.
        held = await stack.until(
            "A-2", lambda v: any("deferred" in h.what for h in v.history), timeout=60
        )
        note = next(h for h in held.history if "deferred" in h.what)
        assert note.why.startswith("initech.example: last touch")
        assert len(smtp_sink.messages) == 1
        # Two weeks later every email of both leads went out, once each, a day apart.
        await time_env.sleep(timedelta(days=15))
        await smtp_sink.wait_for(6)
        a1 = await stack.until("A-1", lambda v: v.step == "(done)")
        a2 = await stack.until("A-2", lambda v: v.step == "(done)")
        # The account's touches (each granted just before its send) are a day apart or more.
        grants = await _grants(stack)
        assert len(grants) == 6 and {g.account for g in grants} == {"initech.example"}
        times = [g.at for g in grants]
        assert all(b - a >= timedelta(days=1) for a, b in zip(times, times[1:], strict=False))
        assert sorted((g.lead_id, g.key.split("|")[3]) for g in grants) == sorted(
            (lead, step) for lead in ("A-1", "A-2") for step in ("welcome", "nudge", "last")
        )
        assert all(_sent_at(v, "welcome") for v in (a1, a2))
        sends = await _sends(stack)
        assert sorted((s.lead_id, s.step) for s in sends) == sorted(
            (lead, step) for lead in ("A-1", "A-2") for step in ("welcome", "nudge", "last")
        )
        assert len(smtp_sink.messages) == 6
        await record_histories(time_env.client, "A-2", "account-gap")


async def test_the_account_talks_through_one_lead_at_a_time(
    time_env, make_settings, smtp_sink, tmp_path
):  # type: ignore[no-untyped-def]
    settings = journey_settings(make_settings, tmp_path, ACCOUNT_PLAYBOOK)
    async with running(time_env.client, settings) as stack:
        await stack.add_lead(id="C-1", email="ann@initech.example", country="US")
        await smtp_sink.wait_for(1)
        await submit_event(stack.intake, event("C-1", "form.submitted", form="demo"))
        await stack.settle("C-1", "sql")
        await stack.until("C-1", lambda v: v.owner == "ben")
        # A colleague arrives while C-1 is with sales: its welcome waits, saying why.
        await stack.add_lead(id="C-2", email="bob@initech.example", country="US")
        view = await stack.until("C-2", lambda v: v.doing.startswith("held:"))
        assert view.doing.startswith("held: initech.example is in conversation with ben via C-1")
        assert [h.why for h in view.history if h.what == "email welcome held"] == [
            "initech.example is in conversation with ben via C-1"
        ]
        assert view.next_touch_at is not None
        # Held across backstop re-checks, with nothing sent and nothing noted again.
        await time_env.sleep(timedelta(days=2))
        view = await stack.until("C-2", lambda v: v.doing.startswith("held:"))
        assert len([h for h in view.history if h.what == "email welcome held"]) == 1
        assert _to(smtp_sink, "bob@initech.example") == 0
        # Sales lose C-1: its release wakes C-2 at once (no clock moved), which sends.
        await submit_event(stack.intake, event("C-1", "opportunity.lost", reason="no budget"))
        view = await stack.until("C-2", lambda v: v.step == "pause")
        assert _to(smtp_sink, "bob@initech.example") == 1
        await record_histories(time_env.client, "C-2", "account-held-then-released")
        assert [h.what for h in view.history if "held" in h.what or "hold" in h.what] == [
            "email welcome held",
            "email welcome hold ended",
        ]
        sends = await _sends(stack)
        assert sorted((s.lead_id, s.step) for s in sends) == [
            ("C-1", "welcome"),
            ("C-2", "welcome"),
        ]


async def test_one_address_under_two_lead_ids_is_one_person(
    time_env, make_settings, smtp_sink, tmp_path
):  # type: ignore[no-untyped-def]
    playbook = PLAYBOOK.replace(
        """    limits:
""",
        """    limits:
      min_gap_between_touches: 20h
""",
    )
    settings = journey_settings(make_settings, tmp_path, playbook, CADENCES)
    async with running(time_env.client, settings) as stack:
        await stack.add_lead(id="W-1", email="ann@gmail.com", company="Initech", source="webinar")
        await smtp_sink.wait_for(1)
        await stack.add_lead(id="F-1", email="ann@gmail.com", company="Initech", source="form")
        view = await stack.until(
            "F-1", lambda v: any("deferred" in h.what for h in v.history), timeout=60
        )
        note = next(h for h in view.history if "deferred" in h.what)
        assert note.why.startswith("this address (several lead ids): last touch")
        assert "ann@" not in note.why
        await time_env.sleep(timedelta(days=1))
        await smtp_sink.wait_for(2)
        await stack.until("F-1", lambda v: v.step == "pause")
        # The person's touches (each granted just before its send) are 20 hours apart.
        first, second = [(g.lead_id, g.at) for g in await _grants(stack)][:2]
        assert (first[0], second[0]) == ("W-1", "F-1")
        assert second[1] - first[1] >= timedelta(hours=20)
        assert _to(smtp_sink, "ann@gmail.com") == 2
