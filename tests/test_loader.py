"""The loader and validator: every mistake reported at once, with file, line and a fix."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from nurture.adapters.loader import (
    CadenceSetInvalid,
    Problem,
    load_cadence,
    load_cadence_set,
    validate_paths,
    validate_report,
)
from nurture.adapters.yamlio import YamlSyntaxError, load_yaml
from nurture.cli.cadences import app as cadences_app
from nurture.domain.cadence import (
    Cadence,
    CadenceSet,
    EmailStep,
    FieldCondition,
    Playbook,
    WaitStep,
)
from nurture.domain.durations import DURATION_HELP

ROOT = Path(__file__).resolve().parent.parent
MALFORMED = Path(__file__).resolve().parent / "malformed"
CASES = sorted(p.name for p in MALFORMED.iterdir() if p.is_dir() and not p.name.startswith("_"))


def base_set(tmp_path: Path) -> Path:
    """A copy of the valid base set (playbook, one cadence, templates) in ``tmp_path``."""
    shutil.copytree(MALFORMED / "_base", tmp_path, dirs_exist_ok=True)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# --- the corpus -----------------------------------------------------------------------------


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES)
def test_malformed_case(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = MALFORMED / case
    work = base_set(tmp_path)
    for source in folder.rglob("*"):
        relative = source.relative_to(folder)
        if source.is_file() and relative.name not in ("expected.txt", "delete.txt", "paths.txt"):
            (work / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, work / relative)
    if (folder / "delete.txt").exists():
        for name in (folder / "delete.txt").read_text().split():
            (work / name).unlink()
    paths = ["cadences"]
    if (folder / "paths.txt").exists():
        paths = (folder / "paths.txt").read_text().split()
    expected = [
        line
        for line in (folder / "expected.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # Relative paths, as a marketer runs it from the repository root.
    monkeypatch.chdir(work)

    problems = validate_paths([Path(p) for p in paths], Path("templates"))

    assert [str(p) for p in problems] == expected


def test_the_base_set_is_valid(tmp_path: Path) -> None:
    work = base_set(tmp_path)

    assert validate_paths([work / "cadences"], work / "templates") == []


# --- reporting --------------------------------------------------------------------------------


def test_a_file_with_several_mistakes_reports_all_of_them(tmp_path: Path) -> None:
    work = base_set(tmp_path)
    write(
        work / "cadences" / "inbound.yaml",
        """
        id: inbound
        name: Inbound nurture
        exit_on: [email.replyed]
        steps:
          - id: welcome
            type: email
            template: inbound/welcome
            subject: Hello
          - id: pause
            type: wait
            duration: 2 days
          - id: engaged
            type: branch
            cases:
              - when: {event: email.clickd, step: welcom}
                goto: first-cal
          - id: pause
            type: call
            script: inbound/first-call
        """,
    )

    problems = validate_paths([work / "cadences"], work / "templates")

    assert [(p.line, p.where, p.message) for p in problems] == [
        (
            3,
            "cadence",
            "exit_on[0]: 'email.replyed' is not an event type (did you mean 'email.replied'?)",
        ),
        (
            8,
            "step 'welcome'",
            "unknown key 'subject'; allowed here: id, name, next, type, template",
        ),
        (11, "step 'pause'", "duration: '2 days' is not a duration: " + DURATION_HELP),
        (
            15,
            "step 'engaged'",
            "cases[0].when.event: 'email.clickd' is not an event type "
            "(did you mean 'email.clicked'?)",
        ),
        (
            15,
            "step 'engaged'",
            "event condition step 'welcom' names no step (did you mean 'welcome'?)",
        ),
        (
            16,
            "step 'engaged'",
            "goto 'first-cal' names no step (steps: 'welcome', 'pause', 'engaged', or 'end')",
        ),
        (
            17,
            "step 'pause'",
            "step id 'pause' is used twice (first as step #2): give each step its own id",
        ),
    ]
    assert all(p.file.endswith("inbound.yaml") for p in problems)


def test_problems_print_as_file_line_where_message() -> None:
    problem = Problem("cadences/inbound.yaml", 14, "step 'engaged'", "goto 'x' names no step")

    assert str(problem) == "cadences/inbound.yaml:14: step 'engaged': goto 'x' names no step"
    assert sorted(
        [Problem("b", 1, "w", "m"), Problem("a", 9, "w", "m"), Problem("a", 2, "w", "m")]
    ) == [
        Problem("a", 2, "w", "m"),
        Problem("a", 9, "w", "m"),
        Problem("b", 1, "w", "m"),
    ]


def test_problems_across_files_are_sorted_by_file_and_line(tmp_path: Path) -> None:
    work = base_set(tmp_path)
    playbook = work / "cadences" / "playbook.yaml"
    playbook.write_text(playbook.read_text().replace("grades: [A, B]", "grades: [A, Q]"))
    cadence = work / "cadences" / "inbound.yaml"
    cadence.write_text(cadence.read_text().replace("goto: nudge", "goto: nudj"))

    problems = validate_paths([work / "cadences"], work / "templates")

    assert [(Path(p.file).name, p.line) for p in problems] == [
        ("inbound.yaml", 32),
        ("playbook.yaml", 11),
    ]


# --- loading --------------------------------------------------------------------------------


def test_load_cadence_set_returns_the_models(tmp_path: Path) -> None:
    work = base_set(tmp_path)

    cadence_set = load_cadence_set(work / "cadences", work / "templates")

    assert isinstance(cadence_set, CadenceSet)
    assert list(cadence_set.cadences) == ["inbound"]
    inbound = cadence_set.cadence("inbound")
    assert [s.id for s in inbound.steps] == [
        "welcome",
        "pause",
        "engaged",
        "nudge",
        "first-call",
        "after-call",
    ]
    assert isinstance(inbound.steps[0], EmailStep)
    assert inbound.steps[0].template == "inbound/welcome"
    assert cadence_set.playbook.routing.mql_cadence == "inbound"
    assert cadence_set.playbook.limits.holidays == ["2026-12-25"]


def test_load_cadence_set_raises_with_every_problem(tmp_path: Path) -> None:
    work = base_set(tmp_path)
    cadence = work / "cadences" / "inbound.yaml"
    cadence.write_text(
        cadence.read_text().replace("goto: nudge", "goto: nudj").replace("2d", "2 days")
    )

    with pytest.raises(CadenceSetInvalid) as caught:
        load_cadence_set(work / "cadences", work / "templates")

    assert len(caught.value.problems) == 2
    text = str(caught.value)
    assert "2 problems" in text
    assert "goto 'nudj' names no step (did you mean 'nudge'?)" in text
    assert "wait_for_outcome: '2 days' is not a duration" in text


def test_the_playbook_rules_hold_for_a_playbook_built_without_the_loader(tmp_path: Path) -> None:
    data = load_yaml((base_set(tmp_path) / "cadences" / "playbook.yaml").read_text()).data
    data["limits"]["send_window"] = {"start": "18:00", "end": "09:00"}
    data["thresholds"]["toss_up"]["grades"] = ["A", "Z"]

    with pytest.raises(ValidationError) as caught:
        Playbook.model_validate(data)

    assert [(e["type"], e["loc"]) for e in caught.value.errors()] == [
        ("rule", ("limits", "send_window", "start")),
    ]
    data["limits"]["send_window"] = {"start": "09:00", "end": "24:00"}
    with pytest.raises(ValidationError) as caught:
        Playbook.model_validate(data)
    assert [(e["loc"], e["msg"]) for e in caught.value.errors()] == [
        (
            ("thresholds", "toss_up", "grades", 1),
            "grade 'Z' is not in grading.bands (A, B, C): use one of them or add the band",
        )
    ]


def test_the_step_rules_are_the_cadence_models_own_when_a_file_is_checked() -> None:
    data = {
        "id": "c",
        "name": "C",
        "steps": [
            {"id": "hello", "type": "email", "template": "t/hello", "next": "bye"},
            {
                "id": "check",
                "type": "branch",
                "cases": [{"when": {"grade_in": ["Z"]}, "goto": "hello"}],
            },
        ],
    }

    with pytest.raises(ValidationError) as caught:
        Cadence.model_validate(data, context={"authoring": True, "bands": ["A", "B"]})

    assert [(e["type"], e["loc"], e["msg"]) for e in caught.value.errors()] == [
        (
            "rule",
            ("steps", 0, "next"),
            "next 'bye' names no step (steps: 'hello', 'check', or 'end')",
        ),
        (
            "rule",
            ("steps", 1, "cases", 0, "when", "grade_in", 0),
            "grade 'Z' is not in grading.bands (A, B): use one of them or add the band",
        ),
        (
            "rule",
            ("steps", 1),
            "never reached: no step leads to it (point a next, goto or default at it, or remove it)",
        ),
    ]
    # A snapshot (or a picture of a broken file) is held to the schema alone.
    assert [s.id for s in Cadence.model_validate(data).steps] == ["hello", "check"]
    assert Cadence.model_validate(data).edges()["hello"][0].target == "bye"


def test_yaml_1_2_keeps_no_and_clock_times_as_strings(tmp_path: Path) -> None:
    path = write(
        tmp_path / "norway.yaml",
        """
        id: norway
        name: Norway
        steps:
          - id: country
            type: branch
            cases:
              - when: {field: country, equals: NO}
                goto: wait
          - id: wait
            type: wait
            duration: 1d
        """,
    )

    cadence = load_cadence(path)

    condition = cadence.steps[0].cases[0].when  # type: ignore[union-attr]
    assert isinstance(condition, FieldCondition)
    assert condition.equals == "NO"
    assert isinstance(cadence.steps[1], WaitStep)
    doc = load_yaml("start: 09:00\nday: 2026-12-25\nflag: yes\n")
    assert doc.data == {"start": "09:00", "day": "2026-12-25", "flag": "yes"}


def test_a_playbook_checked_alone_may_name_the_cadences_beside_it(tmp_path: Path) -> None:
    work = base_set(tmp_path)

    assert validate_paths([work / "cadences" / "playbook.yaml"], None) == []

    (work / "cadences" / "inbound.yaml").unlink()
    problems = validate_paths([work / "cadences" / "playbook.yaml"], None)
    assert {p.where for p in problems} == {
        "routing.entry[0].cadence",
        "routing.entry[1].cadence",
        "routing.mql_cadence",
        "routing.recycle.default.cadence",
    }


def test_a_missing_path_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    problems = validate_paths([tmp_path / "nope"], None)

    assert len(problems) == 1
    assert problems[0].message.startswith("no such file or folder")


def test_a_templates_folder_of_none_skips_template_checks(tmp_path: Path) -> None:
    work = base_set(tmp_path)
    shutil.rmtree(work / "templates")

    assert validate_paths([work / "cadences"], None) == []
    problems = validate_paths([work / "cadences"], work / "templates")
    assert len(problems) == 3
    assert all("not found: create" in p.message for p in problems)


# --- yamlio -------------------------------------------------------------------------------


def test_yaml_lines_point_into_nested_items() -> None:
    doc = load_yaml(
        textwrap.dedent(
            """
            id: x
            steps:
              - id: a
                type: branch
                cases:
                  - when:
                      field: employees
                      at_least: lots
                    goto: end
            """
        ).lstrip()
    )

    # pydantic puts union tags ('branch', 'field') into its locations: they are skipped.
    loc = ("steps", 0, "branch", "cases", 0, "when", "field", "at_least")
    assert doc.line_for_error(loc, Cadence) == 8
    assert doc.line_for_error(loc) == 8
    assert doc.line_of(("steps", 0, "cases", 0, "goto")) == 9
    assert doc.line_of(("steps", 0, "missing-key")) == 3


def test_yaml_syntax_errors_carry_their_line() -> None:
    with pytest.raises(YamlSyntaxError) as caught:
        load_yaml("a: 1\nb: [1, 2\nc: 3\n")

    assert caught.value.line == 3
    assert "YAML syntax" in caught.value.message


# --- the CLI --------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_validate_exits_0_on_a_clean_set(tmp_path: Path) -> None:
    work = base_set(tmp_path)

    result = runner.invoke(
        cadences_app,
        ["validate", str(work / "cadences"), "--templates", str(work / "templates")],
    )

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "ok: 1 cadence, playbook valid"


def test_cli_validate_exits_1_and_prints_each_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = base_set(tmp_path)
    cadence = work / "cadences" / "inbound.yaml"
    cadence.write_text(cadence.read_text().replace("goto: nudge", "goto: nudj"))
    monkeypatch.chdir(work)
    # The defaults come from the settings, as for a marketer at the repository root.
    monkeypatch.setenv("NURTURE_CADENCES_DIR", "cadences")
    monkeypatch.setenv("NURTURE_TEMPLATES_DIR", "templates")

    result = runner.invoke(cadences_app, ["validate"])

    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "cadences/inbound.yaml:32: step 'after-call': goto 'nudj' names no step "
        "(did you mean 'nudge'?)"
    ]


def test_cli_validate_warns_of_a_cadence_no_routing_rule_uses_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = base_set(tmp_path)
    spare = (work / "cadences" / "inbound.yaml").read_text().replace("id: inbound", "id: spare")
    write(work / "cadences" / "spare.yaml", spare)
    monkeypatch.chdir(work)

    result = runner.invoke(cadences_app, ["validate", "cadences", "--templates", "templates"])

    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "cadences/spare.yaml:1: cadence: warning: no routing rule uses 'spare' (routing.entry, "
        "routing.mql_cadence, routing.recycle), so no lead ever enters it: route to it or "
        "remove the file",
        "ok: 2 cadences, playbook valid, 1 warning",
    ]
    # Routing to it (here as a recycle cadence) settles it.
    playbook = work / "cadences" / "playbook.yaml"
    playbook.write_text(
        playbook.read_text().replace(
            "default: {after: 30d, cadence: inbound}", "default: {after: 30d, cadence: spare}"
        )
    )
    assert validate_report([Path("cadences")], Path("templates")).warnings == []


def test_cli_schema_writes_both_schemas(tmp_path: Path) -> None:
    result = runner.invoke(cadences_app, ["schema", "--out", str(tmp_path)])

    assert result.exit_code == 0, result.output
    cadence = json.loads((tmp_path / "cadence.schema.json").read_text())
    playbook = json.loads((tmp_path / "playbook.schema.json").read_text())
    assert cadence["$schema"].endswith("2020-12/schema")
    assert set(cadence["required"]) == {"id", "name", "steps"}
    assert cadence["additionalProperties"] is False
    assert {"thresholds", "routing", "sender"} <= set(playbook["required"])


def test_the_committed_schemas_are_up_to_date(tmp_path: Path) -> None:
    runner.invoke(cadences_app, ["schema", "--out", str(tmp_path)])

    for name in ("cadence.schema.json", "playbook.schema.json"):
        committed = ROOT / "schemas" / name
        assert committed.read_text() == (tmp_path / name).read_text(), (
            f"schemas/{name} is stale: run `nurture cadences schema`"
        )


def test_cli_graph_prints_mermaid(tmp_path: Path) -> None:
    work = base_set(tmp_path)

    result = runner.invoke(cadences_app, ["graph", "inbound", "--dir", str(work / "cadences")])

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("flowchart TD\n")
    assert "s_first_call" in result.stdout


def test_cli_graph_of_an_unknown_cadence_exits_1(tmp_path: Path) -> None:
    work = base_set(tmp_path)

    result = runner.invoke(cadences_app, ["graph", "nope", "--dir", str(work / "cadences")])

    assert result.exit_code == 1
    assert "no cadence 'nope'" in result.output
    assert "inbound" in result.output


# --- the repository's own content -------------------------------------------------------------


@pytest.mark.parametrize("folder", ["cadences", "examples/demo"])
def test_the_shipped_cadences_validate(folder: str) -> None:
    if not (ROOT / folder / "playbook.yaml").exists():
        pytest.skip(f"{folder}/playbook.yaml is not written yet")

    problems = validate_paths([ROOT / folder], ROOT / "templates")

    assert [str(p) for p in problems] == []


def test_validate_warns_of_an_email_that_claims_a_call_with_no_outcome_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = base_set(tmp_path)
    nudge = work / "templates" / "email" / "inbound" / "nudge.j2"
    nudge.write_text(
        nudge.read_text().replace("{% block text %}", "{% block text %}I Tried to call you. ", 1)
    )
    assert "Tried to call" in nudge.read_text()
    monkeypatch.chdir(work)

    result = runner.invoke(cadences_app, ["validate", "cadences", "--templates", "templates"])

    # `engaged` sends every lead that did not click to the nudge: no call was made.
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "cadences/inbound.yaml:20: step 'nudge': warning: template 'inbound/nudge' speaks of a "
        'call ("Tried to call"), but a lead can reach it with no call outcome recorded (from '
        "step 'engaged'): send it only after a branch case such as {call_outcome: [no_answer, "
        "voicemail]}, or reword it",
        "ok: 1 cadence, playbook valid, 1 warning",
    ]

    # Reached only from a case that needs an outcome (no_answer, voicemail): no warning.
    cadence = work / "cadences" / "inbound.yaml"
    cadence.write_text(cadence.read_text().replace("    default: nudge\n", "    default: end\n"))
    assert validate_report([Path("cadences")], Path("templates")).warnings == []

    # The default of a branch that caught `none` first has an outcome too; without that
    # case, a lead whose SDR recorded nothing takes the default.
    text = cadence.read_text().replace(
        "      - when: {call_outcome: [no_answer, voicemail]}\n        goto: nudge\n    default: end",
        "      - when: {call_outcome: [connected]}\n        goto: end\n    default: nudge",
    )
    cadence.write_text(text)
    [warning] = validate_report([Path("cadences")], Path("templates")).warnings
    assert "(from step 'after-call')" in warning.message
    cadence.write_text(
        text.replace(
            "      - when: {call_outcome: [connected]}",
            "      - when: {call_outcome: [none]}\n        goto: end\n"
            "      - when: {call_outcome: [connected]}",
        )
    )
    assert validate_report([Path("cadences")], Path("templates")).warnings == []
