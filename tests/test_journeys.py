"""A lead's whole life on the time-skipping server, with a real worker, database and SMTP sink.

Each test drives the product through its real intake paths (intake, recorded events, task
completion) and asserts what users see: emails in the sink, stages and search attributes,
the `state` history, rows in the database.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

from conftest import SKELETON_TEMPLATES, write_cadence_set
from harness import eventually, record_histories, running, search_attributes
from sqlalchemy import select

from nurture.adapters.database import CallTask, LeadRow, Opportunity, StageChange
from nurture.domain.events import Event
from nurture.services.call_tasks import complete_task
from nurture.services.intake import submit_event

PLAYBOOK = """
    scoring:
      points: {email.opened: 1, email.clicked: 5, email.replied: 15, page.visited: 2, form.submitted: 10, webinar.attended: 20}
      page_points: {/pricing: 10}
      decay: {after: 30d, points: 10}
    grading:
      rules:
        - when: {field: employees, at_least: 1000}
          points: 30
        - when: {field: industry, in: [manufacturing, finance]}
          points: 20
      bands: {A: 70, B: 40, C: 20, D: 0}
    thresholds:
      mql: {score: 10}
      toss_up: {score: 40, grades: [A, B]}
      sales_follow_up: 14d
      hand_raisers: [meeting.booked, form.submitted:demo]
    routing:
      entry:
        - cadence: inbound
      mql_cadence: mql-sdr
      recycle:
        competitor: {after: 180d, cadence: recycle-competitor}
        default: {after: 30d, cadence: recycle-competitor}
        bad_fit: never
    limits:
      send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}
    team:
      sdrs:
        - {id: aiko, name: Aiko Sato, email: aiko@example.com, territories: [JP]}
        - {id: ben, name: Ben Carter, email: ben@example.com, territories: [US]}
      call_due: 1d
    sender:
      from: "Acme <hello@acme.example>"
      postal_address: "Acme Inc., 1 Main St, Springfield"
"""

CADENCES = {
    "inbound": """
        id: inbound
        name: Inbound
        exit_on: [email.replied]
        steps:
          - {id: welcome, type: email, template: welcome/hello}
          - {id: pause, type: wait, duration: 2d, until_any: [email.clicked]}
          - {id: nudge, type: email, template: welcome/follow-up}
          - {id: rest, type: wait, duration: 10d}
          - {id: last, type: email, template: welcome/last}
    """,
    "mql-sdr": """
        id: mql-sdr
        name: MQL SDR
        steps:
          - {id: first-call, type: call, script: first-call, wait_for_outcome: 2d}
          - id: after-call
            type: branch
            cases:
              - when: {call_outcome: [no_answer, voicemail]}
                goto: missed
            default: end
          - {id: missed, type: email, template: welcome/missed}
    """,
    "recycle-competitor": """
        id: recycle-competitor
        name: Recycle after a competitor
        steps:
          - {id: renewal, type: email, template: welcome/renewal}
          - {id: listen, type: wait, duration: 7d}
    """,
}

TEMPLATES = {
    **SKELETON_TEMPLATES,
    "email/welcome/last.j2": "{% block subject %}Last note{% endblock %}{% block text %}Bye. {{ unsubscribe_url }} {{ sender.postal_address }}{% endblock %}",
    "email/welcome/missed.j2": "{% block subject %}Sorry we missed you{% endblock %}{% block text %}Call us. {{ unsubscribe_url }} {{ sender.postal_address }}{% endblock %}",
    "email/welcome/renewal.j2": "{% block subject %}Renewal time?{% endblock %}{% block text %}Hello again. {{ unsubscribe_url }} {{ sender.postal_address }}{% endblock %}",
    "call/first-call.j2": "Call {{ lead.first_name or 'the lead' }} at {{ lead.phone or 'no phone' }}.",
}

_ids = itertools.count(1)


def event(lead_id: str, kind: str, **data: object) -> Event:
    return Event(id=f"evt-{next(_ids)}", type=kind, lead_id=lead_id, data=data)  # type: ignore[arg-type]


def journey_settings(make_settings, tmp_path, playbook: str = PLAYBOOK, cadences=None):  # type: ignore[no-untyped-def]
    cadences_dir, templates_dir = write_cadence_set(
        tmp_path / "journey", playbook, cadences or CADENCES, TEMPLATES
    )
    return make_settings(cadences_dir=cadences_dir, templates_dir=templates_dir)


async def open_task(stack, lead_id: str) -> CallTask:  # type: ignore[no-untyped-def]
    async with stack.sessions() as session:
        return (
            await session.scalars(
                select(CallTask)
                .where(CallTask.lead_id == lead_id, CallTask.status == "open")
                .order_by(CallTask.created_at)
            )
        ).one()


async def test_full_journey_with_recycle(time_env, make_settings, smtp_sink, tmp_path):
    settings = journey_settings(make_settings, tmp_path)
    lead = "J-1"
    async with running(time_env.client, settings) as stack:
        await stack.add_lead(
            id=lead,
            email="ana@bigco.example",
            first_name="Ana",
            country="US",
            employees=5000,
            industry="finance",
            source="ads",
        )
        await smtp_sink.wait_for(1)
        view = await stack.until(lead, lambda v: v.step == "pause")
        assert (view.stage, view.grade) == ("nurturing", "B")

        # A click wakes the wait early and reaches MQL (10 points).
        await submit_event(stack.intake, event(lead, "email.clicked", step="welcome"))
        await submit_event(
            stack.intake, event(lead, "page.visited", url="https://acme.example/pricing")
        )
        view = await stack.until(
            lead, lambda v: v.stage == "mql" and v.step == "first-call" and v.owner is not None
        )
        assert view.cadence == "mql-sdr"
        assert view.owner == "ben"  # US territory

        async def mql_attributes():  # type: ignore[no-untyped-def]
            attrs = await search_attributes(time_env.client, lead)
            return attrs if attrs.get("LeadOwner") == "ben" else None

        attrs = await eventually(mql_attributes)
        assert attrs["LeadStage"] == "mql" and attrs["Cadence"] == "mql-sdr"
        assert attrs["LeadScore"] == 17 and attrs["LeadGrade"] == "B"

        # The SDR qualifies the lead: toss-up, open tasks closed, opportunity recorded.
        task = await open_task(stack, lead)
        assert "Call Ana" in (task.script or "")
        await complete_task(
            stack.sessions, stack.intake, task.id, "qualified", "budget approved", by="ben"
        )
        view = await stack.settle(lead, "sql")
        assert view.cadence is None

        async def opportunities():  # type: ignore[no-untyped-def]
            async with stack.sessions() as session:
                return (
                    await session.scalars(select(Opportunity).where(Opportunity.lead_id == lead))
                ).all()

        (opportunity,) = await eventually(opportunities)
        if True:
            assert opportunity.trigger == "call.completed" and opportunity.cycle == 0

        # Sales lose it to a competitor: the lead waits 180 days, then recycles.
        await submit_event(stack.intake, event(lead, "opportunity.lost", reason="Competitor"))
        view = await stack.settle(lead, "lost")

        async def lost_attributes():  # type: ignore[no-untyped-def]
            attrs = await search_attributes(time_env.client, lead)
            return attrs if attrs["LeadStage"] == "lost" and "NextTouchAt" in attrs else None

        await eventually(lost_attributes)
        sent_before = len(smtp_sink.messages)
        await time_env.sleep(timedelta(days=179))
        view = await stack.view(lead)
        assert view.stage == "lost" and len(smtp_sink.messages) == sent_before
        await time_env.sleep(timedelta(days=1, hours=1))
        view = await stack.until(
            lead, lambda v: v.stage == "recycling" and v.cadence == "recycle-competitor"
        )
        assert view.score == 0 and view.grade == "B" and view.cycle == 1
        await smtp_sink.wait_for(sent_before + 1)
        assert smtp_sink.subjects()[-1] == "Renewal time?"

        # A hand-raiser tosses it up again at once; then the deal is won and the workflow ends.
        await submit_event(stack.intake, event(lead, "form.submitted", form="demo"))
        view = await stack.settle(lead, "sql")
        await submit_event(stack.intake, event(lead, "opportunity.won"))
        handle = time_env.client.get_workflow_handle(f"lead-{lead}")
        assert await handle.result() == "won"
        await record_histories(time_env.client, lead, "full-journey")

        async with stack.sessions() as session:
            passages = [
                (c.cycle, c.from_stage, c.to_stage)
                for c in (
                    await session.scalars(
                        select(StageChange)
                        .where(StageChange.lead_id == lead)
                        .order_by(StageChange.id)
                    )
                )
            ]
        assert passages == [
            (0, None, "nurturing"),
            (0, "nurturing", "mql"),
            (0, "mql", "sql"),
            (0, "sql", "lost"),
            (1, "lost", "recycling"),
            (1, "recycling", "sql"),
            (1, "sql", "won"),
        ]
        subjects = smtp_sink.subjects()
        assert subjects[0] == "Welcome, Ana" and "Renewal time?" in subjects
        # The owner heard of each toss-up (once per cycle) by email.
        handoffs = [
            m for m in smtp_sink.messages if str(m["Subject"]).startswith("Tossed up to sales: Ana")
        ]
        assert len(handoffs) == 2 and all(str(m["To"]) == "ben@example.com" for m in handoffs)
        assert len(subjects) == len(set(m["Message-ID"] for m in smtp_sink.messages))


async def test_unsubscribe_during_wait_stops_email_but_not_calls(
    time_env, make_settings, smtp_sink, tmp_path
):
    settings = journey_settings(make_settings, tmp_path)
    lead = "J-2"
    async with running(time_env.client, settings) as stack:
        await stack.add_lead(
            id=lead, email="bo@example.com", first_name="Bo", country="JP", employees=10
        )
        await smtp_sink.wait_for(1)
        await stack.until(lead, lambda v: v.step == "pause")
        await submit_event(stack.intake, event(lead, "lead.unsubscribed"))
        await stack.until(lead, lambda v: v.unsubscribed)
        await time_env.sleep(timedelta(days=3))
        view = await stack.until(lead, lambda v: v.step == "rest")
        assert len(smtp_sink.messages) == 1
        assert any(
            h.what == "email nudge skipped" and h.why == "unsubscribed" for h in view.history
        )

        # Calls go on: engagement reaches MQL and the SDR gets a task.
        await submit_event(stack.intake, event(lead, "webinar.attended"))
        view = await stack.until(
            lead, lambda v: v.stage == "mql" and v.step == "first-call" and v.owner is not None
        )
        task = await open_task(stack, lead)
        assert task.owner == "aiko"
        await complete_task(stack.sessions, stack.intake, task.id, "no_answer", None)
        view = await stack.until(lead, lambda v: v.step == "(done)")
        # Still the one email to Bo; the other message is Aiko's new-task notification.
        assert [m["To"] for m in smtp_sink.messages] == ["bo@example.com", "aiko@example.com"]
        assert any(h.what == "email missed skipped" for h in view.history)
        await record_histories(time_env.client, lead, "unsubscribe-then-call")


async def test_duplicate_and_out_of_order_events_score_once(
    time_env, make_settings, smtp_sink, tmp_path
):
    settings = journey_settings(make_settings, tmp_path)
    lead = "J-3"
    async with running(time_env.client, settings) as stack:
        handle = await stack.add_lead(id=lead, email="cy@example.com", country="US")
        await stack.until(lead, lambda v: v.step == "pause")
        later = event(lead, "page.visited", url="/docs")
        earlier = event(lead, "email.opened", step="welcome")
        # Delivered at least once: the same event signaled three times, and out of order.
        for item in (later, later, earlier, later, earlier):
            await handle.signal("event", item)
        view = await stack.until(lead, lambda v: v.score == 3)
        assert view.score == 3
        assert [h.why for h in view.history if h.what.startswith("score")] == [
            f"page.visited +2 (event {later.id})",
            f"email.opened +1 (event {earlier.id})",
        ]
        # The webhook path refuses the repeated id before it reaches the workflow.
        assert (await submit_event(stack.intake, earlier)).status == "delivered"
        assert (await submit_event(stack.intake, earlier)).status == "duplicate"
        assert (await stack.view(lead)).score == 3


async def test_decay_then_regrade_tosses_up(time_env, make_settings, smtp_sink, tmp_path):
    settings = journey_settings(make_settings, tmp_path)
    lead = "J-4"
    async with running(time_env.client, settings) as stack:
        await stack.add_lead(id=lead, email="di@example.com", country="US", employees=50)
        await stack.until(lead, lambda v: v.step == "pause")
        await submit_event(stack.intake, event(lead, "form.submitted", form="newsletter"))
        view = await stack.until(lead, lambda v: v.stage == "mql" and v.cadence == "mql-sdr")
        assert view.score == 10 and view.grade == "D"
        await submit_event(stack.intake, event(lead, "webinar.attended"))
        await submit_event(stack.intake, event(lead, "email.replied"))
        view = await stack.until(lead, lambda v: v.score == 45)
        assert view.stage == "mql"  # score is enough, grade D is not

        # 31 days of silence: decay takes 10 points; the stage stays mql.
        await time_env.sleep(timedelta(days=31))
        view = await stack.until(lead, lambda v: v.score == 35)
        assert view.stage == "mql"
        assert any("decay" in h.why for h in view.history)

        # New firmographics raise the grade to B; the score is 35 < 40: no toss-up yet.
        await submit_event(
            stack.intake, event(lead, "lead.updated", employees=3000, industry="manufacturing")
        )
        view = await stack.until(lead, lambda v: v.grade == "B")
        assert view.stage == "mql"
        await submit_event(stack.intake, event(lead, "page.visited", url="/pricing"))
        view = await stack.until(lead, lambda v: v.stage == "sql")
        assert view.score == 47


async def _tossed_up_with_owner(time_env, stack, smtp_sink, lead: str, sdr: str):  # type: ignore[no-untyped-def]
    """The lead is with sales, owned by ``sdr``: in its state, its search attribute, the
    database and the opportunity; and ``sdr`` got the handoff notification."""
    view = await stack.settle(lead, "sql")
    assert view.owner == sdr
    assert any(h.what == f"owner {sdr}" and "toss-up" in h.why for h in view.history)

    async def owner_attribute():  # type: ignore[no-untyped-def]
        attrs = await search_attributes(time_env.client, lead)
        return attrs if attrs.get("LeadStage") == "sql" and attrs.get("LeadOwner") else None

    assert (await eventually(owner_attribute))["LeadOwner"] == sdr

    async def opportunity():  # type: ignore[no-untyped-def]
        async with stack.sessions() as session:
            return await session.scalar(select(Opportunity).where(Opportunity.lead_id == lead))

    assert (await eventually(opportunity)).owner == sdr
    async with stack.sessions() as session:
        assert (await session.get(LeadRow, lead)).owner == sdr

    async def handoff_notices():  # type: ignore[no-untyped-def]
        return [m for m in smtp_sink.messages if str(m["Subject"]).startswith("Tossed up to sales")]

    (notice,) = await eventually(handoff_notices)
    assert str(notice["To"]) == f"{sdr}@example.com"
    assert lead in notice.get_content()
    return view


async def test_a_hand_raiser_gets_an_owner_and_the_owner_hears_of_it(
    time_env, make_settings, smtp_sink, tmp_path
):
    # No call task ever ran for this lead: the toss-up itself must assign its SDR.
    settings = journey_settings(make_settings, tmp_path)
    lead = "J-5"
    async with running(time_env.client, settings) as stack:
        await stack.add_lead(id=lead, email="ken@kaisha.example", first_name="Ken", country="JP")
        await stack.until(lead, lambda v: v.step == "pause")
        assert (await stack.view(lead)).owner is None
        sent = await submit_event(stack.intake, event(lead, "form.submitted", form="demo"))
        assert sent.status == "delivered"
        view = await _tossed_up_with_owner(time_env, stack, smtp_sink, lead, "aiko")
        assert view.history[-1].what == "owner aiko"
        await record_histories(time_env.client, lead, "hand-raiser-owner")


async def test_a_lead_scored_up_to_sales_gets_an_owner_and_the_owner_hears_of_it(
    time_env, make_settings, smtp_sink, tmp_path
):
    # MQL and toss-up at the same score: the lead goes from nurturing straight to sales,
    # without the MQL cadence's call task that would have given it an SDR.
    playbook = PLAYBOOK.replace("mql: {score: 10}", "mql: {score: 40}")
    settings = journey_settings(make_settings, tmp_path, playbook=playbook)
    lead = "J-6"
    async with running(time_env.client, settings) as stack:
        await stack.add_lead(
            id=lead,
            email="ana@bigbank.example",
            first_name="Ana",
            country="US",
            employees=5000,
            industry="finance",
        )
        await stack.until(lead, lambda v: v.step == "pause")
        for engagement in (
            event(lead, "webinar.attended"),
            event(lead, "email.replied"),
            event(lead, "page.visited", url="https://acme.example/pricing"),
        ):
            assert (await submit_event(stack.intake, engagement)).status == "delivered"
        view = await _tossed_up_with_owner(time_env, stack, smtp_sink, lead, "ben")
        assert (view.score, view.grade) == (47, "B")
