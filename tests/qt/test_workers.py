"""Workers: results and typed exceptions back on the GUI thread, streams, cancel, await_all."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

import pytest
from PySide6.QtCore import QThread
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from kaihe_desktop.core.errors import DiskFullError
from kaihe_desktop.qt import workers
from kaihe_desktop.qt.workers import Pool, run_query, run_stream
from tests.qt.conftest import fail_if_workers_left


def _on_gui_thread() -> bool:
    app = QApplication.instance()
    assert app is not None
    return QThread.currentThread() is app.thread()


def test_a_query_runs_off_the_gui_thread_and_its_result_comes_back_on_it(qtbot: QtBot) -> None:
    seen: dict[str, Any] = {}

    def query() -> int:
        seen["worker_on_gui"] = _on_gui_thread()
        return 42

    def done(value: int) -> None:
        seen["value"] = value
        seen["done_on_gui"] = _on_gui_thread()

    run_query(query, done, lambda exc: seen.setdefault("error", exc))
    qtbot.waitUntil(lambda: "value" in seen, timeout=5_000)
    assert seen == {"worker_on_gui": False, "value": 42, "done_on_gui": True}
    assert workers.in_flight() == ()


def test_the_typed_exception_comes_back(qtbot: QtBot) -> None:
    errors: list[BaseException] = []

    def full() -> None:
        raise DiskFullError("cannot save the library: the disk is full in /x; free at least 1.0 MiB")

    run_query(full, lambda _: pytest.fail("no result expected"), errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=5_000)
    assert isinstance(errors[0], DiskFullError)
    assert "free at least" in str(errors[0])


def test_a_stream_delivers_each_item_then_the_return_value(qtbot: QtBot) -> None:
    items: list[int] = []
    done: list[object] = []

    def numbers() -> Generator[int, None, str]:
        yield from range(5)
        return "finished"  # noqa: B901 - a generator's return value is what on_done gets

    run_stream(numbers, items.append, done.append, lambda exc: pytest.fail(str(exc)))
    qtbot.waitUntil(lambda: bool(done), timeout=5_000)
    assert items == [0, 1, 2, 3, 4]
    assert done == ["finished"]


def test_an_error_inside_a_stream_ends_it_with_the_exception(qtbot: QtBot) -> None:
    items: list[int] = []
    errors: list[BaseException] = []

    def broken() -> Iterator[int]:
        yield 1
        raise DiskFullError("no room")

    run_stream(broken, items.append, lambda _: pytest.fail("not done"), errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=5_000)
    assert items == [1]
    assert isinstance(errors[0], DiskFullError)


def test_cancel_stops_a_stream_between_items_and_closes_the_generator(qtbot: QtBot) -> None:
    cancel = threading.Event()
    items: list[int] = []
    done: list[object] = []
    closed = threading.Event()

    def forever() -> Iterator[int]:
        n = 0
        try:
            while True:
                yield n
                n += 1
                time.sleep(0.01)
        finally:
            closed.set()

    def on_item(n: int) -> None:
        items.append(n)
        if n == 2:
            cancel.set()

    run_stream(forever, on_item, done.append, lambda exc: pytest.fail(str(exc)), cancel=cancel)
    qtbot.waitUntil(lambda: bool(done), timeout=5_000)
    assert done == [None]
    assert closed.is_set()
    assert 3 <= len(items) <= 4  # at most one item was already on its way when cancel was set


def test_a_long_job_does_not_starve_quick_queries(qtbot: QtBot) -> None:
    """Fill the LONG pool; a QUICK query still runs at once."""
    release = threading.Event()
    long_done: list[object] = []
    long_pool = workers.pool(Pool.LONG)
    for _ in range(long_pool.maxThreadCount()):
        run_query(release.wait, long_done.append, lambda exc: None, which=Pool.LONG)
    quick: list[int] = []
    run_query(lambda: 7, quick.append, lambda exc: None)
    qtbot.waitUntil(lambda: quick == [7], timeout=5_000)
    assert long_done == []
    release.set()
    qtbot.waitUntil(lambda: len(long_done) == long_pool.maxThreadCount(), timeout=5_000)


def test_await_all_cancels_streams_waits_and_drops_undelivered_results(qtbot: QtBot) -> None:
    delivered: list[object] = []

    def ticking() -> Iterator[int]:
        while True:
            time.sleep(0.01)
            yield 1

    run_stream(ticking, lambda _: None, delivered.append, delivered.append)

    def late() -> str:
        time.sleep(0.2)
        return "late"

    run_query(late, delivered.append, delivered.append)
    assert len(workers.in_flight()) == 2
    assert workers.await_all(timeout_ms=5_000) is True
    assert workers.in_flight() == ()
    qtbot.wait(50)  # any queued outcome would be delivered now
    assert delivered == []


def test_a_worker_left_running_fails_the_test() -> None:
    """What the autouse fixture runs after every test in tests/qt."""
    release = threading.Event()
    job = run_query(lambda: release.wait(5), lambda _: None, lambda _: None, name="left-behind")
    assert job in workers.in_flight()
    with pytest.raises(pytest.fail.Exception, match="left 1 worker.*left-behind"):
        release.set()  # it stops in time; the test is failed all the same
        fail_if_workers_left()
    assert workers.in_flight() == ()
    fail_if_workers_left()  # nothing left: passes
