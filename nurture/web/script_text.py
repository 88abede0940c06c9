"""A call script as readable text: hard-wrapped, column-aligned lines made into paragraphs.

Scripts are written for a terminal and an email (``tasks list``, the SDR's notification):
fixed-width columns, lines wrapped by hand at about 95 characters. In a narrow page column
those lines wrap a second time and the columns fall apart. Here a wrapped line is joined back
to the line it continues, a ``TERM   description`` line becomes a two-column row, and a
heading (capitals, or underlined with ``===``) becomes a heading. Everything is escaped.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_UNDERLINE = re.compile(r"^\s*[=\-]{3,}\s*$")
# A term and its description, apart by two or more spaces (``Phone:      +81 ...``).
_TERM = re.compile(r"^(\S.{0,38}?)\s{2,}(\S.*)$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _heading(line: str) -> bool:
    words = re.sub(r"\(.*?\)", "", line).strip().rstrip(":")
    return (
        bool(words)
        and _indent(line) == 0
        and words.upper() == words
        and any(c.isalpha() for c in words)
    )


def _logical_lines(block: list[str]) -> list[tuple[int, str]]:
    """The block's lines with hand-wrapped continuations joined to the line they continue."""
    lines: list[tuple[int, str]] = []
    for raw in block:
        indent, text = _indent(raw), raw.strip()
        if lines and not (lines[-1][0] == 0 and _heading(lines[-1][1])):
            prev_indent, prev = lines[-1]
            deeper = indent > prev_indent and not _TERM.match(text)
            prose = indent == prev_indent and text[:1].islower() and not _TERM.match(raw.strip())
            if deeper or prose:
                lines[-1] = (prev_indent, f"{prev} {text}")
                continue
        lines.append((indent, text))
    return lines


def script_html(script: str | None) -> Markup:
    """The script as HTML: headings, paragraphs and term rows, in reading order."""
    if not script or not script.strip():
        return Markup('<p class="muted">(no script)</p>')
    blocks: list[list[str]] = [[]]
    for line in script.replace("\t", "    ").splitlines():
        if not line.strip():
            blocks.append([])
        elif _UNDERLINE.match(line) and blocks[-1]:
            blocks[-1][-1] = "\0" + blocks[-1][-1]  # the line above is a title
        else:
            blocks[-1].append(line.rstrip())
    out: list[str] = []
    for block in filter(None, blocks):
        for indent, text in _logical_lines(block):
            if text.startswith("\0"):
                out.append(f"<h4>{escape(text[1:])}</h4>")
            elif indent == 0 and _heading(text):
                out.append(f"<h5>{escape(text)}</h5>")
            elif indent == 0 and (head := re.match(r"^([A-Z][A-Z ]{2,}):\s+(.*)$", text)):
                out.append(f"<p><strong>{escape(head[1])}:</strong> {escape(head[2])}</p>")
            elif term := _TERM.match(text):
                out.append(
                    f'<div class="term"><span>{escape(term[1])}</span>'
                    f"<span>{escape(term[2])}</span></div>"
                )
            else:
                out.append(f"<p{' class=indented' if indent else ''}>{escape(text)}</p>")
    return Markup('<div class="script">' + "".join(out) + "</div>")
