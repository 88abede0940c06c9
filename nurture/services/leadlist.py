"""The list of leads: who is where, from the app database's projection of every workflow.

Served by ``GET /leads`` and ``nurture leads list``. It reads only the ``leads`` table (the
workflow mirrors stage, score, grade, cadence, step, owner and next touch into it), never
Temporal, so a page of 100,000 leads costs one indexed query and one count
(``bench/leads_list.py``; figures in ``docs/benchmarks.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nurture.adapters.database import LeadRow
from nurture.domain.timing import lead_zone
from nurture.domain.vocabulary import STAGES, TOUCH_STAGES
from nurture.services.reports import STUCK_AFTER

SortKey = Literal["lead", "stage", "score", "grade", "cadence", "owner", "next_touch", "updated"]
SORT_KEYS: tuple[str, ...] = get_args(SortKey)
DEFAULT_SORT: SortKey = "next_touch"
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 500
# The filter value that asks for leads with no owner (or no grade, no cadence).
NONE_VALUE = "none"

_COLUMNS: dict[str, Any] = {
    "lead": LeadRow.id,
    "stage": LeadRow.stage,
    "score": LeadRow.score,
    "grade": LeadRow.grade,
    "cadence": LeadRow.cadence,
    "owner": LeadRow.owner,
    "next_touch": LeadRow.next_touch_at,
    "updated": LeadRow.updated_at,
}


# Sorting on these puts empty values last; the others are never empty and sort on their index.
_NULLABLE = frozenset({"grade", "cadence", "owner", "next_touch"})


class BadListRequest(ValueError):
    """A filter, sort or page that cannot be served; ``field`` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class LeadQuery:
    """What to list: filters (all optional, combined with AND), order and page."""

    stage: str | None = None
    owner: str | None = None
    cadence: str | None = None
    grade: str | None = None
    stuck: bool = False
    sort: str = DEFAULT_SORT
    descending: bool = False
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    def checked(self) -> LeadQuery:
        """This query, or :class:`BadListRequest` naming the first bad parameter."""
        if self.stage is not None and self.stage not in STAGES:
            raise BadListRequest("stage", f"'{self.stage}' is not one of {', '.join(STAGES)}")
        if self.sort not in SORT_KEYS:
            raise BadListRequest("sort", f"'{self.sort}' is not one of {', '.join(SORT_KEYS)}")
        if self.page < 1:
            raise BadListRequest("page", "must be 1 or more")
        if not 1 <= self.per_page <= MAX_PER_PAGE:
            raise BadListRequest("per_page", f"must be between 1 and {MAX_PER_PAGE}")
        return self


@dataclass(frozen=True)
class LeadLine:
    """One lead as the list shows it (no contact details but the company, for the eye)."""

    lead_id: str
    company: str | None
    stage: str
    score: int
    grade: str | None
    cadence: str | None
    step: str | None
    owner: str | None
    next_touch_at: datetime | None
    timezone: str
    stuck: bool

    @property
    def next_touch_local(self) -> datetime | None:
        """The next touch in the lead's own time zone (send windows are kept there)."""
        if self.next_touch_at is None:
            return None
        return self.next_touch_at.astimezone(lead_zone(self.timezone, None))

    def to_json(self) -> dict[str, Any]:
        """CONTRACT.md's keys for ``leads list --json``, times ISO 8601 UTC."""
        return {
            "lead_id": self.lead_id,
            "stage": self.stage,
            "score": self.score,
            "grade": self.grade,
            "cadence": self.cadence,
            "step": self.step,
            "owner": self.owner,
            "next_touch_at": self.next_touch_at.isoformat() if self.next_touch_at else None,
        }


@dataclass(frozen=True)
class LeadPage:
    """One page of the list, and how many leads match in all."""

    lines: list[LeadLine]
    total: int
    query: LeadQuery

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.query.per_page))


def _matches(column: Any, value: str) -> ColumnElement[bool]:
    return column.is_(None) if value == NONE_VALUE else column == value


def _stuck(now: datetime) -> ColumnElement[bool]:
    return LeadRow.stage.in_(sorted(TOUCH_STAGES)) & (LeadRow.next_touch_at < now - STUCK_AFTER)


async def list_leads(
    session: AsyncSession, query: LeadQuery, *, now: datetime | None = None
) -> LeadPage:
    """The page of leads ``query`` asks for, newest projection in the app database.

    Args:
        session: an open session.
        query: filters, order and page (checked here: :class:`BadListRequest`).
        now: the time "stuck" is measured against (default: now).
    """
    query = query.checked()
    now = now or datetime.now(UTC)
    where: list[ColumnElement[bool]] = []
    if query.stage:
        where.append(LeadRow.stage == query.stage)
    if query.owner:
        where.append(_matches(LeadRow.owner, query.owner))
    if query.cadence:
        where.append(_matches(LeadRow.cadence, query.cadence))
    if query.grade:
        where.append(_matches(LeadRow.grade, query.grade))
    if query.stuck:
        where.append(_stuck(now))
    column = _COLUMNS[query.sort]
    order = column.desc() if query.descending else column.asc()
    columns = (
        LeadRow.id,
        LeadRow.company,
        LeadRow.stage,
        LeadRow.score,
        LeadRow.grade,
        LeadRow.cadence,
        LeadRow.step,
        LeadRow.owner,
        LeadRow.next_touch_at,
        LeadRow.timezone,
        LeadRow.country,
    )
    offset, limit = (query.page - 1) * query.per_page, query.per_page

    async def count(*conditions: ColumnElement[bool]) -> int:
        statement = select(func.count()).select_from(LeadRow).where(*where, *conditions)
        return int(await session.scalar(statement) or 0)

    async def fetch(conditions: list[ColumnElement[bool]], by: list[Any], skip: int, take: int):  # type: ignore[no-untyped-def]
        statement = (
            select(*columns).where(*where, *conditions).order_by(*by).offset(skip).limit(take)
        )
        return list((await session.execute(statement)).all())

    total = await count()
    if query.sort not in _NULLABLE:
        rows = await fetch([], [order, LeadRow.id], offset, limit)
    else:
        # Empty values last whichever way (a lead at rest has no next touch), then by id, so
        # pages never overlap or skip a lead. Two index-ordered reads instead of one
        # `ORDER BY x IS NULL, x`, which no index serves: a full sort of every lead.
        filled = await count(column.is_not(None))
        rows = []
        if offset < filled:
            rows = await fetch([column.is_not(None)], [order, LeadRow.id], offset, limit)
        if len(rows) < limit and offset + len(rows) >= filled:
            skip = max(0, offset - filled)
            rows += await fetch([column.is_(None)], [LeadRow.id], skip, limit - len(rows))
    stuck_before = now - STUCK_AFTER
    lines = [
        LeadLine(
            lead_id=row.id,
            company=row.company,
            stage=row.stage,
            score=row.score,
            grade=row.grade,
            cadence=row.cadence,
            step=row.step,
            owner=row.owner,
            next_touch_at=row.next_touch_at,
            timezone=lead_zone(row.timezone, row.country).key,
            stuck=row.stage in TOUCH_STAGES
            and row.next_touch_at is not None
            and row.next_touch_at < stuck_before,
        )
        for row in rows
    ]
    return LeadPage(lines=lines, total=total, query=query)


async def filter_choices(session: AsyncSession) -> dict[str, list[str]]:
    """The owners, cadences and grades present, for the filter menus."""

    async def distinct(column: Any) -> list[str]:
        values = (await session.scalars(select(column).distinct().where(column.is_not(None)))).all()
        return sorted(str(v) for v in values)

    return {
        "owner": await distinct(LeadRow.owner),
        "cadence": await distinct(LeadRow.cadence),
        "grade": await distinct(LeadRow.grade),
    }


__all__ = [
    "DEFAULT_PER_PAGE",
    "DEFAULT_SORT",
    "MAX_PER_PAGE",
    "NONE_VALUE",
    "SORT_KEYS",
    "BadListRequest",
    "LeadLine",
    "LeadPage",
    "LeadQuery",
    "filter_choices",
    "list_leads",
]
