"""The guardrail before a download or a load: the numbers, the upgrade advice, and ways to make it fit.

Shown when core.fit.guardrails.check returns a Guardrail: needs X / has Y / leaves Z on the device that is
short (or tight, for a step up), the upgrade advice in words, one row per make-it-fit option with its own
memory and speed and a "Use this" button, and a visible "Download anyway (needs X, has Y)" / "Load anyway"
button with the numbers on it, never a hidden modifier key. Cancel is the default button: Enter cancels.

The dialog only shows a ready Guardrail. ``guard`` computes it off the GUI thread (workers.run_query) and
opens the dialog only when there is something to ask; the caller gets one GuardrailChoice either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QGridLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from kaihe_desktop.core.fit.guardrails import FitOption, Guardrail, Trigger
from kaihe_desktop.qt import format as fmt
from kaihe_desktop.qt.workers import Job, run_query

DIALOG_WIDTH = 620


class Outcome(Enum):
    CLEAR = "clear"  # nothing to ask: go ahead as requested
    PROCEED = "proceed"  # "... anyway": go ahead as requested, past the guardrail (force the load)
    OPTION = "option"  # go ahead with the chosen make-it-fit option instead
    CANCEL = "cancel"


@dataclass(frozen=True)
class GuardrailChoice:
    outcome: Outcome
    option: FitOption | None = None  # set for Outcome.OPTION
    guardrail: Guardrail | None = None  # what was shown (None for CLEAR)


class GuardrailDialog(QDialog):
    """Shows one Guardrail; ``choice`` says what the user picked once it is finished (Cancel until then)."""

    chosen = Signal(object)  # the GuardrailChoice, once, when the dialog finishes

    def __init__(self, guardrail: Guardrail, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.guardrail = guardrail
        self._choice = GuardrailChoice(Outcome.CANCEL, guardrail=guardrail)
        self.setObjectName("guardrail-dialog")
        self.setWindowTitle(fmt.guardrail_title(guardrail))
        self.setAccessibleName(fmt.guardrail_title(guardrail))
        self.setMinimumWidth(DIALOG_WIDTH)

        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        self.heading_label = QLabel(fmt.guardrail_title(guardrail), self)
        self.heading_label.setObjectName("guardrail-heading")
        font = self.heading_label.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.heading_label.setFont(font)
        layout.addWidget(self.heading_label)
        self.summary_label = self._wrapped(fmt.guardrail_summary(guardrail), "guardrail-summary")
        layout.addWidget(self.summary_label)
        layout.addLayout(self._numbers())
        self.upgrade_label = self._wrapped(fmt.guardrail_upgrade(guardrail), "guardrail-upgrade")
        layout.addWidget(self.upgrade_label)
        notes = fmt.guardrail_notes(guardrail)
        self.notes_label: QLabel | None = None
        if notes:
            self.notes_label = self._wrapped("\n".join(f"• {note}" for note in notes), "guardrail-notes")
            layout.addWidget(self.notes_label)
        layout.addWidget(self._options_box())

        buttons = QDialogButtonBox(self)
        buttons.setObjectName("guardrail-buttons")
        self.proceed_button = QPushButton(fmt.guardrail_proceed_label(guardrail), self)
        self.proceed_button.setObjectName("guardrail-proceed")
        self.proceed_button.setAccessibleName(fmt.guardrail_proceed_label(guardrail))
        self.proceed_button.setAutoDefault(False)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("guardrail-cancel")
        self.cancel_button.setAccessibleName("Cancel")
        buttons.addButton(self.proceed_button, QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.RejectRole)
        self.proceed_button.clicked.connect(self._proceed)
        self.cancel_button.clicked.connect(self.reject)
        layout.addWidget(buttons)
        # Cancel is the default: Enter cancels, wherever the focus is
        self.cancel_button.setAutoDefault(True)
        self.cancel_button.setDefault(True)
        self.cancel_button.setFocus(Qt.FocusReason.OtherFocusReason)
        self.finished.connect(lambda _result: self.chosen.emit(self._choice))

    @property
    def choice(self) -> GuardrailChoice:
        return self._choice

    # --- size: a window does not ask its wrapped labels how tall they are at its width; this one does ---

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        width = max(DIALOG_WIDTH, hint.width())
        height = self.heightForWidth(width)
        return QSize(width, height if height > 0 else hint.height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        height = self.heightForWidth(event.size().width())
        if height > 0 and height != self.minimumHeight():
            self.setMinimumHeight(height)

    # --- parts -------------------------------------------------------------------------------------------

    def _wrapped(self, text: str, name: str) -> QLabel:
        label = QLabel(text, self)
        label.setObjectName(name)
        label.setWordWrap(True)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        return label

    def _numbers(self) -> QGridLayout:
        needs, has, leaves = fmt.guardrail_numbers(self.guardrail)
        grid = QGridLayout()
        grid.setHorizontalSpacing(16)
        self.number_labels: dict[str, QLabel] = {}
        for row, (key, caption, value) in enumerate(
            (("needs", "Needs", needs), ("has", "Has", has), ("leaves", "Leaves", leaves))
        ):
            head = QLabel(caption, self)
            head.setObjectName(f"guardrail-{key}-caption")
            font = head.font()
            font.setBold(True)
            head.setFont(font)
            shown = QLabel(value, self)
            shown.setObjectName(f"guardrail-{key}")
            shown.setAccessibleName(f"{caption}: {value}")
            shown.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            head.setBuddy(shown)
            grid.addWidget(head, row, 0)
            grid.addWidget(shown, row, 1)
            self.number_labels[key] = shown
        grid.setColumnStretch(1, 1)
        return grid

    def _options_box(self) -> QGroupBox:
        step_up = self.guardrail.trigger == Trigger.STEP_UP
        box = QGroupBox("Or take more room" if step_up else "Make it fit", self)
        box.setObjectName("guardrail-options")
        grid = QGridLayout(box)
        grid.setHorizontalSpacing(12)
        grid.setVerticalSpacing(8)
        self.option_buttons: list[QPushButton] = []
        if not self.guardrail.options:
            none = self._wrapped(
                "Nothing this machine can change makes it fit with the safety margin: a smaller model, "
                "or the hardware above, would.",
                "guardrail-no-options",
            )
            grid.addWidget(none, 0, 0)
            return box
        for i, option in enumerate(self.guardrail.options):
            title, detail = fmt.fit_option_title(option), fmt.fit_option_detail(option)
            row = 3 * i  # title, numbers, a rule under them (but the last)
            head = QLabel(title, box)
            head.setObjectName(f"guardrail-option-{i}-title")
            font = head.font()
            font.setBold(True)
            head.setFont(font)
            numbers = QLabel(detail, box)
            numbers.setObjectName(f"guardrail-option-{i}-detail")
            numbers.setWordWrap(True)
            use = QPushButton("Use this", box)
            use.setObjectName(f"guardrail-use-{option.change.value}")
            use.setAccessibleName(f"Use this: {title}; {detail}")
            use.setToolTip(f"{title}: {detail}")
            use.setAutoDefault(False)
            use.clicked.connect(lambda _checked=False, chosen=option: self._take(chosen))
            grid.addWidget(head, row, 0)
            grid.addWidget(numbers, row + 1, 0)
            grid.addWidget(use, row, 1, 2, 1, Qt.AlignmentFlag.AlignVCenter)
            if i < len(self.guardrail.options) - 1:
                line = QFrame(box)
                line.setFrameShape(QFrame.Shape.HLine)
                line.setFrameShadow(QFrame.Shadow.Sunken)
                grid.addWidget(line, row + 2, 0, 1, 2)
            self.option_buttons.append(use)
        grid.setColumnStretch(0, 1)
        return box

    # --- outcomes ----------------------------------------------------------------------------------------

    def _take(self, option: FitOption) -> None:
        self._choice = GuardrailChoice(Outcome.OPTION, option=option, guardrail=self.guardrail)
        self.accept()

    def _proceed(self) -> None:
        self._choice = GuardrailChoice(Outcome.PROCEED, guardrail=self.guardrail)
        self.accept()

    def reject(self) -> None:
        self._choice = GuardrailChoice(Outcome.CANCEL, guardrail=self.guardrail)
        super().reject()


def guard(
    compute: Callable[[], Guardrail | None],
    *,
    parent: QWidget | None,
    on_choice: Callable[[GuardrailChoice], object],
    on_error: Callable[[BaseException], object],
    name: str = "guardrail check",
) -> Job:
    """Run ``compute`` (e.g. ``lambda: guardrails.check(meta, machine, options=...)``) off the GUI thread;
    nothing to ask: ``on_choice(CLEAR)`` at once; else open the dialog (window-modal) and hand its choice on.
    """

    def done(result: Guardrail | None) -> None:
        if result is None:
            on_choice(GuardrailChoice(Outcome.CLEAR))
            return
        dialog = GuardrailDialog(result, parent)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.chosen.connect(on_choice)
        dialog.open()

    return run_query(compute, done, on_error, name=name)


__all__ = ["GuardrailChoice", "GuardrailDialog", "Outcome", "guard"]
