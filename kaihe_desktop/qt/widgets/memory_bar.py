"""The memory bar of a plan: per device (RAM, each GPU) what the model takes, split into weights, KV cache,
compute and overhead, against what is free there now, with the safety margin marked.

One row per device: its name and "needs X of Y free", then a bar scaled to the larger of need and free.
Past the free line the bar turns red (the model does not fit there); the margin is a dashed line before it.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from kaihe_desktop.qt import format as fmt
from kaihe_desktop.qt.models.catalog import DeviceUse

SEGMENTS: tuple[tuple[str, str], ...] = (
    ("weights", "#4a7fc1"),
    ("kv_cache", "#8e6cc0"),
    ("compute", "#d08a2e"),
    ("overhead", "#8a8f98"),
)
SEGMENT_WORDS = {"weights": "weights", "kv_cache": "KV cache", "compute": "compute", "overhead": "overhead"}
FREE_COLOUR = "#e3e7ec"
OVER_COLOUR = "#c83c3c"
BAR_HEIGHT = 14
GAP = 6


class MemoryBar(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("memory-bar")
        self.setAccessibleName("memory per device")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.devices: tuple[DeviceUse, ...] = ()

    def set_devices(self, devices: Sequence[DeviceUse]) -> None:
        self.devices = tuple(d for d in devices if d.total > 0 or d.name == "RAM")
        self.setAccessibleDescription("; ".join(self.describe(d) for d in self.devices))
        self.setToolTip("\n".join(self.describe(d) for d in self.devices))
        self.setMinimumHeight(self.sizeHint().height())  # one row per device: the layout must make room now
        self.updateGeometry()
        self.update()

    @staticmethod
    def describe(device: DeviceUse) -> str:
        parts = ", ".join(
            f"{SEGMENT_WORDS[key]} {fmt.bytes_text(getattr(device, key))}"
            for key, _ in SEGMENTS
            if getattr(device, key)
        )
        return (
            f"{device.name}: needs {fmt.bytes_text(device.total)} of {fmt.bytes_text(device.available)} free"
            + (f" ({parts})" if parts else "")
        )

    def _row_height(self) -> int:
        return QFontMetrics(self.font()).height() + 2 + BAR_HEIGHT + GAP

    def _legend_height(self) -> int:
        return QFontMetrics(self.font()).height() + 4

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        rows = max(1, len(self.devices))
        return QSize(320, rows * self._row_height() + self._legend_height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(160, self.sizeHint().height())

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        metrics = QFontMetrics(self.font())
        text_colour = self.palette().windowText().color()
        width = max(1, self.width() - 1)
        y = 0
        for device in self.devices:
            painter.setPen(text_colour)
            label = metrics.elidedText(self.describe(device), Qt.TextElideMode.ElideRight, width)
            painter.drawText(0, y + metrics.ascent(), label)
            y += metrics.height() + 2
            self._paint_bar(painter, device, QRectF(0, y, width, BAR_HEIGHT))
            y += BAR_HEIGHT + GAP
        # legend
        x = 0.0
        base = y + metrics.ascent()
        for key, colour in (*SEGMENTS, ("free", FREE_COLOUR), ("over", OVER_COLOUR)):
            word = {"free": "free", "over": "over what is free"}.get(key, SEGMENT_WORDS.get(key, key))
            painter.fillRect(QRectF(x, y + 3, 10, 10), QColor(colour))
            painter.setPen(text_colour)
            painter.drawText(int(x + 14), base, word)
            x += 14 + metrics.horizontalAdvance(word) + 12
        painter.end()

    @staticmethod
    def _paint_bar(painter: QPainter, device: DeviceUse, rect: QRectF) -> None:
        scale_to = max(device.total, device.available, 1)
        per_byte = rect.width() / scale_to
        painter.fillRect(rect, QColor(FREE_COLOUR))
        x = rect.left()
        for key, colour in SEGMENTS:
            part = getattr(device, key) * per_byte
            if part > 0:
                painter.fillRect(QRectF(x, rect.top(), part, rect.height()), QColor(colour))
                x += part
        free_x = rect.left() + device.available * per_byte
        if device.total > device.available:
            painter.fillRect(
                QRectF(free_x, rect.top(), rect.left() + device.total * per_byte - free_x, rect.height()),
                QColor(OVER_COLOUR),
            )
        margin_x = free_x - device.margin * per_byte
        pen = QPen(QColor("#202020"))
        pen.setStyle(Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.drawLine(int(margin_x), int(rect.top()), int(margin_x), int(rect.bottom()))
        painter.setPen(QPen(QColor("#202020")))
        painter.drawLine(int(free_x), int(rect.top() - 2), int(free_x), int(rect.bottom() + 2))
