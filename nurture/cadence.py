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
from typing import Annotated, Any, Literal, NamedTuple, Protocol, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from nurture.durations import DURATION_PATTERN, parse_duration
from nurture.events import EVENT_TYPES, PERSONAL_FIELDS, CallOutcome, EventType


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
    """The outcome the SDR recorded for the most recent call step."""

    call_outcome: list[CallOutcome] = Field(min_length=1)


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
    """Every condition inside ``condition`` (itself included), with its data path."""
    yield loc, condition
    if isinstance(condition, AllCondition | AnyCondition):
        key = "all" if isinstance(condition, AllCondition) else "any"
        for i, inner in enumerate(getattr(condition, key)):
            yield from walk_conditions((*loc, key, i), inner)
    elif isinstance(condition, NotCondition):
        yield from walk_conditions((*loc, "not"), condition.not_)


def condition_rules(
    loc: Loc, condition: Any, bands: Iterable[str] | None
) -> list[InitErrorDetails]:
    """A condition's grades must name bands; its fields must reach the workflow."""
    errors: list[InitErrorDetails] = []
    for at, inner in walk_conditions(loc, condition):
        if isinstance(inner, GradeCondition) and bands is not None:
            known = set(bands)
            for i, grade in enumerate(inner.grade_in):
                if grade not in known:
                    errors.append(
                        rule_error((*at, "grade_in", i), unknown_grade(grade, known), grade)
                    )
        if isinstance(inner, FieldCondition) and inner.field in PERSONAL_FIELDS:
            errors.append(
                rule_error(
                    (*at, "field"),
                    f"field '{inner.field}' never reaches the workflow (personal data stays "
                    "out of it), so this rule never matches: decide on country, industry, "
                    "employees, tier_account, source or a free field",
                    inner.field,
                )
            )
    return errors


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


class Limits(_Strict):
    max_emails_per_week: int | None = Field(default=None, ge=1)
    min_gap_between_touches: Duration | None = None
    send_window: SendWindow = Field(default_factory=SendWindow)
    holidays: list[IsoDate] = Field(default_factory=list, description="ISO dates, YYYY-MM-DD.")


class Sdr(_Strict):
    id: StepId
    name: str
    email: str
    territories: list[str] = Field(default_factory=list)


class Team(_Strict):
    sdrs: list[Sdr] = Field(default_factory=list)
    assignment: Literal["round_robin"] = "round_robin"
    call_due: Duration = "1 business day"

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


class Playbook(_Strict):
    """The written agreement between marketing, inside sales and sales."""

    scoring: Scoring = Field(default_factory=Scoring)
    grading: Grading = Field(default_factory=Grading)
    thresholds: Thresholds
    routing: Routing
    limits: Limits = Field(default_factory=Limits)
    team: Team = Field(default_factory=Team)
    sender: Sender

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
