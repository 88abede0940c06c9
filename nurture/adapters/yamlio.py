"""Reading the files marketers edit: YAML 1.2, plain Python data, and a line for every place.

ruamel.yaml's round-trip loader reads YAML 1.2, so ``NO`` and ``09:00`` stay strings, and
it remembers where each mapping key and sequence item was written. We copy that position
into a flat ``path -> line`` table and hand pydantic plain ``dict``/``list``/``str``/``int``/
``bool`` data, so the models never see ruamel's types and an error location such as
``('steps', 3, 'branch', 'cases', 0, 'when')`` can be turned back into a line number.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, Tag
from pydantic.fields import FieldInfo
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

    def line_for_error(self, loc: Iterable[Any], model: type[BaseModel] | None = None) -> int:
        """The nearest line for a pydantic error location.

        Args:
            loc: the error's ``loc``, e.g. ``('steps', 3, 'branch', 'cases', 0, 'when')``.
            model: the model that was validated. With it, union tags in ``loc`` are told
                apart from keys exactly (see :func:`resolve_location`); without it, parts
                that the data does not have are skipped, which is right nearly always.
        """
        if model is not None:
            return self.line_of(resolve_location(model, tuple(loc)).data_path)
        return self.line_of(follow_data(self.data, loc))


def follow_data(data: Any, loc: Iterable[Any]) -> DataPath:
    """The longest path into ``data`` made of the parts of ``loc`` that exist there.

    A part is taken as a label, not a key, when the next part is a key of the same mapping:
    in ``(..., 'when', 'field', 'at_least')`` the tag ``field`` is followed by a sibling key.
    """
    parts = list(loc)
    path: list[PathPart] = []
    node = data
    for i, part in enumerate(parts):
        following = parts[i + 1] if i + 1 < len(parts) else None
        if (
            isinstance(node, dict)
            and following is not None
            and following != part
            and isinstance(following, Hashable)
            and following in node
        ):
            continue
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


# --- pydantic error locations ------------------------------------------------------------


@dataclass
class ResolvedLocation:
    """A pydantic error location split into the data path and what the types say there."""

    data_path: list[Any] = field(default_factory=list)
    parent_model: type[BaseModel] | None = None  # the model owning the last key
    annotation: Any = Any
    union_path: DataPath | None = None  # where a (non-tagged) union was met
    union_member: Any = None  # the member this error belongs to
    union_members: tuple[Any, ...] = ()
    bad_key: bool = False  # the error is about a mapping's key ('[key]'), not its value


def _unwrap(tp: Any) -> Any:
    """Strip ``Annotated`` and ``Optional`` wrappers down to the type that validates."""
    while True:
        if get_origin(tp) is typing.Annotated:
            tp = get_args(tp)[0]
            continue
        if _is_union(tp):
            members = [m for m in get_args(tp) if m is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (typing.Union, types.UnionType)


def _member_for(tp: Any, label: Any) -> tuple[Any, bool]:
    """Which member of a union an error-location label names, and if it was a tag.

    Tagged unions put the tag (``'email'``, ``'event'``) into error locations; plain
    unions put a member label (``'RecycleRule'``, ``"literal['never']"``).
    """
    for member in get_args(tp):
        if member is type(None):
            continue
        tags = [m.tag for m in get_args(member)[1:] if isinstance(m, Tag)]
        if get_origin(member) is typing.Annotated and label in tags:
            return get_args(member)[0], True
        inner = _unwrap(member)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            type_field = inner.model_fields.get("type")
            if type_field is not None and label in get_args(type_field.annotation):
                return inner, True
            if inner.__name__ == label:
                return inner, False
        if get_origin(inner) is Literal and str(label).startswith("literal["):
            return inner, False
        if isinstance(inner, type) and inner.__name__ == label:
            return inner, False
    return Any, False


def field_for(model: type[BaseModel], key: Any) -> FieldInfo | None:
    """The field of ``model`` written as ``key`` in a file (its alias, else its name)."""
    for name, info in model.model_fields.items():
        if (info.alias or name) == key:
            return info
    return None


def resolve_location(root: type[BaseModel], loc: tuple[Any, ...]) -> ResolvedLocation:
    """Split a pydantic error location into the data path and what the types say there.

    Tagged unions put their tag into locations (``'branch'``, ``'field'``), and a tag can
    have the same name as a key of the data (a field condition has a ``field`` key); only
    the types tell them apart, so this walks the model's annotations alongside the location.

    Args:
        root: the model that was validated (``Cadence``, ``Playbook``).
        loc: the error's ``loc``.
    """
    out = ResolvedLocation()
    tp: Any = root
    for part in loc:
        if part == "[key]":  # the mapping key itself is wrong, not its value
            out.bad_key = True
            continue
        tp = _unwrap(tp)
        if _is_union(tp):
            member, tagged = _member_for(tp, part)
            if not tagged:
                out.union_path = tuple(out.data_path)
                out.union_member = member
                out.union_members = tuple(_unwrap(m) for m in get_args(tp))
            tp = member
            continue
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            out.parent_model = tp
            out.data_path.append(part)
            info = field_for(tp, part)
            tp = info.annotation if info is not None else Any
            continue
        origin = get_origin(tp)
        if origin in (list, tuple, Sequence) and isinstance(part, int):
            out.data_path.append(part)
            tp = get_args(tp)[0] if get_args(tp) else Any
            continue
        if origin is dict:
            out.data_path.append(part)
            tp = get_args(tp)[1] if get_args(tp) else Any
            continue
        out.data_path.append(part)
        tp = Any
    out.annotation = _unwrap(tp)
    return out


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
