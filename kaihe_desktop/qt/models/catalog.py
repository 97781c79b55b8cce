"""Discover's item models: search results (repo → picked variant), a repo's variants, recommendations.

Every model sits over frozen tuples from the core and does no I/O. Columns sort on raw values through
SORT_ROLE (bytes, tokens/s, downloads), never on display text; FIT_ROLE gives the `Fit` of a cell, which the
badge colours come from. `CatalogModel` pages: `fetchMore` asks for the next page through `more_requested`
and the controller appends what comes back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QBrush, QColor

from kaihe_desktop.core.fit.plan import Plan
from kaihe_desktop.core.fit.quants import Candidate
from kaihe_desktop.core.hub.catalog_entries import CatalogRepo
from kaihe_desktop.core.hub.recommend import Recommendation
from kaihe_desktop.core.hub.recommend_data import use_case_matches
from kaihe_desktop.qt import format as fmt

REPO_ROLE = Qt.ItemDataRole.UserRole  # the CatalogRepo / VariantRow / Recommendation of the row
SORT_ROLE = Qt.ItemDataRole.UserRole + 1  # the raw value a column sorts by
FIT_ROLE = Qt.ItemDataRole.UserRole + 2  # the Fit of the row (badge text and colour)

Index = QModelIndex | QPersistentModelIndex


class Level(Enum):
    """How a fit reads at a glance; the badge's colour."""

    GPU = "gpu"
    PARTIAL = "partial"
    CPU = "cpu"
    TIGHT = "tight"  # fits, but under 15 % of the memory stays free
    OVER = "over"
    UNKNOWN = "unknown"


# Background, text (light tints that read on light and dark palettes alike with dark text).
LEVEL_COLOURS: dict[Level, tuple[str, str]] = {
    Level.GPU: ("#c8efd0", "#0f5323"),
    Level.PARTIAL: ("#d6e8fb", "#0b3d73"),
    Level.CPU: ("#e6eef5", "#24384c"),
    Level.TIGHT: ("#fbe9c6", "#6a4300"),
    Level.OVER: ("#f8d0d0", "#7a1010"),
    Level.UNKNOWN: ("#e4e4e4", "#404040"),
}

TIGHT_PCT = 15.0  # the core's warning threshold (fit/advice.WARN_HEADROOM_PCT)


@dataclass(frozen=True)
class Fit:
    """A plan's verdict as Discover shows it: words with the number, a level for the colour, the detail."""

    text: str
    level: Level
    headroom_bytes: int | None  # None without a plan
    detail: str  # the planner's reason, for a tooltip

    @classmethod
    def of(cls, plan: Plan) -> Fit:
        text = fmt.fit_words(
            str(plan.placement),
            plan.headroom_bytes,
            margin_bytes=plan.margin_bytes,
            gpu_layers=plan.gpu_layers,
            n_layers=plan.n_layers,
        )
        if not plan.fits:
            level = Level.OVER
        elif plan.headroom_pct < TIGHT_PCT:
            level = Level.TIGHT
        else:
            level = {"gpu": Level.GPU, "partial": Level.PARTIAL}.get(str(plan.placement), Level.CPU)
        return cls(text, level, plan.headroom_bytes, plan.reason)

    @classmethod
    def unread(cls, placement: str, why: str | None) -> Fit:
        return cls(fmt.fit_words(placement, 0), Level.UNKNOWN, None, why or "")


def brush(level: Level) -> tuple[QBrush, QBrush]:
    back, fore = LEVEL_COLOURS[level]
    return QBrush(QColor(back)), QBrush(QColor(fore))


def speed_text(plan: Plan | None) -> str:
    if plan is None or plan.tokens_per_s is None:
        return "–"
    return fmt.speed_range(plan.tokens_per_s.low, plan.tokens_per_s.high, unit=False)


def speed_value(plan: Plan | None) -> float:
    """What a tokens/s column sorts by: the middle of the range; -1 without one (sorts last descending)."""
    return -1.0 if plan is None or plan.tokens_per_s is None else plan.tokens_per_s.mid


def params_text(count: int | None) -> str:
    if not count:
        return "–"
    return f"{count / 1e9:.1f}B" if count >= 1e8 else f"{count / 1e6:.1f}M"


def licence_text(repo: CatalogRepo) -> str:
    licence = repo.hub.license
    flag = {"yes": "commercial ✓", "conditions": "conditions", "no": "non-commercial"}.get(
        licence.commercial_use, "unknown"
    )
    return f"{licence.license_id or 'no licence'} ({flag})"


COMMERCIAL_MARKS = {"yes": "✓", "conditions": "⚠", "no": "✗"}


def licence_short(repo: CatalogRepo) -> str:
    """The results column: "apache-2.0 ✓" (commercial use allowed), "gemma ⚠" (under conditions),
    "cc-by-nc-4.0 ✗" (not allowed), "? " when unknown; the tooltip has the words."""
    licence = repo.hub.license
    return f"{licence.license_id or 'none'} {COMMERCIAL_MARKS.get(licence.commercial_use, '?')}"


def model_text(repo_id: str) -> str:
    """ "Qwen3-8B-GGUF · Qwen": the name first, so a narrow column elides the owner, not the name."""
    owner, _, name = repo_id.partition("/")
    return f"{name} · {owner}" if name else repo_id


def repo_fit(repo: CatalogRepo) -> Fit:
    return Fit.of(repo.pick.plan) if repo.pick is not None else Fit.unread(repo.unread_placement, repo.error)


def picked_size(repo: CatalogRepo) -> int | None:
    if repo.pick is None:
        return None
    return repo.pick.option.size_bytes


class _Table(QAbstractTableModel):
    """A read-only table over a tuple of rows, with the shared header and index checks."""

    TITLES: tuple[str, ...] = ()
    RIGHT: frozenset[int] = frozenset()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: tuple[Any, ...] = ()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.TITLES)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(self.TITLES):
            if role == Qt.ItemDataRole.DisplayRole:
                return self.TITLES[section]
            if role == Qt.ItemDataRole.TextAlignmentRole and section in self.RIGHT:
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _row(self, index: Index) -> Any | None:
        if not index.isValid() or index.parent().isValid():
            return None
        if not (0 <= index.row() < len(self._rows)) or not (0 <= index.column() < len(self.TITLES)):
            return None
        return self._rows[index.row()]

    def _set_rows(self, rows: Sequence[Any]) -> None:
        self.beginResetModel()
        self._rows = tuple(rows)
        self.endResetModel()

    def _common(self, index: Index, role: int, fit: Fit | None) -> Any:
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() in self.RIGHT:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if fit is not None and role in (Qt.ItemDataRole.BackgroundRole, Qt.ItemDataRole.ForegroundRole):
            back, fore = brush(fit.level)
            return back if role == Qt.ItemDataRole.BackgroundRole else fore
        return None


# --- search results ---------------------------------------------------------------------------------


class CatalogModel(_Table):
    """Search results: one row per repo, its picked variant, fit, speed, licence, downloads."""

    TITLES = ("Model", "Params", "Quant", "Size", "Fit", "Tokens/s", "Licence", "Downloads")
    HEADER_TIPS = {
        0: "the repo's name, then its owner",
        5: "predicted generation speed: full context to a short one",
        6: "✓ commercial use allowed, ⚠ allowed under the licence's conditions, ✗ not allowed, ? unknown",
    }
    RIGHT = frozenset({1, 3, 5, 7})
    FIT_COLUMN = 4
    SPEED_COLUMN = 5

    more_requested = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.has_more = False
        self.fetching = False

    @property
    def repos(self) -> tuple[CatalogRepo, ...]:
        return self._rows

    def set_repos(self, repos: Sequence[CatalogRepo], *, has_more: bool = False) -> None:
        self.fetching = False
        self.has_more = has_more
        self._set_rows(repos)

    def append_repos(self, repos: Sequence[CatalogRepo], *, has_more: bool) -> None:
        """The next page: repos already shown (a listing that moved between pages) are not repeated."""
        self.fetching = False
        self.has_more = has_more
        shown = {r.repo_id for r in self._rows}
        new = [r for r in repos if r.repo_id not in shown]
        if not new:
            return
        first = len(self._rows)
        self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
        self._rows = self._rows + tuple(new)
        self.endInsertRows()

    def replace_repo(self, repo: CatalogRepo) -> None:
        for row, old in enumerate(self._rows):
            if old.repo_id == repo.repo_id:
                self._rows = self._rows[:row] + (repo,) + self._rows[row + 1 :]
                self.dataChanged.emit(self.index(row, 0), self.index(row, len(self.TITLES) - 1))

    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008, N802 - Qt's signature
        return not parent.isValid() and self.has_more and not self.fetching

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: B008, N802 - Qt's signature
        if self.canFetchMore(parent):
            self.fetching = True
            self.more_requested.emit()

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        repo = self._row(index)
        if repo is None:
            return None
        assert isinstance(repo, CatalogRepo)
        column = index.column()
        fit = repo_fit(repo)
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(repo, column, fit)
        if role == SORT_ROLE:
            return self._raw(repo, column, fit)
        if role == REPO_ROLE:
            return repo
        if role == FIT_ROLE:
            return fit
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(repo, column, fit)
        return self._common(index, role, fit if column == self.FIT_COLUMN else None)

    @staticmethod
    def _display(repo: CatalogRepo, column: int, fit: Fit) -> str:
        chosen = repo.pick
        if column == 0:
            return model_text(repo.repo_id)
        if column == 1:
            return params_text(repo.parameter_count)
        if column == 2:
            return chosen.quant if chosen is not None else "–"
        if column == 3:
            size = picked_size(repo)
            return fmt.bytes_text(size) if size is not None else "–"
        if column == 4:
            return fit.text
        if column == 5:
            return speed_text(chosen.plan if chosen else None)
        if column == 6:
            return licence_short(repo)
        return fmt.count_short(repo.hub.downloads)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return self.HEADER_TIPS.get(section)
        return super().headerData(section, orientation, role)

    @staticmethod
    def _raw(repo: CatalogRepo, column: int, fit: Fit) -> Any:
        chosen = repo.pick
        if column == 0:
            return repo.repo_id.lower()
        if column == 1:
            return repo.parameter_count or 0
        if column == 2:
            return chosen.quant if chosen is not None else ""
        if column == 3:
            return picked_size(repo) or 0
        if column == 4:
            # fitting first, then by room left; unknown below everything that has a plan
            if fit.headroom_bytes is None:
                return -(1 << 62)
            return fit.headroom_bytes + (0 if fit.level is Level.OVER else 1 << 50)
        if column == 5:
            return speed_value(chosen.plan if chosen else None)
        if column == 6:
            return licence_text(repo).lower()
        return repo.hub.downloads

    @staticmethod
    def _tooltip(repo: CatalogRepo, column: int, fit: Fit) -> str:
        if column == 4:
            return fit.detail
        if column == 6:
            return f"{licence_text(repo)}: {repo.hub.license.note}"
        if column == 3 and repo.pick is not None:
            return f"{repo.pick.option.size_bytes:,} bytes"
        if column == 7:
            return f"{repo.hub.downloads:,} downloads"
        if column == 0:
            return f"{repo.repo_id}\n{repo.error}" if repo.error else repo.repo_id
        if column == 5 and repo.pick is not None and repo.pick.plan.tokens_per_s is not None:
            return f"predicted generation speed ({repo.pick.plan.tokens_per_s.source})"
        return ""


class CatalogFilter(QSortFilterProxyModel):
    """Sorts on SORT_ROLE; filters "fits this machine", "commercial use allowed" and a use case.

    A repo is of a use case when the core says so (`recommend_data.use_case_matches`): curated for it in
    recommendations.json, or named or tagged with one of its keywords ("coder", "code", … for coding)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self._fits_only = False
        self._commercial_only = False
        self._use_case: str | None = None

    @property
    def use_case(self) -> str | None:
        return self._use_case

    def set_use_case(self, use_case_id: str | None) -> None:
        """Only repos of ``use_case_id`` (a recommendations.json id); None for any use."""
        self.beginFilterChange()
        self._use_case = use_case_id or None
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    @property
    def fits_only(self) -> bool:
        return self._fits_only

    @property
    def commercial_only(self) -> bool:
        return self._commercial_only

    def set_fits_only(self, on: bool) -> None:
        self.beginFilterChange()
        self._fits_only = on
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def set_commercial_only(self, on: bool) -> None:
        self.beginFilterChange()
        self._commercial_only = on
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:  # noqa: N802 - Qt's name
        model = self.sourceModel()
        repo = model.data(model.index(source_row, 0, source_parent), REPO_ROLE)
        if not isinstance(repo, CatalogRepo):
            return True
        if self._fits_only and not repo.fits:
            return False
        if self._commercial_only and repo.hub.license.commercial_use != "yes":
            return False
        return self._use_case is None or use_case_matches(self._use_case, repo.repo_id, repo.hub.tags)


# --- one repo's variants ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantRow:
    """A variant of the selected repo as planned for the pane's what-if context and KV type."""

    quant: str
    size_bytes: int
    plan: Plan | None
    picked: bool

    @property
    def fit(self) -> Fit:
        return Fit.of(self.plan) if self.plan is not None else Fit.unread("unknown", None)


def variant_rows(
    repo: CatalogRepo, candidates: Sequence[Candidate] | None = None, picked: str | None = None
) -> tuple[VariantRow, ...]:
    """Every variant of ``repo`` in the repo's order, each with its plan from ``candidates`` (a pick at the
    what-if settings, ``picked`` its choice) or, without them, from the catalog's own pick."""
    if candidates is None:
        candidates = repo.pick.candidates if repo.pick else ()
        picked = repo.pick.quant if repo.pick else None
    plans = {c.option.quant: c.plan for c in candidates}
    return tuple(
        VariantRow(
            v.variant.quant, v.variant.size_bytes, plans.get(v.variant.quant), v.variant.quant == picked
        )
        for v in repo.variants
    )


class VariantsModel(_Table):
    TITLES = ("Quant", "Size", "Fit", "Spare", "Tokens/s", "")
    RIGHT = frozenset({1, 3, 4})
    FIT_COLUMN = 2
    BUTTON_COLUMN = 5

    @property
    def rows(self) -> tuple[VariantRow, ...]:
        return self._rows

    def set_rows(self, rows: Sequence[VariantRow]) -> None:
        self._set_rows(rows)

    def update_rows(self, rows: Sequence[VariantRow]) -> None:
        """New plans for the same variants (a what-if): cells change, rows (and their buttons) stay."""
        if [r.quant for r in rows] != [r.quant for r in self._rows]:
            self._set_rows(rows)
            return
        self._rows = tuple(rows)
        if self._rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._rows) - 1, len(self.TITLES) - 1))

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        row = self._row(index)
        if row is None:
            return None
        assert isinstance(row, VariantRow)
        column = index.column()
        fit = row.fit
        if role == Qt.ItemDataRole.DisplayRole:
            if column == 0:
                return f"{row.quant}  ★ picked" if row.picked else row.quant
            if column == 1:
                return fmt.bytes_text(row.size_bytes)
            if column == 2:
                return fit.text
            if column == 3:
                if row.plan is None:
                    return "–"
                left = row.plan.headroom_bytes
                amount = fmt.bytes_text(abs(left))
                return f"{amount} ({row.plan.headroom_pct:.0f}%)" if left >= 0 else f"−{amount}"
            if column == 4:
                return speed_text(row.plan)
            return ""
        if role == SORT_ROLE:
            return (row.quant, row.size_bytes, fit.headroom_bytes or 0, fit.headroom_bytes or 0,
                    speed_value(row.plan), 0)[column]  # fmt: skip
        if role == REPO_ROLE:
            return row
        if role == FIT_ROLE:
            return fit
        if role == Qt.ItemDataRole.ToolTipRole and column in (2, 3):
            return fit.detail
        return self._common(index, role, fit if column == self.FIT_COLUMN else None)


# --- recommendations --------------------------------------------------------------------------------


class RecommendationsModel(_Table):
    TITLES = ("Use case", "Model", "Quant", "Size", "Fit", "Why")
    RIGHT = frozenset({3})

    @property
    def items(self) -> tuple[Recommendation, ...]:
        return self._rows

    def set_items(self, items: Sequence[Recommendation]) -> None:
        self._set_rows(items)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        rec = self._row(index)
        if rec is None:
            return None
        assert isinstance(rec, Recommendation)
        column = index.column()
        level = _rec_level(rec)
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(rec, column)
        if role == SORT_ROLE:
            headroom = rec.headroom_pct if rec.headroom_pct is not None else -1.0
            return (rec.title, rec.repo_id or "", rec.quant or "", rec.size_bytes or 0, headroom,
                    rec.reason)[column]  # fmt: skip
        if role == REPO_ROLE:
            return rec
        if role == Qt.ItemDataRole.ToolTipRole and column in (4, 5):
            return rec.reason + (f" ({rec.note})" if rec.note else "")
        if role in (Qt.ItemDataRole.BackgroundRole, Qt.ItemDataRole.ForegroundRole) and column == 4:
            back, fore = brush(level)
            return back if role == Qt.ItemDataRole.BackgroundRole else fore
        return self._common(index, role, None)

    @staticmethod
    def _display(rec: Recommendation, column: int) -> str:
        if column == 0:
            return rec.title
        if column == 1:
            return rec.repo_id or "nothing curated fits"
        if column == 2:
            return rec.quant or "–"
        if column == 3:
            return fmt.bytes_text(rec.size_bytes) if rec.size_bytes else "–"
        if column == 4:
            if rec.repo_id is None:
                return "nothing fits"
            where = {"gpu": "full GPU", "partial": "partial GPU", "cpu": "CPU only"}.get(rec.placement, "")
            free = f", {rec.headroom_pct:.0f}% free" if rec.headroom_pct is not None else ""
            checked = "" if rec.checked_on_hub else " (estimate)"
            return f"{where}{free}{checked}"
        return rec.reason


def _rec_level(rec: Recommendation) -> Level:
    if rec.repo_id is None or rec.placement == "none":
        return Level.OVER
    if rec.headroom_pct is not None and rec.headroom_pct < TIGHT_PCT:
        return Level.TIGHT
    return {"gpu": Level.GPU, "partial": Level.PARTIAL, "cpu": Level.CPU}.get(rec.placement, Level.UNKNOWN)


# --- the memory bar's data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceUse:
    """One device of a plan for the memory bar: what the model takes there, and what is free there now."""

    name: str  # "RAM" or the GPU's name
    weights: int
    kv_cache: int
    compute: int  # compute buffers and the output buffer
    overhead: int
    available: int
    margin: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.overhead
