"""A Qt binding that leaks references kills a long session: guard against the one we met."""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QLabel
from pytestqt.qtbot import QtBot


def test_void_qt_calls_do_not_take_references_from_none(qtbot: QtBot) -> None:
    """PySide6 6.12.0 (abi3) on Python 3.11 dropped one reference to None per call returning nothing; after a
    few thousand calls the interpreter aborted with "none_dealloc". Python 3.12+ makes None immortal."""
    label = QLabel()
    qtbot.addWidget(label)
    before = sys.getrefcount(None)
    for n in range(2000):
        label.setText(str(n))
    after = sys.getrefcount(None)
    assert after >= before - 50, f"None lost {before - after} references over 2000 setText calls"
