"""Run core calls off the GUI thread and hand what they return back on it.

- `run_query(fn, on_done, on_error)`: call ``fn()`` on a pool thread; its result, or the exception it raised
  (the typed KaiheError, not a string), comes back to ``on_done`` / ``on_error`` on the GUI thread (Anki's
  QueryOp).
- `run_stream(gen_fn, on_item, on_done, on_error, cancel=...)`: iterate ``gen_fn()`` on a pool thread; each
  yielded item is one call of ``on_item`` on the GUI thread, the generator's return value goes to
  ``on_done``. Setting ``cancel`` (a threading.Event) stops the iteration between items and closes the
  generator; ``on_done`` is then called with None.
- `await_all()`: on quit, cancel every stream, wait for the pools and drop results nobody will read.

Two pools of their own: QUICK for short queries (probe, library, meters) and LONG for jobs that run for
minutes (downloads, a reply), so that a download and a reply never starve the quick work. Callbacks run on
the GUI thread because each job's relay QObject lives there and its signals are connected to its own slots.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from PySide6.QtCore import QCoreApplication, QDeadlineTimer, QObject, QRunnable, QThreadPool, Signal, Slot


class Pool(Enum):
    QUICK = "quick"
    LONG = "long"


_pools: dict[Pool, QThreadPool] = {}


def pool(which: Pool) -> QThreadPool:
    """The pool for ``which`` (created on first use; never the global pool, which others may fill)."""
    found = _pools.get(which)
    if found is None:
        found = QThreadPool()
        found.setObjectName(f"kaihe-{which.value}")
        found.setMaxThreadCount(4 if which is Pool.QUICK else 8)
        _pools[which] = found
    return found


class _Relay(QObject):
    """Lives on the GUI thread; the pool thread emits, the slots run the callbacks on the GUI thread."""

    item = Signal(object)
    done = Signal(object)
    failed = Signal(object)

    def __init__(self, job: Job) -> None:
        super().__init__()
        self._job = job
        self.item.connect(self._on_item)
        self.done.connect(self._on_done)
        self.failed.connect(self._on_failed)

    @Slot(object)
    def _on_item(self, value: object) -> None:
        if not self._job.discarded and self._job.on_item is not None:
            self._job.on_item(value)

    @Slot(object)
    def _on_done(self, value: object) -> None:
        self._job.deliver(self._job.on_done, value)

    @Slot(object)
    def _on_failed(self, exc: object) -> None:
        self._job.deliver(self._job.on_error, exc)


@dataclass(eq=False)
class Job:
    """One piece of work handed to a pool: in flight from `run_*` until its outcome reached the GUI."""

    name: str
    on_done: Callable[[Any], object]
    on_error: Callable[[BaseException], object]
    on_item: Callable[[Any], object] | None = None
    cancel: threading.Event | None = None
    finished: bool = False  # the pool thread is done with it (result or error emitted)
    discarded: bool = False  # await_all dropped it: its outcome is not delivered

    def __post_init__(self) -> None:
        self.relay = _Relay(self)

    def deliver(self, callback: Callable[[Any], object], value: Any) -> None:
        _in_flight.discard(self)
        if not self.discarded:
            callback(value)


# Jobs not yet delivered: Qt's pool keeps only the C++ side, so the Python side (relay, callbacks) is kept
# alive here until its outcome has been handed to the GUI thread.
_in_flight: set[Job] = set()


class _Runnable(QRunnable):
    def __init__(self, job: Job, body: Callable[[], None]) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self._job = job
        self._body = body

    def run(self) -> None:
        try:
            self._body()
        finally:
            self._job.finished = True


def run_query(
    fn: Callable[[], Any],
    on_done: Callable[[Any], object],
    on_error: Callable[[BaseException], object],
    *,
    name: str | None = None,
    which: Pool = Pool.QUICK,
) -> Job:
    """Call ``fn()`` off the GUI thread; ``on_done(result)`` or ``on_error(exception)`` on the GUI thread."""
    job = Job(name=name or _name_of(fn), on_done=on_done, on_error=on_error)

    def body() -> None:
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the GUI thread, typed
            job.relay.failed.emit(exc)
        else:
            job.relay.done.emit(result)

    _start(job, body, which)
    return job


def run_stream(
    gen_fn: Callable[[], Iterator[Any]],
    on_item: Callable[[Any], object],
    on_done: Callable[[Any], object],
    on_error: Callable[[BaseException], object],
    *,
    cancel: threading.Event | None = None,
    name: str | None = None,
    which: Pool = Pool.LONG,
) -> Job:
    """Iterate ``gen_fn()`` off the GUI thread: ``on_item`` per item, then ``on_done(return value)``.

    When ``cancel`` is set the iteration stops before the next item, the generator is closed (its
    ``finally`` blocks run on the pool thread) and ``on_done(None)`` follows.
    """
    event = cancel if cancel is not None else threading.Event()
    job = Job(
        name=name or _name_of(gen_fn), on_done=on_done, on_error=on_error, on_item=on_item, cancel=event
    )

    def body() -> None:
        iterator: Iterator[Any] | None = None
        try:
            iterator = gen_fn()
            while not event.is_set():
                try:
                    value = next(iterator)
                except StopIteration as stop:
                    job.relay.done.emit(stop.value)
                    return
                if event.is_set():
                    break
                job.relay.item.emit(value)
            if isinstance(iterator, Generator):
                iterator.close()
            job.relay.done.emit(None)
        except Exception as exc:  # noqa: BLE001 - typed, back to the GUI thread
            job.relay.failed.emit(exc)

    _start(job, body, which)
    return job


def _start(job: Job, body: Callable[[], None], which: Pool) -> None:
    _in_flight.add(job)
    pool(which).start(_Runnable(job, body))


def _name_of(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn))


def in_flight() -> tuple[Job, ...]:
    """Jobs started and not yet delivered (still running, or finished with their outcome still queued)."""
    return tuple(_in_flight)


def await_all(timeout_ms: int = 10_000) -> bool:
    """On quit: cancel every stream, wait up to ``timeout_ms`` for both pools, drop undelivered outcomes.

    True when nothing is left running. Jobs still running after the timeout stay in `in_flight()`.
    """
    for job in tuple(_in_flight):
        if job.cancel is not None:
            job.cancel.set()
    deadline = QDeadlineTimer(timeout_ms)
    stopped = all(p.waitForDone(deadline) for p in _pools.values())
    app = QCoreApplication.instance()
    if app is not None:
        # Outcomes already queued for the GUI thread are not delivered: mark them first, then flush.
        for job in tuple(_in_flight):
            if job.finished:
                job.discarded = True
        QCoreApplication.sendPostedEvents()
    for job in tuple(_in_flight):
        if job.finished:
            job.discarded = True
            _in_flight.discard(job)
    return stopped and not _in_flight
