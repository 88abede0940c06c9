"""The current cadence set on disk, loaded and validated, reloaded when a file changes.

Used outside workflows only (the starter and activities): a workflow receives snapshots.
"""

from __future__ import annotations

import threading
from pathlib import Path

from nurture.cadence import CadenceSet
from nurture.loader import load_cadence_set


class CadenceCatalog:
    """Loads `cadences/` (+ templates) once and again whenever a file's mtime changes."""

    def __init__(self, cadences_dir: Path, templates_dir: Path | None) -> None:
        self.cadences_dir = Path(cadences_dir)
        self.templates_dir = Path(templates_dir) if templates_dir else None
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[str, float], ...] | None = None
        self._set: CadenceSet | None = None

    def _signature(self) -> tuple[tuple[str, float], ...]:
        files = sorted(self.cadences_dir.glob("*.yaml"))
        if self.templates_dir is not None and self.templates_dir.is_dir():
            files += sorted(self.templates_dir.rglob("*.j2"))
        return tuple((str(f), f.stat().st_mtime) for f in files)

    def current(self) -> CadenceSet:
        """The validated set; raises `CadenceSetInvalid` listing every problem."""
        with self._lock:
            stamp = self._signature()
            if self._set is None or stamp != self._stamp:
                self._set = load_cadence_set(self.cadences_dir, self.templates_dir)
                self._stamp = stamp
            return self._set
