"""About KAIHE: versions (from package metadata; llama_cpp is never imported here) and GPU offload."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

from kaihe_desktop.core.machine.spec import Machine
from kaihe_desktop.services import Versions


def about_text(versions: Versions, machine: Machine | None) -> str:
    if machine is None:
        offload = "not known yet (the machine is still being probed)"
    else:
        offload = "on (llama.cpp can use the GPU)" if machine.gpu_offload_supported else "off (CPU only)"
    lines = [
        f"KAIHE Desktop {versions.kaihe}",
        "Run open-weight LLMs offline, knowing what fits before anything is downloaded.",
        "",
        f"llama-cpp-python: {versions.llama_cpp or 'not installed'}",
        f"GPU offload: {offload}",
        f"PySide6 (Qt): {versions.pyside or 'unknown'}",
        f"Python: {versions.python}",
    ]
    return "\n".join(lines)


class AboutDialog(QDialog):
    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("about-dialog")
        self.setWindowTitle("About KAIHE Desktop")
        layout = QVBoxLayout(self)
        self.text_label = QLabel(text, self)
        self.text_label.setObjectName("about-text")
        self.text_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.text_label)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
