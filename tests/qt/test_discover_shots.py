"""Discover rendered with real results and a selected repo, to PNG (for a person to look at).

The PNGs go to KAIHE_SHOTS_DIR when it is set (e.g. /tmp/shots-discover), else to the test's temp folder;
the test checks that the pane's parts are laid out without overlapping and that nothing is empty.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import QRect
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from kaihe_desktop.core.fit.kv_types import KVCacheType
from kaihe_desktop.core.machine.profiles import resolve_profile
from kaihe_desktop.qt import workers
from kaihe_desktop.qt.main_window import DEFAULT_SIZE, MainWindow
from kaihe_desktop.qt.views.discover import DiscoverView
from kaihe_desktop.services import Services
from tests.helpers.hub_server import HubServer
from tests.helpers.tiny_gguf import TinySpec, write_tiny_model

SPEC = TinySpec(arch="llama", n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256, n_ctx_train=1 << 17)


def _shots_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("KAIHE_SHOTS_DIR") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _rect_in(widget: QWidget, root: QWidget) -> QRect:
    return QRect(widget.mapTo(root, widget.rect().topLeft()), widget.size())


def _save(window: MainWindow, path: Path) -> None:
    QApplication.processEvents()  # let pending layouts settle before the grab
    assert window.grab().save(str(path))
    assert path.stat().st_size > 10_000


def test_render_discover_with_results_and_a_selected_repo(
    qtbot: QtBot,
    hub: HubServer,
    tmp_path: Path,
    starter_model_path: Path,
    services: Services,
    make_window: Callable[[Services], MainWindow],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = {
        f"Tiny-{q}.gguf": write_tiny_model(tmp_path / f"Tiny-{q}.gguf", SPEC, tensor_type=q)
        for q in ("F16", "Q8_0", "Q4_0")
    }
    readme = {"README.md": b"# card\n"}
    hub.add_repo("kshot/Gemma-3-270M-GGUF", {starter_model_path.name: starter_model_path, **readme},
                 license="gemma", downloads=120_000, tags=("gguf",))  # fmt: skip
    hub.add_repo("kshot/Tiny-Chat-GGUF", {**files, **readme}, license="apache-2.0", downloads=4_200,
                 tags=("gguf",))  # fmt: skip
    hub.add_repo("kshot/Tiny-Research-GGUF", {"R-Q8_0.gguf": files["Tiny-Q8_0.gguf"], **readme},
                 license="cc-by-nc-4.0", downloads=310, tags=("gguf",))  # fmt: skip
    shots = _shots_dir(tmp_path)

    window = make_window(services)  # the RTX 4060 laptop profile
    window.resize(1100, 760)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: window._machine.summary is not None, timeout=15_000)  # noqa: SLF001
    view = window.pages["discover"].widget
    assert isinstance(view, DiscoverView)
    controller = view._controller  # noqa: SLF001

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the curated repos are not on the test Hub: estimates
    window.show_page("discover")
    qtbot.waitUntil(lambda: controller.recommendation_model.rowCount() > 0, timeout=30_000)
    qtbot.waitUntil(lambda: not workers.in_flight(), timeout=30_000)
    _save(window, shots / "discover-recommendations.png")
    monkeypatch.delenv("HF_HUB_OFFLINE")

    view.search.setText("kshot")
    qtbot.waitUntil(lambda: controller.model.rowCount() == 3, timeout=30_000)
    view.results.selectRow(0)
    qtbot.waitUntil(lambda: view.shown is not None, timeout=30_000)
    qtbot.waitUntil(lambda: not workers.in_flight(), timeout=30_000)
    _save(window, shots / "discover-results.png")

    # the tiny repo with three variants, at a long context and a quantized KV cache
    row = next(r for r in range(view.proxy.rowCount()) if "Tiny-Chat" in str(view.proxy.index(r, 0).data()))
    view.results.selectRow(row)
    view.set_context(1 << 17)
    view.kv_box.setCurrentIndex(view.kv_box.findData(KVCacheType.Q8_0))
    qtbot.waitUntil(
        lambda: (
            view.shown is not None
            and view.shown.repo.repo_id == "kshot/Tiny-Chat-GGUF"
            and view.shown.what_if.n_ctx == 1 << 17
            and view.shown.what_if.kv_type is KVCacheType.Q8_0
        ),
        timeout=30_000,
    )
    qtbot.waitUntil(lambda: not workers.in_flight(), timeout=30_000)
    pane = view.details_area.widget()
    assert pane is not None
    parts = [view.title_label, view.facts_label, view.reason_label, view.variants, view.memory_bar,
             view.warnings_label]  # fmt: skip
    for part in parts:
        assert part.isVisible() and part.height() > 0

    def laid_out() -> None:  # the layout settles on the next turns of the event loop
        rects = [_rect_in(p, pane) for p in parts]
        for upper, lower in zip(rects, rects[1:], strict=False):
            assert upper.bottom() < lower.top(), "parts of the details pane overlap"

    qtbot.waitUntil(laid_out, timeout=5_000)
    assert view.title_label.text() and view.badge.text() and view.memory_bar.devices
    _save(window, shots / "discover-what-if.png")
    window.resize(*DEFAULT_SIZE)  # what a first start shows: the pane scrolls, nothing is clipped
    qtbot.waitUntil(lambda: window.width() == DEFAULT_SIZE[0], timeout=5_000)
    _save(window, shots / "discover-default-size.png")


def test_render_discover_on_a_small_machine_with_one_over(
    qtbot: QtBot,
    hub: HubServer,
    tmp_path: Path,
    starter_model_path: Path,
    kaihe_home: Path,
    make_window: Callable[[Services], MainWindow],
) -> None:
    base = resolve_profile("laptop-8gb")
    small = dataclasses.replace(
        base, ram=dataclasses.replace(base.ram, total_bytes=2 << 30, available_bytes=1434 << 20)
    )
    profile = tmp_path / "small.json"
    small.save(profile)
    tiny = write_tiny_model(tmp_path / "Tiny-Q4_0.gguf", SPEC, tensor_type="Q4_0")
    readme = {"README.md": b"# card\n"}
    hub.add_repo("kshotS/Gemma-3-270M-GGUF", {starter_model_path.name: starter_model_path, **readme},
                 license="gemma", downloads=120_000, tags=("gguf",))  # fmt: skip
    hub.add_repo("kshotS/Tiny-Chat-GGUF", {"T-Q4_0.gguf": tiny, **readme}, license="mit", downloads=42,
                 tags=("gguf",))  # fmt: skip
    window = make_window(Services.create(home=kaihe_home, profile=str(profile)))
    window.resize(1100, 760)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: window._machine.summary is not None, timeout=15_000)  # noqa: SLF001
    view = window.pages["discover"].widget
    assert isinstance(view, DiscoverView)
    window.show_page("discover")
    view.search.setText("kshots")
    qtbot.waitUntil(lambda: view._controller.model.rowCount() == 2, timeout=30_000)  # noqa: SLF001
    qtbot.waitUntil(lambda: view.shown is not None, timeout=30_000)
    qtbot.waitUntil(lambda: not workers.in_flight(), timeout=30_000)
    assert view.badge.text().startswith("over by ")
    _save(window, _shots_dir(tmp_path) / "discover-over.png")
