"""The library: read off the GUI thread into a LibraryModel."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from kaihe_desktop.core.library import Library, LibraryEntry
from kaihe_desktop.qt.errors import ErrorPresenter
from kaihe_desktop.qt.models.library import LibraryModel
from kaihe_desktop.qt.workers import run_query


class LibraryController(QObject):
    loaded = Signal()
    failed = Signal(object)

    def __init__(self, library: Library, errors: ErrorPresenter, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._library = library
        self._errors = errors
        self.model = LibraryModel(self)
        self.loading = False

    def refresh(self) -> None:
        if self.loading:
            return
        self.loading = True
        run_query(self._library.entries, self._on_loaded, self._on_failed, name="library entries")

    def _on_loaded(self, entries: tuple[LibraryEntry, ...]) -> None:
        self.loading = False
        self.model.set_entries(entries)
        self.loaded.emit()

    def _on_failed(self, exc: BaseException) -> None:
        self.loading = False
        self._errors.show(exc, retry=self.refresh)
        self.failed.emit(exc)
