"""Fixtures of the activity tests (helpers: ``activitysupport``).

Usage: name it as a plugin beside ``dbfixtures``::

    pytest_plugins = ["dbfixtures", "activityfixtures"]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from activitysupport import FaultySink, write_activity_set
from aiosmtpd.controller import Controller
from conftest import free_port

from nurture.settings import Settings


@pytest.fixture
def activity_settings(
    tmp_path: Path, make_settings: Callable[..., Settings], migrated_url: str
) -> Callable[..., Settings]:
    """Settings on the test's migrated database (SQLite, or PostgreSQL) and cadence set."""
    cadences_dir, templates_dir = write_activity_set(tmp_path / "activity-set")

    def build(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": migrated_url,
            "cadences_dir": cadences_dir,
            "templates_dir": templates_dir,
            **overrides,
        }
        return make_settings(**values)

    return build


@pytest.fixture
def faulty_sink() -> Iterator[FaultySink]:
    """A :class:`FaultySink` listening on a free local port for this test."""
    port = free_port()
    sink = FaultySink("127.0.0.1", port)
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
