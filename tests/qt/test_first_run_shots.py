"""The welcome page rendered to PNG for two machines (for a person to look at), its parts laid out without
overlapping, clipping or empty text.

The PNGs go to KAIHE_SHOTS_DIR when it is set (e.g. /tmp/shots-first-run), else to the test's temp folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import QRect, Qt
from PySide6.QtWidgets import QApplication, QLabel, QPushButton, QWidget
from pytestqt.qtbot import QtBot

from kaihe_desktop.qt.main_window import DEFAULT_SIZE
from tests.helpers.hub_server import HubServer
from tests.qt.test_first_run import (
    PICK_REPO,
    MakeWindow,
    first_run_page,
    fresh_services,
    serve_pick,
    wait_settled,
)


def _rect_in(widget: QWidget, root: QWidget) -> QRect:
    return QRect(widget.mapTo(root, widget.rect().topLeft()), widget.size())


@pytest.mark.parametrize(
    ("profile", "offline"),
    [("rtx4060-16gb", False), ("laptop-8gb", False), ("laptop-8gb", True)],
)
def test_render_the_welcome_page(
    qtbot: QtBot, hub: HubServer, kaihe_home: Path, tmp_path: Path, starter_model_path: Path,
    make_window: MakeWindow, monkeypatch: pytest.MonkeyPatch, profile: str, offline: bool,
) -> None:  # fmt: skip
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    serve_pick(hub, starter_model_path)
    window = make_window(fresh_services(kaihe_home, tmp_path, profile=profile))
    window.resize(*DEFAULT_SIZE)
    window.show()
    qtbot.waitExposed(window)
    view = first_run_page(window)
    wait_settled(qtbot, view.controller)
    qtbot.waitUntil(lambda: view.tier_badge.text() != "Detecting…", timeout=30_000)
    QApplication.processEvents()
    folder = Path(os.environ.get("KAIHE_SHOTS_DIR") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"first-run-{profile}{'-offline' if offline else ''}.png"
    assert window.grab().save(str(path)) and path.stat().st_size > 10_000

    shown = [
        w
        for w in view.findChildren(QWidget)
        if isinstance(w, QLabel | QPushButton)
        and w.isVisibleTo(view)
        and w.objectName().startswith("first-run")
    ]
    body = view.findChild(QWidget, "first-run-machine")
    assert body is not None
    for widget in shown:
        text = widget.text()
        assert text.strip(), f"{widget.objectName()} is empty"
        hint = widget.sizeHint() if isinstance(widget, QPushButton) else widget.minimumSizeHint()
        assert widget.width() >= hint.width() - 1, f"{widget.objectName()} is clipped"
        if isinstance(widget, QLabel) and widget.wordWrap():
            assert widget.height() >= widget.heightForWidth(widget.width()) - 1, f"{widget.objectName()}"
    labels = [w for w in shown if isinstance(w, QLabel) and w.parentWidget() is body]
    rects = [_rect_in(w, view) for w in labels]
    for i, a in enumerate(rects):
        for b in rects[i + 1 :]:
            assert not a.intersects(b), "labels of the machine card overlap"
    if offline or profile != "rtx4060-16gb":
        return
    # the same page while the pick downloads: the progress bar and its words under the button
    size = starter_model_path.stat().st_size
    hub.inject(PICK_REPO, starter_model_path.name, bandwidth=size / 4, methods=("GET",))
    with qtbot.waitSignal(view.controller.downloads.installed, timeout=120_000):
        qtbot.mouseClick(view.get_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: 50 < view.progress.value() < 900, timeout=60_000)
        QApplication.processEvents()
        shot = folder / "first-run-rtx4060-16gb-downloading.png"
        assert window.pages["first-run"].widget.grab().save(str(shot))
        assert view.status_label.text().strip() and view.progress.isVisible()
