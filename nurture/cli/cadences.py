"""`nurture cadences ...`: validate, schema, graph, simulate."""

from __future__ import annotations

import typer

app = typer.Typer(help="Validate, graph and simulate cadences and the playbook.", no_args_is_help=True)
