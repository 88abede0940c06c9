"""The scenarios: each breaks one thing on purpose and then counts what came out.

Each scenario takes a :class:`Run` (sizes, seed, a folder) and returns a :class:`Result`:
the figures it measured and its checks, each an exact expected count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.client import Client

from faults.stack import (
    SECRET,
    Answers,
    Conn,
    Proxy,
    Stack,
    eventually,
    lead,
    send_all,
)
from nurture.adapters.database import CallTask, EmailSend, EventRow, make_engine, session_factory
from nurture.adapters.temporal import connect
from nurture.domain.messages import SEND_EMAIL
from nurture.domain.names import QUERY_STATE, workflow_id
from nurture.domain.state import LeadView
from nurture.settings import load_settings

FINAL_SENDS = ("sent", "unknown", "failed", "skipped")
# At most once: a process killed after it wrote the dot that ends a message's DATA and
# before it recorded the answer leaves its row `unknown` (surfaced, never resent), whether or
# not the server kept the message; killed any earlier, the retry sends it. So the sink's count
# equals the expected count unless a kill hit that window with the message not kept; what is
# checked is that no message is there twice and every one is delivered or surfaced.
AT_MOST_ONCE = "lead emails at the sink (a kill after the end of DATA may leave one `unknown`)"


@dataclass
class Run:
    quick: bool
    seed: int
    folder: Path
    postgres_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    kill_leads: int | None = None

    def size(self, quick: int, full: int) -> int:
        return quick if self.quick else full


@dataclass
class Result:
    name: str
    figures: dict[str, object] = field(default_factory=dict)
    checks: list[tuple[str, object, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def check(self, what: str, expected: object, got: object) -> None:
        self.checks.append((what, expected, got))

    def info(self, what: str, ideal: object, got: object) -> None:
        """A figure shown beside its ideal that the product cannot promise (not a check)."""
        self.notes.append(f"{what}: {got} (ideal {ideal})")

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(expected == got for _, expected, got in self.checks)


# --- reading the outcome ------------------------------------------------------------------


class Db:
    """The app database, read directly by the suite (never through a proxy it cuts)."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.sessions = session_factory(self.engine)

    async def sends(self) -> list[EmailSend]:
        async with self.sessions() as s:
            return list((await s.scalars(select(EmailSend))).all())

    async def send_statuses(self) -> Counter[str]:
        async with self.sessions() as s:
            rows = await s.execute(
                select(EmailSend.status, func.count()).group_by(EmailSend.status)
            )
            return Counter(dict(rows.all()))  # type: ignore[arg-type]

    async def tasks(self) -> list[CallTask]:
        async with self.sessions() as s:
            return list((await s.scalars(select(CallTask))).all())

    async def events(self) -> list[EventRow]:
        async with self.sessions() as s:
            return list((await s.scalars(select(EventRow))).all())

    async def close(self) -> None:
        await self.engine.dispose()


async def client_for(stack: Stack) -> Client:
    settings = load_settings(temporal_address=stack.env["NURTURE_TEMPORAL_ADDRESS"])
    return await connect(settings)


async def count_workflows(client: Client, query: str = "") -> int:
    return (await client.count_workflows(query or None)).count


async def states(client: Client, lead_ids: list[str]) -> dict[str, LeadView]:
    """Each lead's ``state`` query, 20 at a time."""
    out: dict[str, LeadView] = {}
    gate = asyncio.Semaphore(20)

    async def one(lead_id: str) -> None:
        async with gate:
            handle = client.get_workflow_handle(workflow_id(lead_id))
            out[lead_id] = await handle.query(QUERY_STATE, result_type=LeadView)

    await asyncio.gather(*(one(i) for i in lead_ids))
    return out


async def retried_sends(client: Client, lead_ids: list[str]) -> tuple[Counter[str], list[float]]:
    """The sends that completed on a later attempt, from each lead's history: what ended the
    attempt before (a timeout's type, else the failure), and the seconds each took from
    scheduled to completed: how long a killed worker's send waited for its retry."""
    why: Counter[str] = Counter()
    seconds: list[float] = []
    gate = asyncio.Semaphore(20)

    async def one(lead_id: str) -> None:
        async with gate:
            history = await client.get_workflow_handle(workflow_id(lead_id)).fetch_history()
        scheduled = {}
        started = {}
        for e in history.events:
            if e.HasField("activity_task_scheduled_event_attributes"):
                if e.activity_task_scheduled_event_attributes.activity_type.name == SEND_EMAIL:
                    scheduled[e.event_id] = e.event_time.ToDatetime()
            elif e.HasField("activity_task_started_event_attributes"):
                attributes = e.activity_task_started_event_attributes
                started[attributes.scheduled_event_id] = attributes
            elif e.HasField("activity_task_completed_event_attributes"):
                key = e.activity_task_completed_event_attributes.scheduled_event_id
                if key not in scheduled or started[key].attempt < 2:
                    continue
                failure = started[key].last_failure
                if failure.HasField("timeout_failure_info"):
                    why[TimeoutType.Name(failure.timeout_failure_info.timeout_type)] += 1
                else:
                    why[f"failure: {failure.message[:60]}"] += 1
                seconds.append((e.event_time.ToDatetime() - scheduled[key]).total_seconds())

    await asyncio.gather(*(one(i) for i in lead_ids))
    return why, sorted(seconds)


def mail_counts(stack: Stack) -> tuple[Counter[str], list[dict[str, object]]]:
    """Accepted lead emails by Message-ID, and the accepted notifications (no lead header)."""
    accepted = stack.sink.accepted()
    by_mid = Counter(str(m["mid"]) for m in accepted if m.get("lead"))
    notes = [m for m in accepted if not m.get("lead")]
    return by_mid, notes


def duplicates(counter: Counter[str]) -> int:
    return sum(n - 1 for n in counter.values() if n > 1)


async def outbox_settled(db: Db, expected_rows: int) -> bool:
    statuses = await db.send_statuses()
    return (
        sum(statuses.values()) >= expected_rows
        and statuses.get("queued", 0) == 0
        and statuses.get("sending", 0) == 0
    )


async def unknown_listed(stack: Stack) -> set[str]:
    """The keys `sends list --status unknown --json` shows ops (in a thread: the event loop
    may be serving the proxy the CLI goes through)."""
    out = await asyncio.to_thread(stack.cli, "sends", "list", "--status", "unknown", "--json")
    return {row["key"] for row in json.loads(out)}


async def post_leads(port: int, ids: list[str], source: str, senders: int = 10) -> Answers:
    """Post the leads; like a webhook sender, post again (up to 5 rounds, 2 s apart) what
    was answered 503 or not at all. ``statuses`` holds each lead's last answer; ``resent``
    counts the second tries by their answer."""
    requests = [("/leads", lead(i, source), SECRET) for i in ids]
    answers = await send_all(port, requests, senders, timeout=600)
    for _ in range(5):
        again = sorted(answers.by_status.pop(503, []))
        again += sorted(
            set(range(len(requests))) - {n for v in answers.by_status.values() for n in v}
        )
        answers.statuses.pop(503, None)
        if not again:
            break
        await asyncio.sleep(2)
        retry = await send_all(port, [requests[n] for n in again], senders, timeout=600)
        for status, positions in retry.by_status.items():
            answers.statuses[status] += len(positions)
            answers.by_status.setdefault(status, []).extend(again[k] for k in positions)
            answers.resent[status] += len(positions)
    answers.errors = 0
    return answers


def taken(answers: Answers) -> int:
    """Leads taken: answered 202, or 200 to a resend of one the first try had recorded."""
    return answers.statuses.get(202, 0) + answers.resent.get(200, 0)


def event(event_id: str, lead_id: str) -> dict[str, object]:
    return {"id": event_id, "type": "page.visited", "lead_id": lead_id, "data": {"url": "/blog"}}


async def account_for_sends(
    result: Result, stack: Stack, db: Db, expected: int, lead_emails_only: bool = True
) -> None:
    """The outbox against the sink: every expected lead email delivered once or surfaced
    as ``unknown``, none twice, none unaccounted for."""
    sends = (
        [s for s in await db.sends() if s.cadence != "-"] if lead_emails_only else await db.sends()
    )
    by_mid, _ = mail_counts(stack)
    unknown = {s.key for s in sends if s.status == "unknown"}
    unknown_mids = {s.message_id for s in sends if s.status == "unknown"}
    sent_mids = {s.message_id for s in sends if s.status == "sent"}
    delivered = set(by_mid)
    result.figures.update(
        outbox_rows=len(sends),
        outbox=dict(Counter(s.status for s in sends)),
        sink_messages=sum(by_mid.values()),
        unknown_rows=len(unknown),
        unknown_but_delivered=len(unknown_mids & delivered),
    )
    result.check("outbox rows (one per lead email)", expected, len(sends))
    result.check("duplicate messages at the sink (by Message-ID)", 0, duplicates(by_mid))
    result.check(
        "sink messages the outbox does not know", 0, len(delivered - sent_mids - unknown_mids)
    )
    result.check("outbox `sent` rows missing at the sink", 0, len(sent_mids - delivered))
    result.check(
        "emails neither delivered nor surfaced as unknown",
        0,
        expected - len(delivered | unknown_mids),
    )
    result.check(
        "`unknown` rows listed by `sends list --status unknown`",
        unknown,
        await unknown_listed(stack) & unknown,
    )


@contextlib.asynccontextmanager
async def postgres_database(run: Run) -> AsyncIterator[str]:
    """A fresh database on ``run.postgres_url``'s server, dropped afterwards; its URL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    admin_url = make_url(run.postgres_url)
    name = f"faults_{secrets.token_hex(4)}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.dispose()


# --- 1. SIGKILL the worker ----------------------------------------------------------------


async def kill_worker(run: Run) -> Result:
    """SIGKILL the worker at random moments while leads run three emails each."""
    result = Result("kill")
    leads, kills = run.kill_leads or run.size(100, 300), run.size(5, 20)
    rng = random.Random(run.seed)
    stack = Stack(run.folder / "kill")
    stack.start(workers=1, webs=1)
    db = Db(stack.database_url)
    try:
        client = await client_for(stack)
        ids = [f"K-{n}" for n in range(leads)]
        expected = 3 * leads
        started = time.monotonic()
        posting = asyncio.create_task(post_leads(stack.web_ports[0], ids, "three"))
        at_kill: list[int] = []
        worker = stack.workers[0]
        # Kill moments: while mail flows, at seeded random points between 5% and 90% of
        # the expected messages, each a random fraction of a second after that point.
        targets = sorted(rng.randint(expected // 20, expected * 9 // 10) for _ in range(kills))
        for target in targets:
            reached = await eventually(
                lambda target=target: len(stack.sink.accepted()) >= target, timeout=600, every=0.2
            )
            if not reached:
                result.notes.append(f"the sink never reached {target} messages before a kill")
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            at_kill.append(len(stack.sink.accepted()))
            worker.kill()
            worker.start()
        answers = await posting
        settled = await eventually(
            lambda: outbox_settled(db, expected), timeout=run.size(420, 1200)
        )
        settled_at = time.monotonic()

        # The outbox settles before each workflow has taken its last send's result and
        # published `(done)` (a killed worker's workflow tasks time out first), and the
        # visibility count lags: waited for, bounded, then checked exactly.
        async def all_done() -> bool:
            return await count_workflows(client, "CadenceStep = '(done)'") >= leads

        await eventually(all_done, timeout=run.size(120, 300), every=2.0)
        done = await count_workflows(client, "CadenceStep = '(done)'")
        done_at = time.monotonic()
        why, waited = Counter[str](), list[float]()
        try:
            why, waited = await retried_sends(client, ids)
        except Exception as exc:  # noqa: BLE001 - a figure, never a reason to lose the run
            result.notes.append(f"retried sends not measured: {type(exc).__name__}: {exc}")
        result.figures.update(
            leads=leads,
            kills=kills,
            sink_count_at_each_kill=at_kill,
            kills_while_sending=sum(1 for n in at_kill if 0 < n < expected),
            lead_answers=dict(answers.statuses),
            lead_posts_resent=dict(answers.resent),
            lead_posts_unanswered=leads - sum(answers.statuses.values()),
            seconds_to_settle=round(settled_at - started),
            seconds_to_done=round(done_at - started),
            sends_retried=len(waited),
            sends_retried_because=dict(why),
            retried_send_seconds_scheduled_to_completed=(
                {"p50": round(waited[len(waited) // 2]), "max": round(waited[-1])} if waited else {}
            ),
        )
        result.check("leads taken (202; 200 to a resend after a 503)", leads, taken(answers))
        result.check("outbox settled within the bound", True, settled)
        result.check("leads at the end of their cadence", leads, done)
        await account_for_sends(result, stack, db, expected)
        result.info(AT_MOST_ONCE, expected, result.figures["sink_messages"])
    finally:
        await db.close()
        stack.stop()
    return result


# --- 2. stop and restart the persisted dev server while timers wait ------------------------


async def restart_server(run: Run) -> Result:
    """Stop (SIGINT, then SIGKILL) and restart the SQLite-persisted dev server while every
    lead waits on a 40 s timer between two emails."""
    result = Result("timers")
    leads = run.size(30, 100)
    stack = Stack(run.folder / "timers", persisted=True)
    stack.start(workers=1, webs=1)
    db = Db(stack.database_url)
    try:
        client = await client_for(stack)
        ids = [f"T-{n}" for n in range(leads)]
        answers = await post_leads(stack.web_ports[0], ids, "timers")
        ok = await eventually(lambda: len(stack.sink.accepted()) >= leads, timeout=300)
        result.check("first emails sent before the stops", True, ok)
        first_done = time.monotonic()
        # Graceful stop, 15 s down: the timers are due after it is back.
        stack.temporal.stop()
        await asyncio.sleep(15)
        stack.start_temporal()
        await asyncio.sleep(5)
        # SIGKILL, 30 s down: the timers fall due while the server is dead.
        stack.temporal.kill()
        down_at = time.monotonic() - first_done
        await asyncio.sleep(30)
        stack.start_temporal()
        client = await client_for(stack)
        done = await eventually(
            lambda: len(stack.sink.accepted()) >= 2 * leads, timeout=run.size(300, 600)
        )
        await asyncio.sleep(10)  # anything fired twice would show by now
        fired: Counter[int] = Counter()
        started_timers = 0
        for lead_id in ids:
            history = await client.get_workflow_handle(workflow_id(lead_id)).fetch_history()
            kinds = Counter(e.event_type for e in history.events)
            fired[kinds[EventType.EVENT_TYPE_TIMER_FIRED]] += 1
            started_timers += kinds[EventType.EVENT_TYPE_TIMER_STARTED]
        result.figures.update(
            leads=leads,
            killed_at_s_after_first_emails=round(down_at),
            leads_by_timers_fired=dict(fired),
            timers_started=started_timers,
        )
        result.check("leads taken (202; 200 to a resend after a 503)", leads, taken(answers))
        result.check(
            "worker processes that died meanwhile", 0, sum(not w.alive() for w in stack.workers)
        )
        result.check("second emails after the restarts", True, done)
        result.check("leads whose timer fired exactly once", leads, fired.get(1, 0))
        result.check("workflows (no lead lost)", leads, await count_workflows(client))
        result.check(
            "leads at the end of their cadence",
            leads,
            await count_workflows(client, "CadenceStep = '(done)'"),
        )
        await account_for_sends(result, stack, db, 2 * leads)
        result.check("lead emails at the sink", 2 * leads, result.figures["sink_messages"])
    finally:
        await db.close()
        stack.stop()
    return result


# --- 3. SMTP faults -----------------------------------------------------------------------


async def smtp_faults(run: Run) -> Result:
    """Bursts of 421 and 451 replies, and connections dropped after DATA."""
    result = Result("smtp")
    leads, drops = run.size(20, 60), run.size(2, 5)
    burst_421, burst_451 = run.size(10, 25), run.size(10, 25)
    rng = random.Random(run.seed)
    stack = Stack(run.folder / "smtp")
    stack.start(workers=1, webs=1)
    db = Db(stack.database_url)
    try:
        ids = [f"S-{n}" for n in range(leads)]
        dropped = sorted(rng.sample(ids, drops))
        # The first wave meets a burst of each; the drops take these leads' first emails.
        stack.sink.script(mail_421=burst_421, data_451=burst_451, drop_leads=dropped)
        answers = await post_leads(stack.web_ports[0], ids, "three")
        await eventually(lambda: len(stack.sink.accepted()) >= leads, timeout=300)
        stack.sink.script(mail_421=burst_421, data_451=burst_451)  # a second wave, mid-run
        expected = 3 * leads
        settled = await eventually(lambda: outbox_settled(db, expected), timeout=600)
        await asyncio.sleep(15)  # a resend of an unknown would show by now
        lines = stack.sink.lines()
        kinds = Counter(str(line["what"]) for line in lines)
        sends = await db.sends()
        unknown_leads = sorted(s.lead_id for s in sends if s.status == "unknown")
        result.figures.update(
            leads=leads,
            replies=dict(kinds),
            attempts_max=max((s.attempts for s in sends), default=0),
            rows_retried=sum(1 for s in sends if s.attempts > 1 or s.error),
        )
        result.check("leads taken (202; 200 to a resend after a 503)", leads, taken(answers))
        result.check("outbox settled within the bound", True, settled)
        result.check("421 replies given (both bursts used up)", 2 * burst_421, kinds["421"])
        result.check("451 replies given (both bursts used up)", 2 * burst_451, kinds["451"])
        result.check("connections dropped after DATA", drops, kinds["dropped"])
        result.check("lead emails at the sink", expected - drops, kinds["accepted"])
        result.check("`unknown` rows: exactly the dropped emails", dropped, unknown_leads)
        dropped_mids = {str(line["mid"]) for line in lines if line["what"] == "dropped"}
        accepted_mids = {str(line["mid"]) for line in lines if line["what"] == "accepted"}
        result.check("dropped emails resent", 0, len(dropped_mids & accepted_mids))
        await account_for_sends(result, stack, db, expected)
    finally:
        await db.close()
        stack.stop()
    return result


# --- 4. webhook flood ---------------------------------------------------------------------


async def webhook_flood(run: Run) -> Result:
    """Signed events, 10% duplicates and 1% bad signatures, 50 senders at once."""
    result = Result("flood")
    leads, total = run.size(100, 200), run.size(2000, 10000)
    dups, bad = total // 10, total // 100
    unique = total - dups - bad
    rng = random.Random(run.seed)
    stack = Stack(run.folder / "flood")
    stack.start(workers=1, webs=1)
    db = Db(stack.database_url)
    try:
        client = await client_for(stack)
        ids = [f"F-{n}" for n in range(leads)]
        made = await post_leads(stack.web_ports[0], ids, "rest")
        valid = [event(f"f-{n}", ids[rng.randrange(leads)]) for n in range(unique)]
        requests: list[tuple[str, object, str]] = [("/events", e, SECRET) for e in valid]
        requests += [("/events", rng.choice(valid), SECRET) for _ in range(dups)]
        requests += [
            ("/events", event(f"bad-{n}", rng.choice(ids)), "not-the-secret") for n in range(bad)
        ]
        rng.shuffle(requests)
        started = time.monotonic()
        answers = await send_all(stack.web_ports[0], requests, senders=50, timeout=900)
        seconds = time.monotonic() - started
        per_lead = Counter(str(e["lead_id"]) for e in valid)

        async def all_delivered() -> bool:
            rows = await db.events()
            return len(rows) >= unique and all(r.status == "delivered" for r in rows)

        delivered = await eventually(all_delivered, timeout=120)

        async def scored() -> bool:
            views = await states(client, ids)
            return all(views[i].score == per_lead[i] for i in ids)

        applied = await eventually(scored, timeout=run.size(300, 900), every=5)
        views = await states(client, ids)
        rows = await db.events()
        fivexx = sum(n for status, n in answers.statuses.items() if status >= 500)
        result.figures.update(
            requests=total,
            answers=dict(answers.statuses),
            seconds=round(seconds, 1),
            answers_per_s=round(total / seconds),
        )
        result.check("leads taken (202; 200 to a resend after a 503)", leads, taken(made))
        result.check("first sight of a valid event: 202", unique, answers.statuses.get(202, 0))
        result.check("duplicates: 200", dups, answers.statuses.get(200, 0))
        result.check("bad signatures: 401", bad, answers.statuses.get(401, 0))
        result.check("5xx answers", 0, fivexx)
        result.check("requests with no answer", 0, answers.errors)
        result.check("events recorded", unique, len(rows))
        result.check("bad-signature events recorded", 0, sum(r.id.startswith("bad-") for r in rows))
        result.check("every event delivered", True, delivered)
        result.check("every lead's score = its valid events", True, applied)
        result.check(
            "points applied in all (one per valid event)",
            unique,
            sum(v.score for v in views.values()),
        )
    finally:
        await db.close()
        stack.stop()
    return result


# --- 5. Temporal unreachable --------------------------------------------------------------


async def temporal_outage(run: Run) -> Result:
    """Temporal killed while leads and events arrive; restarted; everything recorded is
    delivered once."""
    result = Result("outage")
    before, during, events_n = run.size(20, 50), run.size(20, 50), run.size(200, 1000)
    down_s = run.size(30, 60)
    rng = random.Random(run.seed)
    stack = Stack(run.folder / "outage", persisted=True)
    stack.start(workers=1, webs=1)
    db = Db(stack.database_url)
    try:
        port = stack.web_ports[0]
        old = [f"O-{n}" for n in range(before)]
        new = [f"N-{n}" for n in range(during)]
        first = await post_leads(port, old, "rest")
        stack.temporal.kill()
        down_at = time.monotonic()
        made = await post_leads(port, new, "three")
        evs = [event(f"o-{n}", rng.choice(old + new)) for n in range(events_n)]
        answers = await send_all(port, [("/events", e, SECRET) for e in evs], 20, timeout=300)
        result.figures["answered_while_down_s"] = round(time.monotonic() - down_at, 1)
        await asyncio.sleep(max(0.0, down_s - (time.monotonic() - down_at)))
        stack.start_temporal()
        client = await client_for(stack)
        per_lead = Counter(str(e["lead_id"]) for e in evs)

        async def all_delivered() -> bool:
            rows = await db.events()
            return len(rows) >= events_n and all(r.status == "delivered" for r in rows)

        delivered = await eventually(all_delivered, timeout=300, every=2)
        expected = 3 * during
        settled = await eventually(lambda: outbox_settled(db, expected), timeout=300)
        views = await states(client, old + new)
        await asyncio.sleep(10)
        result.figures.update(
            leads_before=before,
            leads_during=during,
            events_during=events_n,
            lead_answers=dict(made.statuses),
            event_answers=dict(answers.statuses),
        )
        result.check(
            "worker processes that died in the outage", 0, sum(not w.alive() for w in stack.workers)
        )
        result.check("leads before the outage (202)", before, taken(first))
        result.check("leads during the outage answered 202", during, taken(made))
        result.check("leads posted again after a 503 or no answer", 0, sum(made.resent.values()))
        result.check(
            "events during the outage answered 202", events_n, answers.statuses.get(202, 0)
        )
        result.check(
            "503 answers (the database was up: everything could be recorded)",
            0,
            made.statuses.get(503, 0) + answers.statuses.get(503, 0),
        )
        result.check("every recorded event delivered after the restart", True, delivered)
        result.check("outbox settled within the bound", True, settled)
        result.check("workflows", before + during, await count_workflows(client))
        result.check(
            "leads whose score = their events",
            before + during,
            sum(views[i].score == per_lead[i] for i in old + new),
        )
        await account_for_sends(result, stack, db, expected)
        result.check("lead emails at the sink", expected, result.figures["sink_messages"])
    finally:
        await db.close()
        stack.stop()
    return result


# --- 6. two workers and two web apps racing -----------------------------------------------


async def racing(run: Run) -> Result:
    """Two web apps take the same leads and events at the same moment; two workers run them;
    one worker is frozen (SIGSTOP) past the activity timeout so its work is retried by the
    other, then thawed to finish what it held."""
    # PostgreSQL, the production shape for several processes: on SQLite the frozen worker
    # may hold the file's one write lock, and every other process then waits and fails.
    async with postgres_database(run) as url:
        return await _racing(run, url)


async def _racing(run: Run, database_url: str) -> Result:
    result = Result("race")
    leads = run.size(60, 100)
    freeze_s = run.size(0, 130)
    stack = Stack(run.folder / "race", database_url=database_url)
    # Two workers and two web apps on one PostgreSQL server (100 connections by default,
    # shared with others): each worker's pool is its activity slots plus 10 (worker.py).
    stack.env["NURTURE_MAX_CONCURRENT_ACTIVITIES"] = "8"
    stack.start(workers=2, webs=2)
    db = Db(stack.database_url)
    try:
        client = await client_for(stack)
        ids = [f"R-{n}" for n in range(leads)]
        # Every request twice, to the two web apps, side by side.
        lead_requests = [("/leads", lead(i, "race"), SECRET) for i in ids for _ in range(2)]
        posting = asyncio.create_task(
            send_all(lambda n: stack.web_ports[n % 2], lead_requests, 20, timeout=600)
        )
        frozen_at = 0
        if freeze_s:
            # Frozen mid-flow: whatever it holds then (sends, tasks) is retried elsewhere.
            await eventually(
                lambda: len(stack.sink.accepted()) >= leads // 3, timeout=300, every=0.2
            )
            frozen_at = len(stack.sink.accepted())
            stack.workers[0].signal(signal.SIGSTOP)
        made = await posting
        evs = [event(f"r-{i}-{k}", i) for i in ids for k in range(2)]
        ev_requests = [("/events", e, SECRET) for e in evs for _ in range(2)]
        got = await send_all(lambda n: stack.web_ports[n % 2], ev_requests, 20, timeout=600)
        if freeze_s:
            await asyncio.sleep(freeze_s)
            stack.workers[0].signal(signal.SIGCONT)
        expected = 2 * leads
        settled = await eventually(
            lambda: outbox_settled(db, 3 * leads), timeout=run.size(300, 900)
        )
        await asyncio.sleep(10)
        tasks = await db.tasks()
        _, notes = mail_counts(stack)
        note_mids = Counter(str(m["mid"]) for m in notes)
        views = await states(client, ids)
        result.figures.update(
            leads=leads,
            frozen_s=freeze_s,
            frozen_at_sink_count=frozen_at,
            lead_answers=dict(made.statuses),
            event_answers=dict(got.statuses),
        )
        result.check(
            "each lead created once (202) and updated once (200)",
            {202: leads, 200: leads},
            dict(made.statuses),
        )
        result.check(
            "each event taken once (202), its twin a duplicate (200)",
            {202: 2 * leads, 200: 2 * leads},
            dict(got.statuses),
        )
        result.check("workflows", leads, await count_workflows(client))
        result.check("outbox settled within the bound", True, settled)
        result.check("call tasks", leads, len(tasks))
        result.check(
            "leads with more than one task",
            0,
            sum(1 for n in Counter(t.lead_id for t in tasks).values() if n > 1),
        )
        result.check("task notifications at the sink", leads, sum(note_mids.values()))
        result.check("duplicate notifications", 0, duplicates(note_mids))
        result.check(
            "leads whose score = 2 events", leads, sum(v.score == 2 for v in views.values())
        )
        await account_for_sends(result, stack, db, expected)
        result.info(AT_MOST_ONCE, expected, result.figures["sink_messages"])
    finally:
        await db.close()
        stack.stop()
    return result


# --- 7. the app database unreachable ------------------------------------------------------


async def database_outage(run: Run) -> Result:
    """PostgreSQL behind a proxy that is cut for a while, as leads run and webhooks come."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    result = Result("database")
    leads, cut_s = run.size(30, 60), run.size(20, 60)
    admin_url = make_url(run.postgres_url)
    name = f"faults_{secrets.token_hex(4)}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    proxy = Proxy(admin_url.port or 5432)
    await proxy.start()
    direct = admin_url.set(database=name).render_as_string(hide_password=False)
    proxied = admin_url.set(database=name, port=proxy.port).render_as_string(hide_password=False)
    stack = Stack(run.folder / "database", database_url=proxied)
    db = Db(direct)
    try:
        # In a thread: this event loop serves the proxy the processes start through.
        await asyncio.to_thread(stack.start, workers=1, webs=1)
        client = await client_for(stack)
        port = stack.web_ports[0]
        ids = [f"D-{n}" for n in range(leads)]
        made = await post_leads(port, ids, "three")
        await eventually(lambda: len(stack.sink.accepted()) >= leads // 2, timeout=300)
        await proxy.cut()
        cut_at = time.monotonic()
        sent: list[tuple[dict[str, object], int]] = []
        health: Counter[int] = Counter()
        conn = Conn(port)
        n = 0
        while time.monotonic() - cut_at < cut_s:
            e = event(f"d-{n}", ids[n % leads])
            n += 1
            try:
                status, _ = await asyncio.wait_for(_post(conn, e), 30)
            except (TimeoutError, ConnectionError, OSError):
                await conn.close()
                status = 0
            sent.append((e, status))
            try:
                status_h, _ = await asyncio.wait_for(conn.request("GET", "/health"), 30)
            except (TimeoutError, ConnectionError, OSError):
                await conn.close()
                status_h = 0
            health[status_h] += 1
            await asyncio.sleep(0.5)
        await proxy.restore()
        during = Counter(status for _, status in sent)
        # A webhook sender sends again what was not accepted.
        retry = [e for e, status in sent if status not in (200, 202)]
        again = await send_all(port, [("/events", e, SECRET) for e in retry], 5, timeout=300)
        expected = 3 * leads
        settled = await eventually(lambda: outbox_settled(db, expected), timeout=600)
        per_lead = Counter(str(e["lead_id"]) for e, _ in sent)

        async def scored() -> bool:
            views = await states(client, ids)
            return all(views[i].score == per_lead[i] for i in ids)

        applied = await eventually(scored, timeout=300, every=5)
        rows = await db.events()
        failed_attempts = (
            stack.workers[0].log.read_text(errors="replace").count("Completing activity as failed")
        )
        result.figures.update(
            leads=leads,
            cut_s=cut_s,
            activity_attempts_failed_in_cut=failed_attempts,
            events_during_cut=dict(during),
            health_during_cut=dict(health),
            resent_after=dict(again.statuses),
        )
        result.check("leads taken (202; 200 to a resend after a 503)", leads, taken(made))
        result.check(
            "answers during the cut other than 202/503",
            0,
            sum(n for s, n in during.items() if s not in (202, 503)),
        )
        result.check(
            "health during the cut other than 200/503",
            0,
            sum(n for s, n in health.items() if s not in (200, 503)),
        )
        result.check("resent events taken (202)", len(retry), again.statuses.get(202, 0))
        result.check("events recorded, each once", len(sent), len({r.id for r in rows}))
        result.check("every lead's score = its events", True, applied)
        result.check("outbox settled within the bound", True, settled)
        await account_for_sends(result, stack, db, expected)
    finally:
        await db.close()
        await asyncio.to_thread(stack.stop)
        await proxy.close()
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.dispose()
    return result


async def _post(conn: Conn, payload: object) -> tuple[int, bytes]:
    from faults.stack import post

    return await post(conn, "/events", payload)


SCENARIOS: dict[str, Callable[[Run], Awaitable[Result]]] = {
    "kill": kill_worker,
    "smtp": smtp_faults,
    "flood": webhook_flood,
    "race": racing,
    "timers": restart_server,
    "outage": temporal_outage,
    "database": database_outage,
}
