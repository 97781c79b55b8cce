"""Downloads: one row per download with its progress bar, speed, ETA, state, buttons and error line.

The list is a QListView over the controller's DownloadsModel; each row is a small widget set as the index
widget (so its buttons are real, focusable, with accessible names). The view only reads rows and calls the
controller: downloads belong to the controller, and go on whatever page is shown.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSize, Qt, QUrl, Signal
from PySide6.QtGui import QBrush, QColor, QDesktopServices, QFont, QPalette, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListView,
    QProgressBar,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from kaihe_desktop.qt import format as fmt
from kaihe_desktop.qt.controllers.downloads import DownloadsController
from kaihe_desktop.qt.errors import Action, Severity
from kaihe_desktop.qt.models.downloads import (
    ROW_ROLE,
    STATE_WORDS,
    DownloadRow,
    DownloadState,
    progress_text,
)

EMPTY_TEXT = (
    "Nothing is downloading. Models you download appear here; they keep downloading while you chat or "
    "switch pages, and resume where they stopped after KAIHE is closed."
)
PAUSABLE = frozenset({DownloadState.PLANNING, DownloadState.RUNNING, DownloadState.RETRYING})
CANCELLABLE = PAUSABLE | {DownloadState.PAUSED, DownloadState.FAILED, DownloadState.QUEUED}
Index = QModelIndex | QPersistentModelIndex


class DownloadRowWidget(QFrame):
    """One download: title and state, progress bar, detail line, buttons, and the error with its action."""

    resize_needed = Signal()

    def __init__(
        self,
        controller: DownloadsController,
        open_url: Callable[[QUrl], object],
        free_disk: Callable[[], object] | None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("download-row")
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setAutoFillBackground(False)
        self._controller = controller
        self._open_url = open_url
        self._free_disk = free_disk
        self.row: DownloadRow | None = None

        column = QVBoxLayout(self)
        column.setContentsMargins(10, 8, 10, 8)
        column.setSpacing(4)

        top = QHBoxLayout()
        self.title_label = QLabel("", self)
        self.title_label.setObjectName("download-title")
        bold = QFont(self.title_label.font())
        bold.setBold(True)
        self.title_label.setFont(bold)
        self.title_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top.addWidget(self.title_label, 1)
        self.state_label = QLabel("", self)
        self.state_label.setObjectName("download-state")
        top.addWidget(self.state_label)
        column.addLayout(top)

        middle = QHBoxLayout()
        self.progress = QProgressBar(self)
        self.progress.setObjectName("download-progress")
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        middle.addWidget(self.progress, 1)
        self.pause_button = self._button("download-pause", "Pause", middle)
        self.resume_button = self._button("download-resume", "Resume", middle)
        self.cancel_button = self._button("download-cancel", "Cancel", middle)
        self.clear_button = self._button("download-clear", "Clear", middle)
        column.addLayout(middle)

        self.detail_label = QLabel("", self)
        self.detail_label.setObjectName("download-detail")
        column.addWidget(self.detail_label)

        self.error_box = QWidget(self)
        error_row = QHBoxLayout(self.error_box)
        error_row.setContentsMargins(0, 2, 0, 0)
        self.error_label = QLabel("", self.error_box)
        self.error_label.setObjectName("download-error")
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        error_row.addWidget(self.error_label, 1)
        self.action_button = QPushButton("", self.error_box)
        self.action_button.setObjectName("download-action")
        error_row.addWidget(self.action_button, 0, Qt.AlignmentFlag.AlignTop)
        column.addWidget(self.error_box)
        self.error_box.hide()

        self.pause_button.clicked.connect(lambda: self._call(controller.pause))
        self.resume_button.clicked.connect(lambda: self._call(controller.resume))
        self.cancel_button.clicked.connect(lambda: self._call(controller.cancel))
        self.clear_button.clicked.connect(lambda: self._call(controller.cancel))
        self.action_button.clicked.connect(self._act)

    def _button(self, name: str, text: str, layout: QHBoxLayout) -> QPushButton:
        button = QPushButton(text, self)
        button.setObjectName(name)
        layout.addWidget(button)
        return button

    def _call(self, method: Callable[[str], None]) -> None:
        if self.row is not None:
            method(self.row.key)

    def show_row(self, row: DownloadRow) -> None:
        before = (self.row is not None and self.row.error is not None, self.detail_label.isVisibleTo(self))
        self.row = row
        self.title_label.setText(row.title)
        self.title_label.setToolTip(row.file or row.key)
        words = STATE_WORDS[row.state]
        if row.stalls and row.state in (DownloadState.RUNNING, DownloadState.RETRYING):
            words += f" (resumed {fmt.count_text(row.stalls, 'time')} after a stall)"
        self.state_label.setText(words)
        busy = row.state is DownloadState.PLANNING and not row.total_bytes
        if busy:
            self.progress.setRange(0, 0)  # preparing: an indeterminate bar
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(round(row.fraction * 1000))
        self.progress.setAccessibleName(f"progress of {row.title}")
        self.progress.setAccessibleDescription(f"{round(row.fraction * 100)}%")
        detail = progress_text(row)
        self.detail_label.setText(detail)
        self.detail_label.setVisible(bool(detail))

        self.pause_button.setVisible(row.state in PAUSABLE)
        self.resume_button.setVisible(row.state.resumable)
        self.resume_button.setText("Retry" if row.state is DownloadState.FAILED else "Resume")
        self.cancel_button.setVisible(row.state in CANCELLABLE)
        self.clear_button.setVisible(row.state is DownloadState.DONE)
        for button, verb in (
            (self.pause_button, "Pause"),
            (self.resume_button, self.resume_button.text()),
            (self.cancel_button, "Cancel"),
            (self.clear_button, "Clear from the list"),
        ):
            button.setAccessibleName(f"{verb} {row.title}")
            button.setToolTip(f"{verb} the download of {row.key}")
        self.cancel_button.setToolTip(f"Stop downloading {row.key} and delete what was downloaded")

        shown = row.error
        if shown is not None:
            prefix = {Severity.INFO: "", Severity.WARNING: "⚠ ", Severity.ERROR: "✖ "}[shown.severity]
            text = f"<b>{_escape(prefix + shown.title)}</b>"
            if shown.detail:
                text += f": {_escape(shown.detail)}"
            if shown.hint:
                text += f"<br>{_escape(shown.hint)}"
            self.error_label.setText(text)
            self.error_label.setAccessibleName(shown.text)
            act = self._can_act(shown.action)
            self.action_button.setText(shown.action.value)
            self.action_button.setAccessibleName(f"{shown.action.value} for {row.title}")
            self.action_button.setVisible(act)
        self.error_box.setVisible(shown is not None)
        self.setAccessibleName(f"{row.title}: {words}")
        if before != (shown is not None, bool(detail)):
            self.resize_needed.emit()

    def _can_act(self, action: Action) -> bool:
        if action in (Action.ACCEPT_LICENSE, Action.SIGN_IN):
            return True
        if action is Action.FREE_DISK:
            return self._free_disk is not None
        return False  # retry is the Retry button; waiting needs nothing

    def _act(self) -> None:
        row = self.row
        if row is None or row.error is None:
            return
        action = row.error.action
        if action is Action.ACCEPT_LICENSE:
            self._open_url(QUrl(self._controller.hub_page_url(row.repo_id)))
        elif action is Action.SIGN_IN:
            self._open_url(QUrl(self._controller.sign_in_url()))
        elif action is Action.FREE_DISK and self._free_disk is not None:
            self._free_disk()


class _RowDelegate(QStyledItemDelegate):
    """Row heights come from the row widgets (their word-wrapped error line included); the row widget
    draws the text, the delegate only the background and the selection."""

    def __init__(self, view: DownloadsView) -> None:
        super().__init__(view)
        self._view = view

    def initStyleOption(self, option: QStyleOptionViewItem, index: Index) -> None:  # noqa: N802
        super().initStyleOption(option, index)
        option.text = ""
        if option.state & QStyle.StateFlag.State_Selected:  # a light tint: the row's text stays readable
            option.state &= ~QStyle.StateFlag.State_Selected
            tint = QColor(option.palette.color(QPalette.ColorRole.Highlight))
            tint.setAlpha(48)
            option.backgroundBrush = QBrush(tint)

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:  # noqa: N802 - Qt's name
        widget = self._view.row_widget_at(index.row())
        if widget is None:
            return super().sizeHint(option, index)
        width = max(self._view.list.viewport().width() - 2 * self._view.list.spacing(), 200)
        layout = widget.layout()
        height = layout.heightForWidth(width) if layout is not None and layout.hasHeightForWidth() else -1
        return QSize(width, height if height > 0 else widget.sizeHint().height())


class DownloadsView(QWidget):
    def __init__(
        self,
        controller: DownloadsController,
        *,
        open_url: Callable[[QUrl], object] = QDesktopServices.openUrl,
        free_disk: Callable[[], object] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("page-downloads")
        self.controller = controller
        self._controller = controller
        self._open_url = open_url
        self._free_disk = free_disk
        self._widgets: dict[int, DownloadRowWidget] = {}

        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 16, 16, 16)
        layout.setSpacing(12)
        top = QHBoxLayout()
        heading = QLabel("Downloads", self)
        font = QFont(heading.font())
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        heading.setFont(font)
        top.addWidget(heading, 1)
        self.clear_button = QPushButton("Clear finished", self)
        self.clear_button.setObjectName("downloads-clear-finished")
        self.clear_button.setAccessibleName("Clear finished downloads from the list")
        self.clear_button.clicked.connect(controller.clear_finished)
        top.addWidget(self.clear_button)
        layout.addLayout(top)

        self.summary_label = QLabel(EMPTY_TEXT, self)
        self.summary_label.setObjectName("downloads-summary")
        self.summary_label.setWordWrap(True)
        layout.addWidget(self.summary_label)

        self.list = QListView(self)
        self.list.setObjectName("downloads-list")
        self.list.setAccessibleName("downloads")
        self.list.setModel(controller.model)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list.setUniformItemSizes(False)
        self.list.setSpacing(2)
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._delegate = _RowDelegate(self)
        self.list.setItemDelegate(self._delegate)
        layout.addWidget(self.list, 1)

        model = controller.model
        model.rowsInserted.connect(self._rebuild)
        model.rowsRemoved.connect(self._rebuild)
        model.modelReset.connect(self._rebuild)
        model.dataChanged.connect(self._on_data_changed)
        controller.already_running.connect(self.select)
        self._rebuild()

    def row_widget_at(self, n: int) -> DownloadRowWidget | None:
        return self._widgets.get(n)

    def row_widget(self, key: str) -> DownloadRowWidget | None:
        return self.row_widget_at(self._controller.model.find(key))

    def select(self, key: str) -> None:
        """Show (scroll to and select) the row of ``key``: what a second start of a running download does."""
        n = self._controller.model.find(key)
        if n < 0:
            return
        index = self._controller.model.index(n, 0)
        self.list.setCurrentIndex(index)
        self.list.scrollTo(index)

    def _rebuild(self) -> None:
        """Index widgets follow row positions: made again when rows come or go (a handful of rows)."""
        model = self._controller.model
        for widget in self._widgets.values():
            widget.hide()  # at once: deleteLater runs after this event, a grab before it would show it
            widget.deleteLater()
        self._widgets = {}
        for n, row in enumerate(model.rows):
            widget = DownloadRowWidget(self._controller, self._open_url, self._free_disk)
            widget.show_row(row)
            widget.resize_needed.connect(self._relayout)
            self._widgets[n] = widget
            self.list.setIndexWidget(model.index(n, 0), widget)
        self._relayout()
        self._summarize()

    def _on_data_changed(self, top_left: QModelIndex, bottom_right: QModelIndex) -> None:
        for n in range(top_left.row(), bottom_right.row() + 1):
            widget = self._widgets.get(n)
            row = self._controller.model.index(n, 0).data(ROW_ROLE)
            if widget is not None and isinstance(row, DownloadRow):
                widget.show_row(row)
        self._summarize()

    def _relayout(self) -> None:
        self.list.doItemsLayout()

    def _summarize(self) -> None:
        rows = self._controller.model.rows
        self.clear_button.setEnabled(any(r.state is DownloadState.DONE for r in rows))
        if not rows:
            self.summary_label.setText(EMPTY_TEXT)
            return
        counts: dict[str, int] = {}
        for r in rows:
            word = (
                "downloading"
                if r.state.active
                else "finished"
                if r.state is DownloadState.DONE
                else r.state.value
            )
            counts[word] = counts.get(word, 0) + 1
        parts = ", ".join(f"{n} {word}" for word, n in counts.items())
        self.summary_label.setText(f"{fmt.count_text(len(rows), 'download')}: {parts}")

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._relayout()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
