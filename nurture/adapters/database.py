"""The app database: ORM models, the engine factory and session factories.

One schema serves SQLite (the embedded default, a file shared by several processes) and
PostgreSQL (production). Every timestamp is a timezone-aware UTC ``datetime`` on both.
The schema itself is created and evolved by the Alembic migrations in
``nurture/adapters/migrations`` (see :func:`nurture.adapters.schema.migrate`); keep the two in step.

Personal data (email, names, phone, title, company) lives here and only here, so that
erasing a lead really erases it (CONTRACT.md, "Personal data stays out of Temporal").
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    false,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.ext.mutable import MutableDict
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates
from sqlalchemy.types import TypeEngine

# How long a SQLite connection waits for another process's write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000

# Explicit constraint names: Alembic's batch mode (SQLite) can only alter named constraints,
# and PostgreSQL and SQLite then agree on every name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# `sending`: handed to SMTP, reply not yet recorded (a crash here means `unknown`).
SEND_STATUSES: tuple[str, ...] = ("queued", "sending", "sent", "failed", "unknown", "skipped")
TASK_STATUSES: tuple[str, ...] = ("open", "done", "cancelled")
EVENT_STATUSES: tuple[str, ...] = ("delivered", "parked", "recorded")
# Mail that came back: an event was made from it (`matched`), it waits for a person
# (`unmatched`), or it needs nothing (`ignored`: a delivery report of a success).
INBOUND_STATUSES: tuple[str, ...] = ("matched", "unmatched", "ignored")
OPPORTUNITY_OUTCOMES: tuple[str, ...] = ("won", "lost", "rejected")
ROLES: tuple[str, ...] = ("sdr", "ops")
# The CRM outbox (``crm_posts``): `pending` until the CRM took it (`sent`) or the sender gave
# up after its bounded attempts (`failed`, for ops: `nurture crm posts --status failed`).
CRM_POST_STATUSES: tuple[str, ...] = ("pending", "sent", "failed")
# The outbox's cadence for internal notifications (to an SDR, an owner, ops), not a lead's own
# email: kept apart from the lead's emails in pages and out of open and click rates.
NOTIFICATION_CADENCE = "-"


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (the only kind stored here)."""
    return datetime.now(UTC)


def new_task_id() -> str:
    """A short, readable call task id that an SDR can type: ``T-`` and 10 hex characters."""
    return "T-" + secrets.token_hex(5)


def _in_sql(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back as an aware UTC datetime.

    PostgreSQL keeps ``timestamptz``; SQLite has no time zones, so values are stored as
    naive UTC text (which also sorts correctly) and made aware again on the way out.
    Naive datetimes are refused: their zone is a guess, and a wrong guess moves a send.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware datetime (UTC)")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_type() -> TypeEngine[Any]:
    """JSONB on PostgreSQL (compact, indexable), JSON text on SQLite; a new instance."""
    return JSON().with_variant(JSONB(), "postgresql")


# MutableDict so that `lead.fields["x"] = 1` is saved like an assignment (top level only).
# as_mutable() claims every column of that type *instance*, hence a fresh one here.
JSONDict = MutableDict.as_mutable(json_type())
# BIGINT on PostgreSQL; SQLite autoincrements only an INTEGER PRIMARY KEY.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base with the shared naming convention and type map."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class LeadRow(Base):
    """A lead: the CRM's record plus where the nurture stands (mirrored from the workflow).

    Named ``LeadRow`` to stay apart from the posted model :class:`nurture.domain.events.Lead`.
    """

    __tablename__ = "leads"
    __table_args__ = (
        Index("ix_leads_email", "email"),
        Index("ix_leads_account", "account"),
        Index("ix_leads_owner_stage", "owner", "stage"),
        Index("ix_leads_stage", "stage"),
        Index("ix_leads_next_touch_at", "next_touch_at"),
        Index("ix_leads_started_at", "started_at"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    email: Mapped[str | None]
    first_name: Mapped[str | None]
    last_name: Mapped[str | None]
    company: Mapped[str | None]
    title: Mapped[str | None]
    phone: Mapped[str | None]
    country: Mapped[str | None] = mapped_column(String(2))
    timezone: Mapped[str | None]
    industry: Mapped[str | None]
    employees: Mapped[int | None]
    tier_account: Mapped[bool | None]
    source: Mapped[str | None]
    fields: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    # The email domain, or the normalized company for free-mail domains: callers compute it.
    account: Mapped[str | None]
    stage: Mapped[str] = mapped_column(default="nurturing", server_default="nurturing")
    score: Mapped[int] = mapped_column(default=0, server_default="0")
    grade: Mapped[str | None]
    owner: Mapped[str | None]
    cadence: Mapped[str | None]
    step: Mapped[str | None]
    next_touch_at: Mapped[datetime | None]
    unsubscribed: Mapped[bool] = mapped_column(default=False, server_default=false())
    do_not_contact: Mapped[bool] = mapped_column(default=False, server_default=false())
    erased_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Set once its workflow is known to exist. Empty: taken in while Temporal could not be
    # reached, and waiting for the redelivery sweep (nurture.services.parked) to start it.
    started_at: Mapped[datetime | None]

    @property
    def waiting_to_start(self) -> bool:
        """Recorded, but its workflow not started yet (and it is not won, closed or erased)."""
        return (
            self.started_at is None
            and self.stage not in ("won", "closed")
            and self.erased_at is None
        )


class StageChange(Base):
    """One stage passage of a lead: the funnel and the lead's history are built from these."""

    __tablename__ = "stage_changes"
    __table_args__ = (
        Index("ix_stage_changes_lead_id_at", "lead_id", "at"),
        Index("ix_stage_changes_to_stage_at", "to_stage", "at"),
        # One row per transition, however many attempts of its activity run at once (a
        # worker that froze past the activity's timeout finishes after its retry did).
        UniqueConstraint("lead_id", "cycle", "to_stage", "at"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    cycle: Mapped[int]
    from_stage: Mapped[str | None]
    to_stage: Mapped[str]
    at: Mapped[datetime] = mapped_column(default=utcnow)
    reason: Mapped[str | None] = mapped_column(Text)
    # The lead's source at that moment, so channel reports survive later lead updates.
    source: Mapped[str | None]
    cadence: Mapped[str | None]
    step: Mapped[str | None]

    # Also tells the unit of work to insert a new lead before its rows in the same flush.
    # lazy="raise": async code cannot lazy-load, so a forgotten eager load fails loudly.
    lead: Mapped[LeadRow] = relationship(lazy="raise")


class EmailSend(Base):
    """The outbox: one row per email touch, unique by :func:`nurture.domain.keys.touch`.

    The unique ``key`` is what makes a retried send activity harmless: the second insert
    is refused and the activity reads the first row's status instead.
    """

    __tablename__ = "email_sends"
    __table_args__ = (
        CheckConstraint(_in_sql("status", SEND_STATUSES), name="status"),
        Index("ix_email_sends_lead_id_sent_at", "lead_id", "sent_at"),
        Index("ix_email_sends_status_created_at", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(unique=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    cycle: Mapped[int]
    cadence: Mapped[str]
    step: Mapped[str]
    visit: Mapped[int]
    template: Mapped[str]
    to_address: Mapped[str | None]
    subject: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None]
    status: Mapped[str] = mapped_column(default="queued", server_default="queued")
    smtp_reply: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    # When an attempt took the row to `sending` (at SMTP's commit point): a retry that
    # finds it `sending` within the hand-over lease waits for that attempt's answer.
    claimed_at: Mapped[datetime | None]

    lead: Mapped[LeadRow] = relationship(lazy="raise")  # see StageChange.lead


class CallTask(Base):
    """A call for an SDR's inbox, unique by :func:`nurture.domain.keys.touch`; a short ``id``."""

    __tablename__ = "call_tasks"
    __table_args__ = (
        CheckConstraint(_in_sql("status", TASK_STATUSES), name="status"),
        Index("ix_call_tasks_owner_status_due_at", "owner", "status", "due_at"),
        Index("ix_call_tasks_status_due_at", "status", "due_at"),
        Index("ix_call_tasks_lead_id_status", "lead_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(16), primary_key=True, default=new_task_id)
    key: Mapped[str] = mapped_column(unique=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    cycle: Mapped[int]
    cadence: Mapped[str]
    step: Mapped[str]
    visit: Mapped[int]
    owner: Mapped[str | None]
    status: Mapped[str] = mapped_column(default="open", server_default="open")
    due_at: Mapped[datetime]
    script: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None]
    notes: Mapped[str | None] = mapped_column(Text)
    overdue_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    # Still open `team.escalation.after` past due: when, and to whom (an SDR, a manager, ops).
    escalated_at: Mapped[datetime | None]
    escalated_from: Mapped[str | None]
    escalated_to: Mapped[str | None]

    lead: Mapped[LeadRow] = relationship(lazy="raise")  # see StageChange.lead


class EventRow(Base):
    """A received event. The primary key is the event id, so a repeat is refused by the
    database whatever its body (the first wins).

    No foreign key to ``leads``: events for a lead not yet created are kept (``parked``)
    and delivered when it arrives. Named ``EventRow`` to stay apart from
    :class:`nurture.domain.events.Event`.
    """

    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint(_in_sql("status", EVENT_STATUSES), name="status"),
        Index("ix_events_lead_id_occurred_at", "lead_id", "occurred_at"),
        Index("ix_events_status_received_at", "status", "received_at"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    lead_id: Mapped[str]
    type: Mapped[str]
    # None when the sender gave no time.
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    status: Mapped[str]
    delivered_at: Mapped[datetime | None]


class Suppression(Base):
    """An address that gets no more email (unsubscribe is per address, not per lead)."""

    __tablename__ = "suppressions"
    __table_args__ = (CheckConstraint("email = lower(email)", name="email_lower"),)

    email: Mapped[str] = mapped_column(primary_key=True)
    reason: Mapped[str | None]
    at: Mapped[datetime] = mapped_column(default=utcnow)

    @validates("email")
    def _normalize_email(self, _key: str, value: str) -> str:
        # One spelling per address, or `Ann@X` would slip past a suppression of `ann@x`.
        return value.strip().lower()


class Opportunity(Base):
    """A toss-up to sales, unique per lead and cycle (:func:`nurture.domain.keys.opportunity`)."""

    __tablename__ = "opportunities"
    __table_args__ = (
        CheckConstraint(
            "outcome IS NULL OR " + _in_sql("outcome", OPPORTUNITY_OUTCOMES), name="outcome"
        ),
        Index("ix_opportunities_lead_id", "lead_id"),
        Index("ix_opportunities_owner_closed_at", "owner", "closed_at"),
        Index("ix_opportunities_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(unique=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    cycle: Mapped[int]
    owner: Mapped[str | None]
    trigger: Mapped[str]
    reason: Mapped[str | None] = mapped_column(Text)
    score: Mapped[int | None]
    grade: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    outcome: Mapped[str | None]
    outcome_reason: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None]

    lead: Mapped[LeadRow] = relationship(lazy="raise")  # see StageChange.lead


class User(Base):
    """An SDR or ops login; only a password hash is kept."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in_sql("role", ROLES), name="role"),)

    id: Mapped[str] = mapped_column(primary_key=True)
    role: Mapped[str]
    password_hash: Mapped[str]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # An SDR who left (`users deactivate`): no login, no new leads, their leads reassigned.
    deactivated_at: Mapped[datetime | None]


class ReceivedMail(Base):
    """A message caught by the dev SMTP sink (:mod:`nurture.adapters.mailsink`)."""

    __tablename__ = "received_mail"
    __table_args__ = (Index("ix_received_mail_received_at", "received_at"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    mail_from: Mapped[str | None]
    rcpt_tos: Mapped[list[str]] = mapped_column(json_type(), default=list)
    # Decoded from RFC 2047, so a Japanese subject reads as Japanese.
    subject: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None]
    raw: Mapped[str] = mapped_column(Text)


class InboundMail(Base):
    """A message that came back (a reply, auto-reply, bounce, complaint or unsubscribe),
    read once: unique by its Message-ID (or the digest of a message without one).

    Matched mail keeps only what its event and a person need to see it was read: no body.
    Unmatched mail keeps a bounded excerpt of its own words, for the person who sorts it
    (``mail list --unmatched``); erase removes the lead's rows.
    """

    __tablename__ = "inbound_mail"
    __table_args__ = (
        CheckConstraint(_in_sql("status", INBOUND_STATUSES), name="status"),
        Index("ix_inbound_mail_status_received_at", "status", "received_at"),
        Index("ix_inbound_mail_lead_id", "lead_id"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    message_key: Mapped[str] = mapped_column(String(500), unique=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(20))
    why: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20))
    lead_id: Mapped[str | None]
    event_id: Mapped[str | None]
    sender: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    excerpt: Mapped[str | None] = mapped_column(Text)


class AppSecret(Base):
    """A random secret this app made for itself, shared by every process through the
    database (:mod:`nurture.adapters.secrets`); never shared with anyone outside the app."""

    __tablename__ = "app_secrets"

    name: Mapped[str] = mapped_column(primary_key=True)
    value: Mapped[str]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookReceipt(Base):
    """A signed webhook request already taken in: the SHA-256 of ``"<t>.<body>"``.

    A captured request replayed while its signature is still fresh finds its row and has
    no second effect. Rows older than the signature window are pruned as new ones come.
    """

    __tablename__ = "webhook_receipts"
    __table_args__ = (Index("ix_webhook_receipts_seen_at", "seen_at"),)

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class SendingSwitch(Base):
    """The live kill switch's log: one row each time ops pause or resume sending.

    The newest row is the switch's state; the rows before it are the record of who
    stopped sending, when and why. Every outbox send reads it, so a pause holds on every
    worker at once, with no restart (``ops sending pause|resume``, the ops page).
    """

    __tablename__ = "sending_switch"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    paused: Mapped[bool]
    at: Mapped[datetime] = mapped_column(default=utcnow)
    by: Mapped[str] = mapped_column(String(200))
    why: Mapped[str] = mapped_column(Text, default="")


class PlaybookRollout(Base):
    """A playbook delivered to the leads in flight (``playbook rollout``), kept whole so the
    next rollout can show what changed since."""

    __tablename__ = "playbook_rollouts"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(64))
    playbook: Mapped[dict[str, Any]] = mapped_column(json_type())
    at: Mapped[datetime] = mapped_column(default=utcnow)
    by: Mapped[str] = mapped_column(String(200))
    leads: Mapped[int] = mapped_column(default=0)  # leads the playbook was delivered to


class CrmPost(Base):
    """The CRM outbox: one signed post to ``NURTURE_CRM_WEBHOOK_URL`` per ``key`` (the payload's
    ``id``: a toss-up or a stage change), written by the activity that decided it and sent by
    the worker's background sender (:mod:`nurture.activities.crm`), so a CRM that refuses or
    is down never holds the lead's workflow.

    ``next_attempt_at`` is both the retry schedule and the lease of the sender that claimed
    the row (a sender that dies mid-post leaves it due again once the lease ends: the CRM
    drops a repeated ``id``). No personal data: the payload carries ids, stages and scores.
    """

    __tablename__ = "crm_posts"
    __table_args__ = (
        CheckConstraint(_in_sql("status", CRM_POST_STATUSES), name="status"),
        Index("ix_crm_posts_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_crm_posts_lead_id_status", "lead_id", "status"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    # No foreign key: the post outlives nothing it names, and an erased lead keeps its id.
    lead_id: Mapped[str]
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(json_type())
    status: Mapped[str] = mapped_column(default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class CrmLink(Base):
    """A CRM record that belongs to a lead without being it: a HubSpot deal associated with a
    contact, a Salesforce opportunity converted from a lead. Learned from the CRM's own
    notifications, so a deal's stage change reaches the lead it is about."""

    __tablename__ = "crm_links"
    __table_args__ = (Index("ix_crm_links_lead_id", "lead_id"),)

    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    object_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    object_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    lead_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class CrmUnmatched(Base):
    """A CRM outcome (a deal won or lost) whose lead is not known yet: kept, listed for ops
    (``nurture crm unmatched``), and delivered as soon as a link to a lead arrives."""

    __tablename__ = "crm_unmatched"
    __table_args__ = (Index("ix_crm_unmatched_object", "source", "object_type", "object_id"),)

    # The event id its lead's event is made from (one per lead: ``<id>~<lead id>``).
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime | None]
    data: Mapped[dict[str, Any]] = mapped_column(json_type())
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class GovernorLock(Base):
    """One row per account (``account:<hash of its key>``) and per person
    (``person:<keyed hash>``) that the account governor locks while it decides
    (``nurture/activities/accounts.py``), and that the sticky assignment locks while it
    chooses an account's SDR. Its only use is the row lock; ``at`` is when it was last
    taken."""

    __tablename__ = "governor_locks"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class TouchGrant(Base):
    """A touch the account governor let go, unique by the touch's idempotency key (a retry
    re-finds it). ``person`` is a keyed hash of the address, never the address itself."""

    __tablename__ = "touch_grants"
    __table_args__ = (
        Index("ix_touch_grants_account_at", "account", "at"),
        Index("ix_touch_grants_person_at", "person", "at"),
        Index("ix_touch_grants_lead_id", "lead_id"),
    )

    key: Mapped[str] = mapped_column(String(500), primary_key=True)
    # No foreign key: a grant outlives nothing it names, as the CRM outbox.
    lead_id: Mapped[str]
    account: Mapped[str | None]
    person: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(8))
    at: Mapped[datetime]


def insert_or_ignore(
    model: type[Base] | Table, dialect_name: str, on: list[str] | None = None
) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` into ``model``'s table, spelled for the dialect.

    The one place that knows both spellings. Concurrent writers of the same key then never
    fail on the unique constraint: one row wins and the others learn it from the statement's
    ``RETURNING`` (or rowcount), instead of an ``IntegrityError`` that ends their transaction.

    Args:
        model: The mapped class whose table is written (ORM statement), or the table itself
            (Core: cheaper for many plain rows at once).
        dialect_name: ``session.bind.dialect.name`` (``sqlite`` or ``postgresql``).
        on: The unique columns whose conflict is ignored (default: any unique conflict).
    """
    if dialect_name == "postgresql":
        return postgresql.insert(model).on_conflict_do_nothing(index_elements=on)
    if dialect_name == "sqlite":
        return sqlite.insert(model).on_conflict_do_nothing(index_elements=on)
    raise ValueError(f"no upsert for the {dialect_name} dialect")


RowT = TypeVar("RowT", bound=Base)


async def insert_once(
    session: AsyncSession, model: type[RowT], key: Mapping[str, Any], **values: Any
) -> tuple[RowT, bool]:
    """The row of ``model`` with the unique ``key``: the stored one, else a new one of ``values``.

    Safe when several callers race for one key, on SQLite and PostgreSQL alike: the insert
    is an ``INSERT ... ON CONFLICT (key) DO NOTHING``, so a loser's transaction neither
    fails nor has to be rolled back (which would also drop its other pending changes, and
    expire every row it loaded); it reads the winner's row instead. A conflict on any
    other constraint (a missing lead, say) still raises.

    Nothing is committed here: the caller commits the new row together with whatever
    belongs with it, and only then do other callers see it (on PostgreSQL a concurrent
    insert of the same key waits for that commit, then finds the row).

    Args:
        session: an open session.
        model: the mapped class, with a unique constraint (or primary key) on ``key``'s
            columns.
        key: the unique columns and their values.
        **values: the other columns of a new row (column defaults fill the rest).

    Returns:
        The row, and whether this call inserted it.
    """
    where = [getattr(model, column) == value for column, value in key.items()]
    found = await session.scalar(select(model).where(*where))
    if found is not None:
        return found, False
    statement = (
        insert_or_ignore(model, session.get_bind().dialect.name, on=list(key))
        .values(**key, **values)
        .returning(model)
    )
    inserted = await session.scalar(statement)
    if inserted is not None:
        return inserted, True
    # Another caller inserted it since the first look; its row is committed by now (the
    # conflict is only reported once the other transaction is over).
    found = await session.scalar(
        select(model).where(*where).execution_options(populate_existing=True)
    )
    if found is None:
        raise LookupError(f"{model.__tablename__}: the row of {dict(key)} vanished at once")
    return found, False


# SQLAlchemy's own default: enough for a short-lived tool (a CLI command, a migration).
# Long-running processes size their pool from their own concurrency (worker.py, the web app).
DEFAULT_POOL_SIZE = 5


def pool_overflow(pool_size: int) -> int:
    """Connections opened beyond ``pool_size`` in a burst (closed again when returned).

    Headroom for the few paths that briefly hold a second session inside a first (reading
    the app secret on first use, for one): SQLAlchemy's default 10, or a quarter of a large
    pool, kept small so that the pools of a worker and a web app together stay under
    PostgreSQL's default 100 connections.
    """
    return max(10, pool_size // 4)


def make_engine(url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> AsyncEngine:
    """Create an async engine for ``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``.

    For a SQLite file, the parent directory is created, and every new connection gets WAL
    (readers do not block the writer), a busy timeout (several processes share the file:
    wait for a lock rather than fail at once) and enforced foreign keys (as PostgreSQL).

    Bound parameters are hidden from SQLAlchemy's error messages and logs
    (``hide_parameters``): they carry leads' addresses, names and phone numbers.

    Args:
        url: An async SQLAlchemy URL.
        pool_size: Connections kept open: the number of things the process does with the
            database at once (the worker: one per activity slot), so none of them waits for
            a connection, or times out waiting (QueuePool limit) under a flood; plus
            :func:`pool_overflow` in bursts.

    Returns:
        The engine; the caller disposes of it (``await engine.dispose()``).
    """
    sa_url = make_url(url)
    pool = {"pool_size": pool_size, "max_overflow": pool_overflow(pool_size)}
    if sa_url.get_backend_name() != "sqlite":
        # pre_ping: a restarted PostgreSQL should cost one retry, not a failed activity.
        return create_async_engine(sa_url, pool_pre_ping=True, hide_parameters=True, **pool)

    database = sa_url.database or ""
    in_memory = not database or database == ":memory:" or "mode=memory" in database
    if not in_memory and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # An in-memory database gets a single-connection pool of its own, with no size to set.
    engine = create_async_engine(sa_url, hide_parameters=True, **({} if in_memory else pool))
    event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    return engine


def sqlite_file_engine(engine: AsyncEngine) -> Engine | None:
    """A synchronous engine (one connection) on the same SQLite file as ``engine``, or None
    when ``engine`` is not on a SQLite file (PostgreSQL, or an in-memory database).

    For a writer that runs a whole transaction in one thread call: through the async driver
    every statement is a round trip to the event loop, and on a busy loop each one holds
    SQLite's single write lock, which every other process waits for, a little longer.
    """
    url = engine.url
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:") or "mode=memory" in database:
        return None
    sync = create_engine(
        url.set(drivername="sqlite"),
        hide_parameters=True,
        pool_size=1,
        max_overflow=0,
        # Used from one thread at a time (the caller's own executor), not always the same.
        connect_args={"check_same_thread": False},
    )
    event.listen(sync, "connect", _sqlite_on_connect)
    return sync


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver begins a transaction at the first write, and IMMEDIATE: the write lock is
    # taken up front, so a busy database is waited for (busy timeout). A DEFERRED begin
    # starts as a reader and, in WAL mode, fails at once with "database is locked"
    # (SQLITE_BUSY_SNAPSHOT) when another connection committed in between: waiting could not
    # help it, so SQLite does not wait. Under concurrent writers (intake under a flood, the
    # worker's activities) a single UPDATE then failed instead of queueing. Reads before the
    # first write run outside a transaction, as before, and never block.
    dbapi_connection.isolation_level = "IMMEDIATE"
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first: switching to WAL itself needs a lock another process may hold.
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        _switch_to_wal(cursor)
        # NORMAL is durable across application crashes in WAL mode, and much faster.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _switch_to_wal(cursor: Any) -> None:
    """Put the file in WAL mode (a property of the file, kept once set).

    Several processes opening a new file at once all try the switch; it needs an exclusive
    lock, and SQLite may answer "database is locked" at once instead of waiting for the busy
    timeout when the other holder could be waiting for us. So: nothing to do when the file
    is already in WAL mode, else retry until the busy timeout has passed.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode")
            if str(cursor.fetchone()[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """A session factory for ``engine``.

    ``expire_on_commit=False`` keeps loaded rows readable after commit: async code cannot
    lazily reload an expired attribute.
    """
    return async_sessionmaker(engine, expire_on_commit=False)
