"""Settings (Ctrl+,): models folder, CPU threads, GPU offload, context, KV cache type, safety margin, offline
mode, Hugging Face sign-in, and the machine profile (read-only here; it is chosen on This machine).

Values are `services.Preferences`, kept in the Qt-free settings store. Signing in and out goes through
huggingface_hub (`login(token=...)` validates the token with whoami and saves it where huggingface_hub keeps
it; KAIHE never stores the token). Disk, network and settings writes run on workers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from kaihe_desktop.core.fit.kv_types import KVCacheType
from kaihe_desktop.core.hub.account import hub_sign_in, hub_sign_out, hub_user
from kaihe_desktop.core.paths import FolderSpace, folder_space
from kaihe_desktop.qt import format as fmt
from kaihe_desktop.qt.errors import ErrorPresenter, present
from kaihe_desktop.qt.workers import run_query
from kaihe_desktop.services import Preferences, Settings

GIB = 1024**3
MAX_CONTEXT = 1 << 20
MAX_THREADS = 256
KV_WORDS = {
    KVCacheType.F16: "f16 (llama.cpp's default)",
    KVCacheType.Q8_0: "q8_0 (half the memory, near-lossless)",
    KVCacheType.Q4_0: "q4_0 (a quarter of the memory)",
}
GPU_AUTO, GPU_ALL, GPU_LAYERS = 0, 1, 2
W = TypeVar("W", bound=QWidget)


# --- the dialog -----------------------------------------------------------------------------------------


class SettingsDialog(QDialog):
    def __init__(
        self,
        settings: Settings,
        *,
        default_models_dir: Path,
        profile: str | None,
        errors: ErrorPresenter,
        parent: QWidget | None = None,
        pick_folder: Callable[[QWidget, Path], Path | None] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("settings-dialog")
        self.setWindowTitle("Settings")
        self.setAccessibleName("settings")
        self.setMinimumWidth(620)
        self._settings = settings
        self._default_models_dir = default_models_dir
        self._errors = errors
        self._pick_folder = pick_folder or _pick_folder
        self.busy = 0
        prefs = Preferences.read(settings)
        self.initial = prefs
        layout = QVBoxLayout(self)

        # models and the engine
        engine = QGroupBox("Models and the engine", self)
        form = QFormLayout(engine)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        folder_row = QHBoxLayout()
        self.folder_edit = self._named(QLineEdit(str(prefs.models_dir or default_models_dir), engine),
                                       "settings-models-folder", "models folder")  # fmt: skip
        browse = self._named(
            QPushButton("Browse…", engine), "settings-models-browse", "choose the models folder"
        )
        browse.clicked.connect(self._browse)
        self.folder_edit.setCursorPosition(0)
        self.folder_edit.setToolTip("Where downloads go; a new folder is used from the next start")
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse)
        form.addRow("Models folder", folder_row)
        self.space_label = self._named(QLabel("…", engine), "settings-models-space", "free space")
        self.space_label.setWordWrap(False)
        form.addRow("", self.space_label)
        self.folder_edit.editingFinished.connect(self._read_space)

        self.threads_spin = self._named(QSpinBox(engine), "settings-threads", "CPU threads")
        self.threads_spin.setRange(0, MAX_THREADS)
        self.threads_spin.setToolTip(
            f"This computer has {os.cpu_count() or 'an unknown number of'} logical CPUs"
        )
        self.threads_spin.setSpecialValueText("Automatic")
        self.threads_spin.setValue(prefs.threads)
        form.addRow("CPU threads", self.threads_spin)

        gpu_row = QHBoxLayout()
        self.gpu_combo = self._named(QComboBox(engine), "settings-gpu-mode", "GPU offload")
        self.gpu_combo.addItems(["Automatic (the most layers that fit)", "All layers", "This many layers"])
        self.gpu_layers_spin = self._named(QSpinBox(engine), "settings-gpu-layers", "GPU layers")
        self.gpu_layers_spin.setRange(0, 999)
        self.gpu_layers_spin.setSuffix(" layers")
        mode = GPU_AUTO if prefs.gpu_layers is None else GPU_ALL if prefs.gpu_layers == -1 else GPU_LAYERS
        self.gpu_combo.setCurrentIndex(mode)
        self.gpu_layers_spin.setValue(prefs.gpu_layers if prefs.gpu_layers and prefs.gpu_layers > 0 else 0)
        self.gpu_layers_spin.setEnabled(mode == GPU_LAYERS)
        self.gpu_combo.currentIndexChanged.connect(lambda i: self.gpu_layers_spin.setEnabled(i == GPU_LAYERS))
        gpu_row.addWidget(self.gpu_combo, 1)
        gpu_row.addWidget(self.gpu_layers_spin)
        form.addRow("GPU offload", gpu_row)

        self.context_spin = self._named(QSpinBox(engine), "settings-context", "default context")
        self.context_spin.setRange(256, MAX_CONTEXT)
        self.context_spin.setSingleStep(1024)
        self.context_spin.setSuffix(" tokens")
        self.context_spin.setGroupSeparatorShown(True)
        self.context_spin.setValue(prefs.n_ctx)
        form.addRow("Default context", self.context_spin)

        self.kv_combo = self._named(QComboBox(engine), "settings-kv-type", "KV cache type")
        for kv in KVCacheType:
            self.kv_combo.addItem(KV_WORDS.get(kv, kv.value), kv.value)
        self.kv_combo.setCurrentIndex(max(0, self.kv_combo.findData(prefs.kv_type.value)))
        form.addRow("KV cache type", self.kv_combo)

        self.margin_spin = self._named(QDoubleSpinBox(engine), "settings-margin", "safety margin")
        self.margin_spin.setRange(0.0, 64.0)
        self.margin_spin.setDecimals(2)
        self.margin_spin.setSingleStep(0.25)
        self.margin_spin.setSuffix(" GiB")
        self.margin_spin.setValue(prefs.margin_bytes / GIB)
        self.margin_spin.setToolTip("Memory left free on each device when a model is planned")
        form.addRow("Safety margin", self.margin_spin)
        layout.addWidget(engine)

        # the Hub
        hub = QGroupBox("Hugging Face", self)
        hub_form = QFormLayout(hub)
        hub_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        self.offline_check = self._named(
            QCheckBox("Offline mode: never reach the Hub (browse the cache only)", hub),
            "settings-offline", "offline mode",
        )  # fmt: skip
        self.offline_check.setChecked(prefs.offline)
        hub_form.addRow(self.offline_check)
        self.account_label = self._named(
            QLabel("Checking…", hub), "settings-hub-account", "Hugging Face account"
        )
        self.account_label.setWordWrap(True)
        hub_form.addRow("Account", self.account_label)
        token_row = QHBoxLayout()
        self.token_edit = self._named(QLineEdit(hub), "settings-hub-token", "Hugging Face access token")
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("hf_… (an access token from huggingface.co/settings/tokens)")
        self.sign_in_button = self._named(QPushButton("Sign in", hub), "settings-hub-sign-in", "sign in")
        self.sign_out_button = self._named(QPushButton("Sign out", hub), "settings-hub-sign-out", "sign out")
        token_row.addWidget(self.token_edit, 1)
        token_row.addWidget(self.sign_in_button)
        token_row.addWidget(self.sign_out_button)
        hub_form.addRow("Token", token_row)
        self.sign_in_button.clicked.connect(self.sign_in)
        self.sign_out_button.clicked.connect(self.sign_out)
        self.token_edit.returnPressed.connect(self.sign_in)
        layout.addWidget(hub)

        # the machine
        machine = QGroupBox("Machine", self)
        machine_form = QFormLayout(machine)
        profile_text = (
            f"Acting as the saved profile “{profile}”. Choose another on This machine."
            if profile
            else "This machine, as probed. A saved profile can be chosen on This machine."
        )
        self.profile_label = self._named(QLabel(profile_text, machine), "settings-profile", "machine profile")
        self.profile_label.setWordWrap(True)
        machine_form.addRow("Profile", self.profile_label)
        layout.addWidget(machine)

        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.save_button = buttons.button(QDialogButtonBox.StandardButton.Save)
        self.save_button.setObjectName("settings-save")
        buttons.button(QDialogButtonBox.StandardButton.Cancel).setObjectName("settings-cancel")
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

        self._read_space()
        self.refresh_account()

    def _named(self, widget: W, name: str, accessible: str) -> W:
        widget.setObjectName(name)
        widget.setAccessibleName(accessible)
        return widget

    # --- values ---------------------------------------------------------------------------------------

    def preferences(self) -> Preferences:
        """What the dialog shows now, as Preferences."""
        folder = self.folder_edit.text().strip()
        default = str(self._default_models_dir)
        mode = self.gpu_combo.currentIndex()
        layers = None if mode == GPU_AUTO else -1 if mode == GPU_ALL else self.gpu_layers_spin.value()
        return Preferences(
            models_dir=folder if folder and folder != default else None,
            threads=self.threads_spin.value(),
            gpu_layers=layers,
            n_ctx=self.context_spin.value(),
            kv_type=KVCacheType(self.kv_combo.currentData()),
            margin_bytes=round(self.margin_spin.value() * GIB),
            offline=self.offline_check.isChecked(),
        )

    def save(self) -> None:
        prefs = self.preferences()

        def write() -> Preferences:
            prefs.save(self._settings)
            return prefs

        self._start()
        run_query(write, self._on_saved, self._on_save_failed, name="save settings")

    def _on_saved(self, prefs: Preferences) -> None:
        self._finish()
        prefs.apply_environment(was=self.initial)
        self.accept()

    def _on_save_failed(self, exc: BaseException) -> None:
        self._finish()
        self._errors.show(exc)

    # --- models folder --------------------------------------------------------------------------------

    def _browse(self) -> None:
        chosen = self._pick_folder(self, Path(self.folder_edit.text() or self._default_models_dir))
        if chosen is not None:
            self.folder_edit.setText(str(chosen))
            self._read_space()

    def _read_space(self) -> None:
        path = Path(self.folder_edit.text().strip() or self._default_models_dir)
        self._start()
        run_query(
            lambda: folder_space(path), self._on_space, self._on_space_failed, name="models folder space"
        )

    def _on_space(self, space: FolderSpace) -> None:
        self._finish()
        note = (
            "" if Path(self.folder_edit.text()) == self._default_models_dir else " (used from the next start)"
        )
        self.space_label.setText(
            f"{fmt.bytes_text(space.free_bytes)} free of {fmt.bytes_text(space.total_bytes)}{note}"
        )

    def _on_space_failed(self, exc: BaseException) -> None:
        self._finish()
        self.space_label.setText(f"Free space unknown: {exc}")

    # --- Hugging Face ---------------------------------------------------------------------------------

    def refresh_account(self) -> None:
        self._start()
        run_query(hub_user, self._on_account, self._on_account_failed, name="hub whoami")

    def sign_in(self) -> None:
        token = self.token_edit.text().strip()
        if not token:
            self.account_label.setText("Paste an access token first.")
            return
        self.account_label.setText("Signing in…")
        self.sign_in_button.setEnabled(False)
        self._start()
        run_query(lambda: hub_sign_in(token), self._on_signed_in, self._on_account_failed, name="hub login")

    def _on_signed_in(self, name: str) -> None:
        self.token_edit.clear()  # the token lives in huggingface_hub's token file, not in this window
        self._on_account(name)

    def sign_out(self) -> None:
        self._start()
        run_query(
            hub_sign_out, lambda _none: self._on_account(None), self._on_account_failed, name="hub logout"
        )

    def _on_account(self, name: str | None) -> None:
        self._finish()
        self.sign_in_button.setEnabled(True)
        self.sign_out_button.setEnabled(name is not None)
        self.account_label.setText(f"Signed in as {name}" if name else "Not signed in")

    def _on_account_failed(self, exc: BaseException) -> None:
        self._finish()
        self.sign_in_button.setEnabled(True)
        self.account_label.setText(present(exc).text)

    # --- workers in flight ----------------------------------------------------------------------------

    def _start(self) -> None:
        self.busy += 1

    def _finish(self) -> None:
        self.busy = max(0, self.busy - 1)


def _pick_folder(parent: QWidget, start: Path) -> Path | None:
    chosen = QFileDialog.getExistingDirectory(parent, "Models folder", str(start))
    return Path(chosen) if chosen else None
