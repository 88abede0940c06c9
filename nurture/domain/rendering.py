"""The one template renderer: emails and call scripts from ``templates/`` (CONTRACT.md).

Used by ``cadences validate`` (which renders every template against a full and a sparse
sample lead) and by the email and call activities. Rendering is sandboxed and strict: a name
that is not in the context, or a value that prints as ``None``, is an error that names the
template file and line, never a blank in a sent email.
"""

from __future__ import annotations

import difflib
import os
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from jinja2 import (
    BaseLoader,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    TemplateRuntimeError,
    TemplateSyntaxError,
    meta,
    nodes,
)
from jinja2.runtime import missing
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import concat
from markupsafe import escape

from nurture.domain.cadence import Playbook

TemplateKind = Literal["email", "call"]
EMAIL_BLOCKS: tuple[str, ...] = ("subject", "text", "html")
REQUIRED_EMAIL_BLOCKS: tuple[str, ...] = ("subject", "text")
CONTEXT_NAMES: tuple[str, ...] = ("lead", "sdr", "sender", "unsubscribe_url", "link")
LEAD_FIELDS: tuple[str, ...] = (
    "id",
    "email",
    "first_name",
    "last_name",
    "company",
    "title",
    "phone",
    "country",
    "timezone",
    "industry",
    "employees",
    "tier_account",
    "source",
    "fields",
)


@dataclass(frozen=True)
class RenderedEmail:
    """An email ready to send: a one-line subject, a text body, and maybe an HTML body."""

    subject: str
    text: str
    html: str | None


class TemplateProblem(Exception):
    """A template that cannot be rendered; ``str()`` is ``<template file>:<line>: <message>``."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file = file
        self.line = line
        self.message = message
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")


class TemplateRecord(dict[str, Any]):
    """A mapping in the template context (``lead``, ``sdr``, ``sender``) that knows its name.

    Only so that a misspelt key reads "lead has no field 'frist_name'"; the sandbox hides
    ``_label`` from templates (names starting with ``_`` are unsafe there).
    """

    def __init__(self, label: str, values: Mapping[str, Any]) -> None:
        super().__init__(values)
        self._label = label


class _EmptyValue(TemplateRuntimeError):
    """A ``{{ ... }}`` that evaluated to ``None``: it would print "None" in the email."""


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Undefined(StrictUndefined):
    """StrictUndefined with messages a marketer can act on (what exists, what was meant)."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        name = str(self._undefined_name)
        obj = self._undefined_obj
        if obj is missing:
            return (
                f"'{name}' is not in the template context{_did_you_mean(name, list(CONTEXT_NAMES))}"
                f"; the context has {', '.join(CONTEXT_NAMES)}"
            )
        if isinstance(obj, Mapping):
            keys = sorted(str(k) for k in obj)
            label = getattr(obj, "_label", "this mapping")
            if label == "lead.fields":
                return (
                    f"lead.fields has no '{name}' for this lead: free fields are optional, "
                    f"write {{{{ lead.fields.get('{name}') or '...' }}}}"
                )
            return (
                f"{label} has no field '{name}'{_did_you_mean(name, keys)}; "
                f"{label} has {', '.join(keys) or 'no fields'}"
            )
        return f"{type(obj).__name__} value has no attribute '{name}'"


def _refuse_none(value: Any) -> Any:
    # Jinja applies `finalize` to every {{ ... }} before printing: an absent optional field
    # must get a fallback in the template, so "Hi None," can never be sent.
    if value is None:
        raise _EmptyValue(
            'prints an empty value (None): give a fallback, e.g. {{ lead.first_name or "there" }}'
        )
    return value


def _environment(loader: BaseLoader, *, autoescape: bool) -> ImmutableSandboxedEnvironment:
    # The immutable sandbox also stops a template from changing the context it is given
    # (e.g. lead.fields.pop(...)); StrictUndefined makes an unknown name an error.
    env = ImmutableSandboxedEnvironment(
        loader=loader,
        undefined=_Undefined,
        autoescape=autoescape,
        finalize=_refuse_none,
    )
    # `|e` would turn None into the text "None" before `finalize` sees it; let None through
    # so that it is refused like any other empty value.
    env.filters["e"] = env.filters["escape"] = _escape_keeping_none
    return env


def _escape_keeping_none(value: Any) -> Any:
    return None if value is None else escape(value)


class Renderer:
    """Renders ``templates/email/<name>.j2`` and ``templates/call/<name>.j2``.

    HTML escaping applies to the ``html`` block only. Jinja decides escaping when it compiles
    a template (per environment), not per block, so the renderer keeps two environments over
    the same files: one without autoescape for the subject, the text body and call scripts
    (escaping there would put ``&amp;`` into plain text), and one with autoescape for the
    ``html`` block (so a lead's ``<company>`` can never inject markup). Both share the
    sandbox, the strict undefined and the None check.
    """

    def __init__(self, templates_dir: Path) -> None:
        """Make a renderer over one templates folder.

        Args:
            templates_dir: the folder holding ``email/`` and ``call/``.
        """
        self.templates_dir = Path(templates_dir)
        loader = FileSystemLoader(os.fspath(self.templates_dir))
        self._text_env = _environment(loader, autoescape=False)
        self._html_env = _environment(loader, autoescape=True)

    # --- public -----------------------------------------------------------------------

    def render_email(self, name: str, context: Mapping[str, Any]) -> RenderedEmail:
        """Render an email template's blocks.

        Args:
            name: the template name as a cadence writes it (``inbound/welcome``).
            context: ``lead``, ``sdr``, ``sender``, ``unsubscribe_url``, ``link`` (see
                :func:`template_context`).

        Returns:
            The subject (stripped, on one line), the text, and the html or ``None``.

        Raises:
            TemplateProblem: naming the template file and line.
        """
        parts = self._render_email_parts(name, _normalized(context))
        path = self._display_path("email", name)
        for block in REQUIRED_EMAIL_BLOCKS:
            if block not in parts:
                raise TemplateProblem(path, None, _missing_block_message(block))
        for message in _empty_parts(parts):
            raise TemplateProblem(path, None, message)
        html = parts["html"].strip() if "html" in parts else None
        return RenderedEmail(
            # A header is one line: newlines from {% if %}s or wrapping are folded away.
            subject=" ".join(parts["subject"].split()),
            text=parts["text"].strip() + "\n",
            html=html or None,
        )

    def render_call_script(self, name: str, context: Mapping[str, Any]) -> str:
        """Render a call script (plain text).

        Args:
            name: the script name as a cadence writes it (``inbound/first-call``).
            context: as for :meth:`render_email`.

        Raises:
            TemplateProblem: naming the template file and line.
        """
        template = self._load(self._text_env, "call", name)
        values = _normalized(context)
        return str(self._guard(lambda: template.render(values))).strip() + "\n"

    def check(self, kind: TemplateKind, name: str) -> list[str]:
        """Find what is wrong with a template, without sending anything.

        The template is parsed, its names checked against the context, and it is rendered
        against a full and a sparse sample lead (see :func:`sample_context`).

        Args:
            kind: ``"email"`` or ``"call"``.
            name: the template name as a cadence writes it.

        Returns:
            One ``<template file>:<line>: <message>`` string per problem; empty when fine.
        """
        path = self._display_path(kind, name)
        try:
            template = self._load(self._text_env, kind, name)
        except TemplateProblem as exc:
            return [str(exc)]
        problems, unknown_names = self._static_problems(kind, name, template)
        if unknown_names:
            # A name missing from the context would fail both renders below with the same
            # message; those come first.
            return problems
        seen: set[str] = set()
        for full in (True, False):
            context = sample_context(full=full)
            try:
                if kind == "email":
                    found = [
                        f"{path}: {message}"
                        for message in _empty_parts(self._render_email_parts(name, context))
                    ]
                else:
                    self.render_call_script(name, context)
                    found = []
            except TemplateProblem as exc:
                found = [str(exc)]
            for problem in found:
                # The sparse render often repeats what the full one found; say it once.
                if problem not in seen:
                    seen.add(problem)
                    problems.append(problem if full else f"{problem} {_SPARSE_NOTE}")
        return problems

    def exists(self, kind: TemplateKind, name: str) -> bool:
        """Whether ``templates/<kind>/<name>.j2`` is there."""
        try:
            self._text_env.loader.get_source(self._text_env, _template_name(kind, name))  # type: ignore[union-attr]
        except TemplateNotFound:
            return False
        return True

    def names(self, kind: TemplateKind) -> list[str]:
        """The template names of a kind, as a cadence would write them (for suggestions)."""
        prefix = f"{kind}/"
        return sorted(
            n[len(prefix) : -len(".j2")]
            for n in self._text_env.list_templates(extensions=["j2"])
            if n.startswith(prefix)
        )

    # --- internals --------------------------------------------------------------------

    def _display_path(self, kind: TemplateKind, name: str) -> str:
        return os.fspath(self.templates_dir / kind / f"{name}.j2")

    def _load(self, env: ImmutableSandboxedEnvironment, kind: TemplateKind, name: str) -> Template:
        try:
            return env.get_template(_template_name(kind, name))
        except TemplateNotFound as exc:
            missing_name = exc.name if exc.name != _template_name(kind, name) else None
            what = f"includes '{missing_name}', which is not found" if missing_name else "not found"
            raise TemplateProblem(self._display_path(kind, name), None, what) from None
        except TemplateSyntaxError as exc:
            file = exc.filename or self._display_path(kind, name)
            raise TemplateProblem(file, exc.lineno, f"template syntax: {exc.message}") from None

    def _guard(self, render: Callable[[], Any]) -> Any:
        """Run a render, turning any failure into a TemplateProblem with the template line."""
        try:
            return render()
        except TemplateProblem:
            raise
        except TemplateSyntaxError as exc:  # an {% include %}d template that does not parse
            raise TemplateProblem(
                exc.filename or str(exc.name), exc.lineno, f"template syntax: {exc.message}"
            ) from None
        except TemplateNotFound as exc:
            raise TemplateProblem(
                os.fspath(self.templates_dir / str(exc.name)), None, "not found"
            ) from None
        except Exception:
            try:
                # Re-raises the error with a traceback whose frames carry template lines.
                self._text_env.handle_exception()
            except Exception as rewritten:
                file, line = self._template_frame(rewritten)
                raise TemplateProblem(file, line, _describe_runtime_error(rewritten)) from None
            raise  # pragma: no cover - handle_exception always raises

    def _template_frame(self, exc: BaseException) -> tuple[str, int | None]:
        root = os.path.abspath(self.templates_dir)
        found: tuple[str, int | None] = (os.fspath(self.templates_dir), None)
        for frame in traceback.extract_tb(exc.__traceback__):
            if os.path.abspath(frame.filename).startswith(root + os.sep):
                found = (frame.filename, frame.lineno)
        return found

    def _render_email_parts(self, name: str, context: Mapping[str, Any]) -> dict[str, str]:
        """Render each block present; html in the autoescaping environment."""
        text_template = self._load(self._text_env, "email", name)
        parts = self._guard(lambda: _render_blocks(text_template, context, ("subject", "text")))
        html_template = self._load(self._html_env, "email", name)
        parts.update(self._guard(lambda: _render_blocks(html_template, context, ("html",))))
        return parts

    def _static_problems(
        self, kind: TemplateKind, name: str, template: Template
    ) -> tuple[list[str], bool]:
        """Missing blocks and names outside the context, found without rendering.

        Returns:
            The problems, and whether any name is missing from the context.
        """
        path = self._display_path(kind, name)
        source, filename, _ = self._text_env.loader.get_source(  # type: ignore[union-attr]
            self._text_env, _template_name(kind, name)
        )
        ast = self._text_env.parse(source, _template_name(kind, name), filename)
        problems = []
        if kind == "email":
            blocks = self._block_names(ast)
            for block in REQUIRED_EMAIL_BLOCKS:
                if block not in blocks:
                    problems.append(f"{path}: {_missing_block_message(block)}")
        known = set(CONTEXT_NAMES) | set(self._text_env.globals)
        unknown = sorted(meta.find_undeclared_variables(ast) - known)
        for undeclared in unknown:
            line = next((n.lineno for n in ast.find_all(nodes.Name) if n.name == undeclared), None)
            suggestion = _did_you_mean(undeclared, list(CONTEXT_NAMES))
            problems.append(
                f"{path}:{line}: '{undeclared}' is not in the template context{suggestion}; "
                f"the context has {', '.join(CONTEXT_NAMES)}"
            )
        return problems, bool(unknown)

    def _block_names(self, ast: nodes.Template, depth: int = 0) -> set[str]:
        """Block names of a template and of the templates it ``{% extends %}``."""
        names = {block.name for block in ast.find_all(nodes.Block)}
        if depth > 10:  # an extends cycle; Jinja itself reports it when rendering
            return names
        for extends in ast.find_all(nodes.Extends):
            if isinstance(extends.template, nodes.Const):
                parent = str(extends.template.value)
                try:
                    source, filename, _ = self._text_env.loader.get_source(  # type: ignore[union-attr]
                        self._text_env, parent
                    )
                    names |= self._block_names(
                        self._text_env.parse(source, parent, filename), depth + 1
                    )
                except (TemplateNotFound, TemplateSyntaxError):
                    continue  # reported when rendering
        return names


_SPARSE_NOTE = "(with a lead that has only an id)"


def _empty_parts(parts: dict[str, str]) -> list[str]:
    """Blocks that are there but render to nothing: an email without a subject or body."""
    return [
        f"the {label} renders empty: write {what}"
        for block, label, what in (
            ("subject", "subject", "a subject"),
            ("text", "text body", "a text body"),
        )
        if block in parts and not parts[block].strip()
    ]


def _template_name(kind: TemplateKind, name: str) -> str:
    return f"{kind}/{name}.j2"


def _missing_block_message(block: str) -> str:
    return (
        f"has no {{% block {block} %}}: an email needs {{% block subject %}} and {{% block text %}}"
    )


def _render_blocks(
    template: Template, context: Mapping[str, Any], wanted: tuple[str, ...]
) -> dict[str, str]:
    ctx = template.new_context(dict(context))
    # Run the whole template once first: that registers blocks inherited through
    # {% extends %} and the template's top-level {% set %}s in the context, exactly as a
    # full render would; then each block is rendered on its own.
    for _ in template.root_render_func(ctx):
        pass
    return {block: concat(ctx.blocks[block][0](ctx)) for block in wanted if block in ctx.blocks}


def _describe_runtime_error(exc: BaseException) -> str:
    message = str(exc) or type(exc).__name__
    if type(exc).__name__ == "SecurityError":
        return f"not allowed in a template: {message}"
    if isinstance(exc, TypeError | ValueError | ArithmeticError | LookupError):
        return f"{type(exc).__name__}: {message}"
    return message


# --- context ----------------------------------------------------------------------------


def template_context(
    *,
    lead: Mapping[str, Any],
    sdr: Mapping[str, Any] | None,
    sender: Mapping[str, Any],
    unsubscribe_url: str,
    link: Callable[[str], str],
) -> dict[str, Any]:
    """The context every template gets, with every lead field present (``None`` if absent).

    Args:
        lead: the lead's fields (``Lead.model_dump()`` works); missing ones become ``None``.
        sdr: the owner's ``id``, ``name``, ``email`` (all ``None`` while unassigned).
        sender: ``from_`` (or ``from``), ``postal_address``, ``name``.
        unsubscribe_url: the lead's one-click unsubscribe link.
        link: turns a target URL into a tracked click URL.
    """
    return _normalized(
        {
            "lead": lead,
            "sdr": sdr,
            "sender": sender,
            "unsubscribe_url": unsubscribe_url,
            "link": link,
        }
    )


def sdr_context(playbook: Playbook, owner: str | None) -> dict[str, Any] | None:
    """The ``sdr`` of the context: the owner's id, name and email; None while unassigned."""
    for sdr in playbook.team.sdrs:
        if sdr.id == owner:
            return {"id": sdr.id, "name": sdr.name, "email": sdr.email}
    return None


def sender_context(playbook: Playbook) -> dict[str, Any]:
    """The ``sender`` of the context, from the playbook."""
    name, address = parseaddr(playbook.sender.from_)
    return {
        "from_": playbook.sender.from_,
        "name": name or address,
        "postal_address": playbook.sender.postal_address,
    }


def _normalized(context: Mapping[str, Any]) -> dict[str, Any]:
    """The context in the one shape templates are checked against, however it was built.

    ``lead`` gets exactly the contract's fields (absent ones ``None``), a missing ``sdr``
    becomes one whose fields are ``None``; so a template behaves at send time as it did in
    ``cadences validate``, and a misspelt key gets a message naming ``lead``/``sdr``/``sender``.
    Keys left out of ``context`` stay out: using them is an error, as it should be.
    """
    out = dict(context)
    lead = out.get("lead")
    if isinstance(lead, Mapping) and not isinstance(lead, TemplateRecord):
        values = {name: lead.get(name) for name in LEAD_FIELDS}
        values["fields"] = TemplateRecord("lead.fields", lead.get("fields") or {})
        out["lead"] = TemplateRecord("lead", values)
    if "sdr" in out and not isinstance(out["sdr"], TemplateRecord):
        sdr = out["sdr"] if isinstance(out["sdr"], Mapping) else {}
        out["sdr"] = TemplateRecord("sdr", {k: sdr.get(k) for k in ("id", "name", "email")})
    sender = out.get("sender")
    if isinstance(sender, Mapping) and not isinstance(sender, TemplateRecord):
        sender_from = sender.get("from_", sender.get("from"))
        out["sender"] = TemplateRecord(
            "sender",
            {
                "from_": sender_from,
                "postal_address": sender.get("postal_address"),
                "name": sender.get("name") or _display_name(sender_from),
            },
        )
    return out


def _display_name(address: str | None) -> str | None:
    """``Acme`` from ``Acme <hello@acme.example>``."""
    if not address or "<" not in address:
        return address
    return address.split("<", 1)[0].strip().strip('"') or address


def _sample_link(url: str) -> str:
    return f"http://localhost:8000/c/sample-token?to={quote(str(url), safe='')}"


def sample_context(full: bool) -> dict[str, Any]:
    """A context for checking templates.

    Args:
        full: ``True`` for a lead with every contract field set; ``False`` for a sparse lead
            that has only its ``id`` (every other field present and ``None``, no free fields).
    """
    if full:
        lead: dict[str, Any] = {
            "id": "L-1001",
            "email": "ada@example.com",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "company": "Analytical Engines Ltd",
            "title": "Head of Operations",
            "phone": "+44 20 7946 0000",
            "country": "GB",
            "timezone": "Europe/London",
            "industry": "manufacturing",
            "employees": 1200,
            "tier_account": True,
            "source": "webinar",
            "fields": {},
        }
    else:
        lead = {"id": "L-1002"}
    return template_context(
        lead=lead,
        sdr={"id": "aiko", "name": "Aiko Sato", "email": "aiko@example.com"},
        sender={
            "from_": "Acme <hello@acme.example>",
            "postal_address": "Acme Inc., 1 Main St, Springfield",
            "name": "Acme",
        },
        unsubscribe_url="http://localhost:8000/u/sample-token",
        link=_sample_link,
    )
