"""The first start, end to end against the local Hub: the welcome page, one click to a verified model chosen
for chat, the starter offered when the Hub cannot be reached, nothing downloaded before the click, and the
next start skipping the page."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from kaihe_desktop.core.hub.catalog import Catalog
from kaihe_desktop.core.hub.recommend_data import Recommendations, load_recommendations
from kaihe_desktop.core.library import LibrarySource
from kaihe_desktop.core.starter import starter_available
from kaihe_desktop.qt.controllers.first_run import FIRST_RUN_KEY, FirstRunController
from kaihe_desktop.qt.main_window import MainWindow
from kaihe_desktop.qt.views.first_run import FirstRunView
from kaihe_desktop.qt.views.models import ModelsView
from kaihe_desktop.services import Services
from tests.helpers.hub_server import HubServer

WAIT_MS = 120_000
PICK_REPO = "kaihe-first/gemma-3-270m-GGUF"
MakeWindow = Callable[[Services], MainWindow]
needs_starter = pytest.mark.skipif(
    not starter_available(), reason="the starter model package is not installed"
)


def first_run_data(tmp_path: Path, repo_id: str = PICK_REPO) -> Recommendations:
    """The shipped recommendations' shapes with one general-chat repo (the starter's file on the local Hub),
    which the first-run rules (not gated, room left, a small download) then pick."""
    shipped = json.loads(
        resources.files("kaihe_desktop").joinpath("data/recommendations.json").read_text(encoding="utf-8")
    )
    repo: dict[str, Any] = {
        "repo_id": repo_id, "family": "Gemma 3", "shape": "gemma3-270m", "params_b": 0.27,
        "license": "gemma", "gated": False, "quants": ["Q4_K_M"],
    }  # fmt: skip
    data = {
        **shipped,
        "use_cases": [
            {"id": "general-chat", "title": "General chat", "description": "chat", "keywords": ["chat"],
             "repos": [repo]},
        ],
        "first_run": {"use_case": "general-chat", "min_headroom_pct": 10.0, "max_download_gb": 1.0},
    }  # fmt: skip
    path = tmp_path / "first-run-recommendations.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return load_recommendations(path)


def serve_pick(hub: HubServer, starter_model_path: Path, repo_id: str = PICK_REPO) -> None:
    hub.add_repo(
        repo_id,
        {starter_model_path.name: starter_model_path, "README.md": b"# Gemma 3 270M GGUF\n"},
        license="gemma", tags=("gguf", "text-generation"), pipeline_tag="text-generation",
    )  # fmt: skip


def fresh_services(home: Path, tmp_path: Path, profile: str = "rtx4060-16gb") -> Services:
    """Services over a KAIHE_HOME never started before (no first-run flag, no model)."""
    return dataclasses.replace(
        Services.create(home=home, profile=profile), recommendation_data=first_run_data(tmp_path)
    )


def first_run_page(window: MainWindow) -> FirstRunView:
    view = window.pages["first-run"].widget
    assert isinstance(view, FirstRunView)
    return view


def wait_settled(qtbot: QtBot, controller: FirstRunController) -> None:
    """The pick made and the starter (when its package is installed) listed."""
    qtbot.waitUntil(lambda: controller.recommendations is not None, timeout=WAIT_MS)
    if starter_available():
        qtbot.waitUntil(lambda: controller.starter is not None, timeout=WAIT_MS)


def model_gets(hub: HubServer, repo_id: str) -> list[str | None]:
    """The Range header of each GET of a model file of ``repo_id`` the server answered (None: the whole)."""
    return [
        r.range
        for r in hub.requests(repo_id)
        if r.method == "GET" and (r.filename or "").endswith(".gguf") and r.status in (200, 206)
    ]


def test_one_click_downloads_the_pick_verified_and_chooses_it_for_chat(
    qtbot: QtBot, hub: HubServer, kaihe_home: Path, tmp_path: Path, starter_model_path: Path,
    make_window: MakeWindow,
) -> None:  # fmt: skip
    serve_pick(hub, starter_model_path)
    services = fresh_services(kaihe_home, tmp_path)
    window = make_window(services)
    window.show()
    qtbot.waitExposed(window)
    assert window.current_page == "first-run"
    view = first_run_page(window)
    assert view.isVisible() and not window.pages["first-run"].button.isVisible()  # not in the sidebar
    controller = view.controller
    wait_settled(qtbot, controller)
    qtbot.waitUntil(view.get_button.isEnabled, timeout=WAIT_MS)
    # the machine card and the pick, named with its quant, size and why
    assert view.tier_badge.text() == "Intermediate"
    assert "RTX 4060" in view.gpu_label.text() and view.ram_label.text().startswith("RAM: ")
    assert view.cpu_label.text().startswith("CPU: ") and view.runs_label.text().startswith("Runs well: ")
    assert view.next_label.text().startswith("The next tier, Professional")
    assert PICK_REPO in view.pick_label.text() and "Q4_K_M" in view.pick_label.text()
    assert "MiB" in view.pick_label.text() and view.why_label.text().startswith("Why: ")
    assert view.get_button.text() == "Get the recommended model" and view.get_button.isVisible()
    assert not view.starter_button.isVisible()  # the Hub answers: the download is the offer
    assert services.settings.get(FIRST_RUN_KEY) is True
    if starter_available():  # the starter is in My models from the first launch, labelled
        assert controller.starter is not None and controller.starter.source is LibrarySource.STARTER
        assert "small base model for trying the app" in view.starter_label.text()
    # nothing downloaded before the click: the fit read the header with Range requests only
    before = model_gets(hub, PICK_REPO)
    assert None not in before
    assert hub.bytes_sent(PICK_REPO, starter_model_path.name) < starter_model_path.stat().st_size // 10

    clicks: list[bool] = []
    view.get_button.clicked.connect(lambda: clicks.append(True))
    chosen: list[str] = []
    controller.chosen.model_chosen.connect(chosen.append)
    with qtbot.waitSignal(controller.downloads.installed, timeout=WAIT_MS) as installed:
        qtbot.mouseClick(view.get_button, Qt.MouseButton.LeftButton)
        assert view.progress.isVisible() and not view.get_button.isEnabled()
    entry = installed.args[0]
    assert entry.repo_id == PICK_REPO and entry.quant == "Q4_K_M" and entry.source is LibrarySource.HUB
    assert entry.sha256 and entry.size_bytes == starter_model_path.stat().st_size
    qtbot.waitUntil(lambda: chosen == [entry.name], timeout=WAIT_MS)
    models = window.pages["models"].widget
    assert isinstance(models, ModelsView)
    qtbot.waitUntil(lambda: window.current_page == "models", timeout=WAIT_MS)
    qtbot.waitUntil(
        lambda: (s := models.selected_entry()) is not None and s.name == entry.name, timeout=WAIT_MS
    )
    assert window.model_label.text() == f"Chosen for chat: {entry.name}"
    assert len(clicks) == 1 and controller.clicks == 1
    assert model_gets(hub, PICK_REPO)[len(before) :]  # the download itself came after the click
    assert view.progress.value() == view.progress.maximum()
    names = {e.name for e in services.library.entries()}
    assert entry.name in names and (not starter_available() or "starter" in names)


@needs_starter
def test_without_the_hub_the_starter_is_offered_instead(
    qtbot: QtBot, hub: HubServer, kaihe_home: Path, tmp_path: Path, make_window: MakeWindow,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.reset_counters()
    window = make_window(fresh_services(kaihe_home, tmp_path, profile="laptop-8gb"))
    view = first_run_page(window)
    controller = view.controller
    wait_settled(qtbot, controller)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(view.starter_button.isVisible, timeout=WAIT_MS)
    assert not view.get_button.isVisible()  # the starter instead of the download
    assert view.notice_label.isVisible() and "cannot be reached" in view.notice_label.text()
    assert "HF_HUB_OFFLINE" in view.notice_label.text()
    with qtbot.waitSignal(controller.chosen.model_chosen, timeout=WAIT_MS) as chosen:
        qtbot.mouseClick(view.starter_button, Qt.MouseButton.LeftButton)
    assert chosen.args == ["starter"]
    models = window.pages["models"].widget
    assert isinstance(models, ModelsView)
    qtbot.waitUntil(
        lambda: (s := models.selected_entry()) is not None and s.name == "starter", timeout=WAIT_MS
    )
    assert window.current_page == "models" and window.model_label.text() == "Chosen for chat: starter"
    proxy = models.proxy
    (row,) = [r for r in range(proxy.rowCount()) if proxy.index(r, 0).data() == "starter"]
    source = proxy.index(row, 3)
    assert source.data() == "Starter (small base model)"
    assert "small base model for trying the app" in source.data(Qt.ItemDataRole.ToolTipRole)
    assert hub.requests() == [] and controller.clicks == 0  # offline: nothing asked, nothing downloaded


def test_an_unreachable_hub_is_said_and_nothing_is_downloaded(
    qtbot: QtBot, hub: HubServer, kaihe_home: Path, tmp_path: Path, make_window: MakeWindow,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    base = fresh_services(kaihe_home, tmp_path)
    services = dataclasses.replace(
        base, catalog=lambda m: Catalog(machine=m, endpoint=f"http://127.0.0.1:{port}")
    )
    window = make_window(services)
    view = first_run_page(window)
    wait_settled(qtbot, view.controller)
    assert view.controller.hub_unreachable
    qtbot.waitUntil(lambda: "cannot be reached" in view.notice_label.text(), timeout=WAIT_MS)
    assert PICK_REPO in view.pick_label.text()  # the estimate still names the pick
    assert view.starter_button.isVisibleTo(view) is starter_available()
    assert view.controller.clicks == 0 and not hub.requests(PICK_REPO)
    assert os.environ.get("HF_HUB_OFFLINE") is None


def test_the_next_start_skips_the_welcome_and_opens_on_the_last_page(
    qtbot: QtBot, hub: HubServer, kaihe_home: Path, tmp_path: Path, make_window: MakeWindow
) -> None:
    first = make_window(fresh_services(kaihe_home, tmp_path))
    assert first.current_page == "first-run"
    wait_settled(qtbot, first_run_page(first).controller)
    first.pages["discover"].action.trigger()
    first.close()
    second = make_window(fresh_services(kaihe_home, tmp_path))
    assert "first-run" not in second.pages
    assert second.current_page == "discover"
    QApplication.processEvents()


def test_a_library_with_models_is_not_a_first_start(
    qtbot: QtBot, kaihe_home: Path, tmp_path: Path, make_window: MakeWindow, tiny_llama_path: Path
) -> None:
    services = fresh_services(kaihe_home, tmp_path)
    services.library.import_file(tiny_llama_path)
    window = make_window(services)
    controller = first_run_page(window).controller
    with qtbot.waitSignal(controller.decided, timeout=WAIT_MS) as decided:
        pass
    assert decided.args == [False]
    assert window.current_page == "machine" and not controller.active
    qtbot.waitUntil(lambda: services.settings.get(FIRST_RUN_KEY) is True, timeout=WAIT_MS)
    assert [e.name for e in services.library.entries()] == [tiny_llama_path.stem]  # no starter added
