"""The machine: probed (or a profile) once off the GUI thread, then its summary for every view."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from kaihe_desktop.qt.errors import ErrorPresenter
from kaihe_desktop.qt.workers import run_query
from kaihe_desktop.services import MachineSummary


class MachineController(QObject):
    loaded = Signal(object)  # MachineSummary
    failed = Signal(object)  # the exception

    def __init__(
        self,
        load: Callable[[], MachineSummary],
        errors: ErrorPresenter,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._load = load
        self._errors = errors
        self.summary: MachineSummary | None = None
        self.loading = False

    def refresh(self) -> None:
        if self.loading:
            return
        self.loading = True
        run_query(self._load, self._on_loaded, self._on_failed, name="machine summary")

    def _on_loaded(self, summary: MachineSummary) -> None:
        self.loading = False
        self.summary = summary
        self.loaded.emit(summary)

    def _on_failed(self, exc: BaseException) -> None:
        self.loading = False
        self._errors.show(exc, retry=self.refresh)
        self.failed.emit(exc)
