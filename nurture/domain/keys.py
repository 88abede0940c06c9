"""Every idempotency key, built in one place (CONTRACT.md, "Idempotency").

A key names a side effect by the lead's business position (lead, cycle, cadence, step,
visit), never by the run id, which continue-as-new changes: a retried or continued run
finds the row it already wrote. The strings are stored in outbox, task and opportunity
rows and recorded in workflow histories, so their spelling must never change.

Pure string functions: the workflow sandbox passes this module through.
"""

from __future__ import annotations

from datetime import datetime


def touch(lead_id: str, cycle: int, cadence: str, step: str, visit: int) -> str:
    """An email or call: ``<lead>|<cycle>|<cadence>|<step>|<visit>``."""
    return f"{lead_id}|{cycle}|{cadence}|{step}|{visit}"


def touch_step(key: str) -> tuple[str, str] | None:
    """The cadence and step a :func:`touch` key names; None for any other key."""
    parts = key.split("|")
    if len(parts) != 5:
        return None
    return parts[2], parts[3]


def opportunity(lead_id: str, cycle: int) -> str:
    """A toss-up to sales: one opportunity per lead and cycle, ``<lead>|<cycle>``."""
    return f"{lead_id}|{cycle}"


def sales_follow_up(lead_id: str, cycle: int) -> str:
    """The alert that sales gave no outcome in time, once per toss-up."""
    return f"{opportunity(lead_id, cycle)}|follow-up"


def closed_with_sales(lead_id: str, cycle: int) -> str:
    """The alert that a lead with sales was closed, once per toss-up."""
    return f"{opportunity(lead_id, cycle)}|closed"


def reassignment(lead_id: str, cycle: int, at: datetime, owner: str | None) -> str:
    """A reassignment of the lead to ``owner`` at workflow time ``at`` (the same on every
    retry and replay)."""
    return f"{lead_id}|{cycle}|reassigned|{at.isoformat()}|{owner or '-'}"


def unknown_send(key: str) -> str:
    """The alert that the email of touch ``key`` may or may not have gone out."""
    return f"{key}|unknown"


def reply_notice(lead_id: str, event_id: str) -> str:
    """The notice to a lead's owner that the lead replied (the ``email.replied`` event)."""
    return f"{lead_id}|replied|{event_id}"


def escalation(task_id: str) -> str:
    """The escalation of one call task (at most one per task)."""
    return f"task|{task_id}|escalated"


def notification(key: str) -> str:
    """The outbox row of a notification about the side effect ``key`` (a task, an alert)."""
    return f"notify|{key}"


def handoff_notification(key: str) -> str:
    """The outbox row telling the owner of the toss-up ``key`` (an :func:`opportunity`)."""
    return notification(f"handoff|{key}")


def crm_toss_up(key: str) -> str:
    """The id of the ``lead.tossed_up`` event sent to the CRM for the toss-up ``key``."""
    return f"tossup-{key}"


def visit_counter(cadence: str, step: str) -> str:
    """Where a lead counts the runs of ``step`` in this cycle (the visit of :func:`touch`).

    Carried in the workflow's state across continue-as-new, so its spelling is kept too.
    """
    return f"{cadence}|{step}"
