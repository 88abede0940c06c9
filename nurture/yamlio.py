"""Reading the files marketers edit: YAML 1.2, plain Python data, and a line for every place.

ruamel.yaml's round-trip loader reads YAML 1.2, so ``NO`` and ``09:00`` stay strings, and
it remembers where each mapping key and sequence item was written. We copy that position
into a flat ``path -> line`` table and hand pydantic plain ``dict``/``list``/``str``/``int``/
``bool`` data, so the models never see ruamel's types and an error location such as
``('steps', 3, 'branch', 'cases', 0, 'when')`` can be turned back into a line number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.scalarbool import ScalarBoolean

PathPart = str | int
DataPath = tuple[PathPart, ...]


class _Constructor(RoundTripConstructor):
    """The round-trip constructor, minus YAML 1.1 timestamps.

    YAML 1.2's core schema has no timestamp type, yet ruamel still turns ``2026-12-25`` into
    a ``date`` and crashes (without a line) on ``2026-13-01``. Holidays are written as ISO
    date strings and checked by the loader, so a date-looking scalar stays a plain string.
    Subclassing keeps this change out of every other ruamel user in the process.
    """


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_str)


class YamlSyntaxError(Exception):
    """A file that is not valid YAML, with the 1-based line of the problem."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass
class YamlDocument:
    """One parsed file: plain data plus the line where each key or item was written."""

    data: Any
    lines: dict[DataPath, int] = field(default_factory=dict)

    def line_of(self, path: Iterable[PathPart]) -> int:
        """The line of ``path``, or of the nearest enclosing place that was written.

        A missing key has no line of its own, so it is reported where its parent starts.
        """
        parts = tuple(path)
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            parts = parts[:-1]
        return self.lines.get((), 1)

    def line_for_error(self, loc: Iterable[Any]) -> int:
        """The nearest line for a pydantic error location.

        Pydantic puts labels into locations that are not in the data (union tags such as
        ``'email'``, ``'[key]'``); they are skipped by following only the parts that name a
        key or an index that the data really has. Use :func:`data_path` when the types are
        known: it tells a tag from a key of the same name.
        """
        return self.line_of(follow_data(self.data, loc))


def follow_data(data: Any, loc: Iterable[Any]) -> DataPath:
    """The longest path into ``data`` made of the parts of ``loc`` that exist there."""
    path: list[PathPart] = []
    node = data
    for part in loc:
        in_mapping = isinstance(node, dict) and isinstance(part, Hashable) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_mapping or in_list:
            node = node[part]
            path.append(part)
    return tuple(path)


def load_yaml(text: str) -> YamlDocument:
    """Parse YAML 1.2 text into plain data with line numbers.

    Args:
        text: the file's content.

    Returns:
        The document; its ``data`` is ``None`` for an empty file.

    Raises:
        YamlSyntaxError: with the line and a readable reason (duplicate keys included).
    """
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    yaml.allow_duplicate_keys = False
    try:
        raw = yaml.load(text)
    except MarkedYAMLError as exc:
        raise YamlSyntaxError(*_describe_yaml_error(exc)) from None
    except Exception as exc:  # ruamel raises plain errors (no mark) for some odd scalars
        raise YamlSyntaxError(1, f"cannot read this YAML: {exc}") from None
    lines: dict[DataPath, int] = {}
    line = getattr(getattr(raw, "lc", None), "line", None)
    lines[()] = line + 1 if isinstance(line, int) else 1
    data = _plain(raw, (), lines)
    return YamlDocument(data=data, lines=lines)


def read_yaml(path: Path) -> YamlDocument:
    """Read and parse a YAML file (UTF-8); see :func:`load_yaml`.

    Raises:
        YamlSyntaxError: for invalid YAML or a file that is not UTF-8 text.
        OSError: when the file cannot be read.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise YamlSyntaxError(1, f"not UTF-8 text ({exc.reason}): save the file as UTF-8") from None
    return load_yaml(text)


def _plain(node: Any, path: DataPath, lines: dict[DataPath, int]) -> Any:
    """Copy ruamel's node into plain Python types, recording the line of every key and item."""
    if isinstance(node, CommentedMap):
        out: dict[Any, Any] = {}
        for key, value in node.items():
            plain_key = _scalar(key) if isinstance(key, Hashable) else str(key)
            child = (*path, plain_key)
            pos = _position(node.lc.key, key)
            if pos is not None:
                lines[child] = pos
            out[plain_key] = _plain(value, child, lines)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            child = (*path, index)
            pos = _position(node.lc.item, index)
            if pos is not None:
                lines[child] = pos
            items.append(_plain(value, child, lines))
        return items
    if isinstance(node, dict):  # merged or otherwise plain mappings: no positions known
        return {_scalar(k): _plain(v, (*path, _scalar(k)), lines) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_plain(v, (*path, i), lines) for i, v in enumerate(node)]
    return _scalar(node)


def _position(getter: Callable[[Any], Any], key: Any) -> int | None:
    # Keys that came in through a merge (`<<: *anchor`) have no position of their own.
    try:
        line, _column = getter(key)
    except (KeyError, IndexError, TypeError):
        return None
    return line + 1 if isinstance(line, int) else None


def _scalar(value: Any) -> Any:
    """ruamel's scalar subclasses (ScalarString, ScalarInt, ScalarFloat...) as builtins."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, bool | ScalarBoolean):  # ScalarBoolean is an int subclass
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


_DUPLICATE_RE = re.compile(r'found duplicate key "(?P<key>[^"]*)"')


def _describe_yaml_error(exc: MarkedYAMLError) -> tuple[int, str]:
    """A 1-based line and a message for a ruamel error, with a hint for the usual causes."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    problem = (exc.problem or exc.context or "invalid YAML").strip()
    duplicate = _DUPLICATE_RE.search(problem)
    if duplicate:
        first = exc.context_mark.line + 1 if exc.context_mark is not None else None
        where = f" (this mapping starts at line {first})" if first else ""
        return line, (f"duplicate key '{duplicate.group('key')}'{where}: keep one of them")
    hint = ""
    if "'\\t'" in problem:
        hint = ": indent with spaces, not tabs"
    elif "mapping values are not allowed" in problem:
        hint = ": a value containing ': ' must be quoted, or a key is indented wrongly"
    elif problem.startswith("expected") or "could not find expected" in problem:
        hint = ": check the indentation and the brackets or quotes around this line"
    context = ""
    if exc.context and exc.problem and exc.context_mark is not None:
        context = f" ({exc.context.strip()} from line {exc.context_mark.line + 1})"
    return line, f"YAML syntax: {problem}{context}{hint}"
