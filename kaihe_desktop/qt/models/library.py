"""The installed models as a table: name, quant, size, source, last used."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt

from kaihe_desktop.core.library import LibraryEntry
from kaihe_desktop.qt import format as fmt

ENTRY_ROLE = Qt.ItemDataRole.UserRole  # the LibraryEntry of the row
SORT_ROLE = Qt.ItemDataRole.UserRole + 1  # the raw value a column sorts by (bytes, ISO time, text)

SOURCE_WORDS = {
    "hub": "Hugging Face",
    "import": "Imported file",
    "hf-cache": "Hugging Face cache",
    "starter": "Starter model",
}

Index = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True)
class Column:
    key: str
    title: str


COLUMNS: tuple[Column, ...] = (
    Column("name", "Name"),
    Column("quant", "Quant"),
    Column("size", "Size"),
    Column("source", "Source"),
    Column("last_used", "Last used"),
)


class LibraryModel(QAbstractTableModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._entries: tuple[LibraryEntry, ...] = ()

    @property
    def entries(self) -> tuple[LibraryEntry, ...]:
        return self._entries

    def set_entries(self, entries: Sequence[LibraryEntry]) -> None:
        self.beginResetModel()
        self._entries = tuple(entries)
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._entries)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(COLUMNS):
            if role == Qt.ItemDataRole.DisplayRole:
                return COLUMNS[section].title
            if role == Qt.ItemDataRole.TextAlignmentRole and COLUMNS[section].key == "size":
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not (0 <= index.row() < len(self._entries)):
            return None
        if not (0 <= index.column() < len(COLUMNS)):
            return None
        entry = self._entries[index.row()]
        key = COLUMNS[index.column()].key
        if role == Qt.ItemDataRole.DisplayRole:
            return _display(entry, key)
        if role == SORT_ROLE:
            return _raw(entry, key)
        if role == ENTRY_ROLE:
            return entry
        if role == Qt.ItemDataRole.ToolTipRole:
            return _tooltip(entry, key)
        if role == Qt.ItemDataRole.TextAlignmentRole and key == "size":
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


def _display(entry: LibraryEntry, key: str) -> str:
    if key == "name":
        return entry.name
    if key == "quant":
        return entry.quant or entry.variant or "unknown"
    if key == "size":
        return fmt.bytes_text(entry.size_bytes)
    if key == "source":
        return SOURCE_WORDS.get(entry.source, entry.source)
    return fmt.timestamp(entry.last_used)


def _raw(entry: LibraryEntry, key: str) -> str | int:
    if key == "size":
        return entry.size_bytes
    if key == "last_used":
        return entry.last_used or ""
    if key == "quant":
        return entry.quant or entry.variant or ""
    return _display(entry, key).lower() if key != "name" else entry.name.lower()


def _tooltip(entry: LibraryEntry, key: str) -> str:
    if key == "name":
        origin = f"{entry.repo_id}\n" if entry.repo_id else ""
        return f"{origin}{entry.path}"
    if key == "quant":
        return entry.variant or ""
    if key == "size":
        return f"{entry.size_bytes:,} bytes"
    return _display(entry, key)
