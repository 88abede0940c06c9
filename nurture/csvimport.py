"""Reading leads from CSV: our own columns, and a Salesforce lead export's column names."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from nurture.events import Lead

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
