"""Account facts for rules: `account` and `tier_accounts` (CONTRACT.md, "Accounts and people").

A lead's account (its email domain, or `company:<name>` for free-mail addresses) reaches the
workflow as a decision field and follows `lead.updated`; a lead of a named account in the
playbook's `tier_accounts` has `tier_account` true for grading and routing rules.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import SKELETON_CADENCE, SKELETON_TEMPLATES, write_cadence_set
from harness import running
from pydantic import ValidationError

from nurture.adapters.loader import load_cadence_set
from nurture.domain import scoring
from nurture.domain.cadence import Playbook
from nurture.domain.conditions import Facts, evaluate, fields_used, in_tier
from nurture.domain.events import Event, Lead, LeadFacts, account_key
from nurture.domain.interpreter import entry_cadence
from nurture.domain.state import LeadInput
from nurture.services.intake import for_workflow, rule_fields, submit_event
from nurture.services.simulate import simulate

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)

PLAYBOOK = """
    tier_accounts: [Initech.example, "@umbrella.example", "company:hooli"]
    grading:
      rules:
        - when: {field: tier_account, equals: true}
          points: 70
        - when: {field: account, in: [globex.example]}
          points: 40
      bands: {A: 70, B: 40, C: 0}
    thresholds:
      mql: {score: 40}
      toss_up: {score: 80, grades: [A]}
    routing:
      entry:
        - when: {field: tier_account, equals: true}
          cadence: named
        - cadence: welcome
      mql_cadence: welcome
    limits:
      send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}
    sender:
      from: "Acme <hello@acme.example>"
      postal_address: "Acme Inc., 1 Main St, Springfield"
"""

NAMED = SKELETON_CADENCE.replace("id: welcome\n", "id: named\n").replace(
    "Welcome series", "Named accounts"
)


@pytest.fixture
def cadence_dirs(tmp_path):  # type: ignore[no-untyped-def]
    return write_cadence_set(
        tmp_path / "set",
        PLAYBOOK,
        {"welcome": SKELETON_CADENCE, "named": NAMED},
        SKELETON_TEMPLATES,
    )


def playbook_of(cadence_dirs) -> Playbook:  # type: ignore[no-untyped-def]
    return load_cadence_set(cadence_dirs[0]).playbook


# --- the account key and the tier list, pure ---------------------------------------------


def test_the_account_is_the_domain_or_the_company_for_free_mail() -> None:
    assert account_key("ann@Sales.Initech.example", "Initech") == "sales.initech.example"
    assert account_key("ann@gmail.com", "Hooli, Inc.") == "company:hooli"
    assert account_key(None, None) is None
    lead = Lead(id="L-1", email="ann@initech.example", company="Initech")
    assert lead.facts().account == "initech.example"
    # The account is a domain: no person's data in what the workflow carries.
    assert "ann" not in lead.facts().model_dump_json()


def test_tier_accounts_are_normalized_and_addresses_refused(cadence_dirs) -> None:  # type: ignore[no-untyped-def]
    playbook = playbook_of(cadence_dirs)
    assert playbook.tier_accounts == ["initech.example", "umbrella.example", "company:hooli"]
    data = playbook.model_dump(mode="json", by_alias=True)
    for bad, said in (
        ("bob@initech.example", r"is an email address: write its domain \(initech.example\)"),
        ("company:", "names no company"),
        ("not a domain", "is not an account"),
    ):
        with pytest.raises(ValidationError, match=said):
            Playbook.model_validate({**data, "tier_accounts": [bad]})


def test_a_listed_account_or_a_subdomain_is_a_tier_account() -> None:
    tiers = ("initech.example", "company:hooli")
    assert in_tier("initech.example", tiers)
    assert in_tier("eu.initech.example", tiers)
    assert not in_tier("notinitech.example", tiers)
    assert in_tier("company:hooli", tiers)
    assert not in_tier("company:hooli labs", tiers)
    assert not in_tier(None, tiers)


@pytest.mark.parametrize(
    ("posted", "account", "expected"),
    [
        (None, "initech.example", True),  # listed: a tier account
        (False, "initech.example", True),  # the written list wins over a stale CRM flag
        (True, "other.example", True),  # the CRM says so: still a tier account
        (None, "other.example", False),
        (False, None, False),
    ],
)
def test_either_the_crm_or_the_list_makes_a_tier_account(
    cadence_dirs,  # type: ignore[no-untyped-def]
    posted: bool | None,
    account: str | None,
    expected: bool,
) -> None:
    playbook = playbook_of(cadence_dirs)
    facts = LeadFacts(id="L-1", tier_account=posted, account=account)
    rule = playbook.grading.rules[0].when
    seen = Facts(lead=facts, now=NOW, tier_accounts=tuple(playbook.tier_accounts))
    assert evaluate(rule, seen) is expected
    assert (scoring.grade(playbook, facts, NOW).grade == "A") is expected


def test_routing_sends_named_accounts_to_their_cadence(cadence_dirs) -> None:  # type: ignore[no-untyped-def]
    playbook = playbook_of(cadence_dirs)
    named = LeadFacts(id="L-1", account="initech.example")
    other = LeadFacts(id="L-2", account="other.example")
    assert entry_cadence(playbook, Facts(lead=named, now=NOW))[0] == "named"
    assert entry_cadence(playbook, Facts(lead=other, now=NOW))[0] == "welcome"


def test_a_free_field_named_account_never_travels(cadence_dirs) -> None:  # type: ignore[no-untyped-def]
    cadence_set = load_cadence_set(cadence_dirs[0])
    assert "account" in fields_used(cadence_set.playbook.grading.rules[1].when)
    assert "account" not in rule_fields(cadence_set)


def test_a_posted_account_never_overrides_the_computed_one() -> None:
    event = Event(
        id="E-1",
        type="lead.updated",
        lead_id="L-1",
        data={"account": "initech.example", "email": "x@other.example", "fields": {"a": 1}},
    )
    signaled = for_workflow(event, {"account", "a"})
    assert "account" not in signaled.data
    assert signaled.data["email"] is True


# --- the simulator ----------------------------------------------------------------------


def test_the_simulator_grades_a_tier_account_by_its_domain(cadence_dirs) -> None:  # type: ignore[no-untyped-def]
    cadence_set = load_cadence_set(cadence_dirs[0])
    lead = Lead(id="S-1", email="ann@eu.initech.example", first_name="Ann")
    timeline = simulate(cadence_set, "named", lead, [], NOW)
    created = next(e for e in timeline if e.what == "lead created")
    assert created.why == (
        "70 fit points; tier_account = true +70; account eu.initech.example is in tier_accounts"
    )
    # The second lead, of a plain domain, stays ungraded by the tier rule.
    other = simulate(cadence_set, "welcome", Lead(id="S-2", email="bo@other.example"), [], NOW)
    assert next(e for e in other if e.what == "lead created").why == "0 fit points"


# --- the live workflow ------------------------------------------------------------------


async def test_a_tier_account_is_graded_a_by_its_domain_and_follows_updates(
    time_env, make_settings, cadence_dirs
) -> None:  # type: ignore[no-untyped-def]
    cadences_dir, templates_dir = cadence_dirs
    settings = make_settings(cadences_dir=cadences_dir, templates_dir=templates_dir)
    async with running(time_env.client, settings) as stack:
        await stack.add_lead(id="A-1", email="ann@sales.initech.example", first_name="Ann")
        await stack.add_lead(id="A-2", email="bo@globex.example")
        await stack.add_lead(id="A-3", email="cy@other.example", company="Initech")

        tier = await stack.until("A-1", lambda v: v.grade is not None)
        assert tier.grade == "A"
        assert tier.cadence == "named"
        assert any("tier_account = true +70" in why for why in tier.grade_why)
        assert (await first_input("A-1", stack)).facts.account == "sales.initech.example"
        assert (await stack.until("A-2", lambda v: v.grade is not None)).grade == "B"
        assert (await stack.until("A-3", lambda v: v.grade is not None)).grade == "C"

        # A new address (posted again) moves the lead to a named account: regraded A.
        await stack.add_lead(id="A-3", email="cy@initech.example")
        view = await stack.until("A-3", lambda v: v.grade == "A")
        assert any(h.what == "grade A" for h in view.history)

        # The same through `lead.updated` on POST /events; the address stays out.
        await submit_event(
            stack.intake,
            Event(
                id="U-1",
                type="lead.updated",
                lead_id="A-2",
                occurred_at=await time_env.get_current_time(),
                data={"email": "bo@umbrella.example"},
            ),
        )
        view = await stack.until("A-2", lambda v: v.grade == "A")
        assert any("tier_account = true +70" in why for why in view.grade_why)
        signaled = await signals("A-2", stack)
        updates = [e for e in signaled if e.type == "lead.updated"]
        assert updates[-1].data["account"] == "umbrella.example"
        assert updates[-1].data["email"] is True
        assert not any("bo@" in e.model_dump_json() for e in signaled)
        # The redelivery sweep signals parked events the same way: the account as it is now.
        parked = Event(
            id="U-2",
            type="lead.updated",
            lead_id="A-2",
            data={"company": "Umbrella", "account": "posted.example"},
        )
        assert (await stack.intake.for_signal(parked)).data == {"account": "umbrella.example"}


async def signals(lead_id: str, stack) -> list[Event]:  # type: ignore[no-untyped-def]
    """The events the lead's workflow was signaled, decoded."""
    history = await stack.client.get_workflow_handle(f"lead-{lead_id}").fetch_history()
    found = []
    for item in history.events:
        if item.HasField("workflow_execution_signaled_event_attributes"):
            payloads = item.workflow_execution_signaled_event_attributes.input.payloads
            found.extend(await stack.client.data_converter.decode(payloads, [Event]))
    return found


async def first_input(lead_id: str, stack) -> LeadInput:  # type: ignore[no-untyped-def]
    """The input the lead's workflow was started with (its first run)."""
    history = await stack.client.get_workflow_handle(f"lead-{lead_id}").fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [value] = await stack.client.data_converter.decode(started.input.payloads, [LeadInput])
    return value
