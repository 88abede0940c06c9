"""The cadence interpreter: a pure function from (cadence, position, facts) to the next action.

It imports nothing from temporalio, so every rule is tested with plain tables, and the same
code drives the lead workflow and `cadences simulate`. It decides; callers perform.

A cadence runs step by step. Branch steps are resolved here at once (they take no time);
the first step that does something is returned as an action: send an email, create a call
task, wait, or end (an `exit` step, or falling off the last step).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from nurture.domain.cadence import (
    END,
    BranchStep,
    Cadence,
    CallStep,
    EmailStep,
    ExitStep,
    Limits,
    Playbook,
    RoutingRule,
    WaitStep,
)
from nurture.domain.conditions import Facts, describe, evaluate
from nurture.domain.timing import add_duration


class SendEmail(BaseModel):
    kind: Literal["email"] = "email"
    step: str
    template: str
    reason: str


class CreateCallTask(BaseModel):
    kind: Literal["call"] = "call"
    step: str
    script: str
    due: str
    wait_for_outcome: str | None
    reason: str


class Wait(BaseModel):
    kind: Literal["wait"] = "wait"
    step: str
    until: datetime
    wake_on: list[str]
    reason: str


class End(BaseModel):
    kind: Literal["end"] = "end"
    step: str | None
    exited: bool
    reason: str


Action = SendEmail | CreateCallTask | Wait | End


class Decision(BaseModel):
    """The next action and the branch decisions that led to it (for the lead's history)."""

    action: SendEmail | CreateCallTask | Wait | End
    trail: list[str]


class SpinError(RuntimeError):
    """A cadence jumped between branches without ever acting: validation should have caught it."""


def first_step(cadence: Cadence) -> str:
    return cadence.steps[0].id


def after(cadence: Cadence, step_id: str) -> str:
    """Where a cadence goes once ``step_id`` has finished (email sent, wait over, call done)."""
    return cadence.following(step_id)


def decide(
    cadence: Cadence,
    step_id: str,
    facts: Facts,
    *,
    playbook: Playbook,
    zone: ZoneInfo,
    limits: Limits | None = None,
) -> Decision:
    """The action of the first acting step reached from ``step_id``.

    Args:
        cadence: the snapshot the lead runs.
        step_id: the step to run now (``end`` ends).
        facts: what conditions see; ``facts.now`` is the current time.
        playbook: for the send window and holidays of business-day waits and call dues.
        zone: the lead's time zone.
        limits: the limits as they hold for the lead (its own holidays); default: the
            playbook's.

    Raises:
        SpinError: when branches jump more often than there are steps without acting.
    """
    trail: list[str] = []
    current = step_id
    for _ in range(len(cadence.steps) + 1):
        if current == END:
            return Decision(
                action=End(step=None, exited=False, reason=f"reached the end of {cadence.id}"),
                trail=trail,
            )
        step = cadence.step(current)
        match step:
            case BranchStep():
                target, why = _branch_target(cadence, step, facts)
                trail.append(f"{step.id}: {why} -> {target}")
                current = target
            case EmailStep():
                return Decision(
                    action=SendEmail(
                        step=step.id,
                        template=step.template,
                        reason=f"step {step.id}: email {step.template}",
                    ),
                    trail=trail,
                )
            case CallStep():
                due = step.due or playbook.team.call_due
                return Decision(
                    action=CreateCallTask(
                        step=step.id,
                        script=step.script,
                        due=due,
                        wait_for_outcome=step.wait_for_outcome,
                        reason=f"step {step.id}: call task ({step.script}), due in {due}",
                    ),
                    trail=trail,
                )
            case WaitStep():
                until = add_duration(facts.now, step.duration, zone, limits or playbook.limits)
                wake = f"; wakes early on {', '.join(step.until_any)}" if step.until_any else ""
                return Decision(
                    action=Wait(
                        step=step.id,
                        until=until,
                        wake_on=list(step.until_any),
                        reason=f"step {step.id}: wait {step.duration}{wake}",
                    ),
                    trail=trail,
                )
            case ExitStep():
                return Decision(
                    action=End(
                        step=step.id, exited=True, reason=f"step {step.id}: exit ({step.reason})"
                    ),
                    trail=trail,
                )
    raise SpinError(
        f"cadence '{cadence.id}' branches in a loop from step '{step_id}' without acting"
    )


def _branch_target(cadence: Cadence, step: BranchStep, facts: Facts) -> tuple[str, str]:
    *gotos, otherwise = cadence.edges_from(step.id)
    for case, edge in zip(step.cases, gotos, strict=True):
        if evaluate(case.when, facts):
            return edge.target, describe(case.when)
    written = " (default)" if otherwise.key == ("default",) else ""
    return otherwise.target, f"no case matched{written}"


def entry_cadence(playbook: Playbook, facts: Facts) -> tuple[str, str]:
    """The first cadence for a new lead by the playbook's routing (first match wins)."""
    rule: RoutingRule
    facts = replace(facts, tier_accounts=tuple(playbook.tier_accounts))
    for rule in playbook.routing.entry:
        if rule.when is None:
            return rule.cadence, "routing: default entry"
        if evaluate(rule.when, facts):
            return rule.cadence, f"routing: {describe(rule.when)}"
    # Validation requires a catch-all; a lead is never left without a cadence.
    return playbook.routing.entry[-1].cadence, "routing: no rule matched, last entry used"
