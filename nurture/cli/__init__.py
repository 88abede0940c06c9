"""The `nurture` command line (also `python starter.py ...`): CONTRACT.md, "CLI".

Each command group lives in its own module; this one only assembles them.
"""

from __future__ import annotations

import typer

from nurture.cli import cadences as _cadences
from nurture.cli import stack as _stack

app = typer.Typer(
    help="Lead nurture orchestrator: cadences, leads, tasks and reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(_cadences.app, name="cadences")
_stack.register(app)


def main() -> None:
    """Entry point of the `nurture` script."""
    app()
