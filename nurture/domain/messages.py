"""One input and one result model per activity, shared by the workflow and the activities.

Light on purpose: the workflow imports this module through the sandbox, so it holds only
pydantic models and names. The activities themselves live in `nurture.activities`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from nurture.domain.cadence import Cadence, Limits, Playbook

# The public holidays activity's input and result (re-exported).
from nurture.domain.calendars import PublicHolidays as PublicHolidays
from nurture.domain.calendars import PublicHolidaysInput as PublicHolidaysInput

# Activity names, used by the workflow (by name, so it never imports SMTP or SQL code).
LOAD_CADENCE = "load_cadence"
SEND_EMAIL = "send_email"
CREATE_CALL_TASK = "create_call_task"
CLOSE_CALL_TASKS = "close_call_tasks"
MOVE_CALL_TASKS = "move_call_tasks"
ESCALATE_CALL_TASK = "escalate_call_task"
HANDOFF = "handoff"
RECORD_TRANSITION = "record_transition"
ERASE_LEAD = "erase_lead"
NOTIFY = "notify"
RESOLVE_PUBLIC_HOLIDAYS = "resolve_public_holidays"
RESERVE_TOUCH = "reserve_touch"
RELEASE_ACCOUNT = "release_account"


class LoadCadenceInput(BaseModel):
    cadence_id: str


class CadenceSnapshot(BaseModel):
    cadence: Cadence
    playbook: Playbook


class SendEmailInput(BaseModel):
    key: str
    lead_id: str
    cycle: int
    cadence: str
    step: str
    visit: int
    template: str
    owner: str | None = None
    now: datetime


class SendEmailResult(BaseModel):
    status: Literal["sent", "skipped", "failed", "unknown", "paused"]
    message_id: str | None = None
    detail: str = ""


class CallTaskInput(BaseModel):
    key: str
    lead_id: str
    cycle: int
    cadence: str
    step: str
    visit: int
    script: str
    due_at: datetime
    owner: str | None = None
    now: datetime


class CallTaskResult(BaseModel):
    task_id: str
    owner: str | None
    created: bool
    detail: str = ""


class CloseCallTasksInput(BaseModel):
    lead_id: str
    status: Literal["cancelled", "overdue"]
    reason: str
    task_id: str | None = None  # None: every open task of the lead
    now: datetime


class MoveCallTasksInput(BaseModel):
    """A reassigned lead's open call tasks go to its new owner; both SDRs are told."""

    key: str  # the reassignment (keys.reassignment): one notice per SDR, however retried
    lead_id: str
    from_owner: str | None
    to_owner: str | None
    now: datetime


class EscalateCallTaskInput(BaseModel):
    """An overdue call task passed on by ``team.escalation``; the people are told once."""

    key: str  # keys.escalation
    task_id: str
    lead_id: str
    from_owner: str | None
    to: Literal["next_sdr", "manager", "ops"]
    to_id: str | None  # the SDR or manager; None for ops
    manager: str | None  # the old owner's manager, told too
    now: datetime


class HandoffInput(BaseModel):
    key: str
    lead_id: str
    cycle: int
    owner: str | None
    trigger: str
    reason: str
    score: int
    grade: str | None
    now: datetime


class HandoffResult(BaseModel):
    opportunity_key: str
    created: bool
    crm_notified: bool = False
    # The lead's owner with sales: the input's, else the one the playbook's assignment rule
    # gave it at toss-up. None in histories from before owners were assigned there.
    owner: str | None = None


class TransitionInput(BaseModel):
    """A stage change and the lead's current projection, for the funnel and the pages."""

    lead_id: str
    cycle: int
    from_stage: str | None
    to_stage: str
    at: datetime
    reason: str
    source: str | None = None
    cadence: str | None = None
    step: str | None = None
    score: int = 0
    grade: str | None = None
    owner: str | None = None
    next_touch_at: datetime | None = None
    # Where the lead is now (the projection); `cadence`/`step` above say where it changed.
    current_cadence: str | None = None
    current_step: str | None = None
    # What caused it (an event type, "threshold", "timer") and a loss or rejection reason.
    trigger: str | None = None
    loss_reason: str | None = None


class EraseInput(BaseModel):
    lead_id: str
    now: datetime


class NotifyInput(BaseModel):
    key: str
    lead_id: str
    to: list[str] = Field(default_factory=list)  # SDR ids or "ops"
    subject: str
    text: str
    now: datetime
    # The activity adds who the lead is (name, company) and a link to its page, read from
    # the app database: personal data that must not travel through Temporal.
    name_the_lead: bool = False


# --- the account governor (nurture/domain/governor.py) -----------------------------------


class ReserveTouchInput(BaseModel):
    """Ask the account governor for a touch slot, just before the touch."""

    key: str  # the touch's idempotency key: a retry re-finds its grant
    lead_id: str
    stage: str
    channel: Literal["email", "call"]
    limits: Limits
    zone: str  # the lead's IANA zone (where a cap pushed past closing time reopens)
    now: datetime


class ReserveTouchResult(BaseModel):
    """Granted (``reasons`` empty: touch now), or held until ``at`` for ``reasons``."""

    at: datetime
    reasons: list[str] = Field(default_factory=list)
    conversation: bool = False  # held by another lead's conversation: a release ends it

    @property
    def granted(self) -> bool:
        return not self.reasons


class ReleaseAccountInput(BaseModel):
    """The lead left mql/sql: the account's held leads are told to ask again."""

    lead_id: str
    stage: str
    now: datetime


class ReleaseAccountResult(BaseModel):
    told: int = 0  # how many leads of the account were told
