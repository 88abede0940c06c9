"""The files marketers edit, as validated data: cadences and the playbook.

One set of pydantic models serves `cadences validate`, the JSON Schema for editors, and the
workflow (which receives a snapshot of them). Pure: no I/O, no temporalio.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from typing import Annotated, Any, Literal, NamedTuple, Protocol, Union, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

from nurture.domain.durations import DURATION_PATTERN, parse_duration
from nurture.domain.events import EVENT_TYPES, PERSONAL_FIELDS, EventType
from nurture.domain.vocabulary import CallOutcomeOrNone


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value.strip()


Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    WithJsonSchema(
        {"type": "string", "pattern": DURATION_PATTERN, "examples": ["2d", "3 business days"]}
    ),
]
StepId = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_\-]+$")]
END = "end"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- rules across fields ------------------------------------------------------------------
#
# What a field's type cannot say (a grade that names no band, a send window that never
# opens) is checked by the models too, so every user of them (the loader, a snapshot built
# in a test, the workflow's input) gets the same answer. A rule's error has the type
# RULE_ERROR, its location is the data path of what is wrong (no union tags), and its
# message is for the person who wrote the file, as it stands.

RULE_ERROR = "rule"
Loc = tuple[str | int, ...]


def rule_error(loc: Loc, message: str, value: Any = None) -> InitErrorDetails:
    """One broken rule at ``loc`` (relative to the model that checks it)."""
    return {"type": PydanticCustomError(RULE_ERROR, message), "loc": loc, "input": value}


def raise_rules(model: type[BaseModel], errors: Sequence[InitErrorDetails]) -> None:
    """Raise ``errors`` at their own locations (a plain ValueError would point at the model)."""
    if errors:
        raise ValidationError.from_exception_data(model.__name__, list(errors))


def unknown_grade(grade: Any, bands: Iterable[str]) -> str:
    return (
        f"grade '{grade}' is not in grading.bands ({', '.join(sorted(bands))}): use one of "
        "them or add the band"
    )


def _did_you_mean(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# --- conditions -------------------------------------------------------------------------


class EventCondition(_Strict):
    """The lead had this event (optionally tied to a step's email, optionally recently)."""

    event: EventType
    step: StepId | None = None
    within: Duration | None = None


class ScoreCondition(_Strict):
    score_at_least: int


class GradeCondition(_Strict):
    grade_in: list[str] = Field(min_length=1)


class CallOutcomeCondition(_Strict):
    """The outcome the SDR recorded for the most recent call step; ``none``: none came."""

    call_outcome: list[CallOutcomeOrNone] = Field(min_length=1)


class FieldCondition(_Strict):
    """A lead field compared with exactly one of ``equals``, ``in`` or ``at_least``."""

    field: str = Field(min_length=1)
    equals: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    at_least: float | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def model_post_init(self, __context: Any) -> None:
        given = self.operators()
        if len(given) != 1:
            raise ValueError(
                f"field condition on '{self.field}' needs exactly one of equals, in, at_least"
                + (f" (got {', '.join(given)})" if given else "")
            )

    def operators(self) -> list[str]:
        """The comparison keys given. Counted by value, not by "set" fields: a snapshot that
        went through JSON (Temporal payloads) has every key present, unused ones null."""
        given = []
        if self.equals is not None:
            given.append("equals")
        if self.in_ is not None:
            given.append("in")
        if self.at_least is not None:
            given.append("at_least")
        return given


class AllCondition(_Strict):
    all: list[Condition] = Field(min_length=1)


class AnyCondition(_Strict):
    any: list[Condition] = Field(min_length=1)


class NotCondition(_Strict):
    not_: Condition = Field(alias="not")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


CONDITION_KEYS: dict[str, str] = {
    "event": "event",
    "score_at_least": "score",
    "grade_in": "grade",
    "call_outcome": "call_outcome",
    "field": "field",
    "all": "all",
    "any": "any",
    "not": "not",
    "not_": "not",
}


def condition_tag(value: Any) -> str | None:
    """Which kind of condition a mapping is, by its leading key."""
    if isinstance(value, dict):
        keys = value.keys()
    elif isinstance(value, BaseModel):
        keys = value.model_fields_set
    else:
        return None
    for key in keys:
        if key in CONDITION_KEYS:
            return CONDITION_KEYS[key]
    return None


Condition = Annotated[
    Union[
        Annotated[EventCondition, Tag("event")],
        Annotated[ScoreCondition, Tag("score")],
        Annotated[GradeCondition, Tag("grade")],
        Annotated[CallOutcomeCondition, Tag("call_outcome")],
        Annotated[FieldCondition, Tag("field")],
        Annotated[AllCondition, Tag("all")],
        Annotated[AnyCondition, Tag("any")],
        Annotated[NotCondition, Tag("not")],
    ],
    Discriminator(
        condition_tag,
        custom_error_type="unknown_condition",
        custom_error_message=(
            "a condition needs one of: event, score_at_least, grade_in, call_outcome, "
            "field, all, any, not"
        ),
    ),
]
AllCondition.model_rebuild()
AnyCondition.model_rebuild()
NotCondition.model_rebuild()


def walk_conditions(loc: Loc, condition: Any) -> Iterator[tuple[Loc, Any]]:
    """Every condition inside ``condition`` (itself included), with its data path.

    Reads by name, so it walks the models and the loose view of a cadence alike."""
    if condition is None:
        return
    yield loc, condition
    for key in ("all", "any"):
        for i, inner in enumerate(getattr(condition, key, None) or []):
            yield from walk_conditions((*loc, key, i), inner)
    yield from walk_conditions((*loc, "not"), getattr(condition, "not_", None))


def condition_rules(
    loc: Loc, condition: Any, bands: Iterable[str] | None
) -> list[InitErrorDetails]:
    """A condition's grades must name bands; its fields must reach the workflow."""
    errors: list[InitErrorDetails] = []
    for at, inner in walk_conditions(loc, condition):
        grades = getattr(inner, "grade_in", None)
        if grades and bands is not None:
            known = set(bands)
            for i, grade in enumerate(grades):
                if str(grade) not in known:
                    errors.append(
                        rule_error((*at, "grade_in", i), unknown_grade(grade, known), grade)
                    )
        name = getattr(inner, "field", None)
        if isinstance(name, str) and name in PERSONAL_FIELDS:
            errors.append(rule_error((*at, "field"), personal_field_message(name), name))
    return errors


def personal_field_message(name: str) -> str:
    """Why a rule on a personal field is refused, and what to decide on instead."""
    instead = (
        "use `account` (the email domain, or the company name for free-mail addresses) "
        "or list the account in tier_accounts"
        if name in ("company", "email")
        else "decide on country, industry, employees, tier_account, account, source or a free field"
    )
    return (
        f"field '{name}' never reaches the workflow (personal data stays out of it), so "
        f"this rule never matches: {instead}"
    )


# --- steps ------------------------------------------------------------------------------


class _StepBase(_Strict):
    id: StepId
    name: str | None = None
    next: str | None = Field(
        default=None, description="The step to go to after this one ('end' ends the cadence)."
    )


class EmailStep(_StepBase):
    type: Literal["email"]
    template: str = Field(min_length=1, description="templates/email/<template>.j2")


class CallStep(_StepBase):
    type: Literal["call"]
    script: str = Field(min_length=1, description="templates/call/<script>.j2")
    due: Duration | None = Field(default=None, description="Default: the playbook's team.call_due.")
    wait_for_outcome: Duration | None = None


class WaitStep(_StepBase):
    type: Literal["wait"]
    duration: Duration
    until_any: list[EventType] = Field(default_factory=list)


class BranchCase(_Strict):
    when: Condition
    goto: str


class BranchStep(_StepBase):
    type: Literal["branch"]
    cases: list[BranchCase] = Field(min_length=1)
    default: str | None = Field(default=None, description="Default: the following step.")


class ExitStep(_StepBase):
    type: Literal["exit"]
    reason: str = Field(min_length=1)


Step = Annotated[
    Union[EmailStep, CallStep, WaitStep, BranchStep, ExitStep], Field(discriminator="type")
]
STEP_TYPES: tuple[str, ...] = ("email", "call", "wait", "branch", "exit")


# --- the rules of a cadence's steps ------------------------------------------------------
#
# They run on a loose view of the steps (a value of the wrong type reads as absent), so a
# file with a schema mistake in one step still has its jumps, reachability and loops
# checked: a marketer sees every problem at once.


def _absent_if_invalid(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    try:
        return handler(value)
    except ValidationError:
        return None


_Text = Annotated[str | None, WrapValidator(_absent_if_invalid)]
_LOOSE = ConfigDict(extra="ignore", from_attributes=True, populate_by_name=True, frozen=True)


class _LooseCondition(BaseModel):
    model_config = _LOOSE

    event: _Text = None
    step: _Text = None
    field: _Text = None
    grade_in: Annotated[list[Any] | None, WrapValidator(_absent_if_invalid)] = None
    all: Annotated[list[_MaybeCondition] | None, WrapValidator(_absent_if_invalid)] = None
    any: Annotated[list[_MaybeCondition] | None, WrapValidator(_absent_if_invalid)] = None
    not_: _MaybeCondition = Field(default=None, alias="not")


_MaybeCondition = Annotated[_LooseCondition | None, WrapValidator(_absent_if_invalid)]
_LooseCondition.model_rebuild()


class _LooseCase(BaseModel):
    model_config = _LOOSE

    goto: _Text = None
    when: _MaybeCondition = None


class _LooseStep(BaseModel):
    """A step as far as jumps and conditions go; ``id`` is ``#<n>`` when it has none."""

    model_config = _LOOSE

    id: _Text = None
    type: _Text = None
    next: _Text = None
    default: _Text = None
    cases: Annotated[
        list[Annotated[_LooseCase | None, WrapValidator(_absent_if_invalid)]] | None,
        WrapValidator(_absent_if_invalid),
    ] = None


def _loose_steps(data: Any) -> list[_LooseStep] | None:
    raw = data.get("steps") if isinstance(data, dict) else getattr(data, "steps", None)
    if not isinstance(raw, list | tuple):
        return None
    steps = []
    for i, item in enumerate(raw):
        try:
            step = _LooseStep.model_validate(item)
        except ValidationError:
            step = _LooseStep()
        if not step.id:
            step = step.model_copy(update={"id": f"#{i + 1}"})
        if step.type == "branch":
            cases = [c or _LooseCase() for c in step.cases or []]
            step = step.model_copy(update={"cases": cases})
        steps.append(step)
    return steps


def _where_to(target: str, names: Sequence[str], *, with_end: bool = True) -> str:
    choices = [*names, END] if with_end else list(names)
    suggestion = _did_you_mean(target, choices)
    if suggestion:
        return suggestion
    listing = ", ".join(f"'{n}'" for n in names)
    tail = ", or 'end'" if with_end else ""
    return f" (steps: {listing}{tail})" if names else ""


def step_rules(steps: Sequence[Any], bands: Iterable[str] | None) -> list[InitErrorDetails]:
    """Ids, jumps, what conditions name, reachability and loops of a cadence's steps.

    ``steps`` are step models, or the loose view of a file that failed the schema: both
    have the names read here."""
    errors: list[InitErrorDetails] = []
    ids: dict[str, int] = {}
    for i, step in enumerate(steps):
        assert step.id is not None
        if step.id == END:
            errors.append(
                rule_error(
                    ("steps", i, "id"),
                    "'end' is reserved (a jump to 'end' ends the cadence): rename this step",
                )
            )
        if step.id in ids:
            errors.append(
                rule_error(
                    ("steps", i, "id"),
                    f"step id '{step.id}' is used twice (first as step #{ids[step.id] + 1}): "
                    "give each step its own id",
                )
            )
        ids.setdefault(step.id, i)
    names = [s for s in ids if not s.startswith("#")]
    edges = step_edges(steps)
    for i, (step, out) in enumerate(zip(steps, edges, strict=True)):
        for edge in out:
            if edge.key is not None and edge.target != END and edge.target not in ids:
                errors.append(
                    rule_error(
                        ("steps", i, *edge.key),
                        f"{edge.key[-1]} '{edge.target}' names no step"
                        f"{_where_to(edge.target, names)}",
                        edge.target,
                    )
                )
        if step.type != "branch":
            continue
        for j, case in enumerate(step.cases or []):
            for at, condition in walk_conditions(("steps", i, "cases", j, "when"), case.when):
                errors.extend(_event_step_rules(at, condition, steps, ids, names))
            errors.extend(condition_rules(("steps", i, "cases", j, "when"), case.when, bands))
    if len(ids) < len(steps):
        # Duplicate ids make jumps ambiguous: reachability and loops would mislead.
        return errors
    successors = {
        s.id: [e.target for e in out if e.target in ids and e.target != END]
        for s, out in zip(steps, edges, strict=True)
    }
    errors.extend(_unreachable(steps, successors))
    errors.extend(_spinning(steps, successors))
    return errors


def _event_step_rules(
    at: Loc, condition: Any, steps: Sequence[_LooseStep], ids: dict[str, int], names: list[str]
) -> list[InitErrorDetails]:
    named, event = getattr(condition, "step", None), getattr(condition, "event", None)
    if event is None or named is None:
        return []
    if named not in ids:
        message = (
            f"event condition step '{named}' names no step{_where_to(named, names, with_end=False)}"
        )
        return [rule_error((*at, "step"), message, named)]
    kind = steps[ids[named]].type
    if event.startswith("email.") and kind in STEP_TYPES and kind != "email":
        return [
            rule_error(
                (*at, "step"),
                f"event condition step '{named}' is a {kind} step, which sends no email: name "
                f"the email step that {event} is about",
                named,
            )
        ]
    return []


def _unreachable(
    steps: Sequence[_LooseStep], successors: dict[Any, list[str]]
) -> list[InitErrorDetails]:
    if not steps:
        return []
    seen = {steps[0].id}
    todo = [steps[0].id]
    while todo:
        for target in successors[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return [
        rule_error(
            ("steps", i),
            "never reached: no step leads to it (point a next, goto or default at it, or "
            "remove it)",
        )
        for i, step in enumerate(steps)
        if step.id not in seen and step.id != END  # a step named 'end': reported above
    ]


def _spinning(
    steps: Sequence[_LooseStep], successors: dict[Any, list[str]]
) -> list[InitErrorDetails]:
    """Cycles made only of email and branch steps: nothing in them waits for time."""
    index = {s.id: i for i, s in enumerate(steps)}
    fast = {s.id for s in steps if s.type in ("email", "branch")}
    edges = {str(s): [t for t in successors[s] if t in fast] for s in fast}
    errors: list[InitErrorDetails] = []
    for component in _strongly_connected(edges):
        if len(component) == 1 and component[0] not in edges[component[0]]:
            continue
        members = sorted(component, key=index.__getitem__)
        emails = any(steps[index[m]].type == "email" for m in members)
        effect = "sends emails in a tight loop" if emails else "loops forever at once"
        if len(members) > 1:
            listed = ", ".join(f"'{m}'" for m in members)
            message = f"steps {listed} form a loop with no wait or call step: it {effect}"
        else:
            message = (
                f"step '{members[0]}' leads back to itself with no wait or call step: it {effect}"
            )
        errors.append(
            rule_error(("steps", index[members[0]]), f"{message} (put a wait step in the loop)")
        )
    return errors


def _strongly_connected(edges: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively (a cadence can be long; no recursion limit worries)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            recurse = False
            targets = edges.get(node, [])
            for j in range(i, len(targets)):
                target = targets[j]
                if target not in index:
                    work.append((node, j + 1))
                    work.append((target, 0))
                    recurse = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            if recurse:
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def _as_init_error(error: ErrorDetails) -> InitErrorDetails:
    """A schema error, to be raised again beside the rules' errors."""
    if error["type"] in _KNOWN_ERRORS:
        out: InitErrorDetails = {
            "type": error["type"],
            "loc": error["loc"],
            "input": error["input"],
        }  # type: ignore[typeddict-item]
        if "ctx" in error:
            out["ctx"] = error["ctx"]
        return out
    return {
        "type": PydanticCustomError(error["type"], error["msg"]),
        "loc": error["loc"],
        "input": error["input"],
    }


_KNOWN_ERRORS = frozenset(get_args(ErrorType))


class Edge(NamedTuple):
    """One way out of a step: where the cadence may go once the step has run."""

    source: str
    target: str  # a step id, or END
    # "next": an email, call or wait step is done; "goto": a branch case matched;
    # "default": no branch case matched.
    via: Literal["next", "goto", "default"]
    # Where the target is written inside the step (("cases", 0, "goto"), ("next",)); None
    # when nothing is written and the cadence goes on to the step below (or ends).
    key: tuple[str | int, ...] | None


class _Linked(Protocol):
    """What a step needs for its edges: a step model, or the loader's view of a step that
    failed the schema (so jumps are still checked in a file with other mistakes)."""

    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str | None: ...
    @property
    def next(self) -> str | None: ...


def step_edges(steps: Sequence[_Linked]) -> list[list[Edge]]:
    """Where each step can go next, in the order of ``steps``: the one place that says it.

    A step goes to its ``next``, else the step below, else ``end``; a branch tries its cases
    in order, then its ``default`` (else where it would go on by itself); an exit goes
    nowhere. The last item of ``steps`` only serves as the step below the one before it.
    """
    out: list[list[Edge]] = []
    for i, step in enumerate(steps):
        if step.next is not None:
            onward = Edge(step.id, step.next, "next", ("next",))
        else:
            below = steps[i + 1].id if i + 1 < len(steps) else END
            onward = Edge(step.id, below, "next", None)
        if step.type == "exit":
            out.append([])
        elif step.type == "branch":
            branch: Any = step  # BranchStep, or a view of one with the same names
            edges = [
                Edge(step.id, case.goto, "goto", ("cases", j, "goto"))
                for j, case in enumerate(branch.cases)
                if case.goto is not None
            ]
            if branch.default is not None:
                edges.append(Edge(step.id, branch.default, "default", ("default",)))
            else:
                edges.append(onward._replace(via="default"))
            out.append(edges)
        else:
            out.append([onward])
    return out


class Cadence(_Strict):
    """One cadence file: an ordered list of steps with jumps."""

    id: StepId
    name: str = Field(min_length=1)
    description: str | None = None
    exit_on: list[EventType] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="wrap")
    @classmethod
    def _steps_hold_together(
        cls, data: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Cadence:
        """With ``authoring`` in the validation context (the loader checking a file): ids are
        unique, jumps name steps, event conditions name email steps, grades name the
        context's ``bands``, fields reach the workflow, every step is reached and no loop
        spins; and these run even when the schema failed, so a file's problems come out all
        at once. Without it (a snapshot of a checked file, a picture of a broken one, a
        table in a test) only the schema applies."""
        context = info.context or {}
        if not context.get("authoring"):
            return handler(data)
        schema: list[InitErrorDetails] = []
        model: Cadence | None = None
        steps: Sequence[Any] | None
        try:
            model = handler(data)
        except ValidationError as exc:
            schema = [_as_init_error(e) for e in exc.errors()]
            steps = _loose_steps(data)
        else:
            steps = model.steps
        rules = step_rules(steps, context.get("bands")) if steps else []
        raise_rules(cls, schema + rules)
        assert model is not None
        return model

    def step(self, step_id: str) -> EmailStep | CallStep | WaitStep | BranchStep | ExitStep:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(f"cadence '{self.id}' has no step '{step_id}'")

    def index(self, step_id: str) -> int:
        for i, step in enumerate(self.steps):
            if step.id == step_id:
                return i
        raise KeyError(f"cadence '{self.id}' has no step '{step_id}'")

    def edges(self) -> dict[str, list[Edge]]:
        """Where each step can go next, by step id (see :func:`step_edges`)."""
        return {step.id: out for step, out in zip(self.steps, step_edges(self.steps), strict=True)}

    def edges_from(self, step_id: str) -> list[Edge]:
        """Where ``step_id`` can go next: a branch's cases in order then its otherwise; one
        edge for email, call and wait steps; none for an exit."""
        i = self.index(step_id)
        return step_edges(self.steps[i : i + 2])[0]

    def following(self, step_id: str) -> str:
        """Where the cadence goes once ``step_id`` (not a branch, not an exit) is done."""
        for edge in self.edges_from(step_id):
            if edge.via == "next":
                return edge.target
        raise KeyError(f"step '{step_id}' of cadence '{self.id}' does not go on by itself")

    @property
    def version(self) -> str:
        """A content hash: a lead in flight keeps the version it entered with."""
        return content_hash(self)


_ABSENT = object()


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as ``{"a.b.c": leaf}``; lists are leaves."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _show(value: Any) -> str:
    return "none" if value is None else str(value)


def content_hash(model: BaseModel) -> str:
    body = json.dumps(model.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:12]


# --- playbook ---------------------------------------------------------------------------


class Decay(_Strict):
    after: Duration = "30d"
    points: int = Field(default=10, ge=1)


class Scoring(_Strict):
    points: dict[EventType, int] = Field(default_factory=dict)
    page_points: dict[str, int] = Field(default_factory=dict)
    decay: Decay | None = None


class GradingRule(_Strict):
    when: Condition
    points: int


class Grading(_Strict):
    rules: list[GradingRule] = Field(default_factory=list)
    bands: dict[str, int] = Field(default_factory=lambda: {"A": 70, "B": 40, "C": 20, "D": 0})

    @field_validator("bands")
    @classmethod
    def _some_band(cls, bands: dict[str, int]) -> dict[str, int]:
        if not bands:
            raise PydanticCustomError(
                RULE_ERROR, "no bands: define at least one, e.g. {A: 70, B: 40, C: 0}"
            )
        return bands

    def band(self, points: int) -> str:
        """The best band whose floor ``points`` reaches; the lowest band otherwise."""
        ordered = sorted(self.bands.items(), key=lambda kv: kv[1], reverse=True)
        for grade, floor in ordered:
            if points >= floor:
                return grade
        return ordered[-1][0]


class MqlThreshold(_Strict):
    score: int = Field(ge=0)


class TossUpThreshold(_Strict):
    score: int = Field(ge=0)
    grades: list[str] = Field(default_factory=list, description="Empty: any grade.")


def _check_hand_raiser(item: str) -> str:
    if item in EVENT_TYPES:
        return item
    event, sep, form = item.partition(":")
    if not sep:
        message = (
            f"'{item}' is not an event type{_did_you_mean(item, EVENT_TYPES)}: write an event "
            "type or form.submitted:<form>"
        )
    elif event != "form.submitted":
        message = (
            f"'{item}': only form.submitted takes a ':<form>' suffix; write an event type "
            "or form.submitted:<form>"
        )
    elif not form.strip():
        message = f"'{item}' names no form: write form.submitted:<form>, e.g. form.submitted:demo"
    else:
        return item
    raise PydanticCustomError(RULE_ERROR, message)


HandRaiser = Annotated[str, AfterValidator(_check_hand_raiser)]


class Thresholds(_Strict):
    mql: MqlThreshold
    toss_up: TossUpThreshold
    sales_follow_up: Duration = "14d"
    hand_raisers: list[HandRaiser] = Field(
        default_factory=list, description="Event types, or type:form for form.submitted."
    )


class RoutingRule(_Strict):
    when: Condition | None = None
    cadence: str


class RecycleRule(_Strict):
    after: Duration
    cadence: str


class Routing(_Strict):
    entry: list[RoutingRule] = Field(min_length=1)
    mql_cadence: str
    recycle: dict[str, RecycleRule | Literal["never"]] = Field(default_factory=dict)

    def roles(self) -> dict[str, list[str]]:
        """What each cadence it names is for: ``entry``, ``MQL``, ``recycle: <reason>``."""
        roles: dict[str, list[str]] = {}
        for rule in self.entry:
            roles.setdefault(rule.cadence, []).append("entry")
        roles.setdefault(self.mql_cadence, []).append("MQL")
        for reason, recycle in self.recycle.items():
            if isinstance(recycle, RecycleRule):
                roles.setdefault(recycle.cadence, []).append(f"recycle: {reason}")
        return {cadence: list(dict.fromkeys(names)) for cadence, names in roles.items()}

    @model_validator(mode="after")
    def _entry_order(self) -> Routing:
        """First match wins, so a rule after a catch-all never applies, and a list without
        one leaves some leads with no cadence."""
        errors: list[InitErrorDetails] = []
        catch_all = next((i for i, r in enumerate(self.entry) if r.when is None), None)
        if catch_all is None:
            errors.append(
                rule_error(
                    ("entry", len(self.entry) - 1),
                    "the last entry rule has a 'when', so a lead that matches no rule gets no "
                    "cadence: end the list with a rule that has only 'cadence:'",
                )
            )
        else:
            errors.extend(
                rule_error(
                    ("entry", i),
                    f"this rule never applies: rule [{catch_all}] above has no 'when' and "
                    "takes every lead (move the catch-all rule last)",
                )
                for i in range(catch_all + 1, len(self.entry))
            )
        raise_rules(Routing, errors)
        return self


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ClockTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
# A window may close at midnight, written "24:00": "00:00" to "24:00" is open all day
# (with "23:59" the last minute of each day would be closed).
EndClockTime = Annotated[
    str, Field(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$", description="HH:MM or 24:00")
]


class SendWindow(_Strict):
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS[:5]))
    start: ClockTime = "09:00"
    end: EndClockTime = "18:00"

    @field_validator("days")
    @classmethod
    def _some_day(cls, days: list[str]) -> list[str]:
        if not days:
            raise PydanticCustomError(
                RULE_ERROR,
                "no days: the window is never open; list days, e.g. [mon, tue, wed, thu, fri]",
            )
        return days

    @model_validator(mode="after")
    def _opens(self) -> SendWindow:
        if self.start >= self.end:  # HH:MM text sorts as time does
            at = "start" if "start" in self.model_fields_set else "end"
            raise_rules(
                SendWindow,
                [
                    rule_error(
                        (at,),
                        f"start {self.start} is not before end {self.end}: the window would be "
                        "empty (it cannot cross midnight); make start earlier than end",
                    )
                ],
            )
        return self


def _check_iso_date(text: str) -> str:
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            date.fromisoformat(text)
            return text
    except ValueError:
        pass
    raise PydanticCustomError(
        RULE_ERROR, f"'{text}' is not an ISO date: write YYYY-MM-DD, e.g. 2026-12-25"
    )


IsoDate = Annotated[str, AfterValidator(_check_iso_date)]


# --- holidays: the playbook's own dates, global or per country --------------------------
#
# `limits.holidays` is a list (every lead's holidays: the same as `{all: [...]}`) or a map
# from `all` or a country (ISO 3166 alpha-2) to dates. The form written is kept as it is,
# so a playbook of the old form keeps its content hash (its version).

ALL_COUNTRIES = "all"
# ISO 3166-1 alpha-2, the officially assigned codes (a lead's `country`).
_COUNTRY_CODES = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
"""
COUNTRY_CODES = frozenset(_COUNTRY_CODES.split())
HolidayMap = dict[str, list[IsoDate]]


def _holiday_rules(value: Any) -> Any:
    """Check the holidays in either form at once, naming each bad key or date where it is.

    Runs before the type (so a bad date is reported at its own path, not once per form of
    the union); country keys are upper-cased and ``all`` lower-cased.
    """
    errors: list[InitErrorDetails] = []

    def dates(loc: Loc, items: Any) -> None:
        if not isinstance(items, list):
            return  # the type's own error says it
        for i, item in enumerate(items):
            try:
                _check_iso_date(str(item) if isinstance(item, date) else item)
            except PydanticCustomError as exc:
                errors.append(rule_error((*loc, i), exc.message(), item))
            except TypeError:
                pass

    if isinstance(value, list):
        dates((), value)
    elif isinstance(value, dict):
        normal: dict[Any, Any] = {}
        for key, items in value.items():
            text = str(key).strip()
            name = text.lower() if text.lower() == ALL_COUNTRIES else text.upper()
            if name != ALL_COUNTRIES and name not in COUNTRY_CODES:
                errors.append(
                    rule_error(
                        (key,),
                        f"'{key}' is not a country: write all (every lead) or an ISO 3166 "
                        "alpha-2 country code such as JP, US or DE"
                        + (" (the United Kingdom is GB)" if name == "UK" else ""),
                        key,
                    )
                )
            elif name in normal:
                errors.append(
                    rule_error((key,), f"'{key}' names {name} again: merge its dates into one list")
                )
            dates((key,), items)
            normal[name] = items
        value = normal
    if errors:
        raise ValidationError.from_exception_data("holidays", errors)
    return value


Holidays = Annotated[list[IsoDate] | HolidayMap, BeforeValidator(_holiday_rules)]


# --- limits.account: caps shared by every lead of one account (one company, one conversation)


class AccountLimits(_Strict):
    """``limits.account``: what every lead of one account shares (the account governor,
    ``nurture/domain/governor.py``). Touches over a cap wait; none is dropped."""

    max_emails_per_week: int | None = Field(
        default=None, ge=1, description="Emails to all leads of one account in 7 rolling days."
    )
    min_gap_between_touches: Duration | None = Field(
        default=None, description="The least time between two touches of one account."
    )
    one_conversation: bool = Field(
        default=False,
        description="While one lead of the account is in mql or sql, the other leads' "
        "nurture touches wait (and resume when it leaves).",
    )


class Limits(_Strict):
    account: AccountLimits | None = Field(
        default=None, description="Caps shared by every lead of one account."
    )
    max_emails_per_week: int | None = Field(default=None, ge=1)
    min_gap_between_touches: Duration | None = None
    send_window: SendWindow = Field(default_factory=SendWindow)
    holidays: Holidays = Field(
        default_factory=list,
        description="ISO dates (YYYY-MM-DD) when no lead is touched; or a map from `all` and "
        "country codes (JP, US) to dates: `all` for every lead, a country for its leads.",
    )
    public_holidays: bool = Field(
        default=False,
        description="Each lead is also held on its own country's public holidays.",
    )
    out_of_office: Duration = Field(
        default="7d",
        description="How long a lead's touches wait after an auto-reply that states no "
        "return date (a stated one is used when there is one).",
    )

    def holiday_dates(self, country: str | None) -> dict[str, str]:
        """The playbook's own holidays of a lead of ``country``: ISO date -> which list
        (``all`` or the country), the country's own label winning."""
        if isinstance(self.holidays, list):
            return dict.fromkeys(self.holidays, ALL_COUNTRIES)
        found = dict.fromkeys(self.holidays.get(ALL_COUNTRIES, []), ALL_COUNTRIES)
        code = (country or "").strip().upper()
        if code and code != ALL_COUNTRIES.upper():
            found.update(dict.fromkeys(self.holidays.get(code, []), code))
        return found


class Sdr(_Strict):
    id: StepId
    name: str
    email: str
    territories: list[str] = Field(default_factory=list)
    manager: StepId | None = Field(default=None, description="A manager id of team.managers.")


class Manager(_Strict):
    id: StepId
    name: str
    email: str


class OpsPerson(_Strict):
    """Someone who gets the alerts: overdue sales follow-ups, escalations, unknown sends."""

    id: StepId
    email: str
    name: str | None = None


class Escalation(_Strict):
    """An overdue call task goes on after ``after`` past its due time (``team.escalation``)."""

    after: Duration
    to: Literal["next_sdr", "manager", "ops"] = "next_sdr"


class Team(_Strict):
    sdrs: list[Sdr] = Field(default_factory=list)
    managers: list[Manager] = Field(default_factory=list)
    ops: list[OpsPerson] = Field(default_factory=list)
    escalation: Escalation | None = None
    assignment: Literal["round_robin"] = "round_robin"
    call_due: Duration = "1 business day"

    def contacts(self, names: Iterable[str]) -> list[tuple[str, str]]:
        """Who ``names`` reach, as (id, email), each once, in order: an SDR or manager id is
        that person; ``ops`` is everyone in ``team.ops``. Unknown names reach nobody."""
        found: dict[str, str] = {}
        people = {p.id: p.email for p in [*self.sdrs, *self.managers]}
        for name in names:
            if name == "ops":
                found.update((p.id, p.email) for p in self.ops if p.id not in found)
            elif name in people and name not in found:
                found[name] = people[name]
        return list(found.items())

    def next_sdr(self, current: str | None, country: str | None) -> Sdr | None:
        """Who takes an escalated task from ``current``: the next SDR after them among those
        covering ``country`` (playbook order, wrapping), else the next of the whole team."""
        for pool in (self.covering(country), self.sdrs):
            others = [s for s in pool if s.id != current]
            if not others:
                continue
            ids = [s.id for s in pool]
            start = ids.index(current) + 1 if current in ids else 0
            ordered = pool[start:] + pool[:start]
            return next(s for s in ordered if s.id != current)
        return None

    def manager_of(self, sdr_id: str | None) -> Manager | None:
        sdr = next((s for s in self.sdrs if s.id == sdr_id), None)
        if sdr is None or sdr.manager is None:
            return None
        return next((m for m in self.managers if m.id == sdr.manager), None)

    def covering(self, country: str | None) -> list[Sdr]:
        """The SDRs whose territories include ``country`` (any case), in playbook order.

        The assignment rule's pool: the live round robin (``nurture.services.team``) and the
        simulator both start from it, and fall back to the whole team when it is empty.
        """
        code = (country or "").upper()
        return [s for s in self.sdrs if code and code in {t.upper() for t in s.territories}]

    @model_validator(mode="after")
    def _managers_exist(self) -> Team:
        known = {m.id for m in self.managers}
        errors = [
            rule_error(
                ("sdrs", i, "manager"),
                f"manager '{sdr.manager}' is not in team.managers"
                + (f" ({', '.join(sorted(known))})" if known else ": add it there"),
                sdr.manager,
            )
            for i, sdr in enumerate(self.sdrs)
            if sdr.manager is not None and sdr.manager not in known
        ]
        raise_rules(Team, errors)
        return self

    @model_validator(mode="after")
    def _one_id_each(self) -> Team:
        first: dict[str, int] = {}
        errors: list[InitErrorDetails] = []
        for i, sdr in enumerate(self.sdrs):
            if sdr.id in first:
                errors.append(
                    rule_error(
                        ("sdrs", i, "id"),
                        f"SDR id '{sdr.id}' is used twice (first at team.sdrs[{first[sdr.id]}]): "
                        "give each SDR their own id",
                        sdr.id,
                    )
                )
            first.setdefault(sdr.id, i)
        raise_rules(Team, errors)
        return self


class Sender(_Strict):
    from_: str = Field(alias="from")
    postal_address: str
    reply_to: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Tracking(_Strict):
    """What the emails measure of their readers."""

    opens: bool = Field(
        default=True,
        strict=True,
        description="Put the open pixel (GET /o/<token>) in each email's HTML part; "
        "false: no pixel, so no email.opened from these emails.",
    )


def _check_tier_account(text: str) -> str:
    """An account key as the intake computes it: a domain (lowercase), or ``company:<name>``."""
    key = text.strip().lower().removeprefix("@")
    if key.startswith("company:"):
        if key.removeprefix("company:").strip():
            return key
        message = f"'{text}' names no company: write company:<name>, e.g. company:initech"
    elif "@" in key:
        message = (
            f"'{text}' is an email address: write its domain "
            f"({key.rpartition('@')[2] or 'e.g. initech.example'}), never a person's address"
        )
    elif re.fullmatch(r"[^\s.@:/]+(\.[^\s.@:/]+)+", key):
        return key
    else:
        message = f"'{text}' is not an account: write a domain (initech.example) or company:<name>"
    raise PydanticCustomError(RULE_ERROR, message)


TierAccount = Annotated[
    str,
    AfterValidator(_check_tier_account),
    WithJsonSchema({"type": "string", "examples": ["initech.example", "company:initech"]}),
]


class Playbook(_Strict):
    """The written agreement between marketing, inside sales and sales."""

    scoring: Scoring = Field(default_factory=Scoring)
    grading: Grading = Field(default_factory=Grading)
    tier_accounts: list[TierAccount] = Field(
        default_factory=list,
        description="Named accounts (email domains, or company:<name> for free-mail leads): "
        "a lead of one of them (or of a subdomain) has tier_account true for rules.",
    )
    thresholds: Thresholds
    routing: Routing
    limits: Limits = Field(default_factory=Limits)
    team: Team = Field(default_factory=Team)
    sender: Sender
    tracking: Tracking = Field(default_factory=Tracking)

    @model_validator(mode="after")
    def _grades_name_bands(self) -> Playbook:
        bands = set(self.grading.bands)
        errors = [
            rule_error(("thresholds", "toss_up", "grades", i), unknown_grade(grade, bands), grade)
            for i, grade in enumerate(self.thresholds.toss_up.grades)
            if grade not in bands
        ]
        for i, rule in enumerate(self.grading.rules):
            errors.extend(condition_rules(("grading", "rules", i, "when"), rule.when, bands))
        for i, entry in enumerate(self.routing.entry):
            if entry.when is not None:
                errors.extend(condition_rules(("routing", "entry", i, "when"), entry.when, bands))
        raise_rules(Playbook, errors)
        return self

    @property
    def version(self) -> str:
        return content_hash(self)

    def changes_from(self, old: Playbook) -> list[str]:
        """The rules that differ from ``old``, one line each, by their place in the file.

        ``limits.max_emails_per_week: 3 -> 2``; a list that changed is named whole
        (``grading.rules changed``), as rules are read in order.
        """
        before, after = _flat(old.model_dump(mode="json")), _flat(self.model_dump(mode="json"))
        lines = []
        for path in sorted(before.keys() | after.keys()):
            a, b = before.get(path, _ABSENT), after.get(path, _ABSENT)
            if a == b:
                continue
            if isinstance(a, list) or isinstance(b, list):
                lines.append(f"{path} changed")
            elif a is _ABSENT:
                lines.append(f"{path}: added {_show(b)}")
            elif b is _ABSENT:
                lines.append(f"{path}: removed")
            else:
                lines.append(f"{path}: {_show(a)} -> {_show(b)}")
        return lines


class CadenceSet(BaseModel):
    """A validated playbook with every cadence it may route to: what the workflow is given."""

    model_config = ConfigDict(frozen=True)

    playbook: Playbook
    cadences: dict[str, Cadence]

    def cadence(self, cadence_id: str) -> Cadence:
        try:
            return self.cadences[cadence_id]
        except KeyError:
            raise KeyError(f"no cadence '{cadence_id}' in the set") from None
