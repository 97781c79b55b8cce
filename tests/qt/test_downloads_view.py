"""The Downloads page with real downloads: a running throttled one, a paused one, a failed gated one; its
buttons, accessible names and error action; the page in the window, downloads going on across pages."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtWidgets import QListView, QTableView, QToolButton
from pytestqt.qtbot import QtBot

from kaihe_desktop.qt.controllers.downloads import DownloadsController
from kaihe_desktop.qt.errors import Action
from kaihe_desktop.qt.main_window import MainWindow
from kaihe_desktop.qt.models.downloads import DownloadState
from kaihe_desktop.qt.views.downloads import DownloadRowWidget, DownloadsView
from kaihe_desktop.services import Services
from tests.helpers.hub_server import HubServer
from tests.helpers.tiny_gguf import spec_for_size, write_tiny_model

MiB = 1024 * 1024
WAIT_MS = 60_000
SHOTS = Path(os.environ.get("KAIHE_SHOTS", "/tmp/shots-downloads"))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("download-view-models")
    return {
        "small": write_tiny_model(folder / "tiny-Q8_0.gguf", tensor_type="Q8_0"),
        "big": write_tiny_model(folder / "tiny-F16.gguf", spec_for_size("llama", 8 * MiB)),  # 22 MiB
    }


def _controller(services: Services) -> DownloadsController:
    return DownloadsController(
        queue=services.queue,
        library=services.library,
        downloader=services.downloader(),
        machine=services.load_machine,
    )


def _visible(widget: DownloadRowWidget) -> list[str]:
    buttons = (
        widget.pause_button,
        widget.resume_button,
        widget.cancel_button,
        widget.clear_button,
        widget.action_button,
    )
    return [b.text() for b in buttons if b.isVisibleTo(widget)]


def test_running_paused_and_gated_rows_with_their_buttons_and_actions(
    qtbot: QtBot,
    qtmodeltester,
    services: Services,
    hub: HubServer,
    models: dict[str, Path],  # noqa: ANN001
) -> None:
    big = models["big"]
    size = big.stat().st_size
    for repo in ("kaihe-view/running-GGUF", "kaihe-view/paused-GGUF"):
        hub.add_repo(repo, {big.name: big})
        hub.inject(repo, big.name, bandwidth=MiB, methods=("GET",))
    hub.add_repo("kaihe-view/gated-GGUF", {"tiny-Q8_0.gguf": models["small"]}, gated=True)
    controller = _controller(services)
    opened: list[QUrl] = []
    view = DownloadsView(controller, open_url=opened.append)
    qtbot.addWidget(view)
    view.resize(900, 560)
    view.show()

    paused = controller.start("kaihe-view/paused-GGUF", "F16")
    qtbot.waitUntil(lambda: controller.model.get(paused).done_bytes >= MiB, timeout=WAIT_MS)  # type: ignore[union-attr]
    controller.pause(paused)
    running = controller.start("kaihe-view/running-GGUF", "F16")
    gated = controller.start("kaihe-view/gated-GGUF", "Q8_0")

    def ready() -> bool:
        rows = {r.key: r for r in controller.model.rows}
        return (
            rows[paused].state is DownloadState.PAUSED
            and rows[gated].state is DownloadState.FAILED
            and rows[running].state is DownloadState.RUNNING
            and rows[running].done_bytes >= 2 * MiB
            and rows[running].speed_bps > 0
        )

    qtbot.waitUntil(ready, timeout=WAIT_MS)
    qtmodeltester.check(controller.model)
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert view.grab().save(str(SHOTS / "downloads-page.png"))

    listing = view.findChild(QListView, "downloads-list")
    assert listing is view.list and listing.model().rowCount() == 3
    run_row, paused_row, gated_row = (view.row_widget(k) for k in (running, paused, gated))
    assert run_row is not None and paused_row is not None and gated_row is not None
    assert _visible(run_row) == ["Pause", "Cancel"]
    assert run_row.pause_button.accessibleName() == "Pause kaihe-view/running-GGUF · F16"
    assert "/s" in run_row.detail_label.text() and "left" in run_row.detail_label.text()
    assert _visible(paused_row) == ["Resume", "Cancel"]
    assert paused_row.state_label.text() == "Paused"
    assert " MiB of 21.9 MiB (" in paused_row.detail_label.text()
    assert _visible(gated_row) == ["Retry", "Cancel", Action.ACCEPT_LICENSE.value]
    assert "sign in" in gated_row.error_label.text().lower()
    assert gated_row.action_button.accessibleName() == "Open the model page for kaihe-view/gated-GGUF · Q8_0"
    for key, widget in ((running, run_row), (paused, paused_row), (gated, gated_row)):
        rect = listing.visualRect(controller.model.index(controller.model.find(key), 0))
        assert rect.height() >= widget.minimumSizeHint().height()  # nothing clipped
        assert widget.geometry().intersects(rect)
    qtbot.mouseClick(gated_row.action_button, Qt.MouseButton.LeftButton)
    assert opened == [QUrl(f"{hub.url}/kaihe-view/gated-GGUF")]

    # the buttons drive the controller: pause the running one, cancel the paused one
    qtbot.mouseClick(run_row.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: controller.model.get(running).state is DownloadState.PAUSED, timeout=WAIT_MS)  # type: ignore[union-attr]
    assert 2 * MiB <= controller.model.get(running).done_bytes < size  # type: ignore[union-attr]
    with qtbot.waitSignal(controller.removed, timeout=WAIT_MS):
        qtbot.mouseClick(paused_row.cancel_button, Qt.MouseButton.LeftButton)
    assert controller.model.find(paused) == -1 and listing.model().rowCount() == 2
    assert view.summary_label.text() == "2 downloads: 1 paused, 1 failed"
    assert view.grab().save(str(SHOTS / "downloads-after-cancel.png"))


MakeWindow = Callable[[Services], MainWindow]


def test_the_downloads_page_and_a_download_that_goes_on_across_pages(
    qtbot: QtBot, services: Services, hub: HubServer, models: dict[str, Path], make_window: MakeWindow
) -> None:
    repo = "kaihe-view/window-GGUF"
    small = models["small"]
    hub.add_repo(repo, {small.name: small})
    hub.inject(repo, small.name, latency_s=0.5, methods=("GET",))
    window = make_window(services)
    nav = window.findChild(QToolButton, "nav-downloads")
    assert nav is not None and nav.accessibleName() == "Downloads"
    nav.click()
    page = window.pages["downloads"].widget
    assert isinstance(page, DownloadsView) and window.current_page == "downloads"
    assert window.findChild(QListView, "downloads-list") is page.list
    with qtbot.waitSignal(page.controller.installed, timeout=WAIT_MS):
        page.controller.start(repo, "Q8_0")
        window.pages["models"].button.click()  # leaving the page does not stop it
    table = window.findChild(QTableView, "models-table")
    assert table is not None
    qtbot.waitUntil(lambda: table.model().rowCount() == 1, timeout=WAIT_MS)  # My models heard of it
    window.resize(960, 640)
    window.show_page("downloads")
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert window.grab().save(str(SHOTS / "downloads-window-done.png"))
