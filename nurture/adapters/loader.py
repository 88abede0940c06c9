"""Loading and validating the files marketers edit: the playbook, the cadences, the templates.

Every problem is collected and reported at once, as ``<file>:<line>: <where>: <message>``
(CONTRACT.md, "Files marketers edit"), with a way to fix it; nothing here ends in a
traceback. Three kinds of checks run on each file:

1. YAML syntax (ruamel, YAML 1.2, with lines: :mod:`nurture.adapters.yamlio`);
2. the pydantic models of :mod:`nurture.domain.cadence`, whose errors are rewritten for humans;
   the models also hold the rules across fields (jumps, reachability, spinning loops,
   grades, send window: validated with the ``authoring`` context), whose errors arrive
   with the data path of what is wrong and are only placed on their line here;
3. what only the set of files can say: routing to cadences that are not in the set, two
   files with one id, a cadence no routing rule uses (a warning), and templates.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from nurture.adapters.yamlio import (
    DataPath,
    ResolvedLocation,
    YamlDocument,
    YamlSyntaxError,
    field_for,
    read_yaml,
    resolve_location,
)
from nurture.domain.cadence import (
    CONDITION_KEYS,
    RULE_ERROR,
    STEP_TYPES,
    WEEKDAYS,
    AllCondition,
    AnyCondition,
    BranchStep,
    Cadence,
    CadenceSet,
    CallOutcomeCondition,
    Condition,
    Edge,
    EmailStep,
    Grading,
    Playbook,
)
from nurture.domain.events import CALL_OUTCOMES, EVENT_TYPES
from nurture.domain.rendering import Renderer
from nurture.domain.vocabulary import NO_CALL_OUTCOME

PLAYBOOK_FILE = "playbook.yaml"
PLAYBOOK_NAMES = (PLAYBOOK_FILE, "playbook.yml")
DEFAULT_BANDS: tuple[str, ...] = tuple(Grading().bands)


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in a file, with where it is and how to fix it."""

    file: str
    line: int
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.where}: {self.message}"


class CadenceSetInvalid(Exception):
    """The cadence set has problems; ``problems`` lists every one, ``str()`` prints them."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = sorted(problems)
        count = len(self.problems)
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} in the cadences:\n"
            + "\n".join(str(p) for p in self.problems)
        )


@dataclass
class ValidationReport:
    """What a validation run found: the problems, and what was read without problems."""

    problems: list[Problem] = field(default_factory=list)
    # Worth a look, but the set still works (exit 0): a cadence no lead can enter.
    warnings: list[Problem] = field(default_factory=list)
    playbook: Playbook | None = None
    cadences: dict[str, Cadence] = field(default_factory=dict)
    cadence_files: int = 0
    playbook_files: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


# --- public API ---------------------------------------------------------------------------


def load_cadence_set(cadences_dir: Path, templates_dir: Path | None = None) -> CadenceSet:
    """Load and validate a cadences folder: its ``playbook.yaml`` and every other ``*.yaml``.

    Args:
        cadences_dir: the folder (``cadences/``, or ``examples/demo/`` for the demo set).
        templates_dir: when given, every template and call script the cadences name is
            checked too (rendered against sample leads).

    Returns:
        The validated playbook and cadences, keyed by cadence id.

    Raises:
        CadenceSetInvalid: listing every problem found.
    """
    report = validate_report([Path(cadences_dir)], templates_dir)
    if report.problems:
        raise CadenceSetInvalid(report.problems)
    assert report.playbook is not None  # a folder without a playbook is a problem above
    return CadenceSet(playbook=report.playbook, cadences=report.cadences)


def load_cadence(path: Path) -> Cadence:
    """Load and validate one cadence file on its own (no playbook, no templates).

    Raises:
        CadenceSetInvalid: listing every problem found in the file.
    """
    report = validate_report([Path(path)], None)
    if not report.problems and not report.cadences:
        report.problems = [Problem(os.fspath(path), 1, "cadence", "not a cadence file")]
    if report.problems:
        raise CadenceSetInvalid(report.problems)
    return next(iter(report.cadences.values()))


def validate_paths(paths: list[Path], templates_dir: Path | None) -> list[Problem]:
    """Validate files and folders, as ``cadences validate`` does.

    Args:
        paths: cadence files, playbook files (named ``playbook.yaml``) and folders; a folder
            means its ``playbook.yaml`` plus every other ``*.yaml`` in it as a cadence.
        templates_dir: where ``email/`` and ``call/`` templates are; ``None`` skips them.

    Returns:
        Every problem found, sorted by file and line; empty when all is well.
    """
    return validate_report(paths, templates_dir).problems


def validate_report(paths: Sequence[Path], templates_dir: Path | None) -> ValidationReport:
    """Like :func:`validate_paths`, also returning what was read (for summaries)."""
    run = _Run(templates_dir)
    run.collect(paths)
    run.check()
    report = run.report
    report.problems = sorted(set(report.problems))
    report.warnings = sorted(set(report.warnings))
    return report


# --- one run --------------------------------------------------------------------------------


@dataclass
class _CadenceFile:
    path: Path
    doc: YamlDocument | None = None
    model: Cadence | None = None

    @property
    def file(self) -> str:
        return os.fspath(self.path)

    @property
    def cadence_id(self) -> str | None:
        data = self.doc.data if self.doc else None
        value = data.get("id") if isinstance(data, dict) else None
        return value if isinstance(value, str) else None


@dataclass
class _PlaybookFile:
    path: Path
    doc: YamlDocument | None = None
    model: Playbook | None = None
    # Cadence ids this playbook may name even if their files were not passed in.
    sibling_ids: set[str] = field(default_factory=set)

    @property
    def file(self) -> str:
        return os.fspath(self.path)


class _Run:
    """One validation run over some files: collects problems, keeps what is valid."""

    def __init__(self, templates_dir: Path | None) -> None:
        self.report = ValidationReport()
        self.renderer = Renderer(Path(templates_dir)) if templates_dir is not None else None
        self.templates_dir = templates_dir
        self.cadence_files: list[_CadenceFile] = []
        self.playbooks: list[_PlaybookFile] = []
        self._template_checks: dict[tuple[str, str], list[str]] = {}

    def problem(self, file: str, line: int, where: str, message: str) -> None:
        self.report.problems.append(Problem(file, line, where, message))

    # --- which files ---------------------------------------------------------------------

    def collect(self, paths: Sequence[Path]) -> None:
        seen: set[Path] = set()

        def add(path: Path, *, from_folder: bool) -> None:
            key = path.resolve()
            if key in seen:
                return
            seen.add(key)
            if path.name in PLAYBOOK_NAMES:
                playbook = _PlaybookFile(path)
                if not from_folder:
                    # A playbook checked on its own may still name the cadences beside it.
                    playbook.sibling_ids = {
                        p.stem for p in _yaml_files(path.parent) if p.name != path.name
                    }
                self.playbooks.append(playbook)
            else:
                self.cadence_files.append(_CadenceFile(path))

        for path in paths:
            path = Path(path)
            if path.is_dir():
                if not any((path / name).is_file() for name in PLAYBOOK_NAMES):
                    self.problem(
                        os.fspath(path / PLAYBOOK_FILE),
                        1,
                        "playbook",
                        "missing: a cadences folder needs a playbook.yaml (scoring, grading, "
                        "thresholds, routing, limits, team, sender)",
                    )
                for child in _yaml_files(path):
                    add(child, from_folder=True)
            elif path.is_file():
                add(path, from_folder=False)
            else:
                self.problem(os.fspath(path), 1, "file", "no such file or folder: check the path")
        self.report.cadence_files = len(self.cadence_files)
        self.report.playbook_files = len(self.playbooks)

    # --- the checks ----------------------------------------------------------------------

    def check(self) -> None:
        for playbook in self.playbooks:
            playbook.doc = self._read(playbook.file, playbook.path, "playbook")
            if playbook.doc is not None:
                playbook.model = self._validate_playbook(playbook)
        bands = self._bands()
        for cadence in self.cadence_files:
            cadence.doc = self._read(cadence.file, cadence.path, "cadence")
            if cadence.doc is not None:
                cadence.model = self._validate_cadence(cadence, bands)
        self._check_cadence_ids()
        for playbook in self.playbooks:
            if playbook.doc is not None:
                self._check_routing(playbook)
            if playbook.model is not None:
                self._check_used(playbook, playbook.model)
                self._check_alerts(playbook, playbook.model)
        for cadence in self.cadence_files:
            if cadence.model is not None and self.templates_dir is not None:
                self._check_call_claims(cadence, cadence.model)
        if len(self.playbooks) == 1 and self.playbooks[0].model is not None:
            self.report.playbook = self.playbooks[0].model
        for cadence in self.cadence_files:
            if cadence.model is not None:
                self.report.cadences.setdefault(cadence.model.id, cadence.model)

    def _read(self, file: str, path: Path, where: str) -> YamlDocument | None:
        try:
            doc = read_yaml(path)
        except YamlSyntaxError as exc:
            self.problem(file, exc.line, where, exc.message)
            return None
        except OSError as exc:
            self.problem(file, 1, where, f"cannot read the file: {exc.strerror or exc}")
            return None
        if not isinstance(doc.data, dict):
            needs = "id, name and steps" if where == "cadence" else "thresholds, routing, sender"
            got = "the file is empty" if doc.data is None else f"got {_describe(doc.data)}"
            self.problem(file, doc.line_of(()), where, f"{got}: expected a mapping with {needs}")
            return None
        return doc

    def _bands(self) -> set[str] | None:
        """The grades the playbook defines, for checking grade names (None: no playbook)."""
        if len(self.playbooks) != 1:
            return None
        doc = self.playbooks[0].doc
        if doc is None:
            return None
        grading = doc.data.get("grading")
        bands = grading.get("bands") if isinstance(grading, dict) else None
        if isinstance(bands, dict):
            return {str(k) for k in bands}
        return set(DEFAULT_BANDS)

    # --- cadences ------------------------------------------------------------------------

    def _validate_cadence(self, cf: _CadenceFile, bands: set[str] | None) -> Cadence | None:
        doc = cf.doc
        assert doc is not None
        data: dict[str, Any] = doc.data
        model: Cadence | None = None
        try:
            model = Cadence.model_validate(data, context={"authoring": True, "bands": bands})
        except ValidationError as exc:
            with contextlib.suppress(ValidationError):
                # The schema alone: a cadence whose only problems are in how its steps hold
                # together can still be drawn (with its bad jumps shown) while it is fixed.
                model = Cadence.model_validate(data)
            for error in _humane_errors(Cadence, exc, doc.data):
                where, prefix = _cadence_where(data, error.path)
                line = doc.line_of(error.line_path)
                # A rule's message names what it is about; a field error needs its field.
                named = prefix and error.kind != RULE_ERROR
                message = f"{prefix}: {error.message}" if named else error.message
                self.problem(cf.file, line, where, message)
        cadence_id = data.get("id")
        if isinstance(cadence_id, str) and cadence_id != cf.path.stem:
            self.problem(
                cf.file,
                doc.line_of(("id",)),
                "cadence",
                f"id '{cadence_id}' does not match the file name '{cf.path.name}': rename the "
                f"file to {cadence_id}{cf.path.suffix} or set id: {cf.path.stem}",
            )
        if self.renderer is not None:
            for line_path, where, message in self._template_problems(_steps_of(data)):
                self.problem(cf.file, doc.line_of(line_path), where, message)
        return model

    def _template_problems(self, steps: list[_Step]) -> Iterator[tuple[DataPath, str, str]]:
        assert self.renderer is not None
        for step in steps:
            if step.type == "email":
                kind: Literal["email", "call"] = "email"
                key = "template"
            elif step.type == "call":
                kind, key = "call", "script"
            else:
                continue
            name = step.raw.get(key)
            if not isinstance(name, str) or not name.strip():
                continue  # the schema check reports it
            path = (*step.path, key)
            if not self.renderer.exists(kind, name):
                expected = os.fspath(Path(self.templates_dir or ".") / kind / f"{name}.j2")
                suggestion = _did_you_mean(name, self.renderer.names(kind))
                noun = "template" if kind == "email" else "call script"
                message = f"{noun} '{name}' not found: create {expected}{suggestion}"
                yield path, step.where, message
                continue
            if (kind, name) not in self._template_checks:
                self._template_checks[(kind, name)] = self.renderer.check(kind, name)
            for message in self._template_checks[(kind, name)]:
                yield path, step.where, f"{key} '{name}': {message}"

    def _check_cadence_ids(self) -> None:
        first: dict[str, _CadenceFile] = {}
        for cf in sorted(self.cadence_files, key=lambda c: c.file):
            cadence_id = cf.cadence_id
            if cadence_id is None:
                continue
            if cadence_id in first:
                assert cf.doc is not None
                self.problem(
                    cf.file,
                    cf.doc.line_of(("id",)),
                    "cadence",
                    f"cadence id '{cadence_id}' is also used by {first[cadence_id].file}: "
                    "each cadence needs its own id (and file)",
                )
            else:
                first[cadence_id] = cf

    # --- the playbook --------------------------------------------------------------------

    def _validate_playbook(self, pf: _PlaybookFile) -> Playbook | None:
        doc = pf.doc
        assert doc is not None
        model: Playbook | None = None
        try:
            model = Playbook.model_validate(doc.data)
        except ValidationError as exc:
            for error in _humane_errors(Playbook, exc, doc.data):
                self.problem(
                    pf.file, doc.line_of(error.line_path), _dotted(error.path), error.message
                )
        return model

    def _check_routing(self, pf: _PlaybookFile) -> None:
        """Routing names cadences: each must be in the set being validated."""
        doc = pf.doc
        assert doc is not None
        known = set(pf.sibling_ids)
        folder = pf.path.parent.resolve()
        for cf in self.cadence_files:
            if cf.path.parent.resolve() == folder:
                # A file that could not be read still stands for its cadence: its own
                # problem is reported, routing to it should not be as well.
                known.add(cf.cadence_id or cf.path.stem)
        routing = doc.data.get("routing")
        if not isinstance(routing, dict):
            return
        named: list[tuple[DataPath, str]] = []
        entry = routing.get("entry")
        if isinstance(entry, list):
            for i, rule in enumerate(entry):
                if isinstance(rule, dict) and isinstance(rule.get("cadence"), str):
                    named.append((("routing", "entry", i, "cadence"), rule["cadence"]))
        if isinstance(routing.get("mql_cadence"), str):
            named.append((("routing", "mql_cadence"), routing["mql_cadence"]))
        recycle = routing.get("recycle")
        if isinstance(recycle, dict):
            for reason, rule in recycle.items():
                if isinstance(rule, dict) and isinstance(rule.get("cadence"), str):
                    named.append((("routing", "recycle", reason, "cadence"), rule["cadence"]))
        choices = sorted(known)
        for path, cadence_id in named:
            if cadence_id in known:
                continue
            suggestion = _did_you_mean(cadence_id, choices)
            existing = (
                f"name one of {', '.join(choices)}"
                if choices and not suggestion
                else "name an existing cadence"
            )
            self.problem(
                pf.file,
                doc.line_of(path),
                _dotted(path),
                f"cadence '{cadence_id}' is not in the set{suggestion}: {existing} or add "
                f"{pf.path.parent / cadence_id}.yaml",
            )

    def _check_used(self, pf: _PlaybookFile, playbook: Playbook) -> None:
        """A cadence beside the playbook that routing never names: no lead can enter it."""
        used = playbook.routing.roles()
        folder = pf.path.parent.resolve()
        for cf in self.cadence_files:
            cadence_id = cf.cadence_id
            if cf.doc is None or cadence_id is None or cf.path.parent.resolve() != folder:
                continue
            if cadence_id not in used:
                self.report.warnings.append(
                    Problem(
                        cf.file,
                        cf.doc.line_of(("id",)),
                        "cadence",
                        f"warning: no routing rule uses '{cadence_id}' (routing.entry, "
                        "routing.mql_cadence, routing.recycle), so no lead ever enters it: "
                        "route to it or remove the file",
                    )
                )

    def _check_call_claims(self, cf: _CadenceFile, cadence: Cadence) -> None:
        """An email that speaks of a call ("I tried to call you") reachable with no call
        outcome recorded: the SDR may never have called, and the email would say they did."""
        if cf.doc is None or not cadence.steps:
            return
        edges = cadence.edges()
        steps = {step.id: step for step in cadence.steps}
        # The steps a lead can reach without passing a case that needs a call's outcome.
        seen, todo = {cadence.steps[0].id}, [cadence.steps[0].id]
        came_from: dict[str, str] = {}
        while todo:
            here = todo.pop()
            step = steps[here]
            for edge in edges.get(here, []):
                if edge.target not in steps or edge.target in seen:
                    continue
                if isinstance(step, BranchStep) and not _without_outcome(step, edge):
                    continue
                seen.add(edge.target)
                came_from[edge.target] = here
                todo.append(edge.target)
        for index, step in enumerate(cadence.steps):
            if not isinstance(step, EmailStep) or step.id not in seen:
                continue
            claim = self._call_claim(step.template)
            if claim is None:
                continue
            before = came_from.get(step.id)
            path = f" (from step '{before}')" if before else " (it is the first step)"
            self.report.warnings.append(
                Problem(
                    cf.file,
                    cf.doc.line_of(("steps", index)),
                    f"step '{step.id}'",
                    f"warning: template '{step.template}' speaks of a call (\"{claim}\"), but a "
                    f"lead can reach it with no call outcome recorded{path}: send it only "
                    "after a branch case such as {call_outcome: [no_answer, voicemail]}, or "
                    "reword it",
                )
            )

    def _call_claim(self, template: str) -> str | None:
        """The words of an email template that say a call happened, if any."""
        path = Path(self.templates_dir or ".") / "email" / f"{template}.j2"
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None  # a missing template is reported as its own problem
        found = CALL_CLAIM.search(text)
        return " ".join(found.group(0).split()) if found else None

    def _check_alerts(self, pf: _PlaybookFile, playbook: Playbook) -> None:
        """Alerts that would reach nobody: no ``team.ops``, or escalations to a manager an
        SDR does not have."""
        if pf.doc is None:
            return
        team = playbook.team
        if not team.ops:
            self.report.warnings.append(
                Problem(
                    pf.file,
                    pf.doc.line_of(("team",)),
                    "team.ops",
                    "warning: no ops people with an address (team.ops), so alerts (sales "
                    "follow-up overdue, escalations, sends whose fate is unknown) reach only "
                    "the lead's owner, and nobody for a lead without one",
                )
            )
        escalation = team.escalation
        if escalation is not None and escalation.to == "manager":
            alone = [s.id for s in team.sdrs if team.manager_of(s.id) is None]
            if alone:
                self.report.warnings.append(
                    Problem(
                        pf.file,
                        pf.doc.line_of(("team", "escalation", "to")),
                        "team.escalation.to",
                        f"warning: escalations go to the manager, and {', '.join(alone)} "
                        "has none (team.sdrs[].manager): their overdue tasks go to ops",
                    )
                )


# Words that say a call took place ("tried to call", "spoke", "our call", "voicemail"), not
# an invitation to one ("book a call").
CALL_CLAIM = re.compile(
    r"\b(tried (to )?(call|phone|reach you by phone)\w*|tried calling|called you|"
    r"(spoke|spoken|talked) (to|with)|(our|my|the) (phone )?(call|conversation) (earlier|today|"
    r"yesterday|last)|voicemail|left (you )?a (message|voicemail))\b",
    re.IGNORECASE,
)


def needs_call_outcome(condition: Condition) -> bool:
    """Whether ``condition`` can only hold once a call's outcome is recorded."""
    if isinstance(condition, CallOutcomeCondition):
        return "none" not in condition.call_outcome
    if isinstance(condition, AllCondition):
        return any(needs_call_outcome(c) for c in condition.all)
    if isinstance(condition, AnyCondition):
        return all(needs_call_outcome(c) for c in condition.any)
    return False


def _without_outcome(branch: BranchStep, edge: Edge) -> bool:
    """Whether a lead with no call outcome recorded can leave ``branch`` by ``edge``.

    Cases are tried in order: once a case catches ``call_outcome: [none]``, no later case
    and not the default sees a lead without an outcome.
    """
    for j, case in enumerate(branch.cases):
        if edge.via == "goto" and edge.key is not None and edge.key[1] == j:
            return not needs_call_outcome(case.when)
        if (
            isinstance(case.when, CallOutcomeCondition)
            and NO_CALL_OUTCOME in case.when.call_outcome
        ):
            return False
    return True


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


# --- what pydantic says, for humans ------------------------------------------------------------


@dataclass(frozen=True)
class _Error:
    path: DataPath  # where the problem is (a missing or unknown key: its parent)
    line_path: DataPath  # where to point (the key itself when it is written)
    message: str
    kind: str = ""  # pydantic's error type, where it matters after the fact


def _value_at(data: Any, path: Sequence[Any]) -> Any:
    node = data
    for part in path:
        in_mapping = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_mapping or in_list):
            return None
        node = node[part]
    return node


def _humane_errors(root: type[BaseModel], exc: ValidationError, data: Any) -> list[_Error]:
    """Turn pydantic's errors into one readable message each (unions: one per value)."""
    out: list[_Error] = []
    union_groups: dict[DataPath, list[tuple[ErrorDetails, ResolvedLocation]]] = {}
    for error in exc.errors():
        if error["type"] == RULE_ERROR:  # the models' own rules: already a data path
            loc = tuple(error["loc"])
            out.append(_Error(loc, loc, error["msg"], RULE_ERROR))
            continue
        resolved = resolve_location(root, tuple(error["loc"]))
        if resolved.union_path is not None:
            union_groups.setdefault(resolved.union_path, []).append((error, resolved))
            continue
        out.append(_one_error(error, resolved, data))
    out = _drop_misspelt_missing(out)
    for union_path, group in union_groups.items():
        value = _value_at(data, union_path)
        models = [
            (e, r)
            for e, r in group
            if isinstance(r.union_member, type) and issubclass(r.union_member, BaseModel)
        ]
        if isinstance(value, dict) and models:
            # A mapping was meant as the model: its errors are the useful ones.
            out.extend(_one_error(e, r, data) for e, r in models)
            continue
        members = sorted(group[0][1].union_members, key=lambda m: get_origin(m) is not Literal)
        choices = ", or ".join(_describe_type(m) for m in members)
        out.append(
            _Error(union_path, union_path, f"{_describe(value)} is not valid here: write {choices}")
        )
    return out


def _drop_misspelt_missing(errors: list[_Error]) -> list[_Error]:
    """A misspelt key shows up twice (unknown 'tempalte', missing 'template'): keep one.

    The unknown-key message already says "did you mean 'template'?".
    """
    unknown: dict[DataPath, list[str]] = {}
    for error in errors:
        if error.kind == "extra_forbidden":
            unknown.setdefault(error.path, []).append(str(error.line_path[-1]))
    kept = []
    for error in errors:
        if error.kind == "missing" and error.path in unknown:
            key = str(error.line_path[-1])
            if difflib.get_close_matches(key, unknown[error.path], n=1, cutoff=0.6):
                continue
        kept.append(error)
    return kept


def _one_error(error: ErrorDetails, r: ResolvedLocation, data: Any) -> _Error:
    kind: str = error["type"]
    path = tuple(r.data_path)
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        key = path[-1]
        allowed = (
            [info.alias or name for name, info in r.parent_model.model_fields.items()]
            if r.parent_model is not None
            else []
        )
        suggestion = _did_you_mean(str(key), allowed)
        listing = f"; allowed here: {', '.join(allowed)}" if allowed else ""
        return _Error(path[:-1], path, f"unknown key '{key}'{suggestion}{listing}", kind)
    if kind == "missing":
        key = path[-1]
        info = field_for(r.parent_model, key) if r.parent_model is not None else None
        about = f" ({info.description})" if info is not None and info.description else ""
        return _Error(path[:-1], path, f"missing required key '{key}'{about}: add it", kind)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        expected = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        discriminator = str(ctx.get("discriminator", "")).strip("'")
        if not expected and discriminator == "type":
            expected = list(STEP_TYPES)  # pydantic names no tags when the key is absent
        noun = "step type" if set(expected) == set(STEP_TYPES) else f"{discriminator} value"
        if kind == "union_tag_not_found":
            message = f"no '{discriminator}' key: add {discriminator}: one of {', '.join(expected)}"
        else:
            tag = str(ctx.get("tag"))
            message = (
                f"unknown {noun} '{tag}'{_did_you_mean(tag, expected)}; "
                f"{noun}s: {', '.join(expected)}"
            )
        return _Error(path, (*path, discriminator), message)
    if kind == "unknown_condition":
        return _Error(path, path, _condition_message(value))
    if kind == "literal_error":
        expected = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        message = _literal_message(value, expected)
        if r.bad_key:
            return _Error(path[:-1], path, f"key {message}")
        return _Error(path, path, message)
    return _Error(path, path, _value_message(kind, error, value, ctx))


def _condition_message(value: Any) -> str:
    keys = sorted(k for k in CONDITION_KEYS if not k.endswith("_"))
    if not isinstance(value, dict):
        return (
            f"expected a condition mapping such as {{event: email.clicked}}, got "
            f"{_describe(value)}; a condition is one of: {', '.join(keys)}"
        )
    hints = [f"'{k}'{_did_you_mean(str(k), keys)}" for k in value if str(k) not in CONDITION_KEYS]
    if hints:
        given = f"unknown condition key {', '.join(hints)}"
    else:
        given = "an empty condition" if not value else "not a condition"
    return f"{given}; a condition starts with one of: {', '.join(keys)}"


def _literal_message(value: Any, expected: list[str]) -> str:
    options = set(expected)
    if len(expected) == 1:
        return f"{_describe(value)} is not allowed here: write {expected[0]}"
    noun, plural = "one of the allowed values", "allowed"
    for names, noun_here, plural_here in (
        (EVENT_TYPES, "an event type", "event types"),
        (CALL_OUTCOMES, "a call outcome", "call outcomes"),
        ((*CALL_OUTCOMES, NO_CALL_OUTCOME), "a call outcome", "call outcomes (or none)"),
        (WEEKDAYS, "a day", "days"),
    ):
        if options == set(names):
            noun, plural = noun_here, plural_here
    suggestion = _did_you_mean(str(value), expected)
    listing = "" if suggestion else f"; {plural}: {', '.join(expected)}"
    return f"{_describe(value)} is not {noun}{suggestion}{listing}"


_TYPE_NOUNS = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list, e.g. [a, b]",
    "dict_type": "a mapping (key: value lines)",
    "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)",
}


def _value_message(kind: str, error: ErrorDetails, value: Any, ctx: dict[str, Any]) -> str:
    if kind in _TYPE_NOUNS:
        return f"expected {_TYPE_NOUNS[kind]}, got {_describe(value)}"
    if kind in ("value_error", "assertion_error"):
        message = str(error.get("msg", ""))
        return re.sub(r"^(Value|Assertion) error, ", "", message)
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        if "[01][0-9]" in pattern:
            return (
                f"{_describe(value)} is not a time of day: write HH:MM on a 24-hour clock, "
                'quoted, e.g. "09:00"'
            )
        if "A-Za-z0-9_" in pattern:
            return f"{_describe(value)} is not a valid id: use only letters, digits, '-' and '_'"
        return f"{_describe(value)} does not match the pattern {pattern}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"is too long: at most {ctx.get('max_length')} characters"
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return f"needs at least {n} item{'s' if n != 1 else ''}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = next(iter(ctx.values()), "?")
        words = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }
        return f"must be {words[kind]} {bound}, got {_describe(value)}"
    return str(error.get("msg", kind))


def _describe(value: Any) -> str:
    """A value as a marketer wrote it in YAML."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


def _describe_type(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " or ".join(str(a) for a in get_args(tp))
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        required = [
            info.alias or name for name, info in tp.model_fields.items() if info.is_required()
        ]
        return f"a mapping with {' and '.join(required)}"
    return getattr(tp, "__name__", str(tp))


def _did_you_mean(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _dotted(path: Sequence[Any], root: str = "playbook") -> str:
    """A path as written in messages: ``routing.entry[1].cadence`` (``root`` when empty)."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", str(part)):
            text += f".{part}" if text else str(part)
        else:
            text += f"['{part}']"
    return text or root


def _cadence_where(data: dict[str, Any], path: DataPath) -> tuple[str, str]:
    """``step '<id>'`` or ``cadence``, and the path inside it for the message."""
    if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
        steps = data.get("steps")
        step = steps[path[1]] if isinstance(steps, list) and path[1] < len(steps) else None
        step_id = step.get("id") if isinstance(step, dict) else None
        named = isinstance(step_id, str) and step_id
        where = f"step '{step_id}'" if named else f"step #{path[1] + 1}"
        return where, _dotted(path[2:], root="")
    return "cadence", _dotted(path, root="")


# --- the steps, for the template checks ----------------------------------------------------


@dataclass
class _Step:
    index: int
    id: str  # the written id, or '#<n>' when it has none
    type: str | None
    raw: dict[str, Any]

    @property
    def path(self) -> DataPath:
        return ("steps", self.index)

    @property
    def where(self) -> str:
        return f"step '{self.id}'" if not self.id.startswith("#") else f"step {self.id}"


def _steps_of(data: dict[str, Any]) -> list[_Step]:
    """The steps of a cadence as written (an id-less step is ``#<n>``)."""
    raw_steps = data.get("steps")
    steps: list[_Step] = []
    if isinstance(raw_steps, list):
        for i, raw in enumerate(raw_steps):
            if not isinstance(raw, dict):
                raw = {}
            step_id = raw.get("id")
            step_type = raw.get("type")
            steps.append(
                _Step(
                    index=i,
                    id=step_id if isinstance(step_id, str) and step_id else f"#{i + 1}",
                    type=step_type if isinstance(step_type, str) else None,
                    raw=raw,
                )
            )
    return steps
