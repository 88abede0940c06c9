"""A cadence as an SVG picture, drawn on the server (the cadence page in the web app).

The steps stand in one column, in file order, top to bottom, each a box whose shape and
colour say what it does: an email is a blue box, a call a green rounded box, a wait an amber
dashed box, a branch a purple box with bevelled corners and a diamond, an exit a red box with
a double border. Each box shows the step id and a short detail (template, script, duration
and ``until_any``, exit reason); a branch lists its cases, one row each, with the condition
and where it goes.

Two kinds of arrows connect them:

* a straight arrow down to the box below, when a step simply goes on to the next one;
* a jump (a branch case, a branch's ``default``, a step's ``next``) leaves the right edge of
  its row and is routed in a vertical *lane* right of the boxes, with rounded corners, into
  the target's right edge. Lanes are chosen so that jumps sharing a stretch of the column
  never share a lane, and a jump that spans another runs outside it. Jumps into the same
  step share a colour and an arrival point.

``end`` is one terminal node below the last step; a jump to a step that does not exist (a
cadence with problems can still be looked at) ends at a dashed "missing step" box.

Pure and deterministic: no I/O, no JavaScript, no ``id`` attributes and no ``<style>`` (so
several pictures can sit inline in one page); all text is XML-escaped. Text widths are
estimated from character counts, so nothing depends on the fonts installed.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from html import escape
from typing import Literal

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
from nurture.domain.graph import describe_condition

__all__ = ["Jump", "jumps", "render_svg"]

FONT = "system-ui, -apple-system, 'Segoe UI', 'Hiragino Sans', 'Noto Sans JP', sans-serif"
FG = "#1d2330"
MUTED = "#667085"
FLOW = "#475467"

MARGIN = 16
BOX_W = 400
PAD = 10
HEADER_H = 26
LINE_H = 16
RULE_GAP = 4  # extra room above a separator between branch cases
GAP = 36  # between two boxes: room for a straight arrow and its label
START_H = 40
END_R = 17
LANE_START = 26  # from the boxes' right edge to the innermost lane
LANE_STEP = 14
CORNER = 8
BEVEL = 9
ARROW = 7
TEXT_SIZE = 12
HEADER_SIZE = 13
TAG_SIZE = 10
MAX_WRAP_LINES = 3

STYLES: dict[str, tuple[str, str]] = {  # step type -> (fill, stroke)
    "email": ("#eef4ff", "#2f5bd3"),
    "call": ("#ecfdf3", "#1f7a4d"),
    "wait": ("#fffaeb", "#b54708"),
    "branch": ("#f4f3ff", "#5925dc"),
    "exit": ("#fef3f2", "#b42318"),
    "missing": ("#ffffff", "#98a2b3"),
}
# Jumps are coloured by their target: arrows that merge into one port look like one.
PALETTE = (
    "#2f5bd3",  # blue
    "#c2410c",  # orange
    "#1f7a4d",  # green
    "#7a2e8e",  # purple
    "#0e7490",  # teal
    "#be185d",  # pink
    "#4d7c0f",  # olive
    "#a16207",  # amber
    "#475467",  # slate
    "#b42318",  # red
)


@dataclass(frozen=True)
class Jump:
    """An arrow that does not simply go down to the box below.

    Attributes:
        source: The step id it leaves from.
        target: The step id it goes to (``end`` or an id that names no step included).
        kind: ``goto`` (a branch case), ``default`` (a branch's otherwise) or ``next``.
        label: The condition in a few words, ``otherwise`` or ``next``.
    """

    source: str
    target: str
    kind: Literal["goto", "default", "next"]
    label: str


@dataclass
class _Line:
    text: str
    target: str | None = None  # "→ target", right-aligned
    jump: int | None = None  # index into the jumps: the arrow leaves at this line
    muted: bool = False
    rule: bool = False  # a thin separator above (between branch cases)
    indent: bool = False


@dataclass
class _Node:
    key: str  # a step index ("0", "1", ...), END, or "missing:<id>"
    kind: str  # a step type, "end" or "missing"
    step_id: str
    name: str | None = None
    lines: list[_Line] = field(default_factory=list)
    x: float = 0.0
    y: float = 0.0
    h: float = 0.0

    @property
    def right(self) -> float:
        return self.x + (2 * END_R if self.kind == "end" else BOX_W)

    @property
    def port_y(self) -> float:
        """Where jumps arrive: level with the header."""
        return self.y + (END_R if self.kind == "end" else HEADER_H / 2 + 1)

    def line_top(self, index: int) -> float:
        """The top of detail line ``index`` (``len(lines)``: the bottom of the last one)."""
        above = self.lines[:index]
        return self.y + HEADER_H + len(above) * LINE_H + RULE_GAP * sum(ln.rule for ln in above)

    def line_y(self, index: int) -> float:
        """The middle of the text of detail line ``index`` (where its jump leaves)."""
        gap = RULE_GAP if self.lines[index].rule else 0
        return self.line_top(index) + gap + LINE_H / 2


@dataclass
class _Route:
    jump: Jump
    number: int
    source: _Node
    line: int
    target: _Node
    lane: int = 0

    @property
    def y0(self) -> float:
        return self.source.line_y(self.line)

    @property
    def y1(self) -> float:
        return self.target.port_y

    @property
    def span(self) -> tuple[float, float]:
        return (min(self.y0, self.y1), max(self.y0, self.y1))


# --- the cadence's arrows -----------------------------------------------------------------


def _below(cadence: Cadence, index: int) -> str:
    return cadence.steps[index + 1].id if index + 1 < len(cadence.steps) else END


def _flows(cadence: Cadence) -> list[tuple[int, list[Jump], str | None]]:
    """Per step: its jumps, and the label of its straight arrow down (None: no arrow)."""
    out: list[tuple[int, list[Jump], str | None]] = []
    for index, (step, edges) in enumerate(
        zip(cadence.steps, step_edges(cadence.steps), strict=True)
    ):
        below = _below(cadence, index)
        step_jumps: list[Jump] = []
        straight: str | None = None
        for edge in edges:
            if edge.via == "goto":
                assert isinstance(step, BranchStep) and edge.key is not None
                label = describe_condition(step.cases[int(edge.key[1])].when)
                step_jumps.append(Jump(step.id, edge.target, "goto", label))
            elif edge.target == below:
                straight = "otherwise" if edge.via == "default" else ""
            else:
                label = "otherwise" if edge.via == "default" else "next"
                step_jumps.append(Jump(step.id, edge.target, edge.via, label))
        out.append((index, step_jumps, straight))
    return out


def jumps(cadence: Cadence) -> list[Jump]:
    """The arrows of a cadence's picture that are routed in lanes, in drawing order.

    Every branch case is one (even to the step just below: its condition needs a label);
    a branch's ``default`` and a step's ``next`` are one unless they name the step below.

    Args:
        cadence: The cadence.

    Returns:
        The jumps, step by step in cadence order, cases before the default.
    """
    return [jump for _, step_jumps, _ in _flows(cadence) for jump in step_jumps]


# --- text ---------------------------------------------------------------------------------


def _width(text: str, size: float, bold: bool = False) -> float:
    """A generous estimate of the rendered width of ``text`` (DejaVu Sans, the widest of
    the usual sans-serif fonts; wide East Asian characters: 1 em)."""
    em = 0.0
    for ch in text:
        if unicodedata.east_asian_width(ch) in ("W", "F"):
            em += 1.0
        elif ch in "il.,:;'|!()[] ":
            em += 0.32
        elif ch.isdigit():
            em += 0.64
        elif ch.isupper() or ch in "mwMW@%":
            em += 0.72
        elif not ch.isascii():
            em += 0.84
        else:
            em += 0.58
    return em * size * (1.12 if bold else 1.03)


def _fit(text: str, size: float, room: float, bold: bool = False) -> str:
    """``text`` cut to ``room`` with an ellipsis when it is too wide."""
    if _width(text, size, bold) <= room:
        return text
    while text and _width(text + "…", size, bold) > room:
        text = text[:-1]
    return text.rstrip() + "…"


def _wrap(text: str, size: float, room: float, max_lines: int = MAX_WRAP_LINES) -> list[str]:
    """``text`` in lines no wider than ``room``, at spaces where possible; at most
    ``max_lines`` (the last one cut with an ellipsis)."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if _width(candidate, size) <= room:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        while _width(current, size) > room:  # one word wider than the line: split it
            cut = len(current)
            while cut > 1 and _width(current[:cut], size) > room:
                cut -= 1
            lines.append(current[:cut])
            current = current[cut:]
    if current or not lines:
        lines.append(current)
    if len(lines) > max_lines:
        rest = " ".join(lines[max_lines - 1 :])
        lines = lines[: max_lines - 1] + [_fit(rest + " …", size, room)]
    return lines


def _x(text: str) -> str:
    return escape(text, quote=True)


def _n(value: float) -> str:
    """A coordinate, the same way every time."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


# --- layout -------------------------------------------------------------------------------


def _step_lines(step: object) -> list[_Line]:
    """The detail lines of a step's box: what it sends, calls, waits for or why it exits."""
    details: list[tuple[str, bool]] = []  # (text, muted)
    if isinstance(step, EmailStep):
        details.append((f"template {step.template}", False))
    elif isinstance(step, CallStep):
        details.append((f"script {step.script}", False))
        timing = []
        if step.due:
            timing.append(f"due {step.due}")
        if step.wait_for_outcome:
            timing.append(f"waits {step.wait_for_outcome} for the outcome")
        if timing:
            details.append((" · ".join(timing), True))
    elif isinstance(step, WaitStep):
        details.append((f"wait {step.duration}", False))
        if step.until_any:
            details.append(("or until " + ", ".join(step.until_any), True))
    elif isinstance(step, ExitStep):
        details.append((f"exit: {step.reason}", False))
    room = BOX_W - 2 * PAD
    return [
        _Line(text, muted=muted)
        for detail, muted in details
        for text in _wrap(detail, TEXT_SIZE, room)
    ]


def _jump_lines(jump: Jump, number: int, first: bool) -> list[_Line]:
    """The rows of a jump inside its source box: the label, and where it goes."""
    target = f"→ {jump.target}"
    room = BOX_W - 2 * PAD - _width(target, TEXT_SIZE, bold=True) - 12
    if jump.kind == "goto":
        text = f"if {jump.label}"
    elif jump.kind == "default":
        text = "otherwise"
    else:
        text = "next"
    wrapped = _wrap(text, TEXT_SIZE, room)
    rule = jump.kind != "next" and not first
    lines = [_Line(wrapped[0], target=target, jump=number, rule=rule)]
    lines += [_Line(rest, indent=True) for rest in wrapped[1:]]
    return lines


@dataclass
class _Layout:
    nodes: list[_Node]  # one per step, in cadence order
    end: _Node | None  # drawn when something reaches end
    missing: list[_Node]  # targets that name no step
    routes: list[_Route]  # the jumps, placed
    straight: list[str | None]  # per step: the straight arrow's label, None for none


def _layout(cadence: Cadence) -> _Layout:
    """Place the boxes top to bottom and the jumps in their lanes."""
    nodes: list[_Node] = []
    routes_by_node: list[tuple[_Node, list[tuple[Jump, int]]]] = []
    straight: list[str | None] = []
    number = 0
    for index, step_jumps, down in _flows(cadence):
        step = cadence.steps[index]
        node = _Node(str(index), step.type, step.id, step.name, _step_lines(step))
        placed: list[tuple[Jump, int]] = []
        for k, jump in enumerate(step_jumps):
            placed.append((jump, len(node.lines)))
            node.lines += _jump_lines(jump, number, first=k == 0)
            number += 1
        if isinstance(step, BranchStep) and down is not None:
            # The otherwise that goes straight down is a row too, without a port.
            node.lines.append(
                _Line("otherwise", target=f"↓ {_below(cadence, index)}", rule=bool(step_jumps))
            )
        nodes.append(node)
        routes_by_node.append((node, placed))
        straight.append(down)

    first_index: dict[str, int] = {}
    for index, step in enumerate(cadence.steps):
        first_index.setdefault(step.id, index)
    all_jumps = [jump for _, placed in routes_by_node for jump, _ in placed]
    uses_end = any(jump.target == END for jump in all_jumps) or (
        bool(straight) and straight[-1] is not None
    )
    end = _Node(END, "end", END) if uses_end else None
    missing: dict[str, _Node] = {}
    for jump in all_jumps:
        if jump.target != END and jump.target not in first_index and jump.target not in missing:
            missing[jump.target] = _Node(f"missing:{jump.target}", "missing", jump.target)
            missing[jump.target].lines = [_Line("missing step: no step has this id", muted=True)]

    # Top to bottom: the start card, the steps, end, missing steps.
    y: float = MARGIN + START_H + GAP
    for node in [*nodes, *([end] if end else []), *missing.values()]:
        node.y = y
        if node.kind == "end":
            node.x = MARGIN + BOX_W / 2 - END_R
            node.h = 2 * END_R
        else:
            node.x = MARGIN
            body = node.line_top(len(node.lines)) - node.y
            node.h = body + (PAD / 2 if node.lines else 0)
        y += node.h + GAP

    def target_node(step_id: str) -> _Node:
        if step_id == END:
            assert end is not None
            return end
        if step_id in first_index:
            return nodes[first_index[step_id]]
        return missing[step_id]

    routes: list[_Route] = []
    counter = 0
    for node, placed in routes_by_node:
        for jump, line in placed:
            routes.append(_Route(jump, counter, node, line, target_node(jump.target)))
            counter += 1
    _assign_lanes(routes)
    return _Layout(nodes, end, list(missing.values()), routes, straight)


def _assign_lanes(routes: list[_Route]) -> None:
    """Give each jump a lane: never one that a jump overlapping it (in y) already uses, and
    outside every jump it spans, so short jumps run close to the boxes and long ones
    around them. Two jumps may share a lane where they only meet at a common target."""

    def clash(a: _Route, b: _Route) -> bool:
        (a0, a1), (b0, b1) = a.span, b.span
        if a.target is b.target and (a1 == b0 == a.y1 or b1 == a0 == a.y1):
            return False  # one arrives from above, the other from below: they merge
        return a0 <= b1 + 3 and b0 <= a1 + 3

    def inside(inner: _Route, outer: _Route) -> bool:
        (i0, i1), (o0, o1) = inner.span, outer.span
        return o0 <= i0 and i1 <= o1

    done: list[_Route] = []
    for route in sorted(routes, key=lambda r: (r.span[1] - r.span[0], r.span[0], r.number)):
        lane = 1 + max((other.lane for other in done if inside(other, route)), default=-1)
        while any(other.lane == lane and clash(other, route) for other in done):
            lane += 1
        route.lane = lane
        done.append(route)


# --- drawing ------------------------------------------------------------------------------


def _box_shape(node: _Node) -> str:
    fill, stroke = STYLES.get(node.kind, STYLES["missing"])
    x, y, w, h = node.x, node.y, BOX_W, node.h
    common = f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"'
    if node.kind == "branch":
        b = BEVEL
        points = [
            (x + b, y), (x + w - b, y), (x + w, y + b), (x + w, y + h - b),
            (x + w - b, y + h), (x + b, y + h), (x, y + h - b), (x, y + b),
        ]  # fmt: skip
        pts = " ".join(f"{_n(px)},{_n(py)}" for px, py in points)
        return f'<polygon points="{pts}" {common}/>'
    rect = f'x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}"'
    if node.kind == "call":
        return f'<rect {rect} rx="13" {common}/>'
    if node.kind == "wait":
        return f'<rect {rect} rx="4" {common} stroke-dasharray="6 3"/>'
    if node.kind == "exit":
        inner = f'x="{_n(x + 3)}" y="{_n(y + 3)}" width="{_n(w - 6)}" height="{_n(h - 6)}"'
        return (
            f'<rect {rect} rx="6" {common}/>'
            f'<rect {inner} rx="4" fill="none" stroke="{stroke}" stroke-width="1"/>'
        )
    if node.kind == "missing":
        return f'<rect {rect} rx="4" {common} stroke-dasharray="4 4"/>'
    return f'<rect {rect} rx="4" {common}/>'


def _draw_node(node: _Node, colours: dict[str, str]) -> str:
    if node.kind == "end":
        cx, cy = node.x + END_R, node.y + END_R
        return (
            f'<g class="end" data-step="{END}"><title>end: the cadence is over</title>'
            f'<circle cx="{_n(cx)}" cy="{_n(cy)}" r="{END_R}" fill="{FG}"/>'
            f'<circle cx="{_n(cx)}" cy="{_n(cy)}" r="{END_R - 3}" fill="none" stroke="#ffffff" '
            f'stroke-width="1"/>'
            f'<text x="{_n(cx)}" y="{_n(cy + 4)}" text-anchor="middle" fill="#ffffff" '
            f'font-size="{TEXT_SIZE}" font-weight="600">end</text></g>'
        )
    fill, stroke = STYLES.get(node.kind, STYLES["missing"])
    kind = "missing step" if node.kind == "missing" else node.kind
    parts = [
        f'<g class="{"step" if node.kind != "missing" else "missing"}" '
        f'data-step="{_x(node.step_id)}" data-type="{_x(node.kind)}">',
        f"<title>{_x(kind)} {_x(node.step_id)}{_x(' (' + node.name + ')') if node.name else ''}"
        "</title>",
        _box_shape(node),
    ]
    left = node.x + PAD + (14 if node.kind == "branch" else 0)
    header_y = node.y + HEADER_H / 2 + 5
    tag = kind.upper()
    tag_w = _width(tag, TAG_SIZE) + 4
    if node.kind == "branch":  # a small diamond before the id
        cx, cy = node.x + PAD + 5, node.y + HEADER_H / 2 + 1
        parts.append(
            f'<polygon points="{_n(cx)},{_n(cy - 6)} {_n(cx + 5)},{_n(cy)} {_n(cx)},{_n(cy + 6)} '
            f'{_n(cx - 5)},{_n(cy)}" fill="{stroke}"/>'
        )
    room = BOX_W - (left - node.x) - PAD - tag_w - 8
    title = _fit(node.step_id, HEADER_SIZE, room, bold=True)
    parts.append(
        f'<text x="{_n(left)}" y="{_n(header_y)}" font-size="{HEADER_SIZE}" font-weight="700" '
        f'fill="{FG}">{_x(title)}'
    )
    rest = room - _width(title, HEADER_SIZE, bold=True) - 8
    if node.name and rest > 30:
        parts.append(
            f'<tspan font-weight="400" fill="{MUTED}" dx="6">'
            f"{_x(_fit(node.name, HEADER_SIZE, rest))}</tspan>"
        )
    parts.append("</text>")
    parts.append(
        f'<text x="{_n(node.x + BOX_W - PAD)}" y="{_n(header_y - 1)}" text-anchor="end" '
        f'font-size="{TAG_SIZE}" letter-spacing="0.5" fill="{stroke}">{_x(tag)}</text>'
    )
    for index, line in enumerate(node.lines):
        mid = node.line_y(index)
        base = mid + 4
        if line.rule:
            top = node.line_top(index) + RULE_GAP / 2
            parts.append(
                f'<line x1="{_n(node.x + PAD)}" y1="{_n(top)}" x2="{_n(node.x + BOX_W - PAD)}" '
                f'y2="{_n(top)}" stroke="{stroke}" stroke-opacity="0.25" stroke-width="1"/>'
            )
        indent = 12 if line.indent else 0
        colour = MUTED if line.muted else FG
        parts.append(
            f'<text x="{_n(node.x + PAD + indent)}" y="{_n(base)}" font-size="{TEXT_SIZE}" '
            f'fill="{colour}">{_x(line.text)}</text>'
        )
        if line.target is not None:
            target_colour = colours.get(line.target, FLOW)
            parts.append(
                f'<text x="{_n(node.x + BOX_W - PAD)}" y="{_n(base)}" text-anchor="end" '
                f'font-size="{TEXT_SIZE}" font-weight="600" fill="{target_colour}">'
                f"{_x(line.target)}</text>"
            )
    parts.append("</g>")
    return "".join(parts)


def _arrow_down(x: float, y: float, colour: str) -> str:
    tip, back = f"{_n(x)},{_n(y)}", _n(y - ARROW)
    return f'<polygon points="{tip} {_n(x - 4)},{back} {_n(x + 4)},{back}" fill="{colour}"/>'


def _draw_straight(top: float, bottom: float, label: str, source: str, target: str) -> str:
    cx = MARGIN + BOX_W / 2
    title = f"{source} → {target}" + (f" ({label})" if label else "")
    parts = [
        f'<g class="flow" data-from="{_x(source)}" data-to="{_x(target)}">',
        f"<title>{_x(title)}</title>",
        f'<line x1="{_n(cx)}" y1="{_n(top)}" x2="{_n(cx)}" y2="{_n(bottom - ARROW)}" '
        f'stroke="{FLOW}" stroke-width="1.5"/>',
        _arrow_down(cx, bottom, FLOW),
    ]
    if label:
        parts.append(
            f'<text x="{_n(cx + 8)}" y="{_n((top + bottom) / 2 + 4)}" font-size="11" '
            f'font-style="italic" fill="{MUTED}">{_x(label)}</text>'
        )
    parts.append("</g>")
    return "".join(parts)


def _lane_x(lane: int) -> float:
    return MARGIN + BOX_W + LANE_START + lane * LANE_STEP


def _draw_jump(route: _Route, colour: str) -> str:
    x0, y0 = route.source.right, route.y0
    x1, y1 = route.target.right, route.y1
    lane = _lane_x(route.lane)
    down = 1 if y1 > y0 else -1
    r = min(CORNER, abs(y1 - y0) / 2, (lane - max(x0, x1)) / 2)
    d = (
        f"M{_n(x0)},{_n(y0)} H{_n(lane - r)} Q{_n(lane)},{_n(y0)} {_n(lane)},{_n(y0 + down * r)} "
        f"V{_n(y1 - down * r)} Q{_n(lane)},{_n(y1)} {_n(lane - r)},{_n(y1)} H{_n(x1 + ARROW)}"
    )
    jump = route.jump
    title = f"{jump.source} → {jump.target}: " + (
        f"if {jump.label}" if jump.kind == "goto" else jump.label
    )
    dash = ' stroke-dasharray="5 3"' if jump.kind == "default" else ""
    return (
        f'<g class="jump" data-from="{_x(jump.source)}" data-to="{_x(jump.target)}" '
        f'data-kind="{jump.kind}" data-label="{_x(jump.label)}" data-lane="{route.lane}">'
        f"<title>{_x(title)}</title>"
        # A white halo under the line: where two jumps cross, the later one visibly
        # passes over the earlier one.
        f'<path d="{d}" fill="none" stroke="#ffffff" stroke-width="4.5"/>'
        f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}/>'
        f'<circle cx="{_n(x0)}" cy="{_n(y0)}" r="2.6" fill="{colour}"/>'
        f'<polygon points="{_n(x1)},{_n(y1)} {_n(x1 + ARROW)},{_n(y1 - 4)} '
        f'{_n(x1 + ARROW)},{_n(y1 + 4)}" fill="{colour}"/></g>'
    )


def _draw_start(cadence: Cadence) -> str:
    x, y, w = MARGIN, MARGIN, BOX_W
    name = _fit(cadence.name, HEADER_SIZE, w - 2 * PAD, bold=True)
    stops = "stops early on " + ", ".join(cadence.exit_on) if cadence.exit_on else "start"
    return (
        f'<g class="start"><title>{_x(cadence.name)} ({_x(cadence.id)})</title>'
        f'<rect x="{x}" y="{y}" width="{w}" height="{START_H}" rx="{START_H / 2:g}" '
        f'fill="{FG}"/>'
        f'<text x="{_n(x + w / 2)}" y="{_n(y + 17)}" text-anchor="middle" '
        f'font-size="{HEADER_SIZE}" font-weight="700" fill="#ffffff">{_x(name)}</text>'
        f'<text x="{_n(x + w / 2)}" y="{_n(y + 32)}" text-anchor="middle" font-size="11" '
        f'fill="#d0d5dd">{_x(_fit(stops, 11, w - 2 * PAD))}</text></g>'
    )


def render_svg(cadence: Cadence) -> str:
    """Draw a cadence as a standalone SVG document (also fit to be inlined in HTML).

    Args:
        cadence: A cadence that passed the schema. Jumps to steps that do not exist are
            drawn to dashed "missing step" boxes rather than refused, so a cadence with
            problems can still be looked at.

    Returns:
        The ``<svg>`` element as text: the same text for the same cadence, every time.
    """
    layout = _layout(cadence)
    nodes, end, routes, straight = layout.nodes, layout.end, layout.routes, layout.straight
    targets: list[str] = []
    for route in routes:
        if route.jump.target not in targets:
            targets.append(route.jump.target)
    colours = {f"→ {target}": PALETTE[i % len(PALETTE)] for i, target in enumerate(targets)}
    route_colours = [colours[f"→ {route.jump.target}"] for route in routes]

    lanes = max((route.lane for route in routes), default=-1) + 1
    width = MARGIN + BOX_W + (LANE_START + (lanes - 1) * LANE_STEP + 8 if lanes else 0) + MARGIN
    drawn = [*nodes, *([end] if end else [])]
    missing_nodes = layout.missing
    last = (missing_nodes or drawn)[-1]
    height = last.y + last.h + MARGIN

    body: list[str] = [_draw_start(cadence)]
    body.append(_draw_straight(MARGIN + START_H, nodes[0].y, "", "start", cadence.steps[0].id))
    for index, node in enumerate(nodes):
        label = straight[index]
        if label is None:
            continue
        below = nodes[index + 1] if index + 1 < len(nodes) else end
        assert below is not None  # a straight arrow off the last step means end is drawn
        body.append(_draw_straight(node.y + node.h, below.y, label, node.step_id, below.step_id))
    for node in [*drawn, *missing_nodes]:
        body.append(_draw_node(node, colours))
    # Longest jumps first: shorter ones, in inner lanes, are drawn over them.
    order = sorted(range(len(routes)), key=lambda i: (-(routes[i].span[1] - routes[i].span[0]), i))
    for i in order:
        body.append(_draw_jump(routes[i], route_colours[i]))

    title = f"Cadence {cadence.name} ({cadence.id}): {len(cadence.steps)} steps"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="cadence-graph" role="img" '
        f'aria-label="{_x(title)}" viewBox="0 0 {_n(width)} {_n(height)}" '
        f'width="{_n(width)}" height="{_n(height)}" font-family="{FONT}" '
        f'data-cadence="{_x(cadence.id)}" data-version="{cadence.version}">'
        f"<title>{_x(title)}</title>{''.join(body)}</svg>\n"
    )
