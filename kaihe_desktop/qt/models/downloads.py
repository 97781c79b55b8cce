"""The downloads as a list: one frozen DownloadRow per download, raw values through custom roles, no I/O.

The DownloadsController owns the model and is the only writer (`upsert`, `update_many`, `remove`); views read
rows through ROW_ROLE and the raw-value roles (bytes, bytes/s, seconds, the state's value).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from PySide6.QtCore import QAbstractListModel, QByteArray, QModelIndex, QObject, QPersistentModelIndex, Qt

from kaihe_desktop.qt import format as fmt
from kaihe_desktop.qt.errors import Presentation

Index = QModelIndex | QPersistentModelIndex


class DownloadState(StrEnum):
    PLANNING = "planning"  # listing the repo, reading a header, judging the fit
    QUEUED = "queued"  # waiting in the queue (after a restart, before it resumes)
    RUNNING = "running"
    VERIFYING = "verifying"  # checking the sha256 of the bytes on disk
    RETRYING = "retrying"  # nothing arrived for a while: resuming with a Range request
    PAUSING = "pausing"
    PAUSED = "paused"
    CANCELLING = "cancelling"
    FAILED = "failed"
    ELSEWHERE = "elsewhere"  # another KAIHE process downloads these files
    DONE = "done"

    @property
    def active(self) -> bool:
        """A worker is (or is about to be) busy with it."""
        return self in ACTIVE_STATES

    @property
    def resumable(self) -> bool:
        return self in (DownloadState.PAUSED, DownloadState.FAILED, DownloadState.QUEUED)


ACTIVE_STATES = frozenset(
    {
        DownloadState.PLANNING,
        DownloadState.RUNNING,
        DownloadState.VERIFYING,
        DownloadState.RETRYING,
        DownloadState.PAUSING,
        DownloadState.CANCELLING,
    }
)

STATE_WORDS: dict[DownloadState, str] = {
    DownloadState.PLANNING: "Preparing…",
    DownloadState.QUEUED: "Waiting",
    DownloadState.RUNNING: "Downloading",
    DownloadState.VERIFYING: "Verifying",
    DownloadState.RETRYING: "Stalled: resuming",
    DownloadState.PAUSING: "Pausing…",
    DownloadState.PAUSED: "Paused",
    DownloadState.CANCELLING: "Cancelling…",
    DownloadState.FAILED: "Failed",
    DownloadState.ELSEWHERE: "Downloading in another KAIHE window",
    DownloadState.DONE: "Done: in My models",
}


@dataclass(frozen=True)
class DownloadRow:
    key: str  # REPO:QUANT, or REPO while the picker has not chosen a quant yet
    repo_id: str
    quant: str | None
    state: DownloadState
    done_bytes: int = 0  # on disk, resumed bytes included
    total_bytes: int = 0  # 0 while unknown
    speed_bps: float = 0.0
    eta_s: float | None = None
    file: str = ""  # the file being fetched (path in the repo)
    file_index: int = 0
    file_count: int = 0
    error: Presentation | None = None
    stalls: int = 0  # how often the stall watchdog resumed it

    @property
    def fraction(self) -> float:
        if self.state is DownloadState.DONE:
            return 1.0
        return min(self.done_bytes / self.total_bytes, 1.0) if self.total_bytes else 0.0

    @property
    def title(self) -> str:
        return f"{self.repo_id} · {self.quant}" if self.quant else self.repo_id


ROW_ROLE = Qt.ItemDataRole.UserRole  # the DownloadRow
KEY_ROLE = Qt.ItemDataRole.UserRole + 1  # str
STATE_ROLE = Qt.ItemDataRole.UserRole + 2  # the DownloadState's value
DONE_BYTES_ROLE = Qt.ItemDataRole.UserRole + 3  # int
TOTAL_BYTES_ROLE = Qt.ItemDataRole.UserRole + 4  # int
SPEED_ROLE = Qt.ItemDataRole.UserRole + 5  # float, bytes per second
ETA_ROLE = Qt.ItemDataRole.UserRole + 6  # float seconds, or None
FRACTION_ROLE = Qt.ItemDataRole.UserRole + 7  # float 0..1
ERROR_ROLE = Qt.ItemDataRole.UserRole + 8  # Presentation or None

_ROLE_NAMES = {
    ROW_ROLE: b"row",
    KEY_ROLE: b"key",
    STATE_ROLE: b"state",
    DONE_BYTES_ROLE: b"doneBytes",
    TOTAL_BYTES_ROLE: b"totalBytes",
    SPEED_ROLE: b"speed",
    ETA_ROLE: b"eta",
    FRACTION_ROLE: b"fraction",
    ERROR_ROLE: b"error",
}


def progress_text(row: DownloadRow) -> str:
    """ "12.0 MiB of 48.0 MiB (25%) · 1.2 MiB/s · 30 s left" — what the row's detail line says."""
    if row.total_bytes:
        parts = [
            f"{fmt.bytes_text(row.done_bytes)} of {fmt.bytes_text(row.total_bytes)} "
            f"({fmt.percent(row.done_bytes, row.total_bytes)})"
        ]
    elif row.done_bytes:
        parts = [fmt.bytes_text(row.done_bytes)]
    else:
        parts = []
    if row.state is DownloadState.RUNNING:
        parts.append(f"{fmt.bytes_text(row.speed_bps)}/s" if row.speed_bps > 0 else "waiting for data")
        if row.eta_s is not None:
            parts.append(f"{fmt.duration(row.eta_s)} left")
    if row.file_count > 1 and row.state.active:
        parts.append(f"file {row.file_index} of {row.file_count}")
    return " · ".join(parts)


class DownloadsModel(QAbstractListModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[DownloadRow] = []

    @property
    def rows(self) -> tuple[DownloadRow, ...]:
        return tuple(self._rows)

    def find(self, key: str) -> int:
        """The row number of ``key`` (case-insensitive), -1 when absent."""
        wanted = key.lower()
        return next((n for n, r in enumerate(self._rows) if r.key.lower() == wanted), -1)

    def get(self, key: str) -> DownloadRow | None:
        n = self.find(key)
        return self._rows[n] if n >= 0 else None

    def set_rows(self, rows: Sequence[DownloadRow]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def upsert(self, row: DownloadRow, *, old_key: str | None = None) -> None:
        """Replace the row of ``old_key`` (or of ``row.key``) in place, or append it."""
        n = self.find(old_key or row.key)
        if n < 0:
            self.beginInsertRows(QModelIndex(), len(self._rows), len(self._rows))
            self._rows.append(row)
            self.endInsertRows()
            return
        self._rows[n] = row
        index = self.index(n, 0)
        self.dataChanged.emit(index, index)

    def update_many(self, rows: Iterable[DownloadRow]) -> None:
        for row in rows:
            self.upsert(row)

    def remove(self, key: str) -> None:
        n = self.find(key)
        if n < 0:
            return
        self.beginRemoveRows(QModelIndex(), n, n)
        del self._rows[n]
        self.endRemoveRows()

    # --- Qt ----------------------------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._rows)

    def roleNames(self) -> dict[int, QByteArray]:
        names = dict(super().roleNames())
        names.update({int(role): QByteArray(name) for role, name in _ROLE_NAMES.items()})
        return names

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.column() != 0 or not (0 <= index.row() < len(self._rows)):
            return None
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{row.title}: {STATE_WORDS[row.state]}"
        if role in (Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.AccessibleTextRole):
            detail = progress_text(row)
            text = f"{row.title}: {STATE_WORDS[row.state]}" + (f", {detail}" if detail else "")
            return text + (f". {row.error.text}" if row.error is not None else "")
        if role == ROW_ROLE:
            return row
        if role == KEY_ROLE:
            return row.key
        if role == STATE_ROLE:
            return row.state.value
        if role == DONE_BYTES_ROLE:
            return row.done_bytes
        if role == TOTAL_BYTES_ROLE:
            return row.total_bytes
        if role == SPEED_ROLE:
            return row.speed_bps
        if role == ETA_ROLE:
            return row.eta_s
        if role == FRACTION_ROLE:
            return row.fraction
        if role == ERROR_ROLE:
            return row.error
        return None
