"""`GET /leads`: who is where. A paged, sortable list of leads with its filters in the URL.

Served from the app database's projection (:mod:`nurture.services.leadlist`), never from
Temporal, so it stays fast with a hundred thousand leads. Ops see every lead; an SDR sees
their own. HTML for people; JSON (``Accept: application/json`` or ``format=json``) gives
``leads list --json``'s rows for scripts.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from nurture.domain.names import workflow_id
from nurture.domain.vocabulary import STAGES
from nurture.services.leadlist import (
    DEFAULT_PER_PAGE,
    DEFAULT_SORT,
    SORT_KEYS,
    BadListRequest,
    LeadQuery,
    filter_choices,
    list_leads,
)
from nurture.web.common import ServicesDep, SessionDep, render
from nurture.web.security import ViewerDep

router = APIRouter(include_in_schema=False)


@router.get("/leads", response_class=HTMLResponse)
async def leads_page(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    services: ServicesDep,
    stage: Annotated[str | None, Query(max_length=32)] = None,
    owner: Annotated[str | None, Query(max_length=200)] = None,
    cadence: Annotated[str | None, Query(max_length=200)] = None,
    grade: Annotated[str | None, Query(max_length=16)] = None,
    stuck: bool = False,
    sort: Annotated[str, Query(max_length=32)] = DEFAULT_SORT,
    dir: Literal["asc", "desc"] = "asc",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=500)] = DEFAULT_PER_PAGE,
    format: Literal["html", "json"] | None = None,
) -> Response:
    """The leads matching the filters, one page, sorted (ops: all; an SDR: their own)."""
    if not viewer.is_ops:
        owner = viewer.id
    filters = {
        "stage": stage or None,
        "owner": owner or None,
        "cadence": cadence or None,
        "grade": grade or None,
    }
    query = LeadQuery(
        **filters,
        stuck=stuck,
        sort=sort,
        descending=dir == "desc",
        page=page,
        per_page=per_page,
    )
    wants_json = format == "json" or (
        format is None and "application/json" in request.headers.get("accept", "")
    )
    try:
        result = await list_leads(session, query)
    except BadListRequest as exc:
        detail = [{"loc": ["query", exc.field], "msg": exc.message, "type": "value_error"}]
        if wants_json:
            return JSONResponse({"detail": detail}, status_code=422)
        context = {"error": str(exc), "page": None, "filters": filters, "choices": {}}
        return render(request, "leads.html", _base_context(context, viewer.is_ops), 422)
    if wants_json:
        return JSONResponse(
            [line.to_json() for line in result.lines],
            headers={"X-Total-Count": str(result.total)},
        )
    kept = {k: v for k, v in filters.items() if v and (viewer.is_ops or k != "owner")}
    if stuck:
        kept["stuck"] = "1"
    if per_page != DEFAULT_PER_PAGE:
        kept["per_page"] = str(per_page)

    def url(**changes: object) -> str:
        params = {**kept, "sort": sort, "dir": dir, "page": str(page)}
        params.update({k: str(v) for k, v in changes.items()})
        if params["sort"] == DEFAULT_SORT and params["dir"] == "asc":
            params.pop("sort"), params.pop("dir")
        if params.get("page") == "1":
            params.pop("page")
        return "/leads" + ("?" + urlencode(params) if params else "")

    def sort_url(key: str) -> str:
        flip = "desc" if key == sort and dir == "asc" else "asc"
        return url(sort=key, dir=flip, page=1)

    context = {
        "error": None,
        "page": result,
        "filters": filters,
        "stuck": stuck,
        "sort": sort,
        "dir": dir,
        "choices": await filter_choices(session) if viewer.is_ops else {},
        "url": url,
        "sort_url": sort_url,
        "workflow_url": lambda lead_id: services.workflow_url(workflow_id(lead_id)),
    }
    return render(request, "leads.html", _base_context(context, viewer.is_ops))


def _base_context(context: dict[str, object], is_ops: bool) -> dict[str, object]:
    return {"stages": STAGES, "sort_keys": SORT_KEYS, "is_ops": is_ops, **context}
