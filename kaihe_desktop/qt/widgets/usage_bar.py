"""A memory use bar for one pool (RAM or one GPU): used by other programs | held by a loaded model | free.

The numbers come in as bytes and stay readable as attributes (tests and screen readers read them); the bar
paints them from the palette, so it reads in light and dark themes, and its accessible description says
the same numbers in words.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPalette
from PySide6.QtWidgets import QSizePolicy, QWidget

from kaihe_desktop.qt import format as fmt

BAR_HEIGHT = 16
OTHER_SHARE = 0.45  # other programs: the text colour mixed into the base, opaque (swatches match)


class UsageBar(QWidget):
    """Three segments of one memory pool, left to right: other programs, the loaded model, free."""

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.setAccessibleName(name.replace("-", " "))
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.total_bytes = 0
        self.other_bytes = 0  # used by other programs (total - free - model)
        self.model_bytes = 0  # held by a model this app has loaded
        self.free_bytes = 0

    def set_usage(self, *, total_bytes: int, free_bytes: int, model_bytes: int = 0) -> None:
        """Total and free as the probe (or a profile) reads them; ``model_bytes`` is part of what is used."""
        total = max(total_bytes, 0)
        free = min(max(free_bytes, 0), total)
        model = min(max(model_bytes, 0), total - free)
        self.total_bytes, self.free_bytes, self.model_bytes = total, free, model
        self.other_bytes = total - free - model
        self.setAccessibleDescription(self.description())
        self.setToolTip(self.description())
        self.update()

    def description(self) -> str:
        if not self.total_bytes:
            return "not known"
        parts = [
            f"{fmt.bytes_text(self.other_bytes)} used by other programs",
            f"{fmt.bytes_text(self.model_bytes)} held by the loaded model" if self.model_bytes else "",
            f"{fmt.bytes_text(self.free_bytes)} free of {fmt.bytes_text(self.total_bytes)}",
        ]
        return ", ".join(p for p in parts if p)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(240, BAR_HEIGHT)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(60, BAR_HEIGHT)

    def segment_colors(self) -> tuple[QColor, QColor, QColor]:
        """Other programs, model, free: from the palette, so the legend can show the same swatches."""
        palette = self.palette()
        text, base = palette.color(QPalette.ColorRole.Text), palette.color(QPalette.ColorRole.Base)
        other = QColor.fromRgbF(
            *(
                OTHER_SHARE * t + (1 - OTHER_SHARE) * b
                for t, b in zip(
                    (text.redF(), text.greenF(), text.blueF()),
                    (base.redF(), base.greenF(), base.blueF()),
                    strict=True,
                )
            )
        )
        return other, palette.color(QPalette.ColorRole.Highlight), base

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        outline = QPainterPath()
        outline.addRoundedRect(rect, 4, 4)
        other, model, free = self.segment_colors()
        painter.fillPath(outline, free)
        if self.total_bytes:
            painter.setClipPath(outline)
            x = rect.left()
            for size, color in ((self.other_bytes, other), (self.model_bytes, model)):
                width = rect.width() * size / self.total_bytes
                if width > 0:
                    painter.fillRect(QRectF(x, rect.top(), width, rect.height()), color)
                x += width
            painter.setClipping(False)
        border = self.palette().color(QPalette.ColorRole.Mid)
        painter.setPen(border)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(outline)
        painter.end()
