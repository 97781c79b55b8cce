"""The status bar's meters: RAM (and VRAM), active downloads; read once a second off the GUI thread."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal

from kaihe_desktop.qt.workers import run_query
from kaihe_desktop.services import StatusSnapshot

INTERVAL_MS = 1000  # meters at most once a second


class StatusController(QObject):
    updated = Signal(object)  # StatusSnapshot
    failed = Signal(object)

    def __init__(self, read: Callable[[], StatusSnapshot], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._read = read
        self._busy = False
        self.last: StatusSnapshot | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(INTERVAL_MS)
        self.timer.timeout.connect(self.poll)

    def start(self) -> None:
        self.poll()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def poll(self) -> None:
        """One reading, unless the previous one is still running (a slow disk never piles them up)."""
        if self._busy:
            return
        self._busy = True
        run_query(self._read, self._on_read, self._on_failed, name="status meters")

    def _on_read(self, snapshot: StatusSnapshot) -> None:
        self._busy = False
        self.last = snapshot
        self.updated.emit(snapshot)

    def _on_failed(self, exc: BaseException) -> None:
        # A meter that cannot be read is not worth a banner: the bar says so and the next tick retries.
        self._busy = False
        self.failed.emit(exc)
