"""Mermaid flowcharts of cadences: shapes per step type, labelled branches, safe node ids."""

from __future__ import annotations

import re

from nurture.domain.cadence import Cadence
from nurture.domain.graph import describe_condition, mermaid

CONTRACT_CADENCE = {
    "id": "inbound",
    "name": "Inbound nurture",
    "steps": [
        {"id": "welcome", "type": "email", "template": "inbound/welcome"},
        {
            "id": "pause",
            "type": "wait",
            "duration": "2 business days",
            "until_any": ["email.clicked"],
        },
        {
            "id": "engaged",
            "type": "branch",
            "cases": [
                {"when": {"event": "email.clicked", "step": "welcome"}, "goto": "first-call"},
                {"when": {"score_at_least": 20}, "goto": "first-call"},
            ],
            "default": "nudge",
        },
        {"id": "nudge", "type": "email", "template": "inbound/nudge", "next": "end"},
        {
            "id": "first-call",
            "type": "call",
            "script": "inbound/first-call",
            "wait_for_outcome": "2d",
        },
        {
            "id": "after-call",
            "type": "branch",
            "cases": [{"when": {"call_outcome": ["no_answer", "voicemail"]}, "goto": "nudge"}],
            "default": "end",
        },
    ],
}

NODE_DEF = re.compile(r"^    (\w+)[\[\(\{]")
EDGE = re.compile(r"^    (\w+) -->(?:\|\"([^\"]*)\"\|)? (\w+)$")


def graph_of(data: dict) -> tuple[str, dict[str, str], list[tuple[str, str | None, str]]]:
    text = mermaid(Cadence.model_validate(data))
    lines = text.splitlines()
    nodes = {m.group(1): line for line in lines if (m := NODE_DEF.match(line))}
    edges = [(m.group(1), m.group(2), m.group(3)) for line in lines if (m := EDGE.match(line))]
    return text, nodes, edges


def test_the_contract_cadence_as_a_flowchart() -> None:
    text, nodes, edges = graph_of(CONTRACT_CADENCE)

    assert text.startswith("flowchart TD\n")
    assert text.endswith("\n")
    assert set(edges) == {
        ("cadence_start", None, "s_welcome"),
        ("s_welcome", None, "s_pause"),
        ("s_pause", None, "s_engaged"),
        ("s_engaged", "email.clicked on welcome", "s_first_call"),
        ("s_engaged", "score ≥ 20", "s_first_call"),
        ("s_engaged", "otherwise", "s_nudge"),
        ("s_nudge", None, "cadence_end"),
        ("s_first_call", None, "s_after_call"),
        ("s_after_call", "outcome no_answer/voicemail", "s_nudge"),
        ("s_after_call", "otherwise", "cadence_end"),
    }
    # Every edge joins nodes that are defined.
    assert {a for a, _, _ in edges} | {b for _, _, b in edges} <= set(nodes)


def test_each_step_type_has_its_shape() -> None:
    data = {
        "id": "shapes",
        "name": "Shapes",
        "steps": [
            {"id": "mail", "type": "email", "template": "t"},
            {"id": "ring", "type": "call", "script": "s"},
            {"id": "hold", "type": "wait", "duration": "1d"},
            {
                "id": "pick",
                "type": "branch",
                "cases": [{"when": {"grade_in": ["A"]}, "goto": "stop"}],
            },
            {"id": "stop", "type": "exit", "reason": "done"},
        ],
    }

    _, nodes, _ = graph_of(data)

    assert nodes["s_mail"].startswith('    s_mail["')
    assert nodes["s_ring"].startswith('    s_ring(["')
    assert nodes["s_hold"].startswith('    s_hold{{"')
    assert nodes["s_pick"].startswith('    s_pick{"')
    assert nodes["s_stop"].startswith('    s_stop((("')
    assert "exit: done" in nodes["s_stop"]


def test_node_ids_are_safe_and_unique() -> None:
    data = {
        "id": "ids",
        "name": 'Quotes " and <tags>',
        "steps": [
            {"id": "a-b", "type": "wait", "duration": "1d"},
            {"id": "a_b", "type": "wait", "duration": "1d"},
            {"id": "graph", "type": "wait", "duration": "1d"},
        ],
    }

    text, nodes, edges = graph_of(data)

    assert {"s_a_b", "s_a_b_2", "s_graph"} <= set(nodes)
    assert ("s_a_b", None, "s_a_b_2") in edges
    assert all(re.fullmatch(r"\w+", node) for node in nodes)
    assert "Quotes #quot; and #lt;tags#gt;" in text
    assert "\n    end" not in text  # `end` is a Mermaid keyword: never a node id


def test_a_jump_to_a_missing_step_is_drawn_not_refused() -> None:
    data = {
        "id": "broken",
        "name": "Broken",
        "steps": [{"id": "a", "type": "email", "template": "t", "next": "nowhere"}],
    }

    text, nodes, edges = graph_of(data)

    assert ("s_a", None, "missing_1") in edges
    assert 'missing_1["missing step: nowhere"]' in text


def test_conditions_in_a_few_words() -> None:
    cadence = Cadence.model_validate(
        {
            "id": "c",
            "name": "C",
            "steps": [
                {
                    "id": "b",
                    "type": "branch",
                    "cases": [
                        {
                            "when": {
                                "all": [
                                    {"field": "employees", "at_least": 1000},
                                    {
                                        "any": [
                                            {"field": "industry", "in": ["finance", "retail"]},
                                            {"field": "tier_account", "equals": True},
                                        ]
                                    },
                                    {"not": {"event": "email.bounced", "within": "30d"}},
                                ]
                            },
                            "goto": "end",
                        }
                    ],
                }
            ],
        }
    )

    text = describe_condition(cadence.steps[0].cases[0].when)  # type: ignore[union-attr]

    assert text == (
        "employees ≥ 1000 and (industry in finance/retail or tier_account = true) and "
        "not email.bounced within 30d"
    )
