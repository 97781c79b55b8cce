"""My models: the library as a sortable table."""

from __future__ import annotations

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QTableView, QVBoxLayout, QWidget

from kaihe_desktop.qt import format as fmt
from kaihe_desktop.qt.controllers.library import LibraryController
from kaihe_desktop.qt.models.library import COLUMNS, SORT_ROLE

EMPTY_TEXT = (
    "No models yet. The starter model comes with `pip install 'kaihe-desktop[starter]'` "
    "(then `kaihe models --add-starter`), and `kaihe recommend` suggests one that fits this machine."
)


class ModelsView(QWidget):
    def __init__(self, controller: LibraryController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("page-models")
        self._controller = controller
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

        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(controller.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.table = QTableView(self)
        self.table.setObjectName("models-table")
        self.table.setAccessibleName("installed models")
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

        controller.loaded.connect(self._on_loaded)

    def _on_loaded(self) -> None:
        entries = self._controller.model.entries
        if not entries:
            self.summary_label.setText(EMPTY_TEXT)
            return
        total = sum(e.size_bytes for e in entries)
        self.summary_label.setText(
            f"{fmt.count_text(len(entries), 'model')}, {fmt.bytes_text(total)} on disk"
        )
