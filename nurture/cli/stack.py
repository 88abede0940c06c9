"""`nurture dev` and `nurture serve`: running the product's processes."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the process commands to the root app."""
