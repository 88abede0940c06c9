"""The Temporal names of the contract (CONTRACT.md, "Temporal names"): the workflow type,
its signals and query, the workflow id and the search attributes. No PII in any of them.
"""

WORKFLOW_NAME = "LeadWorkflow"
SIGNAL_EVENT = "event"
QUERY_STATE = "state"


def workflow_id(lead_id: str) -> str:
    """The workflow id of a lead: `lead-<lead id>` (the CRM id carries no PII)."""
    return f"lead-{lead_id}"


# The contract's search attributes and their types, registered by `make run`, the tests and
# docker-compose. No PII in any of them.
SEARCH_ATTRIBUTES: dict[str, str] = {
    "LeadStage": "Keyword",
    "LeadScore": "Int",
    "LeadGrade": "Keyword",
    "Cadence": "Keyword",
    "CadenceStep": "Keyword",
    "LeadOwner": "Keyword",
    "LeadSource": "Keyword",
    "NextTouchAt": "Datetime",
}
SIGNAL_PAUSE = "pause"
SIGNAL_RESUME = "resume"
SIGNAL_REASSIGN = "reassign"
SIGNAL_MIGRATE = "migrate"
SIGNAL_PLAYBOOK = "playbook"
# The account governor: a lead of the account left mql/sql; a touch held for it asks again.
SIGNAL_ACCOUNT_RELEASED = "account_released"
