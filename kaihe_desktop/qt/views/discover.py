"""Discover: search the Hub (or see what is recommended for this machine), and weigh one repo's variants.

Top: the search field, the filters and the results (or, with an empty field, one recommendation per use
case). Below: the selected repo — every variant with its fit badge, spare memory and speed, the picker's
reason, a memory bar of the picked variant per device, the warnings and the licence — planned again off the
GUI thread when the context slider or the KV cache type changes — and, online, the repo's model card.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QModelIndex, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QFont, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSplitter,
    QStackedWidget,
    QTableView,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from kaihe_desktop.core.fit.kv_types import KVCacheType
from kaihe_desktop.core.hub.catalog import CatalogRepo, SearchResult
from kaihe_desktop.core.hub.http_errors import is_offline
from kaihe_desktop.core.hub.model_card import ModelCardMissingError
from kaihe_desktop.core.hub.recommend import Recommendation, RecommendationSet
from kaihe_desktop.core.hub.recommend_data import load_recommendations
from kaihe_desktop.qt import format as fmt
from kaihe_desktop.qt.controllers.catalog import CatalogController, Details, WhatIf, default_context
from kaihe_desktop.qt.models.catalog import (
    REPO_ROLE,
    CatalogFilter,
    CatalogModel,
    VariantRow,
    VariantsModel,
    licence_text,
    params_text,
    repo_fit,
    variant_rows,
)
from kaihe_desktop.qt.widgets.fit_badge import FitBadge
from kaihe_desktop.qt.widgets.memory_bar import MemoryBar

WHAT_IF_DEBOUNCE_MS = 150
CONTEXT_STEPS = tuple(1024 << n for n in range(12))  # 1k … 2M tokens
UNKNOWN_TRAINED_CONTEXT = 4096
CARD_OFFLINE = "Model card not available offline."
CARD_LOADING = "Loading the model card…"
USE_CASE_TIP = (
    "Show only models for this use case: those curated for it in the recommendations, and those whose "
    "name or Hub tags carry one of its keywords"
)


class CardBrowser(QTextBrowser):
    """A read-only model card: links open in the browser, and nothing is fetched (no remote images)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setOpenLinks(True)
        self.setOpenExternalLinks(True)
        self.requested: list[str] = []  # what the card tried to load (images): refused, kept for tests

    def loadResource(self, type: int, name: QUrl | str) -> Any:  # noqa: A002, N802 - Qt's names
        self.requested.append(name.toString() if isinstance(name, QUrl) else name)
        return None


def context_steps(trained: int | None) -> tuple[int, ...]:
    """The slider's stops: powers of two from 1024 up to the trained context, which is always the last."""
    top = trained if trained and trained > 0 else UNKNOWN_TRAINED_CONTEXT
    steps = [s for s in CONTEXT_STEPS if s < top]
    return (*steps, top)


def _table(name: str, accessible: str, parent: QWidget) -> QTableView:
    table = QTableView(parent)
    table.setObjectName(name)
    table.setAccessibleName(accessible)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().setVisible(False)
    table.setWordWrap(False)
    return table


class DiscoverView(QWidget):
    download_requested = Signal(str, str)  # repo id, quant

    def __init__(self, controller: CatalogController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("page-discover")
        self._controller = controller
        self.repo: CatalogRepo | None = None
        self.shown: Details | None = None
        self._started = False

        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 16, 16, 16)
        layout.setSpacing(8)
        heading = QLabel("Discover", self)
        font = QFont(heading.font())
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        heading.setFont(font)
        layout.addWidget(heading)

        row = QHBoxLayout()
        self.search = QLineEdit(self)
        self.search.setObjectName("discover-search")
        self.search.setAccessibleName("search models")
        self.search.setPlaceholderText("Search the Hugging Face Hub for GGUF models (Ctrl+K)")
        self.search.setClearButtonEnabled(True)
        row.addWidget(self.search, 1)
        self.fits_box = QCheckBox("Fits this machine", self)
        self.fits_box.setObjectName("discover-fits")
        self.fits_box.setAccessibleName("only models that fit this machine")
        row.addWidget(self.fits_box)
        self.commercial_box = QCheckBox("Commercial use", self)
        self.commercial_box.setObjectName("discover-commercial")
        self.commercial_box.setAccessibleName("only licences that allow commercial use")
        row.addWidget(self.commercial_box)
        self.use_case_box = QComboBox(self)
        self.use_case_box.setObjectName("discover-use-case")
        self.use_case_box.setAccessibleName("only models for a use case")
        self.use_case_box.setToolTip(USE_CASE_TIP)
        self.use_case_box.addItem("Any use", None)
        for case in load_recommendations().use_cases:
            self.use_case_box.addItem(case.title, case.id)
            tip = f"{case.description}\nKeywords: {', '.join(case.keywords)}"
            self.use_case_box.setItemData(self.use_case_box.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        row.addWidget(self.use_case_box)
        layout.addLayout(row)

        self.status_label = QLabel("Recommendations for this machine…", self)
        self.status_label.setObjectName("discover-status")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)

        splitter = QSplitter(Qt.Orientation.Vertical, self)
        splitter.setObjectName("discover-splitter")
        splitter.setChildrenCollapsible(False)
        self.lists = QStackedWidget(splitter)

        self.recommended = _table("discover-recommendations", "recommended models", self.lists)
        self.recommended.setModel(controller.recommendation_model)
        rec_header = self.recommended.horizontalHeader()
        for column in range(5):
            rec_header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        rec_header.setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)
        self.lists.addWidget(self.recommended)

        self.proxy = CatalogFilter(self)
        self.proxy.setSourceModel(controller.model)
        self.results = _table("discover-results", "search results", self.lists)
        self.results.setModel(self.proxy)
        self.results.setSortingEnabled(True)
        self.results.sortByColumn(CatalogModel.TITLES.index("Downloads"), Qt.SortOrder.DescendingOrder)
        header = self.results.horizontalHeader()
        header.setMinimumSectionSize(48)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(CatalogModel.TITLES)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.lists.addWidget(self.results)
        splitter.addWidget(self.lists)

        self.details_area = QScrollArea(splitter)
        self.details_area.setObjectName("discover-details")
        self.details_area.setWidgetResizable(True)
        self.details_area.setFrameShape(QFrame.Shape.NoFrame)
        self.details_area.setWidget(self._build_details())
        splitter.addWidget(self.details_area)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        layout.addWidget(splitter, 1)

        self._what_if_timer = QTimer(self)
        self._what_if_timer.setSingleShot(True)
        self._what_if_timer.setInterval(WHAT_IF_DEBOUNCE_MS)
        self._what_if_timer.timeout.connect(self._ask_plan)

        self.search.textChanged.connect(self._on_text)
        self.search.returnPressed.connect(lambda: controller.search_now(self.search.text()))
        self.fits_box.toggled.connect(self._on_filters)
        self.commercial_box.toggled.connect(self._on_filters)
        self.use_case_box.currentIndexChanged.connect(self._on_filters)
        self.results.selectionModel().currentRowChanged.connect(self._on_result_selected)
        self.recommended.selectionModel().currentRowChanged.connect(self._on_recommendation_selected)
        controller.searching.connect(self._on_searching)
        controller.results.connect(self._on_results)
        controller.more_results.connect(self._on_results)
        controller.recommendations.connect(self._on_recommendations)
        controller.details.connect(self._on_details)
        controller.repo_opened.connect(self.show_repo)
        controller.failed.connect(lambda exc: self.status_label.setText(f"Failed: {exc}"))
        controller.repo_failed.connect(self._on_repo_failed)
        controller.card.connect(self._on_card)
        controller.card_failed.connect(self._on_card_failed)
        self._show_empty_details()

    # --- the details pane ----------------------------------------------------------------------------

    def _build_details(self) -> QWidget:
        pane = QWidget(self)
        pane.setObjectName("discover-pane")
        column = QVBoxLayout(pane)
        column.setContentsMargins(0, 8, 8, 8)
        column.setSpacing(6)

        top = QHBoxLayout()
        self.title_label = QLabel("", pane)
        self.title_label.setObjectName("discover-title")
        title_font = QFont(self.title_label.font())
        title_font.setBold(True)
        title_font.setPointSizeF(title_font.pointSizeF() * 1.2)
        self.title_label.setFont(title_font)
        self.title_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top.addWidget(self.title_label, 1)
        self.badge = FitBadge(pane)
        top.addWidget(self.badge)
        self.download_button = QPushButton("Download", pane)
        self.download_button.setObjectName("discover-download")
        self.download_button.clicked.connect(self._download_picked)
        top.addWidget(self.download_button)
        column.addLayout(top)

        self.facts_label = QLabel("", pane)
        self.facts_label.setObjectName("discover-facts")
        self.facts_label.setWordWrap(True)
        column.addWidget(self.facts_label)
        self.reason_label = QLabel("", pane)
        self.reason_label.setObjectName("discover-reason")
        self.reason_label.setWordWrap(True)
        self.reason_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        column.addWidget(self.reason_label)

        knobs = QHBoxLayout()
        knobs.addWidget(QLabel("Context:", pane))
        self.context_slider = QSlider(Qt.Orientation.Horizontal, pane)
        self.context_slider.setObjectName("discover-context")
        self.context_slider.setAccessibleName("context length")
        self.context_slider.setPageStep(1)
        self.context_slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.context_slider.setMinimumWidth(160)
        knobs.addWidget(self.context_slider, 1)
        self.context_label = QLabel("", pane)
        self.context_label.setObjectName("discover-context-value")
        self.context_label.setMinimumWidth(110)
        knobs.addWidget(self.context_label)
        knobs.addSpacing(12)
        knobs.addWidget(QLabel("KV cache:", pane))
        self.kv_box = QComboBox(pane)
        self.kv_box.setObjectName("discover-kv")
        self.kv_box.setAccessibleName("KV cache type")
        for kv in KVCacheType:
            self.kv_box.addItem(kv.value, kv)
        knobs.addWidget(self.kv_box)
        column.addLayout(knobs)
        self._steps: tuple[int, ...] = context_steps(None)
        self.context_slider.valueChanged.connect(self._on_knob)
        self.kv_box.currentIndexChanged.connect(self._on_knob)

        self.variants_model = VariantsModel(self)
        self.variants = _table("discover-variants", "variants of the selected model", pane)
        self.variants.setModel(self.variants_model)
        vheader = self.variants.horizontalHeader()
        for c in range(len(VariantsModel.TITLES)):
            vheader.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        vheader.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.variants.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Minimum)
        self.variants.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        column.addWidget(self.variants)

        self.memory_title = QLabel("", pane)
        self.memory_title.setObjectName("discover-memory-title")
        column.addWidget(self.memory_title)
        self.memory_bar = MemoryBar(pane)
        column.addWidget(self.memory_bar)
        self.warnings_label = QLabel("", pane)
        self.warnings_label.setObjectName("discover-warnings")
        self.warnings_label.setWordWrap(True)
        self.warnings_label.setTextFormat(Qt.TextFormat.RichText)
        column.addWidget(self.warnings_label)
        card_title = QLabel("Model card", pane)
        card_font = QFont(card_title.font())
        card_font.setBold(True)
        card_title.setFont(card_font)
        column.addWidget(card_title)
        self.card = CardBrowser(pane)
        self.card.setObjectName("discover-card")
        self.card.setAccessibleName("model card")
        self.card.setMinimumHeight(280)
        column.addWidget(self.card, 1)
        self.card_repo: str | None = None  # whose card is shown (or asked for)
        return pane

    def _show_empty_details(self) -> None:
        self.details_area.hide()  # shown with the first repo selected
        self.title_label.setText("Select a model to see every variant")
        self.facts_label.setText("")
        self.reason_label.setText("")
        self.badge.hide()
        self.download_button.setEnabled(False)
        self.context_slider.setEnabled(False)
        self.kv_box.setEnabled(False)
        self.variants_model.set_rows(())
        self.variants.hide()
        self.memory_title.setText("")
        self.memory_bar.set_devices(())
        self.memory_bar.hide()
        self.warnings_label.setText("")
        self.card_repo = None
        self.card.clear()

    def show_repo(self, repo: CatalogRepo) -> None:
        """Open ``repo`` in the pane: the catalog's own numbers at once, then a full plan off the thread."""
        self.repo = repo
        self.shown = None
        self.details_area.show()
        self.title_label.setText(repo.repo_id)
        gated = "; gated: accept its licence on the Hub and sign in" if repo.hub.gated else ""
        self.facts_label.setText(
            f"{params_text(repo.parameter_count)} parameters · {repo.architecture or 'unknown architecture'}"
            f" · {repo.kind} · trained context {repo.context_length or '?'} · "
            f"{repo.hub.downloads:,} downloads · licence {licence_text(repo)}: {repo.hub.license.note}{gated}"
        )
        self.badge.set_fit(repo_fit(repo))
        self.badge.show()
        self.reason_label.setText(repo.pick.reason if repo.pick else (repo.error or ""))
        usable = repo.meta is not None and bool(repo.variants)
        self._steps = context_steps(repo.context_length)
        start = default_context(repo)
        self.context_slider.blockSignals(True)
        self.kv_box.blockSignals(True)
        self.context_slider.setRange(0, len(self._steps) - 1)
        self.context_slider.setValue(min(range(len(self._steps)), key=lambda i: abs(self._steps[i] - start)))
        self.kv_box.setCurrentIndex(0)
        self.context_slider.blockSignals(False)
        self.kv_box.blockSignals(False)
        self.context_label.setText(self._context_text())
        self.context_slider.setEnabled(usable)
        self.kv_box.setEnabled(usable)
        self._set_variant_rows(variant_rows(repo), reset=True)
        self.download_button.setEnabled(repo.pick is not None and repo.pick.fits)
        self.download_button.setText(
            f"Download {repo.pick.quant}" if repo.pick is not None and repo.pick.fits else "Download"
        )
        self.memory_title.setText("Planning…" if usable else "")
        self.memory_bar.set_devices(())
        self.memory_bar.setVisible(usable)
        self.warnings_label.setText("")
        self._show_card(repo.repo_id)
        if usable:
            self._controller.plan(repo, self.what_if())

    # --- the model card ------------------------------------------------------------------------------

    def _show_card(self, repo_id: str) -> None:
        if repo_id == self.card_repo:
            return  # the same repo judged again: its card is already there (or on its way)
        self.card_repo = repo_id
        if is_offline():
            self.card.setPlainText(CARD_OFFLINE)
            return
        self.card.setPlainText(CARD_LOADING)
        self._controller.fetch_card(repo_id)

    def _on_card(self, repo_id: str, text: str | None) -> None:
        if repo_id != self.card_repo:
            return
        if text is None:
            self.card.setPlainText(CARD_OFFLINE)
        elif not text.strip():
            self.card.setPlainText("The model card is empty.")
        else:
            self.card.setMarkdown(text)

    def _on_card_failed(self, repo_id: str, exc: BaseException) -> None:
        if repo_id != self.card_repo:
            return
        if isinstance(exc, ModelCardMissingError):
            self.card.setPlainText("This repo has no model card.")
        else:
            self.card.setPlainText(f"Cannot read the model card: {exc}")

    def _on_repo_failed(self, repo_id: str, exc: BaseException) -> None:
        """A recommendation that could not be read: said in the pane, not in the window's banner."""
        self._show_empty_details()
        self.details_area.show()
        self.title_label.setText(repo_id)
        self.reason_label.setText(f"Cannot read it from the Hub: {exc}")

    def what_if(self) -> WhatIf:
        kv = self.kv_box.currentData()
        return WhatIf(n_ctx=self._steps[self.context_slider.value()], kv_type=KVCacheType.parse(kv))

    def set_context(self, n_ctx: int) -> None:
        """Move the slider to the stop nearest ``n_ctx`` (tests and keyboard users alike)."""
        self.context_slider.setValue(min(range(len(self._steps)), key=lambda i: abs(self._steps[i] - n_ctx)))

    def _context_text(self) -> str:
        return f"{self._steps[self.context_slider.value()]:,} tokens"

    def _on_knob(self) -> None:
        self.context_label.setText(self._context_text())
        if self.repo is not None and self.repo.meta is not None:
            self.memory_title.setText("Planning…")
            self._what_if_timer.start()

    def _ask_plan(self) -> None:
        if self.repo is not None:
            self._controller.plan(self.repo, self.what_if())

    def _on_details(self, found: Details) -> None:
        if self.repo is None or found.repo.repo_id != self.repo.repo_id or found.what_if != self.what_if():
            return  # an older repo or setting: a newer plan is on its way
        self.shown = found
        self._set_variant_rows(found.rows, reset=False)
        report = found.report
        self.reason_label.setText(found.reason)
        picked = next((r for r in found.rows if r.picked), None)
        if report is None or picked is None:
            return
        self.badge.set_fit(picked.fit)
        fits = report.plan.fits
        self.download_button.setEnabled(True)
        self.download_button.setText(
            f"Download {picked.quant}" if fits else f"Download {picked.quant} anyway"
        )
        plan = report.plan
        layers = f", {plan.gpu_layers}/{plan.n_layers} layers on the GPU" if plan.gpu_layers else ""
        self.memory_title.setText(
            f"Memory of {picked.quant} at {plan.n_ctx:,} tokens, KV cache {plan.kv_type.value}{layers}:"
        )
        self.memory_bar.set_devices(found.devices)
        self.memory_bar.show()
        lines = [f"<b>{_escape(str(a.severity))}</b>: {_escape(a.message)}" for a in report.advice]
        self.warnings_label.setText("<br>".join(lines) if lines else "No warnings.")

    def _set_variant_rows(self, rows: tuple[VariantRow, ...], *, reset: bool) -> None:
        if reset:
            self.variants_model.set_rows(rows)
        else:
            self.variants_model.update_rows(rows)
        for row, variant in enumerate(self.variants_model.rows):
            index = self.variants_model.index(row, VariantsModel.BUTTON_COLUMN)
            if self.variants.indexWidget(index) is None:
                button = QPushButton("Download", self.variants)
                button.setObjectName(f"discover-download-{variant.quant}")
                button.setAccessibleName(f"download {variant.quant}")
                button.clicked.connect(lambda _=False, q=variant.quant: self._download(q))
                self.variants.setIndexWidget(index, button)
        self.variants.setVisible(bool(rows))
        self.variants.resizeRowsToContents()
        height = self.variants.horizontalHeader().height() + 2 * self.variants.frameWidth()
        height += sum(self.variants.rowHeight(r) for r in range(len(rows)))
        self.variants.setFixedHeight(height)

    def _download_picked(self) -> None:
        picked = next((r for r in self.variants_model.rows if r.picked), None)
        if picked is not None:
            self._download(picked.quant)

    def _download(self, quant: str) -> None:
        if self.repo is not None:
            self.download_requested.emit(self.repo.repo_id, quant)

    # --- the lists -----------------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if not self._started:
            self._started = True
            if not self.search.text():
                self._controller.search_now("")

    def focus_search(self) -> None:
        self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search.selectAll()

    def _on_text(self, text: str) -> None:
        self._started = True
        self._controller.set_query(text)

    def _on_filters(self) -> None:
        self.proxy.set_fits_only(self.fits_box.isChecked())
        self.proxy.set_commercial_only(self.commercial_box.isChecked())
        self.proxy.set_use_case(self.use_case_box.currentData())
        self._update_count()

    def _on_searching(self, query: str) -> None:
        if query:
            self.lists.setCurrentWidget(self.results)
            self.status_label.setText(f"Searching the Hub for “{query}”…")
        else:
            self.lists.setCurrentWidget(self.recommended)
            self.status_label.setText("Finding the best model per use case for this machine…")

    def _on_results(self, result: SearchResult) -> None:
        self._update_count(result.notice)
        shown = self.repo
        again = next((r for r in result.repos if shown is not None and r.repo_id == shown.repo_id), None)
        if again is not None and again is not shown:
            self.show_repo(again)  # judged again (another machine, a fresh listing): plan it again
        if self.proxy.rowCount() and not self.results.selectionModel().hasSelection():
            self.results.selectRow(0)

    def _update_count(self, notice: str | None = None) -> None:
        if self._controller.query == "":
            return
        shown, total = self.proxy.rowCount(), self._controller.model.rowCount()
        text = f"{fmt.count_text(total, 'repo')} for “{self._controller.query}”"
        if shown != total:
            text += f", {shown} shown with the filters"
        if self._controller.model.has_more:
            text += "; scroll for more"
        if notice:
            text += f". {notice}"
        self.status_label.setText(text)

    def _on_recommendations(self, found: RecommendationSet) -> None:
        text = "Recommended for this machine, one per use case. Type to search the Hub."
        if found.notice:
            text += f" ({found.notice})"
        self.status_label.setText(text)

    def _on_result_selected(self, current: QModelIndex, _previous: QModelIndex) -> None:
        repo = current.data(REPO_ROLE) if current.isValid() else None
        if isinstance(repo, CatalogRepo) and (self.repo is None or repo.repo_id != self.repo.repo_id):
            self.show_repo(repo)

    def _on_recommendation_selected(self, current: QModelIndex, _previous: QModelIndex) -> None:
        rec = current.data(REPO_ROLE) if current.isValid() else None
        if isinstance(rec, Recommendation) and rec.repo_id:
            self._controller.open_repo(rec.repo_id)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


__all__ = ["DiscoverView", "context_steps"]
