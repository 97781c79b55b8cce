"""Render icons/kaihe-desktop.svg to PNGs (16 … 256 px) with QtSvg: `python resources/render_icons.py`.

The PNGs are committed, so the window and the .desktop file need no SVG support at run time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QRectF, Qt  # noqa: E402
from PySide6.QtGui import QGuiApplication, QImage, QPainter  # noqa: E402
from PySide6.QtSvg import QSvgRenderer  # noqa: E402

HERE = Path(__file__).resolve().parent
SVG = HERE / "icons" / "kaihe-desktop.svg"
SIZES = (16, 32, 48, 64, 128, 256)


def render(svg: Path = SVG, out_dir: Path = HERE / "icons", sizes: tuple[int, ...] = SIZES) -> list[Path]:
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg}: not a valid SVG")
    written = []
    for size in sizes:
        image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter, QRectF(0, 0, size, size))
        painter.end()
        path = out_dir / f"kaihe-desktop-{size}.png"
        if not image.save(str(path)):
            raise SystemExit(f"cannot write {path}")
        written.append(path)
    return written


if __name__ == "__main__":
    app = QGuiApplication(sys.argv)
    for p in render():
        print(p.relative_to(HERE))
