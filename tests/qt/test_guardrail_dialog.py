"""The guardrail dialog, over real Guardrails from the core (laptop-8gb, rtx4060-16gb, full-size shapes).

Set KAIHE_SHOTS_DIR to keep the rendered dialogs as PNGs (e.g. /tmp/shots-guardrail).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtWidgets import QAbstractButton, QApplication, QDialog, QLabel, QPushButton, QWidget
from pytestqt.qtbot import QtBot

from kaihe_desktop.core.fit.guardrails import (
    DOWNLOAD,
    LOAD,
    Change,
    Guardrail,
    InUse,
    Requested,
    Trigger,
    check,
)
from kaihe_desktop.core.fit.plan import plan
from kaihe_desktop.core.machine.profiles import resolve_profile
from kaihe_desktop.core.units import format_bytes
from kaihe_desktop.qt.dialogs.guardrail import GuardrailChoice, GuardrailDialog, Outcome, guard
from tests.core.fit.test_guardrails import LLAMA31_8B_VARIANTS, llama31_8b_shape, llama32_1b
from tests.helpers.synthetic_models import llama33_70b, mistral_7b


def _laptop_8b_q8() -> Guardrail:
    """An 8B Q8_0 download on the 8 GB laptop: far over; the one way down is a much lower quant."""
    g = check(
        llama31_8b_shape(),
        resolve_profile("laptop-8gb"),
        options=Requested(quant="Q8_0"),
        variants=LLAMA31_8B_VARIANTS,
        kind=DOWNLOAD,
    )
    assert g is not None
    return g


def _laptop_1b_long_context() -> Guardrail:
    """A 1B Q8_0 at 24k tokens on the laptop: three ways to make it fit."""
    g = check(llama32_1b(), resolve_profile("laptop-8gb"), options=Requested(quant="Q8_0", n_ctx=24576))
    assert g is not None and len(g.options) == 3
    return g


def _rtx4060_all_layers() -> Guardrail:
    g = check(
        llama31_8b_shape(),
        resolve_profile("rtx4060-16gb"),
        options=Requested(quant="Q8_0", gpu_layers=-1),
        variants=LLAMA31_8B_VARIANTS,
        kind=LOAD,
    )
    assert g is not None
    return g


def _m2_step_up() -> Guardrail:
    """Mistral 7B Q4_K_M runs on a 16 GB M2; its Q8_0 fits, but leaves little room."""
    m2 = resolve_profile("m2-16gb")
    meta = mistral_7b()
    g = check(meta, m2, options=Requested(quant="Q8_0"), current=InUse.of(plan(meta, m2)))
    assert g is not None and g.trigger == Trigger.STEP_UP
    return g


def _open(qtbot: QtBot, g: Guardrail) -> GuardrailDialog:
    dialog = GuardrailDialog(g)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def _button(dialog: QDialog, name: str) -> QPushButton:
    found = dialog.findChild(QPushButton, name)
    assert found is not None, name
    return found


# --- what it shows --------------------------------------------------------------------------------------


def test_the_dialog_shows_needs_has_and_leaves_and_the_proceed_button_carries_them(qtbot: QtBot) -> None:
    g = _laptop_8b_q8()
    dialog = _open(qtbot, g)
    assert dialog.objectName() == "guardrail-dialog"
    needs, has = format_bytes(g.needed_bytes), format_bytes(g.available_bytes)
    leaves = format_bytes(g.left_bytes)
    assert needs in dialog.number_labels["needs"].text() and "RAM" in dialog.number_labels["needs"].text()
    assert has in dialog.number_labels["has"].text()
    assert leaves in dialog.number_labels["leaves"].text()
    assert g.left_bytes < 0 and leaves.startswith("-")
    summary = dialog.summary_label.text()
    assert needs in summary and has in summary and format_bytes(g.short_bytes) in summary
    proceed = _button(dialog, "guardrail-proceed")
    assert proceed.text() == f"Download anyway (needs {needs}, has {has})"
    assert proceed.isVisible() and proceed.isEnabled() and proceed.accessibleName() == proceed.text()
    # the upgrade advice, in words: the tier and the hardware that holds it with the margin
    upgrade = dialog.upgrade_label.text()
    assert g.upgrade.tier.capitalize() in upgrade and "margin" in upgrade
    assert g.upgrade.holders[0].name in upgrade
    # one row per option, with its own memory and speed
    assert len(dialog.option_buttons) == len(g.options) >= 1
    for i, option in enumerate(g.options):
        detail = dialog.findChild(QLabel, f"guardrail-option-{i}-detail")
        assert detail is not None
        text = detail.text().replace("\u00a0", " ")  # the parts keep their words together
        assert format_bytes(option.total_bytes) in text and "tokens/s" in text


def test_a_load_says_load_anyway_and_names_the_gpu(qtbot: QtBot) -> None:
    g = _rtx4060_all_layers()
    dialog = _open(qtbot, g)
    proceed = _button(dialog, "guardrail-proceed")
    assert proceed.text().startswith("Load anyway (needs ")
    assert "RTX 4060" in dialog.number_labels["needs"].text()
    first = _button(dialog, "guardrail-use-fewer_gpu_layers")
    assert "Fewer GPU layers" in first.accessibleName()


def test_a_step_up_says_what_grew_and_what_it_leaves(qtbot: QtBot) -> None:
    g = _m2_step_up()
    dialog = _open(qtbot, g)
    summary = dialog.summary_label.text()
    assert "step up" in summary and "Q8_0 over Q4_K_M" in summary
    assert format_bytes(g.left_bytes) in summary
    # the planner keeps Q8_0 within the margin by shortening the context: the dialog says so
    assert g.current is not None and g.plan.n_ctx < g.current.n_ctx
    assert f"shrink from {g.current.n_ctx} to {g.plan.n_ctx} tokens" in summary
    assert _button(dialog, "guardrail-proceed").text().startswith("Load anyway (needs ")
    assert dialog.option_buttons


def test_nothing_to_offer_says_so(qtbot: QtBot) -> None:
    g = check(llama33_70b(), resolve_profile("laptop-8gb"))
    assert g is not None and g.options == ()
    dialog = _open(qtbot, g)
    assert dialog.findChild(QLabel, "guardrail-no-options") is not None
    assert dialog.option_buttons == []


# --- what it returns ------------------------------------------------------------------------------------


def test_cancel_is_the_default_and_enter_cancels(qtbot: QtBot) -> None:
    dialog = _open(qtbot, _laptop_1b_long_context())
    cancel = _button(dialog, "guardrail-cancel")
    assert cancel.isDefault()
    assert not _button(dialog, "guardrail-proceed").autoDefault()
    assert all(not b.autoDefault() for b in dialog.option_buttons)
    with qtbot.waitSignal(dialog.chosen) as blocker:
        qtbot.keyClick(dialog, Qt.Key.Key_Return)
    assert dialog.result() == QDialog.DialogCode.Rejected
    assert isinstance(blocker.args[0], GuardrailChoice) and blocker.args[0].outcome == Outcome.CANCEL
    assert dialog.choice.outcome == Outcome.CANCEL and dialog.choice.option is None


def test_enter_cancels_even_with_the_focus_on_an_option(qtbot: QtBot) -> None:
    dialog = _open(qtbot, _laptop_1b_long_context())
    use = dialog.option_buttons[0]
    use.setFocus()
    qtbot.waitUntil(use.hasFocus)
    qtbot.keyClick(use, Qt.Key.Key_Return)
    assert not dialog.isVisible()
    assert dialog.choice.outcome == Outcome.CANCEL


def test_escape_cancels(qtbot: QtBot) -> None:
    dialog = _open(qtbot, _laptop_1b_long_context())
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    assert dialog.choice.outcome == Outcome.CANCEL


def test_proceed_anyway_returns_proceed(qtbot: QtBot) -> None:
    g = _laptop_1b_long_context()
    dialog = _open(qtbot, g)
    qtbot.mouseClick(_button(dialog, "guardrail-proceed"), Qt.MouseButton.LeftButton)
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert dialog.choice == GuardrailChoice(Outcome.PROCEED, guardrail=g)


@pytest.mark.parametrize("change", [Change.KV_Q8_0, Change.SHORTER_CONTEXT, Change.NEXT_QUANT_DOWN])
def test_clicking_an_option_returns_it(qtbot: QtBot, change: Change) -> None:
    g = _laptop_1b_long_context()
    dialog = _open(qtbot, g)
    use = _button(dialog, f"guardrail-use-{change.value}")
    assert use.text() == "Use this" and use.accessibleName().startswith("Use this: ")
    with qtbot.waitSignal(dialog.chosen) as blocker:
        qtbot.mouseClick(use, Qt.MouseButton.LeftButton)
    choice = blocker.args[0]
    expected = next(o for o in g.options if o.change == change)
    assert choice.outcome == Outcome.OPTION and choice.option == expected
    assert dialog.choice == choice


# --- computed off the GUI thread ------------------------------------------------------------------------


def _shown_dialog() -> GuardrailDialog | None:
    found = [w for w in QApplication.topLevelWidgets() if isinstance(w, GuardrailDialog) and w.isVisible()]
    return found[0] if found else None


def test_guard_checks_off_the_gui_thread_then_asks(qtbot: QtBot) -> None:
    threads: list[threading.Thread] = []
    choices: list[GuardrailChoice] = []
    errors: list[BaseException] = []

    def compute() -> Guardrail | None:
        threads.append(threading.current_thread())
        return _laptop_1b_long_context()

    guard(compute, parent=None, on_choice=choices.append, on_error=errors.append)
    qtbot.waitUntil(lambda: _shown_dialog() is not None)
    assert threads and threads[0] is not threading.main_thread()
    dialog = _shown_dialog()
    assert dialog is not None
    qtbot.mouseClick(_button(dialog, "guardrail-use-kv_q8_0"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(choices) == 1)
    assert choices[0].outcome == Outcome.OPTION and choices[0].option is not None
    assert errors == []


def test_guard_with_nothing_to_ask_goes_ahead_without_a_dialog(qtbot: QtBot) -> None:
    choices: list[GuardrailChoice] = []
    errors: list[BaseException] = []
    laptop = resolve_profile("laptop-8gb")
    guard(
        lambda: check(llama32_1b(), laptop, options=Requested(n_ctx=4096)),
        parent=None,
        on_choice=choices.append,
        on_error=errors.append,
    )
    qtbot.waitUntil(lambda: len(choices) == 1)
    assert choices == [GuardrailChoice(Outcome.CLEAR)] and errors == []
    assert _shown_dialog() is None


def test_guard_hands_a_failure_to_on_error(qtbot: QtBot) -> None:
    choices: list[GuardrailChoice] = []
    errors: list[BaseException] = []

    def broken() -> Guardrail | None:
        raise ValueError("n_ctx must be positive")

    guard(broken, parent=None, on_choice=choices.append, on_error=errors.append)
    qtbot.waitUntil(lambda: len(errors) == 1)
    assert isinstance(errors[0], ValueError) and choices == []


# --- the rendering: nothing clipped, nothing overlapping ------------------------------------------------


def _leaf_widgets(root: QWidget) -> list[QWidget]:
    return [
        w
        for w in root.findChildren(QWidget)
        if isinstance(w, QLabel | QAbstractButton) and w.isVisibleTo(root) and w.window() is root
    ]


def _rect_in(root: QWidget, w: QWidget) -> QRect:
    return QRect(w.mapTo(root, QPoint(0, 0)), w.size())


@pytest.mark.parametrize(
    "name",
    ["laptop-8b-q8-download", "laptop-1b-24k-load", "rtx4060-all-layers-load", "laptop-70b", "m2-step-up"],
)
def test_the_rendered_dialog_is_neither_clipped_nor_overlapping(qtbot: QtBot, name: str) -> None:
    build = {
        "laptop-8b-q8-download": _laptop_8b_q8,
        "laptop-1b-24k-load": _laptop_1b_long_context,
        "rtx4060-all-layers-load": _rtx4060_all_layers,
        "laptop-70b": lambda: check(llama33_70b(), resolve_profile("laptop-8gb")),
        "m2-step-up": _m2_step_up,
    }[name]
    g = build()
    assert g is not None
    dialog = _open(qtbot, g)
    dialog.adjustSize()
    qtbot.wait(10)
    leaves = _leaf_widgets(dialog)
    assert leaves
    inside = dialog.rect()
    for w in leaves:
        rect = _rect_in(dialog, w)
        assert inside.contains(rect), f"{w.objectName()} sticks out of the dialog: {rect} vs {inside}"
        if isinstance(w, QLabel) and w.wordWrap():
            need = w.heightForWidth(w.width())
            assert w.height() >= need, f"{w.objectName()} clipped: {w.height()} < {need} ({w.text()!r})"
        else:
            hint = w.sizeHint()
            assert w.width() >= hint.width(), f"{w.objectName()} clipped: {w.width()} < {hint.width()}"
        if isinstance(w, QLabel):
            assert w.text().strip(), f"{w.objectName()} is empty"
    for i, a in enumerate(leaves):
        for b in leaves[i + 1 :]:
            if a.isAncestorOf(b) or b.isAncestorOf(a):
                continue
            overlap = _rect_in(dialog, a).intersected(_rect_in(dialog, b))
            assert overlap.isEmpty(), f"{a.objectName()} overlaps {b.objectName()}"
    shots = os.environ.get("KAIHE_SHOTS_DIR")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        assert dialog.grab().save(str(Path(shots) / f"guardrail-{name}.png"))
