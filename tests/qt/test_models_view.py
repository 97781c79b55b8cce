"""My models, real widgets offscreen over Services on a temporary KAIHE_HOME (the starter model and tiny GGUFs
in its library): fit badges from core's report, delete (plan shown, then executed), import (slot and drop),
verify, reveal, adopt from the Hugging Face cache, chat_requested. Renders the page to /tmp/shots-models/."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QPushButton
from pytestqt.qtbot import QtBot

from kaihe_desktop.core.fit.kv_types import KVCacheType
from kaihe_desktop.core.fit.report import report_for
from kaihe_desktop.core.gguf.meta import read_local
from kaihe_desktop.core.library import LibrarySource
from kaihe_desktop.core.starter import STARTER_REPO_ID
from kaihe_desktop.qt import format as fmt
from kaihe_desktop.qt.controllers.library import LibraryController, VerifyResult
from kaihe_desktop.qt.dialogs.confirm_delete import ConfirmDeleteDialog
from kaihe_desktop.qt.errors import ErrorPresenter
from kaihe_desktop.qt.main_window import MainWindow
from kaihe_desktop.qt.models.library import FIT_COLUMN, FIT_ROLE, Fit
from kaihe_desktop.qt.views.models import CacheDialog, ModelsView
from kaihe_desktop.services import Preferences, Services
from tests.helpers.hub_server import HubServer

SHOTS = Path("/tmp/shots-models")


@dataclass
class Page:
    view: ModelsView
    controller: LibraryController
    errors: ErrorPresenter
    services: Services
    opened: list[QUrl]


@pytest.fixture
def page(qtbot: QtBot, services: Services) -> Iterator[Page]:
    errors = ErrorPresenter()
    opened: list[QUrl] = []

    def opener(url: QUrl) -> bool:  # what QDesktopServices.openUrl would have been handed
        opened.append(url)
        return True

    controller = LibraryController(
        services.library,
        errors,
        preferences=lambda: Preferences.read(services.settings),
        opener=opener,
    )
    view = ModelsView(controller, pick_files=lambda _parent: [])
    controller.setParent(view)
    errors.setParent(view)
    qtbot.addWidget(view)
    view.resize(1100, 520)
    view.show()
    yield Page(view, controller, errors, services, opened)
    view.close()


def _load(qtbot: QtBot, page: Page, rows: int) -> None:
    with qtbot.waitSignal(page.controller.fits_ready, timeout=30_000):
        page.controller.set_machine(page.services.load_machine())
        page.controller.refresh()
    qtbot.waitUntil(lambda: page.controller.model.rowCount() == rows, timeout=10_000)
    qtbot.waitUntil(lambda: not page.controller.fitting and not page.controller.loading, timeout=30_000)


def _fit_text(page: Page, name: str) -> str:
    model = page.controller.model
    return str(model.data(model.index(model.row_of(name), FIT_COLUMN)))


def test_fit_badges_are_the_core_fit_reports_numbers(
    qtbot: QtBot, page: Page, starter_model_path: Path, tiny_llama_path: Path, tiny_qwen3_path: Path
) -> None:
    library = page.services.library
    library.import_file(
        starter_model_path, name="starter", source=LibrarySource.STARTER, repo_id=STARTER_REPO_ID
    )
    library.import_file(tiny_llama_path)
    library.import_file(tiny_qwen3_path)
    _load(qtbot, page, 3)
    machine = page.services.load_machine()
    for entry in library.entries():
        report = report_for(read_local(entry.path), machine, source=str(entry.path))
        expected = fmt.fit_badge(str(report.plan.placement), report.plan.headroom_bytes)
        assert _fit_text(page, entry.name) == expected
        assert expected.startswith("fits: GPU, ") and expected.endswith(" spare")
        model = page.controller.model
        fit = model.data(model.index(model.row_of(entry.name), FIT_COLUMN), FIT_ROLE)
        assert isinstance(fit, Fit) and fit.headroom_bytes == report.plan.headroom_bytes
        assert fit.n_ctx == report.plan.n_ctx
    assert page.view.summary_label.text().startswith("3 models, ")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.view.table.selectRow(0)
    assert page.view.grab().save(str(SHOTS / "models.png"))


def test_the_badge_follows_the_saved_kv_type_and_margin(
    qtbot: QtBot, page: Page, tiny_llama_path: Path
) -> None:
    entry = page.services.library.import_file(tiny_llama_path)
    _load(qtbot, page, 1)
    model = page.controller.model
    default = model.fit(entry.name)
    assert default is not None and _fit_text(page, entry.name).startswith("fits: GPU, ")
    Preferences(kv_type=KVCacheType.Q4_0).save(page.services.settings)
    with qtbot.waitSignal(page.controller.fits_ready, timeout=30_000):
        page.controller.refresh_fits()
    smaller_kv = model.fit(entry.name)
    assert smaller_kv is not None and smaller_kv.headroom_bytes > default.headroom_bytes
    # a margin larger than the 8 GiB GPU leaves the model on the CPU
    Preferences(margin_bytes=9 * 2**30).save(page.services.settings)
    with qtbot.waitSignal(page.controller.fits_ready, timeout=30_000):
        page.controller.refresh_fits()
    assert _fit_text(page, entry.name).startswith("fits: CPU, ")


def test_delete_shows_the_plan_then_executes_it(qtbot: QtBot, page: Page, tiny_llama_path: Path) -> None:
    entry = page.services.library.import_file(tiny_llama_path, copy=True)  # owned: its file goes
    assert entry.owned and entry.path.is_file()
    _load(qtbot, page, 1)
    page.view.select(entry.name)
    expected = page.services.library.plan_delete(entry.name)
    with qtbot.waitSignal(page.view.confirm_shown, timeout=10_000) as shown:
        page.view.delete_button.click()
    dialog = shown.args[0]
    assert isinstance(dialog, ConfirmDeleteDialog) and dialog.isVisible()
    assert fmt.bytes_text(expected.freed_bytes) in dialog.summary_label.text()
    assert "1 file will be removed" in dialog.summary_label.text()
    assert dialog.files_list.item(0).text() == f"delete: {entry.path}"
    assert entry.path.is_file()  # nothing is touched before the confirmation
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert dialog.grab().save(str(SHOTS / "confirm-delete.png"))
    with qtbot.waitSignal(page.controller.deleted, timeout=10_000) as done:
        dialog.delete_button.click()
    assert done.args[0].freed_bytes == expected.freed_bytes
    assert not entry.path.exists()
    qtbot.waitUntil(lambda: page.controller.model.rowCount() == 0, timeout=10_000)
    assert page.services.library.entries() == ()
    assert "Deleted" in page.view.status_label.text()


def test_cancelling_the_delete_keeps_everything(qtbot: QtBot, page: Page, tiny_llama_path: Path) -> None:
    entry = page.services.library.import_file(tiny_llama_path, copy=True)
    _load(qtbot, page, 1)
    page.view.select(entry.name)
    with qtbot.waitSignal(page.view.confirm_shown, timeout=10_000) as shown:
        page.view.delete_selected()
    dialog = shown.args[0]
    cancel = dialog.findChild(QPushButton, "delete-cancel")
    assert cancel is not None and cancel.isDefault()
    cancel.click()
    assert entry.path.is_file() and len(page.services.library.entries()) == 1


def test_import_through_the_slot(qtbot: QtBot, page: Page, tiny_qwen3_path: Path) -> None:
    _load_empty(qtbot, page)
    with qtbot.waitSignal(page.controller.imported, timeout=10_000) as imported:
        page.view.import_paths([tiny_qwen3_path])
    assert imported.args[0].path == tiny_qwen3_path
    qtbot.waitUntil(lambda: page.controller.model.rowCount() == 1, timeout=10_000)
    qtbot.waitUntil(lambda: not page.controller.loading and not page.controller.fitting, timeout=30_000)
    assert page.controller.model.entries[0].name == tiny_qwen3_path.stem


def _load_empty(qtbot: QtBot, page: Page) -> None:
    page.controller.set_machine(page.services.load_machine())
    with qtbot.waitSignal(page.controller.loaded, timeout=10_000):
        page.controller.refresh()


def _drop(page: Page, paths: list[Path]) -> tuple[bool, bool]:
    """A drag entering the table and a drop on it, as the window system sends them: (entered, dropped)."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    target = page.view.table.viewport()
    enter = QDragEnterEvent(
        QPoint(20, 20),  # QDragEnterEvent takes an integer point (QDropEvent a QPointF)
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(target, enter)
    drop = QDropEvent(
        QPointF(20, 20),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(target, drop)
    return enter.isAccepted(), drop.isAccepted()


def test_import_by_dropping_files_on_the_table(
    qtbot: QtBot, page: Page, tiny_llama_path: Path, text_file_path: Path, tmp_path: Path
) -> None:
    _load_empty(qtbot, page)
    readme = tmp_path / "notes.txt"
    readme.write_text("not a model")
    assert _drop(page, [readme]) == (False, False)  # only .gguf files are taken
    with qtbot.waitSignal(page.controller.imported, timeout=10_000):
        entered, dropped = _drop(page, [tiny_llama_path])
    assert entered and dropped
    qtbot.waitUntil(lambda: page.controller.model.rowCount() == 1, timeout=10_000)
    # a broken file: the error presenter says what is wrong, nothing is listed
    with qtbot.waitSignal(page.errors.presented, timeout=10_000) as presented:
        _drop(page, [text_file_path])
    assert presented.args[0].title == "This model file cannot be used"
    qtbot.waitUntil(lambda: not page.controller.loading and not page.controller.fitting, timeout=30_000)
    assert len(page.services.library.entries()) == 1


def test_verify_ok_and_a_damaged_copy(qtbot: QtBot, page: Page, tiny_llama_path: Path) -> None:
    entry = page.services.library.import_file(tiny_llama_path, copy=True)
    _load(qtbot, page, 1)
    page.view.select(entry.name)
    with qtbot.waitSignal(page.controller.verified, timeout=10_000) as ok:
        page.view.verify_button.click()
    result = ok.args[0]
    assert isinstance(result, VerifyResult) and result.ok and result.checked == 1
    assert page.view.status_label.text().startswith("✔ ")
    # corrupt the library's copy (the original is untouched)
    data = bytearray(entry.path.read_bytes())
    data[-100] ^= 0xFF
    entry.path.write_bytes(bytes(data))
    with qtbot.waitSignal(page.controller.verified, timeout=10_000) as bad:
        page.view.verify_selected()
    result = bad.args[0]
    assert not result.ok and result.mismatched[0].expected == entry.sha256
    assert "is damaged" in page.view.status_label.text()
    entry.path.unlink()
    with qtbot.waitSignal(page.controller.verified, timeout=10_000) as gone:
        page.view.verify_selected()
    assert gone.args[0].missing == (entry.path,)
    assert "is missing" in page.view.status_label.text()


def test_reveal_opens_the_models_folder(qtbot: QtBot, page: Page, tiny_llama_path: Path) -> None:
    entry = page.services.library.import_file(tiny_llama_path)
    _load(qtbot, page, 1)
    page.view.select(entry.name)
    page.view.reveal_button.click()
    assert page.opened == [QUrl.fromLocalFile(str(tiny_llama_path.parent))]
    assert page.opened[0].isLocalFile()


def test_chat_with_it_emits_the_entry_name(qtbot: QtBot, page: Page, tiny_llama_path: Path) -> None:
    entry = page.services.library.import_file(tiny_llama_path)
    _load(qtbot, page, 1)
    assert not page.view.chat_button.isEnabled()  # nothing selected yet
    page.view.select(entry.name)
    assert page.view.chat_button.isEnabled()
    with qtbot.waitSignal(page.view.chat_requested, timeout=2_000) as chat:
        page.view.chat_button.click()
    assert chat.args == [entry.name]


def test_models_in_the_hf_cache_are_offered_and_adopted(
    qtbot: QtBot, page: Page, hub: HubServer, tiny_gemma3_path: Path
) -> None:
    repo = "kaihe-test/adopt-me-GGUF"
    hub.add_repo(repo, {"adopt-me-Q8_0.gguf": tiny_gemma3_path})
    cached = Path(hf_hub_download(repo, "adopt-me-Q8_0.gguf"))
    _load_empty(qtbot, page)
    with qtbot.waitSignal(page.view.cache_dialog_shown, timeout=10_000) as shown:
        page.view.cache_button.click()
    dialog = shown.args[0]
    assert isinstance(dialog, CacheDialog)
    rows = [dialog.list.item(i).text() for i in range(dialog.list.count())]
    assert any(text.startswith(f"{repo} · adopt-me-Q8_0.gguf · Q8_0") for text in rows)
    for i, c in enumerate(dialog.found):  # only ours (other tests may have left GGUFs in the cache)
        item = dialog.list.item(i)
        item.setCheckState(Qt.CheckState.Checked if c.repo_id == repo else Qt.CheckState.Unchecked)
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert dialog.grab().save(str(SHOTS / "hf-cache.png"))
    with qtbot.waitSignal(page.controller.adopted, timeout=10_000) as adopted:
        dialog.add_button.click()
    (entry,) = adopted.args[0]
    assert entry.source == LibrarySource.HF_CACHE and entry.path == cached and not entry.owned
    qtbot.waitUntil(lambda: page.controller.model.rowCount() == 1, timeout=10_000)
    qtbot.waitUntil(lambda: not page.controller.loading and not page.controller.fitting, timeout=30_000)
    assert "Added from the Hugging Face cache" in page.view.status_label.text()
    shutil.rmtree(Path(cached).parents[2], ignore_errors=True)  # the repo's cache folder


def test_the_window_wires_the_active_machine_into_the_fit_column(
    qtbot: QtBot,
    services: Services,
    make_window: Callable[[Services], MainWindow],
    tiny_llama_path: Path,
    tiny_qwen3_path: Path,
) -> None:
    services.library.import_file(tiny_llama_path)
    services.library.import_file(tiny_qwen3_path)
    window = make_window(services)
    window.show()
    window.pages["models"].action.trigger()
    view = window.pages["models"].widget
    assert isinstance(view, ModelsView)
    model = view.proxy
    qtbot.waitUntil(lambda: model.rowCount() == 2, timeout=10_000)
    qtbot.waitUntil(
        lambda: all(str(model.index(r, FIT_COLUMN).data()).startswith("fits: ") for r in range(2)),
        timeout=30_000,
    )
    view.table.selectRow(0)
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert window.grab().save(str(SHOTS / "models-window.png"))
