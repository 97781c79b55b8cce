"""The app icon, the .desktop file and the AppStream metainfo: valid, consistent with each other and the app.

The validators are system tools (desktop-file-utils, appstream; .ci/run installs them): a missing one fails
the test rather than skipping it, so CI never passes without validating.
"""

from __future__ import annotations

import configparser
import inspect
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ROOT / "resources"
DESKTOP = RESOURCES / "kaihe-desktop.desktop"
METAINFO = RESOURCES / "io.kaihe.Desktop.metainfo.xml"
SVG = RESOURCES / "icons" / "kaihe-desktop.svg"
SIZES = (16, 32, 48, 64, 128, 256)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (apt-get install desktop-file-utils appstream)", pytrace=False)
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def test_the_desktop_file_validates() -> None:
    result = _run(_tool("desktop-file-validate"), str(DESKTOP))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in (result.stdout + result.stderr).lower()


def test_the_metainfo_validates_offline() -> None:
    result = _run(_tool("appstreamcli"), "validate", "--no-net", str(METAINFO))
    assert result.returncode == 0, result.stdout + result.stderr


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(DESKTOP, encoding="utf-8")
    return parser["Desktop Entry"]


def test_desktop_file_metainfo_and_app_name_the_same_things() -> None:
    from kaihe_desktop.app import application

    entry = _desktop_entry()
    assert entry["Icon"] == SVG.stem
    assert entry["Exec"].split()[0] == "kaihe-desktop"  # the gui-script in pyproject.toml
    assert "kaihe-desktop = " in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    tree = ET.parse(METAINFO).getroot()
    assert tree.findtext("launchable") == DESKTOP.name
    assert tree.findtext("icon") == SVG.stem
    assert f"{tree.findtext('id')}.metainfo.xml" == METAINFO.name
    # the window's app id finds the .desktop file (set when application() makes the QApplication; in a
    # test session pytest-qt may have made it first)
    assert f'setDesktopFileName("{DESKTOP.stem}")' in inspect.getsource(application)


def test_the_svg_renders_and_each_png_has_its_size_and_the_svg_shapes() -> None:
    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    from kaihe_desktop.app import application

    application(["kaihe-desktop"])
    renderer = QSvgRenderer(str(SVG))
    assert renderer.isValid()
    for size in SIZES:
        png = QImage(str(RESOURCES / "icons" / f"kaihe-desktop-{size}.png"))
        assert (png.width(), png.height()) == (size, size)
        fresh = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        fresh.fill(Qt.GlobalColor.transparent)
        painter = QPainter(fresh)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter, QRectF(0, 0, size, size))
        painter.end()
        # the committed PNG is this SVG (re-run resources/render_icons.py after editing it): same pixels,
        # give or take antialiasing between Qt versions
        for x, y in ((size // 2, size // 2), (size // 8, size // 2), (1, 1), (size // 2, size - size // 6)):
            a = png.pixelColor(x, y)
            b = fresh.pixelColor(x, y)
            assert abs(a.alpha() - b.alpha()) <= 24 and abs(a.red() - b.red()) <= 24, (size, x, y)
        assert png.pixelColor(0, 0).alpha() == 0  # rounded corners
        assert png.pixelColor(size // 2, size // 2).alpha() == 255


def test_the_window_uses_the_icon() -> None:
    from kaihe_desktop.app import ICON_SIZES, app_icon, application

    application(["kaihe-desktop"])
    icon = app_icon()
    assert not icon.isNull()
    assert sorted(s.width() for s in icon.availableSizes()) == sorted(ICON_SIZES) == list(SIZES)
