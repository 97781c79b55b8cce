"""Run core calls off the GUI thread and hand their results back as signals.

The GUI thread never does network, disk or inference work: every core call goes through a FunctionWorker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class WorkerSignals(QObject):
    finished = Signal(object)
    failed = Signal(str)


# Workers in flight: Qt's pool holds only the C++ side, so the Python side (and its signals) must be kept
# alive here until run() has emitted.
_in_flight: set[FunctionWorker] = set()


class FunctionWorker(QRunnable):
    """Calls fn() on a pool thread; emits finished(result) or failed(one-line message)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__()
        self.fn = fn
        self.signals = WorkerSignals()

    def run(self) -> None:
        try:
            result = self.fn()
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message in the window
            self.signals.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            self.signals.finished.emit(result)
        finally:
            _in_flight.discard(self)


def submit(
    fn: Callable[[], Any], *, on_done: Callable[[Any], None], on_error: Callable[[str], None]
) -> FunctionWorker:
    worker = FunctionWorker(fn)
    worker.signals.finished.connect(on_done)
    worker.signals.failed.connect(on_error)
    _in_flight.add(worker)
    QThreadPool.globalInstance().start(worker)
    return worker
