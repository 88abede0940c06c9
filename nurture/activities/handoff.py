"""SDR call tasks and the toss-up handoff."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from nurture.activities.email import (
    Notification,
    lead_context,
    lead_label,
    sdr_context,
    send_notification,
    sender_context,
)
from nurture.adapters.catalog import CadenceCatalog
from nurture.adapters.database import CallTask, LeadRow, Opportunity, insert_once, utcnow
from nurture.adapters.link_tokens import unsubscribe_url
from nurture.adapters.secrets import link_key
from nurture.adapters.smtp import SmtpSender
from nurture.domain import keys
from nurture.domain import messages as am
from nurture.domain.cadence import Playbook
from nurture.services import crm_outbox
from nurture.services.team import assign, choose_owner
from nurture.settings import Settings


class TaskActivities:
    """Call tasks for SDRs and the toss-up handoff, with injected database, catalog and SMTP."""

    async def _send(
        self, session: AsyncSession, playbook: Playbook, notification: Notification
    ) -> None:
        """Send an internal notification through the outbox, once per its key."""
        assert self.smtp is not None
        await send_notification(session, self.smtp, self.settings, playbook, notification)

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        catalog: CadenceCatalog,
        smtp: SmtpSender | None = None,
    ) -> None:
        """Wire the activities.

        Args:
            settings: the worker's settings.
            sessions: the app database.
            catalog: the current playbook (team) and templates (call scripts).
            smtp: the worker's shared sender, for telling an SDR about a new task; None
                (tests of assignment alone) sends no notification.
        """
        self.settings = settings
        self.sessions = sessions
        self.catalog = catalog
        self.smtp = smtp

    @activity.defn(name=am.CREATE_CALL_TASK)
    async def create_call_task(self, request: am.CallTaskInput) -> am.CallTaskResult:
        """One task per key (lead, cycle, cadence, step, visit): assigned, script rendered.

        The SDR is told by email, once per task (outbox key ``notify|<task key>``). A retry
        after the task was created finds it (``created=False``) and only finishes that
        notification.

        Raises:
            ApplicationError: ``LeadMissing``; or ``SendingPaused`` / ``TransientSmtpError``
                from the notification (retryable; the task exists by then).
        """
        playbook = self.catalog.current().playbook
        async with self.sessions() as session:
            task = await session.scalar(select(CallTask).where(CallTask.key == request.key))
            created = False
            if task is None:
                task, created = await self._create(session, playbook, request)
            await self._notify_owner(session, playbook, task, request)
            return am.CallTaskResult(task_id=task.id, owner=task.owner, created=created)

    async def _create(
        self, session: AsyncSession, playbook: Playbook, request: am.CallTaskInput
    ) -> tuple[CallTask, bool]:
        lead = await session.get(LeadRow, request.lead_id)
        if lead is None:
            raise ApplicationError(f"lead {request.lead_id} has no record", type="LeadMissing")
        # Before the owner is chosen: choosing locks the account (on SQLite, the database's
        # write lock) until this transaction ends, and the key may be written by a session
        # of its own on first use.
        key = await link_key(self.settings, self.sessions)
        owner = request.owner or await choose_owner(session, playbook, lead)
        context = {
            "lead": lead_context(lead),
            "sdr": sdr_context(playbook, owner),
            "sender": sender_context(playbook),
            "unsubscribe_url": unsubscribe_url(self.settings.public_base, key, lead.id, None),
            "link": lambda url: str(url),
        }
        renderer = self.catalog.renderer(self.settings.templates_dir)
        script = renderer.render_call_script(request.script, context)
        task, created = await insert_once(
            session, CallTask, {"key": request.key}, lead_id=request.lead_id,
            cycle=request.cycle, cadence=request.cadence, step=request.step,
            visit=request.visit, owner=owner, status="open", due_at=request.due_at,
            script=script,
        )  # fmt: skip
        if created:
            # In the task's transaction: a concurrent attempt that created it first chose
            # the owner, and this one must not overwrite it.
            lead.owner = owner
            await self._supersede(session, task)
        await session.commit()
        return task, created

    async def _supersede(self, session: AsyncSession, task: CallTask) -> None:
        """One open task per lead and step: an older open one (a step run again, a loop) is
        cancelled, saying which task replaces it, so the SDR never works a stale script."""
        stale = (
            await session.scalars(
                select(CallTask).where(
                    CallTask.lead_id == task.lead_id,
                    CallTask.cadence == task.cadence,
                    CallTask.step == task.step,
                    CallTask.status == "open",
                    CallTask.id != task.id,
                )
            )
        ).all()
        for old in stale:
            old.status = "cancelled"
            old.completed_at = utcnow()
            old.notes = ((old.notes or "") + f"\n[superseded by {task.id}]").strip()

    async def _notify_owner(
        self, session: AsyncSession, playbook: Playbook, task: CallTask, request: am.CallTaskInput
    ) -> None:
        """Email the task's SDR about it, once (the outbox row makes retries harmless)."""
        sdr = sdr_context(playbook, task.owner)
        if self.smtp is None or sdr is None or task.status != "open":
            return
        lead = await session.get(LeadRow, task.lead_id)
        if lead is None:
            return
        who = lead_label(lead)
        base = self.settings.public_base
        text = (
            f"Hi {sdr['name']},\n\n"
            f"A new call task is in your inbox: {who}, due {task.due_at:%Y-%m-%d %H:%M} UTC.\n\n"
            f"Task: {task.id} (cadence {task.cadence}, step {task.step})\n"
            f"Lead: {base}/leads/{lead.id}\n"
            f"Inbox: {base}/inbox\n"
            f"Done? nurture tasks complete {task.id} --outcome <outcome>\n\n"
            f"Call script:\n\n{task.script or '(none)'}"
        )
        await self._send(
            session,
            playbook,
            Notification(
                key=keys.notification(task.key),
                lead_id=task.lead_id,
                recipients=[sdr["email"]],
                subject=f"Call task {task.id}: {who}",
                text=text,
                now=request.now,
                step=task.step,
            ),
        )

    async def _tell_owner_of_handoff(self, request: am.HandoffInput, owner: str | None) -> None:
        """Email the lead's owner that it went to sales, once per lead and cycle."""
        playbook = self.catalog.current().playbook
        sdr = sdr_context(playbook, owner)
        if self.smtp is None or sdr is None:
            return
        async with self.sessions() as session:
            lead = await session.get(LeadRow, request.lead_id)
            if lead is None:
                return
            who = lead_label(lead)
            base = self.settings.public_base
            # An SDR who never called this lead must learn why its handoff reached them.
            assigned = (
                "" if request.owner else "You are its owner now (the playbook's assignment rule).\n"
            )
            await self._send(
                session,
                playbook,
                Notification(
                    key=keys.handoff_notification(request.key),
                    lead_id=request.lead_id,
                    recipients=[sdr["email"]],
                    subject=f"Tossed up to sales: {who}",
                    text=(
                        f"Hi {sdr['name']},\n\n{who} went to sales: {request.reason}.\n"
                        f"{assigned}"
                        f"Score {request.score}, grade {request.grade or '-'}, "
                        f"trigger {request.trigger}.\n\n"
                        f"Lead: {base}/leads/{lead.id}\n"
                        "Its open call tasks are cancelled; sales report the outcome from the CRM."
                    ),
                    now=request.now,
                    step="handoff",
                ),
            )

    @activity.defn(name=am.CLOSE_CALL_TASKS)
    async def close_call_tasks(self, request: am.CloseCallTasksInput) -> int:
        """Cancel a lead's open tasks (toss-up, close) or mark one overdue (no outcome in time)."""
        async with self.sessions() as session:
            query = select(CallTask).where(
                CallTask.lead_id == request.lead_id, CallTask.status == "open"
            )
            if request.task_id:
                query = query.where(CallTask.id == request.task_id)
            tasks = (await session.scalars(query)).all()
            for task in tasks:
                if request.status == "cancelled":
                    task.status = "cancelled"
                    task.completed_at = request.now
                    task.notes = ((task.notes or "") + f"\n[cancelled: {request.reason}]").strip()
                elif task.overdue_at is None:
                    # Only once: a second call (a retry) must not stack the escalation note.
                    task.overdue_at = request.now
                    task.notes = ((task.notes or "") + f"\n[overdue: {request.reason}]").strip()
            await session.commit()
            return len(tasks)

    @activity.defn(name=am.MOVE_CALL_TASKS)
    async def move_call_tasks(self, request: am.MoveCallTasksInput) -> int:
        """Give a reassigned lead's open call tasks to its new owner; tell both SDRs once.

        With no new owner (the lead was unassigned) the tasks stay where they are: an
        unassigned task would be nobody's work.
        """
        playbook = self.catalog.current().playbook
        async with self.sessions() as session:
            lead = await session.get(LeadRow, request.lead_id)
            if lead is None:
                return 0
            tasks = (
                await session.scalars(
                    select(CallTask).where(
                        CallTask.lead_id == request.lead_id, CallTask.status == "open"
                    )
                )
            ).all()
            moved = [t for t in tasks if request.to_owner and t.owner != request.to_owner]
            for task in moved:
                task.notes = (
                    (task.notes or "") + f"\n[moved from {task.owner or 'nobody'}: reassigned]"
                ).strip()
                task.owner = request.to_owner
            if request.to_owner:
                lead.owner = request.to_owner
            await session.commit()
            if self.smtp is None:
                return len(moved)
            who = lead_label(lead)
            base = self.settings.public_base
            ids = ", ".join(t.id for t in moved) or "none open"
            for role, sdr_id in (("from", request.from_owner), ("to", request.to_owner)):
                sdr = sdr_context(playbook, sdr_id)
                if sdr is None:
                    continue
                text = (
                    f"Hi {sdr['name']},\n\n{who} is now owned by {request.to_owner or 'nobody'} "
                    f"(was {request.from_owner or 'nobody'}).\n"
                    f"Open call tasks moved with it: {ids}.\n\n"
                    f"Lead: {base}/leads/{lead.id}\n"
                )
                await self._send(
                    session,
                    playbook,
                    Notification(
                        key=keys.notification(f"{request.key}|{role}"),
                        lead_id=request.lead_id,
                        recipients=[sdr["email"]],
                        subject=f"Lead reassigned to {request.to_owner or 'nobody'}: {who}",
                        text=text,
                        now=request.now,
                        step="reassign",
                    ),
                )
            return len(moved)

    @activity.defn(name=am.ESCALATE_CALL_TASK)
    async def escalate_call_task(self, request: am.EscalateCallTaskInput) -> bool:
        """Pass an overdue call task on (``team.escalation``) and tell the people, once.

        ``next_sdr``: the task (and the lead) go to that SDR. ``manager`` and ``ops``: the
        task stays with its SDR, marked escalated, and they are told so they can act (ops
        may complete or reassign any task). Returns False when the task was no longer open
        (its outcome came in meanwhile): nothing is moved and nobody is told.
        """
        playbook = self.catalog.current().playbook
        async with self.sessions() as session:
            task = await session.get(CallTask, request.task_id)
            lead = await session.get(LeadRow, request.lead_id)
            if task is None or lead is None or task.status != "open":
                return False
            if task.escalated_at is None:
                task.escalated_at = request.now
                task.escalated_from = task.owner
                task.escalated_to = request.to_id or "ops"
                note = f"[escalated to {task.escalated_to}: still open past due]"
                task.notes = ((task.notes or "") + "\n" + note).strip()
                if request.to == "next_sdr" and request.to_id:
                    task.owner = request.to_id
                    lead.owner = request.to_id
                await session.commit()
            if self.smtp is None:
                return True
            names = [request.from_owner, request.to_id, request.manager]
            if request.to == "ops":
                names.append("ops")
            recipients = [email for _, email in playbook.team.contacts(n for n in names if n)]
            if not recipients:
                return True
            who = lead_label(lead)
            where = (
                f"It is now {request.to_id}'s task."
                if request.to == "next_sdr"
                else f"It stays with {request.from_owner or 'nobody'}; please follow up."
            )
            await self._send(
                session,
                playbook,
                Notification(
                    key=keys.notification(request.key),
                    lead_id=request.lead_id,
                    recipients=list(dict.fromkeys(recipients)),
                    subject=f"Overdue call task {task.id} escalated: {who}",
                    text=(
                        f"Call task {task.id} ({task.step}) for {who} was due "
                        f"{task.due_at:%Y-%m-%d %H:%M} UTC and is still open.\n{where}\n\n"
                        f"Lead: {self.settings.public_base}/leads/{lead.id}\n"
                    ),
                    now=request.now,
                    step="escalation",
                ),
            )
            return True

    @activity.defn(name=am.HANDOFF)
    async def handoff(self, request: am.HandoffInput) -> am.HandoffResult:
        """Record the opportunity (once per lead and cycle), tell its owner, and queue the
        CRM's notification when NURTURE_CRM_WEBHOOK_URL is set.

        The CRM post is recorded in the outbox in the opportunity's own transaction and sent
        by the worker's sender (:mod:`nurture.activities.crm`): a CRM that refuses or is down
        never holds the lead here. ``crm_notified`` means the post is queued.

        A lead that reaches sales without an owner (a hand-raiser, or a score that reached
        the toss-up before any call task) gets one here, by the same rule as call tasks:
        sales and the follow-up alerts need someone to answer for it.
        """
        notify_crm = self.settings.crm_webhook_url is not None
        async with self.sessions() as session:
            owner = request.owner or await self._assign_owner(session, request.lead_id)
            _opportunity, created = await insert_once(
                session, Opportunity, {"key": request.key}, lead_id=request.lead_id,
                cycle=request.cycle, owner=owner, trigger=request.trigger,
                reason=request.reason, score=request.score, grade=request.grade,
                created_at=request.now,
            )  # fmt: skip
            if notify_crm:
                post_id = keys.crm_toss_up(request.key)
                await crm_outbox.enqueue(
                    session,
                    post_id,
                    request.lead_id,
                    "lead.tossed_up",
                    {
                        "type": "lead.tossed_up",
                        "id": post_id,
                        "lead_id": request.lead_id,
                        "cycle": request.cycle,
                        "owner": owner,
                        "trigger": request.trigger,
                        "reason": request.reason,
                        "score": request.score,
                        "grade": request.grade,
                        "at": request.now.isoformat(),
                    },
                )
            await session.commit()
        await self._tell_owner_of_handoff(request, owner)
        return am.HandoffResult(
            opportunity_key=request.key, created=created, crm_notified=notify_crm, owner=owner
        )

    async def _assign_owner(self, session: AsyncSession, lead_id: str) -> str | None:
        """Give the lead an SDR by the playbook's rule and keep it (see ``team.assign``)."""
        return await assign(session, self.catalog.current().playbook, lead_id)
