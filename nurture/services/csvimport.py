"""Reading leads from CSV (our own columns, and a Salesforce lead export's column names),
and taking them in, a few leads at a time."""

from __future__ import annotations

import asyncio
import csv
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from nurture.domain.events import Lead

if TYPE_CHECKING:
    from nurture.services.intake import Intake

log = logging.getLogger(__name__)

# Salesforce lead export headers (and a few common variants) -> our field names.
COLUMN_ALIASES: dict[str, str] = {
    "lead id": "id",
    "lead_id": "id",
    "email address": "email",
    "first name": "first_name",
    "firstname": "first_name",
    "last name": "last_name",
    "lastname": "last_name",
    "company / account": "company",
    "company": "company",
    "title": "title",
    "phone": "phone",
    "mobile": "phone",
    "country": "country",
    "country code": "country",
    "countrycode": "country",
    "time zone": "timezone",
    "industry": "industry",
    "employees": "employees",
    "no. of employees": "employees",
    "numberofemployees": "employees",
    "lead source": "source",
    "leadsource": "source",
    "tier account": "tier_account",
}
_TRUE = {"true", "yes", "1", "y"}
_FALSE = {"false", "no", "0", "n"}


@dataclass(frozen=True)
class Row:
    """One CSV data row: its line number and the lead, or why it cannot be one."""

    number: int
    lead: Lead | None
    error: str | None = None


def _column(name: str) -> str:
    key = name.strip().lower()
    return COLUMN_ALIASES.get(key, key.replace(" ", "_"))


def read_leads(path: Path) -> Iterator[Row]:
    """Each data row as a Lead or an error naming the field; never stops at a bad row."""
    with Path(path).open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = {name: _column(name) for name in reader.fieldnames or []}
        for raw in reader:
            number = reader.line_num
            data: dict[str, object] = {}
            for name, value in raw.items():
                if name is None or value is None or value.strip() == "":
                    continue
                data[columns[name]] = value.strip()
            flag = str(data.get("tier_account", "")).lower()
            if flag in _TRUE:
                data["tier_account"] = True
            elif flag in _FALSE:
                data["tier_account"] = False
            try:
                yield Row(number, Lead.model_validate(data))
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}"
                    for e in exc.errors()
                )
                yield Row(number, None, problems)


@dataclass
class ImportReport:
    """What an import did: counts, and each row it did not take in, with why."""

    created: int = 0
    updated: int = 0
    # Recorded while Temporal could not be reached: the web app's sweep starts them.
    waiting: int = 0
    # `file:line: why`, in file order.
    refused: list[str] = field(default_factory=list)


# Leads taken in at once by an import: a start is mostly a wait for the database and for
# Temporal, so a few at a time keep both busy (docs/benchmarks.md, "CLI import").
IMPORT_CONCURRENCY = 16


async def import_rows(
    intake: Intake,
    path: Path,
    rows: Iterable[Row],
    advance: Callable[[], None] = lambda: None,
    concurrency: int = IMPORT_CONCURRENCY,
) -> ImportReport:
    """Take in each row (:func:`~nurture.services.parked.submit_lead`), never stopping on a failure.

    A row that cannot be a lead, a lead that is won or closed, and a row whose write failed
    are each reported with their line, in file order; every other row is in. Up to
    ``concurrency`` leads are taken in at once, but the rows of one lead id one after
    another, in file order, so a file's last row for a lead is what the lead keeps, as when
    rows went one by one. Safe to run while other imports of overlapping files run (the
    intake's upsert is).
    """
    from sqlalchemy.exc import SQLAlchemyError
    from temporalio.service import RPCError

    from nurture.services.parked import submit_lead

    report = ImportReport()
    refused: list[tuple[int, str]] = []
    by_lead: dict[str, list[tuple[int, Lead]]] = {}
    for row in rows:
        if row.lead is None:
            refused.append((row.number, f"{path}:{row.number}: {row.error}"))
            advance()
        else:
            by_lead.setdefault(row.lead.id, []).append((row.number, row.lead))

    async def take(number: int, lead: Lead) -> None:
        try:
            result = (await submit_lead(intake, lead)).result
        except (SQLAlchemyError, OSError, RPCError) as exc:
            log.warning("row %s of %s not imported", number, path, exc_info=True)
            refused.append(
                (number, f"{path}:{number}: lead {lead.id} not imported: {type(exc).__name__}")
            )
            return
        if result.status == "created":
            report.created += 1
        elif result.status == "updated":
            report.updated += 1
        elif result.status == "pending_start":
            report.waiting += 1
        else:
            refused.append(
                (number, f"{path}:{number}: lead {lead.id} is {result.stage}; not changed")
            )

    slots = asyncio.Semaphore(max(1, concurrency))

    async def take_all(chain: list[tuple[int, Lead]]) -> None:
        async with slots:
            for number, lead in chain:
                await take(number, lead)
                advance()

    await asyncio.gather(*(take_all(chain) for chain in by_lead.values()))
    report.refused = [line for _, line in sorted(refused)]
    return report
