"""The installed models as a table: name, quant, size, source, last used, fit on this machine now.

The fit column is filled later (`set_fits`), by the controller, from fit reports computed off the GUI thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt

from kaihe_desktop.core.library import LibraryEntry
from kaihe_desktop.qt import format as fmt

ENTRY_ROLE = Qt.ItemDataRole.UserRole  # the LibraryEntry of the row
SORT_ROLE = Qt.ItemDataRole.UserRole + 1  # the raw value a column sorts by (bytes, ISO time, text)
FIT_ROLE = Qt.ItemDataRole.UserRole + 2  # the row's Fit (None until it is computed)

SOURCE_WORDS = {
    "hub": "Hugging Face",
    "import": "Imported file",
    "hf-cache": "Hugging Face cache",
    "starter": "Starter (small base model)",
}
STARTER_TOOLTIP = "The bundled starter model: a small base model for trying the app, not a chat assistant"

Index = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True)
class Fit:
    """One entry's fit on this machine now, from core's fit report (or why there is none)."""

    placement: str | None  # Placement value; None when the header could not be read
    headroom_bytes: int = 0
    n_ctx: int = 0
    reason: str = ""  # the planner's reason, or the error that stopped the report

    @property
    def text(self) -> str:
        if self.placement is None:
            return "unknown"
        return fmt.fit_badge(self.placement, self.headroom_bytes)


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
    Column("fit", "Fit on this machine now"),
)
FIT_COLUMN = len(COLUMNS) - 1


class LibraryModel(QAbstractTableModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._entries: tuple[LibraryEntry, ...] = ()
        self._fits: dict[str, Fit] = {}

    @property
    def entries(self) -> tuple[LibraryEntry, ...]:
        return self._entries

    def set_entries(self, entries: Sequence[LibraryEntry]) -> None:
        self.beginResetModel()
        self._entries = tuple(entries)
        self.endResetModel()

    def fit(self, name: str) -> Fit | None:
        return self._fits.get(name)

    def set_fits(self, fits: dict[str, Fit]) -> None:
        """The fit of each entry by name (kept across set_entries: a refresh does not blank the column)."""
        self._fits.update(fits)
        if self._entries:
            self.dataChanged.emit(self.index(0, FIT_COLUMN), self.index(len(self._entries) - 1, FIT_COLUMN))

    def row_of(self, name: str) -> int:
        return next((i for i, e in enumerate(self._entries) if e.name == name), -1)

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
        if key == "fit":
            return self._fit_data(self._fits.get(entry.name), entry, role)
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

    def _fit_data(self, fit: Fit | None, entry: LibraryEntry, role: int) -> Any:
        if role == Qt.ItemDataRole.DisplayRole:
            return "checking…" if fit is None else fit.text
        if role == SORT_ROLE:  # fits first (most spare first when sorted descending), unknown last
            if fit is None or fit.placement is None:
                return -float(2**62)
            return float(fit.headroom_bytes if fit.placement != "none" else fit.headroom_bytes - 2**61)
        if role == FIT_ROLE:
            return fit
        if role == ENTRY_ROLE:
            return entry
        if role == Qt.ItemDataRole.ToolTipRole and fit is not None:
            context = f"at {fit.n_ctx:,} tokens of context" if fit.n_ctx else ""
            return "\n".join(t for t in (fit.text, context, fit.reason) if t)
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


def _raw(entry: LibraryEntry, key: str) -> str | float:
    if key == "size":
        # a float: Qt compares an int past 2**31 and a small one as different variant types, unordered
        return float(entry.size_bytes)
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
    if key == "source" and entry.source == "starter":
        return STARTER_TOOLTIP
    return _display(entry, key)
