"""Discover → guardrail → Downloads, end to end against the local Hub.

A tiny repo with F16, Q8_0 and Q4_0 variants (tests/helpers/tiny_gguf.py), served by the session's Hub
server; the machine is a profile file whose free RAM is one byte short of what F16 needs with the safety
margin (found with the core's own guardrails.check), so F16 does not fit and Q8_0 does. Asking for F16 in
Discover opens the guardrail dialog with the numbers; taking "the next quant down" downloads Q8_0, verified.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton
from pytestqt.qtbot import QtBot

from kaihe_desktop.core.fit import guardrails
from kaihe_desktop.core.fit.guardrails import Requested
from kaihe_desktop.core.hub.catalog import Catalog, CatalogRepo
from kaihe_desktop.core.hub.listing_cache import ListingCache
from kaihe_desktop.core.machine.profiles import resolve_profile
from kaihe_desktop.core.machine.spec import Machine
from kaihe_desktop.qt import workers
from kaihe_desktop.qt.controllers.catalog import default_context, options_of
from kaihe_desktop.qt.controllers.downloads import DownloadsController
from kaihe_desktop.qt.dialogs.guardrail import GuardrailDialog
from kaihe_desktop.qt.main_window import MainWindow
from kaihe_desktop.qt.models.downloads import DownloadState
from kaihe_desktop.qt.views.discover import DiscoverView
from kaihe_desktop.services import Preferences, Services
from tests.helpers.hub_server import HubServer
from tests.helpers.tiny_gguf import TinySpec, write_tiny_model

SPEC = TinySpec(arch="llama", n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256)
REPO = "kwire/Tiny-Wire-GGUF"
WAIT_MS = 30_000


def _machine(available: int) -> Machine:
    base = resolve_profile("laptop-8gb")
    return dataclasses.replace(
        base, ram=dataclasses.replace(base.ram, total_bytes=4 << 30, available_bytes=available)
    )


def _fits(machine: Machine, quant: str, repo: CatalogRepo) -> bool:
    assert repo.meta is not None
    return (
        guardrails.check(
            repo.meta,
            machine,
            options=Requested(quant=quant, n_ctx=default_context(repo)),
            variants=options_of(repo),
            kind=guardrails.Action.DOWNLOAD,
            margin_bytes=Preferences().margin_bytes,
        )
        is None
    )


@pytest.fixture
def tight_profile(hub: HubServer, tmp_path: Path) -> Path:
    """The repo on the Hub and a profile with one byte less free RAM than F16 needs (Q8_0 still fits)."""
    root = tmp_path / "variants"
    files = {
        f"Tiny-Wire-{q}.gguf": write_tiny_model(root / f"Tiny-Wire-{q}.gguf", SPEC, tensor_type=q)
        for q in ("F16", "Q8_0", "Q4_0")
    }
    hub.add_repo(REPO, {**files, "README.md": b"# card\n"}, tags=("gguf",), license="mit", downloads=3)
    repo = Catalog(machine=_machine(4 << 30), cache=ListingCache(tmp_path / "cache")).search("kwire").repos[0]
    assert repo.meta is not None
    lo, hi = 0, 4 << 30  # the least free RAM where F16 fits
    while lo < hi:
        mid = (lo + hi) // 2
        if _fits(_machine(mid), "F16", repo):
            hi = mid
        else:
            lo = mid + 1
    tight = _machine(lo - 1)
    assert not _fits(tight, "F16", repo)
    assert _fits(tight, "Q8_0", repo)
    path = tmp_path / "tight.json"
    tight.save(path)
    return path


def _open(
    qtbot: QtBot, make_window: Callable[[Services], MainWindow], home: Path, profile: Path
) -> MainWindow:
    window = make_window(Services.create(home=home, profile=str(profile)))
    window.show_page("discover")
    view = window.pages["discover"].widget
    assert isinstance(view, DiscoverView)
    qtbot.waitUntil(lambda: window._machine.summary is not None, timeout=WAIT_MS)  # noqa: SLF001
    view.search.setText("kwire")
    qtbot.waitUntil(lambda: view.repo is not None and view.repo.repo_id == REPO, timeout=WAIT_MS)
    return window


def _dialog(qtbot: QtBot, window: MainWindow) -> GuardrailDialog:
    def shown() -> bool:
        found = window.findChild(GuardrailDialog, "guardrail-dialog")
        return found is not None and found.isVisible()

    qtbot.waitUntil(shown, timeout=WAIT_MS)
    found = window.findChild(GuardrailDialog, "guardrail-dialog")
    assert found is not None
    return found


def _downloads(window: MainWindow) -> DownloadsController:
    controller = window.pages["downloads"].widget._controller  # type: ignore[attr-defined] # noqa: SLF001
    assert isinstance(controller, DownloadsController)
    return controller


def test_a_variant_that_does_not_fit_offers_the_next_quant_down_and_downloads_it(
    qtbot: QtBot,
    kaihe_home: Path,
    tight_profile: Path,
    make_window: Callable[[Services], MainWindow],
) -> None:
    services = Services.create(home=kaihe_home, profile=str(tight_profile))
    window = make_window(services)
    window.show_page("discover")
    view = window.pages["discover"].widget
    assert isinstance(view, DiscoverView)
    qtbot.waitUntil(lambda: window._machine.summary is not None, timeout=WAIT_MS)  # noqa: SLF001
    view.search.setText("kwire")
    qtbot.waitUntil(lambda: view._controller.model.rowCount() == 1, timeout=WAIT_MS)  # noqa: SLF001
    qtbot.waitUntil(lambda: view.repo is not None and view.repo.repo_id == REPO, timeout=WAIT_MS)

    def f16_button() -> QPushButton | None:
        return view.findChild(QPushButton, "discover-download-F16")

    qtbot.waitUntil(lambda: f16_button() is not None, timeout=WAIT_MS)
    button = f16_button()
    assert button is not None
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)

    def dialog() -> GuardrailDialog | None:
        return window.findChild(GuardrailDialog, "guardrail-dialog")

    qtbot.waitUntil(lambda: dialog() is not None and dialog().isVisible(), timeout=WAIT_MS)  # type: ignore[union-attr]
    shown = dialog()
    assert shown is not None
    guardrail = shown.guardrail
    assert guardrail.trigger is guardrails.Trigger.BELOW_MARGIN and guardrail.quant == "F16"
    for key in ("needs", "has", "leaves"):  # the numbers are shown, in bytes' words
        assert any(unit in shown.number_labels[key].text() for unit in ("KiB", "MiB", "GiB"))
    assert "F16" in shown.proceed_button.text() or "anyway" in shown.proceed_button.text().lower()
    use = shown.findChild(QPushButton, "guardrail-use-next_quant_down")
    assert use is not None
    option = next(o for o in guardrail.options if o.change is guardrails.Change.NEXT_QUANT_DOWN)
    assert option.quant == "Q8_0"

    downloads = _downloads(window)
    with qtbot.waitSignal(downloads.installed, timeout=WAIT_MS) as got:
        qtbot.mouseClick(use, Qt.MouseButton.LeftButton)
    entry = got.args[0]
    assert entry.repo_id == REPO and entry.quant == "Q8_0"
    row = downloads.row(f"{REPO}:Q8_0")
    assert row is not None and row.state is DownloadState.DONE and row.error is None
    assert downloads.row(f"{REPO}:F16") is None  # the one that does not fit never started
    assert _ours(services) == ["Q8_0"]
    qtbot.waitUntil(lambda: not workers.in_flight(), timeout=WAIT_MS)


def test_download_anyway_downloads_the_variant_that_does_not_fit(
    qtbot: QtBot, kaihe_home: Path, tight_profile: Path, make_window: Callable[[Services], MainWindow]
) -> None:
    window = _open(qtbot, make_window, kaihe_home, tight_profile)
    view = window.pages["discover"].widget
    assert isinstance(view, DiscoverView)
    qtbot.waitUntil(lambda: view.findChild(QPushButton, "discover-download-F16") is not None, timeout=WAIT_MS)
    button = view.findChild(QPushButton, "discover-download-F16")
    assert button is not None
    button.click()
    dialog = _dialog(qtbot, window)
    assert "anyway" in dialog.proceed_button.text().lower()
    downloads = _downloads(window)
    with qtbot.waitSignal(downloads.installed, timeout=WAIT_MS) as got:
        dialog.proceed_button.click()
    assert got.args[0].quant == "F16"
    qtbot.waitUntil(lambda: not workers.in_flight(), timeout=WAIT_MS)


def test_a_refused_download_opens_the_same_dialog_and_cancel_starts_nothing(
    qtbot: QtBot, kaihe_home: Path, tight_profile: Path, make_window: Callable[[Services], MainWindow]
) -> None:
    window = _open(qtbot, make_window, kaihe_home, tight_profile)
    downloads = _downloads(window)
    with qtbot.waitSignal(downloads.does_not_fit, timeout=WAIT_MS):
        downloads.start(REPO, "F16")  # not through Discover: the download's own check refuses it
    dialog = _dialog(qtbot, window)
    assert dialog.guardrail.quant == "F16" and dialog.cancel_button.isDefault()
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: not workers.in_flight(), timeout=WAIT_MS)
    row = downloads.row(f"{REPO}:F16")
    assert row is not None and row.state is DownloadState.FAILED
    assert downloads.row(f"{REPO}:Q8_0") is None and not _ours(Services.create(home=kaihe_home))


def _ours(services: Services) -> list[str | None]:
    """The quants of this test's repo in the library (a first start may add the starter model too)."""
    return [e.quant for e in services.library.entries() if e.repo_id == REPO]
