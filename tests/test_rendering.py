"""The template renderer: sandboxed, strict, escaping HTML only, checked against sample leads."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nurture.domain.events import Lead
from nurture.domain.rendering import (
    LEAD_FIELDS,
    RenderedEmail,
    Renderer,
    TemplateProblem,
    sample_context,
    template_context,
)

WELCOME = """
{% block subject %}
  Welcome{% if lead.first_name %}, {{ lead.first_name }}{% endif %}
{% endblock %}
{% block text %}
Hi {{ lead.first_name or "there" }} at {{ lead.company or "your company" }},
Start here: {{ link("https://acme.example/start?a=1&b=2") }}
{{ sdr.name }} / {{ sender.name }}, {{ sender.postal_address }}
Unsubscribe: {{ unsubscribe_url }}
{% endblock %}
{% block html %}<p>Hi {{ lead.company or "there" }} &amp; team</p>{% endblock %}
"""


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    write(tmp_path, "email/inbound/welcome.j2", WELCOME)
    write(tmp_path, "call/inbound/first-call.j2", 'Call {{ lead.first_name or "them" }}.\n')
    return tmp_path


def test_render_email_with_a_full_lead(templates: Path) -> None:
    email = Renderer(templates).render_email("inbound/welcome", sample_context(full=True))

    assert email == RenderedEmail(
        subject="Welcome, Ada",
        text=(
            "Hi Ada at Analytical Engines Ltd,\n"
            "Start here: http://localhost:8000/c/sample-token?to=https%3A%2F%2Facme.example"
            "%2Fstart%3Fa%3D1%26b%3D2\n"
            "Aiko Sato / Acme, Acme Inc., 1 Main St, Springfield\n"
            "Unsubscribe: http://localhost:8000/u/sample-token\n"
        ),
        html="<p>Hi Analytical Engines Ltd &amp; team</p>",
    )


def test_optional_fields_a_lead_lacks_are_none_so_fallbacks_work(templates: Path) -> None:
    email = Renderer(templates).render_email("inbound/welcome", sample_context(full=False))

    assert email.subject == "Welcome"
    assert email.text.startswith("Hi there at your company,\n")


def test_html_is_escaped_and_text_is_not(templates: Path) -> None:
    context = sample_context(full=True)
    context["lead"] = {**context["lead"], "company": "<b>Smith & Sons</b>"}

    email = Renderer(templates).render_email("inbound/welcome", context)

    assert email.html == "<p>Hi &lt;b&gt;Smith &amp; Sons&lt;/b&gt; &amp; team</p>"
    assert "Hi Ada at <b>Smith & Sons</b>," in email.text


def test_subject_is_one_stripped_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        "email/x.j2",
        "{% block subject %}\n  Big\n  news  {% endblock %}{% block text %}Body{% endblock %}",
    )

    email = Renderer(tmp_path).render_email("x", sample_context(full=True))

    assert email.subject == "Big news"
    assert email.html is None


def test_an_unknown_name_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        "email/x.j2",
        "{% block subject %}Hi{% endblock %}\n{% block text %}\nHi {{ lead.frist_name }}\n"
        "{% endblock %}\n",
    )

    with pytest.raises(TemplateProblem) as caught:
        Renderer(tmp_path).render_email("x", sample_context(full=True))

    assert caught.value.file == str(tmp_path / "email" / "x.j2")
    assert caught.value.line == 3
    assert "lead has no field 'frist_name' (did you mean 'first_name'?)" in caught.value.message
    assert str(caught.value).startswith(f"{tmp_path / 'email' / 'x.j2'}:3: ")


def test_a_value_that_would_print_none_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "email/x.j2", "{% block subject %}Hi {{ lead.first_name }}{% endblock %}")

    renderer = Renderer(tmp_path)

    with pytest.raises(TemplateProblem, match="prints an empty value"):
        renderer.render_email("x", sample_context(full=False))


def test_a_missing_sdr_is_present_with_empty_fields(tmp_path: Path) -> None:
    write(tmp_path, "call/x.j2", '{{ sdr.name or "your SDR" }} calls {{ lead.id }}')
    context = sample_context(full=True)
    context["sdr"] = None

    script = Renderer(tmp_path).render_call_script("x", context)

    assert script == "your SDR calls L-1001\n"


def test_render_call_script(templates: Path) -> None:
    renderer = Renderer(templates)

    assert renderer.render_call_script("inbound/first-call", sample_context(True)) == "Call Ada.\n"
    assert (
        renderer.render_call_script("inbound/first-call", sample_context(False)) == "Call them.\n"
    )


def test_the_sandbox_refuses_python_internals(tmp_path: Path) -> None:
    write(tmp_path, "call/x.j2", "{{ lead.__class__.__mro__ }}")

    with pytest.raises(TemplateProblem, match="unsafe"):
        Renderer(tmp_path).render_call_script("x", sample_context(full=True))


def test_templates_may_extend_a_layout(tmp_path: Path) -> None:
    write(
        tmp_path,
        "email/_layout.j2",
        "{% block subject %}Acme news{% endblock %}\n"
        "{% block text %}{% block body %}{% endblock %}\n--\n{{ unsubscribe_url }}{% endblock %}",
    )
    write(
        tmp_path,
        "email/x.j2",
        '{% extends "email/_layout.j2" %}{% block body %}Hi {{ lead.first_name }}{% endblock %}',
    )

    email = Renderer(tmp_path).render_email("x", sample_context(full=True))

    assert email.subject == "Acme news"
    assert email.text == "Hi Ada\n--\nhttp://localhost:8000/u/sample-token\n"
    assert Renderer(tmp_path).check("email", "x") == [
        f"{tmp_path / 'email' / 'x.j2'}:1: prints an empty value (None): give a fallback, "
        'e.g. {{ lead.first_name or "there" }} (with a lead that has only an id)'
    ]


# --- check --------------------------------------------------------------------------------


def test_check_passes_good_templates(templates: Path) -> None:
    renderer = Renderer(templates)

    assert renderer.check("email", "inbound/welcome") == []
    assert renderer.check("call", "inbound/first-call") == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "{% block text %}Hi{% endblock %}",
            [
                "{file}: has no {{% block subject %}}: an email needs {{% block subject %}} "
                "and {{% block text %}}"
            ],
        ),
        (
            "{% block subject %}Hi{% endblock %}\n{% block text %}{{ leed.first_name }}"
            "{% endblock %}",
            [
                "{file}:2: 'leed' is not in the template context (did you mean 'lead'?); the "
                "context has lead, sdr, sender, unsubscribe_url, link"
            ],
        ),
        (
            "{% block subject %}Hi {{ lead.first_name }{% endblock %}",
            ["{file}:1: template syntax: unexpected '}}'"],
        ),
        (
            "{% block subject %}{{ lead.company or '' }}{% endblock %}"
            "{% block text %}Body{% endblock %}",
            [
                "{file}: the subject renders empty: write a subject (with a lead that has only "
                "an id)"
            ],
        ),
        (
            "{% block subject %}Hi{% endblock %}{% block text %}\n\n"
            "{{ lead.employees + 1 }}{% endblock %}",
            [
                "{file}:3: TypeError: unsupported operand type(s) for +: 'NoneType' and 'int' "
                "(with a lead that has only an id)"
            ],
        ),
        (
            "{% block subject %}Hi{% endblock %}{% block text %}"
            "{{ lead.fields.webinar }}{% endblock %}",
            [
                "{file}:1: lead.fields has no 'webinar' for this lead: free fields are optional, "
                "write {{{{ lead.fields.get('webinar') or '...' }}}}"
            ],
        ),
    ],
    ids=["no-subject", "unknown-name", "syntax", "empty-subject", "none-arithmetic", "free-field"],
)
def test_check_finds_problems(tmp_path: Path, source: str, expected: list[str]) -> None:
    write(tmp_path, "email/x.j2", source)
    file = str(tmp_path / "email" / "x.j2")

    assert Renderer(tmp_path).check("email", "x") == [e.format(file=file) for e in expected]


def test_check_of_a_missing_template(tmp_path: Path) -> None:
    renderer = Renderer(tmp_path)

    assert renderer.check("call", "nope") == [f"{tmp_path / 'call' / 'nope.j2'}: not found"]
    assert renderer.exists("call", "nope") is False


def test_names_lists_templates_as_cadences_write_them(templates: Path) -> None:
    renderer = Renderer(templates)

    assert renderer.names("email") == ["inbound/welcome"]
    assert renderer.names("call") == ["inbound/first-call"]


# --- the context ------------------------------------------------------------------------------


def test_the_sparse_sample_has_every_lead_field_and_only_an_id() -> None:
    lead = sample_context(full=False)["lead"]

    assert set(lead) == set(LEAD_FIELDS)
    assert lead["id"]
    assert {k for k, v in lead.items() if v is not None and k != "fields"} == {"id"}
    assert dict(lead["fields"]) == {}


def test_the_full_sample_sets_every_lead_field() -> None:
    lead = sample_context(full=True)["lead"]

    assert set(lead) == set(LEAD_FIELDS)
    assert all(lead[k] is not None for k in LEAD_FIELDS)


def test_template_context_from_a_lead_model(tmp_path: Path) -> None:
    write(tmp_path, "call/x.j2", "{{ lead.first_name or 'there' }} {{ lead.fields.plan }}")
    lead = Lead.model_validate({"id": "L-9", "first_name": "Kim", "plan": "pro"})
    context = template_context(
        lead=lead.model_dump(),
        sdr={"id": "ben", "name": "Ben", "email": "ben@example.com"},
        sender={"from": "Acme <hello@acme.example>", "postal_address": "1 Main St"},
        unsubscribe_url="http://x/u/t",
        link=lambda url: url,
    )

    assert context["sender"]["name"] == "Acme"
    assert Renderer(tmp_path).render_call_script("x", context) == "Kim pro\n"
