"""``/cadences`` (the current cadence set and the playbook's summary) and ``/cadences/<id>``
(one cadence as a picture, with its Mermaid source).

Both read the files on disk through the app's :class:`~nurture.adapters.catalog.CadenceCatalog`, so
they show what the next lead will get. When the set has problems the pages still answer:
they list every problem (as ``cadences validate`` prints them) and show whatever could be
read, instead of failing. For signed-in users, SDRs and ops alike; the app also puts a login
in front of the whole router.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from nurture.adapters.catalog import CadenceCatalog
from nurture.adapters.loader import CadenceSetInvalid, Problem, validate_report
from nurture.domain.cadence import Cadence, Playbook, RecycleRule
from nurture.domain.graph import describe_condition, mermaid
from nurture.domain.graph_svg import jumps, render_svg
from nurture.web.common import ServicesDep, render
from nurture.web.security import ViewerDep

router = APIRouter(include_in_schema=False)

# The picture served on its own: it holds no script, and must never run one.
SVG_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


@dataclass
class LoadedSet:
    """The cadence set as far as it could be read.

    Attributes:
        playbook: The playbook, or None when it has problems of its own.
        cadences: The cadences that passed the schema, by id (all of them when valid).
        problems: Every problem, as ``cadences validate`` reports them; empty when valid.
    """

    playbook: Playbook | None
    cadences: dict[str, Cadence]
    problems: list[Problem] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems


def load_set(catalog: CadenceCatalog) -> LoadedSet:
    """The catalog's current set; when it is invalid, its problems and what could be read.

    Args:
        catalog: The app's catalog (reloads when a file changes).

    Returns:
        The set, never raising for problems in the files.
    """
    try:
        current = catalog.current()
    except CadenceSetInvalid as exc:
        # What still parses, to be looked at (templates are not needed for the pictures).
        report = validate_report([catalog.cadences_dir], None)
        return LoadedSet(report.playbook, dict(report.cadences), list(exc.problems))
    return LoadedSet(current.playbook, dict(current.cadences))


def cadence_roles(playbook: Playbook | None) -> dict[str, list[str]]:
    """What the playbook uses each cadence for: ``entry``, ``MQL``, ``recycle: <reason>``."""
    return playbook.routing.roles() if playbook is not None else {}


def playbook_summary(playbook: Playbook) -> dict[str, object]:
    """The thresholds and the routing of a playbook, in words, for the page."""
    thresholds = playbook.thresholds
    toss_up = f"score ≥ {thresholds.toss_up.score}"
    toss_up += (
        f" and grade {'/'.join(thresholds.toss_up.grades)}"
        if thresholds.toss_up.grades
        else " (any grade)"
    )
    entry = [
        (describe_condition(rule.when) if rule.when is not None else "otherwise", rule.cadence)
        for rule in playbook.routing.entry
    ]
    recycle = [
        (reason, rule if isinstance(rule, RecycleRule) else None)
        for reason, rule in playbook.routing.recycle.items()
    ]
    return {
        "thresholds": [
            ("MQL", f"score ≥ {thresholds.mql.score}"),
            ("Toss-up to sales (SQL)", toss_up),
            ("Sales follow-up due", f"within {thresholds.sales_follow_up}"),
            ("Hand-raisers (toss up at once)", ", ".join(thresholds.hand_raisers) or "none"),
        ],
        "entry": entry,
        "mql_cadence": playbook.routing.mql_cadence,
        "recycle": recycle,
        "version": playbook.version,
    }


@router.get("/cadences", response_class=HTMLResponse)
async def cadence_list(request: Request, viewer: ViewerDep, services: ServicesDep) -> Response:
    """The current cadences (id, name, steps, version, exit_on) and the playbook's summary."""
    loaded = await asyncio.to_thread(load_set, services.catalog)
    roles = cadence_roles(loaded.playbook)
    context = {
        "loaded": loaded,
        "cadences": [loaded.cadences[key] for key in sorted(loaded.cadences)],
        "roles": roles,
        "summary": playbook_summary(loaded.playbook) if loaded.playbook else None,
        "cadences_dir": str(services.catalog.cadences_dir),
    }
    return render(request, "cadences.html", context)


@router.get("/cadences/{cadence_id}.svg")
async def cadence_svg(cadence_id: str, viewer: ViewerDep, services: ServicesDep) -> Response:
    """The picture alone (``image/svg+xml``), to save or put in a document."""
    loaded = await asyncio.to_thread(load_set, services.catalog)
    cadence = loaded.cadences.get(cadence_id)
    if cadence is None:
        raise HTTPException(status_code=404, detail=f"no cadence '{cadence_id}'")
    return Response(render_svg(cadence), media_type="image/svg+xml", headers=SVG_HEADERS)


@router.get("/cadences/{cadence_id}", response_class=HTMLResponse)
async def cadence_page(
    request: Request, cadence_id: str, viewer: ViewerDep, services: ServicesDep
) -> Response:
    """One cadence: its picture, its Mermaid source, and the set's problems if any.

    An unknown id is 404; so is a cadence that cannot be read because the set has
    problems, with those problems listed.
    """
    loaded = await asyncio.to_thread(load_set, services.catalog)
    cadence = loaded.cadences.get(cadence_id)
    if cadence is None and loaded.valid:
        raise HTTPException(status_code=404, detail=f"no cadence '{cadence_id}' in the set")
    context: dict[str, object] = {
        "loaded": loaded,
        "cadence_id": cadence_id,
        "cadence": cadence,
        "roles": cadence_roles(loaded.playbook).get(cadence_id, []),
        "cadences_dir": str(services.catalog.cadences_dir),
    }
    if cadence is None:
        return render(request, "cadences_detail.html", context, status_code=404)
    context.update(
        svg=Markup(render_svg(cadence)),
        mermaid=mermaid(cadence),
        jump_count=len(jumps(cadence)),
    )
    return render(request, "cadences_detail.html", context)
