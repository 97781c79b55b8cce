"""Confirm a delete: the core's DeletePlan in words (what goes, what stays, the space it frees)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from kaihe_desktop.core.library import DeletePlan
from kaihe_desktop.qt import format as fmt


def plan_text(plan: DeletePlan) -> str:
    """One paragraph: the entry, how many files go and the space that frees, and what is left alone."""
    name = plan.entry.name
    if plan.delete_files:
        text = (
            f"Delete {name}? {fmt.count_text(len(plan.delete_files), 'file')} will be removed from disk, "
            f"freeing {fmt.bytes_text(plan.freed_bytes)}."
        )
    else:
        text = f"Remove {name} from the library? No file is deleted, so no space is freed."
    if plan.keep_files:
        text += (
            f" {fmt.count_text(len(plan.keep_files), 'file')} KAIHE does not own (imported, or in the "
            f"Hugging Face cache) will be left where {'it is' if len(plan.keep_files) == 1 else 'they are'}."
        )
    return text


class ConfirmDeleteDialog(QDialog):
    def __init__(self, plan: DeletePlan, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plan = plan
        self.setObjectName("confirm-delete")
        self.setWindowTitle(f"Delete {plan.entry.name}")
        self.setAccessibleName("confirm delete")
        self.setMinimumWidth(640)
        layout = QVBoxLayout(self)

        self.summary_label = QLabel(plan_text(plan), self)
        self.summary_label.setObjectName("delete-summary")
        self.summary_label.setWordWrap(True)
        layout.addWidget(self.summary_label)

        self.files_list = QListWidget(self)
        self.files_list.setObjectName("delete-files")
        self.files_list.setAccessibleName("files")
        self.files_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # the file name stays readable
        self.files_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        for what, files in (("delete", plan.delete_files), ("keep", plan.keep_files)):
            for f in files:
                item = QListWidgetItem(f"{what}: {f}")
                item.setToolTip(str(f))
                self.files_list.addItem(item)
        rows = max(1, min(5, self.files_list.count()))
        self.files_list.setFixedHeight(
            rows * self.files_list.sizeHintForRow(0) + 2 * self.files_list.frameWidth() + 4
        )
        layout.addWidget(self.files_list)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel, self)
        label = f"Delete ({fmt.bytes_text(plan.freed_bytes)})" if plan.delete_files else "Remove from library"
        self.delete_button = QPushButton(label, self)
        self.delete_button.setObjectName("delete-confirm")
        self.delete_button.setAccessibleName("confirm delete")
        buttons.addButton(self.delete_button, QDialogButtonBox.ButtonRole.DestructiveRole)
        cancel = buttons.button(QDialogButtonBox.StandardButton.Cancel)
        cancel.setObjectName("delete-cancel")
        cancel.setDefault(True)  # Enter does not delete
        self.delete_button.clicked.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
