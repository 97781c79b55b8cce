"""Render the window offscreen to PNGs: every page, with the starter model in a temporary library.

    QT_QPA_PLATFORM=offscreen .venv/bin/python resources/screenshots/capture.py [OUT_DIR] [--readme]

Pages are shown as the RTX 4060 laptop profile and as this machine's own probe. With --readme the This
machine page (profile) also replaces resources/screenshots/main-window.png.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtGui import QColor, QPalette  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from kaihe_desktop.app import create_window  # noqa: E402
from kaihe_desktop.qt import workers  # noqa: E402
from kaihe_desktop.services import Services  # noqa: E402

README_SHOT = Path(__file__).with_name("main-window.png")


def _wait(condition: object, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        QApplication.processEvents()
        time.sleep(0.02)


def capture(out: Path, *, profile: str | None, tag: str, home: Path) -> dict[str, Path]:
    services = Services.create(home=home, profile=profile)
    window = create_window(["kaihe-desktop"], services=services)
    window.resize(960, 640)
    window.show()
    machine = window._machine  # noqa: SLF001 - a capture script may look inside
    status = window._status  # noqa: SLF001
    _wait(lambda: machine.summary is not None and status.last is not None)
    shots: dict[str, Path] = {}
    for key in window.pages:
        window.show_page(key)
        _wait(lambda: not workers.in_flight(), 10)
        for _ in range(5):
            QApplication.processEvents()
        path = out / f"{tag}-{key}.png"
        window.grab().save(str(path))
        shots[key] = path
    window.about_action.trigger()
    _wait(lambda: window.about is not None and window.about.isVisible(), 10)
    if window.about is not None:
        path = out / f"{tag}-about.png"
        window.about.grab().save(str(path))
        shots["about"] = path
    window.close()
    return shots


def capture_error(out: Path, *, home: Path) -> Path:
    """The banner, as a profile that does not exist shows it."""
    window = create_window(["kaihe-desktop"], services=Services.create(home=home, profile="no-such-profile"))
    window.resize(960, 640)
    window.show()
    _wait(lambda: not window.banner.isHidden(), 20)
    for _ in range(5):
        QApplication.processEvents()
    path = out / "error-banner.png"
    window.grab().save(str(path))
    window.close()
    return path


def _dark_palette() -> QPalette:
    """A system-like dark palette (the app sets none itself: it follows the platform's)."""
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#2b2b2b",
        QPalette.ColorRole.WindowText: "#e6e6e6",
        QPalette.ColorRole.Base: "#1e1e1e",
        QPalette.ColorRole.AlternateBase: "#262626",
        QPalette.ColorRole.Text: "#e6e6e6",
        QPalette.ColorRole.Button: "#353535",
        QPalette.ColorRole.ButtonText: "#e6e6e6",
        QPalette.ColorRole.Highlight: "#3d7ab8",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.ToolTipBase: "#353535",
        QPalette.ColorRole.ToolTipText: "#e6e6e6",
        QPalette.ColorRole.Mid: "#444444",
    }
    for role, colour in roles.items():
        palette.setColor(role, QColor(colour))
    return palette


def main(argv: list[str]) -> int:
    out = Path(next((a for a in argv[1:] if not a.startswith("--")), "/tmp/shell-shots"))
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(["kaihe-desktop"])
    assert isinstance(app, QApplication)
    with tempfile.TemporaryDirectory(prefix="kaihe-shots-") as tmp:
        home = Path(tmp) / "home"
        services = Services.create(home=home)
        services.library.import_starter()
        profile_shots = capture(out, profile="rtx4060-16gb", tag="profile", home=home)
        probe_shots = capture(out, profile=None, tag="probe", home=home)
        error_shot = capture_error(out, home=home)
        app.setPalette(_dark_palette())  # what a system in dark mode hands Qt
        dark_shots = capture(out, profile="rtx4060-16gb", tag="dark", home=home)
    if "--readme" in argv:
        README_SHOT.write_bytes(profile_shots["machine"].read_bytes())
    for path in (*profile_shots.values(), *probe_shots.values(), *dark_shots.values(), error_shot):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
