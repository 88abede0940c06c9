"""A cadence as a Mermaid flowchart (``cadences graph ID``), for reviews and the docs.

Shapes say what a step does: an email is a box, a call a stadium, a wait a hexagon, a
branch a diamond, an exit a double circle; ``end`` is one shared terminal node. Branch edges
carry a short form of their condition. Pure: no I/O.
"""

from __future__ import annotations

import re

from nurture.domain.cadence import (
    END,
    BranchStep,
    Cadence,
    CallStep,
    EmailStep,
    ExitStep,
    WaitStep,
    step_edges,
)
from nurture.domain.conditions import describe

START_NODE = "cadence_start"
END_NODE = "cadence_end"  # never plain `end`: a reserved word in Mermaid flowcharts
MAX_EDGE_LABEL = 48


def mermaid(cadence: Cadence) -> str:
    """Draw a cadence as a Mermaid ``flowchart TD``.

    Args:
        cadence: a cadence that passed the schema (jumps to missing steps are drawn as
            "missing" nodes rather than refused, so a broken cadence can still be looked at).

    Returns:
        The Mermaid source, ending with a newline.
    """
    ids = _node_ids([step.id for step in cadence.steps])
    lines = ["flowchart TD", f'    {START_NODE}(["{_escape(cadence.name)}"])']
    for step in cadence.steps:
        lines.append(f"    {ids[step.id]}{_shape(step)}")
    missing: dict[str, str] = {}
    uses_end = False

    def target(step_id: str) -> str:
        nonlocal uses_end
        if step_id == END:
            uses_end = True
            return END_NODE
        if step_id in ids:
            return ids[step_id]
        if step_id not in missing:
            missing[step_id] = f"missing_{len(missing) + 1}"
        return missing[step_id]

    edges = [f"    {START_NODE} --> {ids[cadence.steps[0].id]}"]
    for step, out in zip(cadence.steps, step_edges(cadence.steps), strict=True):
        source = ids[step.id]
        for edge, label in zip(out, _labels(step), strict=True):
            arrow = f'-->|"{_escape(_shorten(label))}"|' if label else "-->"
            edges.append(f"    {source} {arrow} {target(edge.target)}")
    lines.extend(edges)
    if uses_end:
        lines.append(f'    {END_NODE}((("end")))')
    for step_id, node in missing.items():
        lines.append(f'    {node}["missing step: {_escape(step_id)}"]')
        lines.append(f"    style {node} stroke-dasharray: 5 5")
    return "\n".join(lines) + "\n"


def _labels(step: object) -> list[str]:
    """The labels of a step's edges, in the order of ``Cadence.edges()``."""
    if isinstance(step, BranchStep):
        return [describe_condition(case.when) for case in step.cases] + ["otherwise"]
    return [] if isinstance(step, ExitStep) else [""]


def describe_condition(condition: object) -> str:
    """A branch or routing condition in a few words, e.g. ``email.clicked on welcome``."""
    return describe(condition)  # type: ignore[arg-type]


def _shape(step: object) -> str:
    """The node's shape and label for a step."""
    if isinstance(step, EmailStep):
        return f'["{_escape(step.id)}<br/>email: {_escape(step.template)}"]'
    if isinstance(step, CallStep):
        waits = step.wait_for_outcome
        extra = f"<br/>waits {_escape(waits)} for the outcome" if waits else ""
        return f'(["{_escape(step.id)}<br/>call: {_escape(step.script)}{extra}"])'
    if isinstance(step, WaitStep):
        events = _escape(", ".join(step.until_any))
        until = f"<br/>or until {events}" if step.until_any else ""
        return "{{" + f'"{_escape(step.id)}<br/>wait {_escape(step.duration)}{until}"' + "}}"
    if isinstance(step, BranchStep):
        return "{" + f'"{_escape(step.id)}"' + "}"
    if isinstance(step, ExitStep):
        return f'((("{_escape(step.id)}<br/>exit: {_escape(_shorten(step.reason))}")))'
    return f'["{_escape(getattr(step, "id", "?"))}"]'


def _node_ids(step_ids: list[str]) -> dict[str, str]:
    """Mermaid-safe, unique node ids (step ids may hold hyphens, or be Mermaid keywords)."""
    out: dict[str, str] = {}
    used: set[str] = {START_NODE, END_NODE}
    for step_id in step_ids:
        base = "s_" + re.sub(r"[^A-Za-z0-9_]", "_", step_id)
        node, n = base, 2
        while node in used:
            node, n = f"{base}_{n}", n + 1
        used.add(node)
        out.setdefault(step_id, node)
    return out


def _escape(text: str) -> str:
    """Text for inside a quoted Mermaid label (entity codes keep quotes and pipes literal)."""
    replacements = {"&": "#amp;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "|": "#124;"}
    return "".join(replacements.get(ch, ch) for ch in text)


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_EDGE_LABEL else text[: MAX_EDGE_LABEL - 1] + "…"
