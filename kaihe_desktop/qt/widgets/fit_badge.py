"""The fit badge: how much a model fits by, in words and colour.

"full GPU, 3.1 GiB spare", "CPU only, 6.2 GiB spare", "over by 7.4 GiB"; the tooltip is the planner's reason.
"""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QWidget

from kaihe_desktop.qt.models.catalog import LEVEL_COLOURS, Fit, Level


class FitBadge(QLabel):
    """A rounded, coloured label showing one `Fit`; its tooltip is the planner's reason."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("fit-badge")
        self.fit: Fit | None = None
        self.set_fit(None)

    def set_fit(self, fit: Fit | None) -> None:
        self.fit = fit
        level = fit.level if fit is not None else Level.UNKNOWN
        back, fore = LEVEL_COLOURS[level]
        self.setStyleSheet(
            f"QLabel#fit-badge {{ background: {back}; color: {fore}; border-radius: 4px; padding: 2px 8px; }}"
        )
        text = fit.text if fit is not None else "—"
        self.setText(text)
        self.setAccessibleName(f"fit: {text}")
        self.setToolTip(fit.detail if fit is not None else "")
