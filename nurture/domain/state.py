"""The lead workflow's state: its input, what it carries across continue-as-new, and its view.

Pure pydantic models shared by the workflow, the starter, the web app and the CLI. Bounded:
the full history of a lead belongs in the app database; the workflow keeps what decisions
need plus a recent window.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from nurture.domain.cadence import Cadence, Playbook
from nurture.domain.calendars import PublicHolidays
from nurture.domain.events import Event, LeadFacts

# Re-exported: the stages are defined in nurture.domain.vocabulary, and read from here too.
from nurture.domain.vocabulary import FINAL_STAGES as FINAL_STAGES
from nurture.domain.vocabulary import STAGES as STAGES
from nurture.domain.vocabulary import TOUCH_STAGES as TOUCH_STAGES
from nurture.domain.vocabulary import Stage

HISTORY_KEEP = 200
SEEN_EVENTS_KEEP = 1000
ENGAGEMENTS_KEEP = 200
SCORE_LOG_KEEP = 100


class HistoryEntry(BaseModel):
    at: datetime
    what: str
    why: str


class ScoreChange(BaseModel):
    at: datetime
    delta: int
    score: int
    why: str
    event_id: str | None = None


class EngagementItem(BaseModel):
    type: str
    at: datetime
    step: str | None = None
    cadence: str | None = None


class Position(BaseModel):
    """Where the lead is in its cadence."""

    cadence: Cadence
    step: str | None  # None: resting after the last step
    visits: dict[str, int] = Field(default_factory=dict)
    last_call_outcome: str | None = None
    callback_at: datetime | None = None  # the time a `call_back_later` outcome asked for
    resume_until: datetime | None = None  # the deadline of the wait in progress (kept across runs)
    entered_at: datetime | None = None


class TaskWatch(BaseModel):
    """A call task watched for its SLA: escalated at ``escalate_at`` if still open."""

    task_id: str
    step: str
    escalate_at: datetime


class MigrationRequest(BaseModel):
    cadence: Cadence
    step_map: dict[str, str] = Field(default_factory=dict)


class LeadState(BaseModel):
    """What a lead workflow carries from run to run."""

    facts: LeadFacts
    playbook: Playbook
    stage: Stage = "nurturing"
    cycle: int = 0
    score: int = 0
    grade: str | None = None
    grade_why: list[str] = Field(default_factory=list)
    owner: str | None = None
    position: Position | None = None
    pending_cadence: str | None = None  # a cadence to enter (loaded by an activity)
    next_touch_at: datetime | None = None
    emails_sent: list[datetime] = Field(default_factory=list)
    last_touch_at: datetime | None = None
    last_engagement_at: datetime | None = None
    last_decay_at: datetime | None = None
    unsubscribed: bool = False
    # Why the address is suppressed (a bounce), when that is why the lead is unsubscribed.
    suppressed: str | None = None
    paused: bool = False
    # An auto-reply said the person is away until then: touches wait (email.auto_replied).
    away_until: datetime | None = None
    lost_reason: str | None = None
    recycle_at: datetime | None = None
    tossed_up_at: datetime | None = None
    seen_event_ids: list[str] = Field(default_factory=list)
    engagements: list[EngagementItem] = Field(default_factory=list)
    score_log: list[ScoreChange] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)
    inbox: list[Event] = Field(default_factory=list)  # events not yet applied at continue-as-new
    # How often each "cadence|step" ran in this cycle: the visit of the idempotency key, so a
    # cadence entered again in the same cycle sends again on purpose, and a retry never does.
    visits: dict[str, int] = Field(default_factory=dict)
    # A migration signaled just before continue-as-new, applied by the next run.
    migration: MigrationRequest | None = None
    # Call tasks watched for their SLA (`team.escalation`), with or without wait_for_outcome.
    watches: list[TaskWatch] = Field(default_factory=list)
    # A playbook rolled out just before continue-as-new, applied by the next run.
    pending_playbook: Playbook | None = None
    # The public holidays of the lead's country (limits.public_holidays), resolved by an
    # activity for a few years: see nurture.domain.calendars.
    public_holidays: PublicHolidays | None = None
    doing: str = "starting"
    created_at: datetime | None = None


class LeadInput(BaseModel):
    """The workflow's input: a new lead (state None) or a continued run."""

    facts: LeadFacts
    playbook: Playbook
    cadence: Cadence | None = None
    routing_reason: str | None = None
    state: LeadState | None = None
    # The run's start carries the search attributes it would publish first (intake sets
    # them; continue-as-new carries the last run's): the driver does not upsert them again.
    search_attributes_at_start: bool = False


class LeadView(BaseModel):
    """What `leads show` prints and the `state` query returns (CONTRACT.md)."""

    lead_id: str
    stage: Stage
    score: int
    grade: str | None
    cadence: str | None
    cadence_version: str | None = None
    step: str | None
    owner: str | None
    next_touch_at: datetime | None
    paused: bool = False
    unsubscribed: bool = False
    cycle: int = 0
    playbook_version: str | None = None
    doing: str = ""
    score_why: list[str] = Field(default_factory=list)
    grade_why: list[str] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
