"""Fixtures for the window's tests: Services over a temporary KAIHE_HOME, and no worker left behind.

`no_worker_left_running` is autouse: a test that ends with a worker still running (or with an outcome not
yet delivered to the GUI thread) fails, after the worker is stopped so the next test starts clean. It is
torn down after pytest-qt's qtbot, so the windows a test registered are closed (which awaits their own
workers) before the check runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from kaihe_desktop.app import create_window
from kaihe_desktop.core import json_store
from kaihe_desktop.qt import workers
from kaihe_desktop.qt.controllers.first_run import FIRST_RUN_KEY
from kaihe_desktop.qt.main_window import MainWindow
from kaihe_desktop.services import Services

PROFILE = "rtx4060-16gb"


def fail_if_workers_left(grace_ms: int = 0) -> None:
    """pytest.fail, naming the jobs, when workers are still in flight; stops them first."""
    left = workers.in_flight()
    if not left:
        return
    names = ", ".join(sorted(job.name for job in left))
    stopped = workers.await_all(timeout_ms=max(grace_ms, 5_000))
    pytest.fail(
        f"the test left {len(left)} worker(s) running: {names}"
        + ("" if stopped else " (and they did not stop within 5 s)"),
        pytrace=False,
    )


@pytest.fixture(autouse=True)
def no_worker_left_running(qapp: QApplication) -> Iterator[None]:
    json_store.reset_notices()  # a notice from an earlier test must not reach this test's banner
    yield
    fail_if_workers_left()


@pytest.fixture
def services(kaihe_home: Path) -> Services:
    """Services over a fresh KAIHE_HOME, acting as the RTX 4060 laptop profile, past its first start (the
    welcome page and the starter import are tests/qt/test_first_run*.py's)."""
    services = Services.create(home=kaihe_home, profile=PROFILE)
    services.settings.set(FIRST_RUN_KEY, True)
    return services


@pytest.fixture
def make_window(qtbot: QtBot) -> Callable[[Services], MainWindow]:
    """create_window for the given Services; qtbot closes it at the end (which saves its state)."""

    def make(services: Services) -> MainWindow:
        window = create_window(["kaihe-desktop"], services=services)
        qtbot.addWidget(window)
        return window

    return make
