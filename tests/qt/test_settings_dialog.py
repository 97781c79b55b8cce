"""Settings: Ctrl+, opens it; values round-trip through the Qt-free settings store; Hugging Face sign-in and
sign-out through huggingface_hub against the local test Hub (login checks the token with its whoami)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import huggingface_hub
import pytest
from PySide6.QtGui import QKeySequence
from pytestqt.qtbot import QtBot

from kaihe_desktop.core.fit.kv_types import KVCacheType
from kaihe_desktop.qt.dialogs.settings import SettingsDialog
from kaihe_desktop.qt.errors import ErrorPresenter
from kaihe_desktop.qt.main_window import MainWindow
from kaihe_desktop.services import SETTINGS_NAME, Preferences, Services, Settings
from tests.helpers.hub_server import DEFAULT_TOKEN, HubServer

SHOTS = Path("/tmp/shots-models")


@pytest.fixture
def signed_out() -> Iterator[None]:
    """No token saved before or after (huggingface_hub keeps it under the session's HF_HOME)."""
    huggingface_hub.logout()
    yield
    huggingface_hub.logout()


@pytest.fixture
def offline_env() -> Iterator[None]:
    before = os.environ.pop("HF_HUB_OFFLINE", None)
    yield
    os.environ.pop("HF_HUB_OFFLINE", None)
    if before is not None:
        os.environ["HF_HUB_OFFLINE"] = before


def _dialog(qtbot: QtBot, services: Services) -> SettingsDialog:
    dialog = SettingsDialog(
        services.settings,
        default_models_dir=services.home / "models",
        profile=services.profile,
        errors=ErrorPresenter(),
    )
    qtbot.addWidget(dialog)
    dialog.show()
    _settle(qtbot, dialog)
    return dialog


def _settle(qtbot: QtBot, dialog: SettingsDialog) -> None:
    qtbot.waitUntil(lambda: dialog.busy == 0, timeout=15_000)


def test_ctrl_comma_opens_settings(
    qtbot: QtBot, services: Services, make_window: Callable[[Services], MainWindow], signed_out: None
) -> None:
    window = make_window(services)
    assert window.settings_action.shortcut() == QKeySequence("Ctrl+,")
    assert not window.windowIcon().isNull()  # the app icon
    window.settings_action.trigger()
    qtbot.waitUntil(lambda: window.findChild(SettingsDialog) is not None, timeout=5_000)
    dialog = window.findChild(SettingsDialog)
    assert dialog is not None and dialog.isVisible()
    _settle(qtbot, dialog)
    assert "rtx4060-16gb" in dialog.profile_label.text()
    dialog.reject()


def test_values_round_trip_through_the_settings_store(
    qtbot: QtBot, services: Services, tmp_path: Path, signed_out: None, offline_env: None
) -> None:
    dialog = _dialog(qtbot, services)
    # the defaults, shown
    assert dialog.folder_edit.text() == str(services.home / "models")
    assert dialog.threads_spin.text() == "Automatic"
    assert dialog.gpu_combo.currentIndex() == 0 and not dialog.gpu_layers_spin.isEnabled()
    assert dialog.context_spin.value() == 8192
    assert dialog.kv_combo.currentData() == "f16"
    assert dialog.margin_spin.value() == 1.0
    assert "free of" in dialog.space_label.text()
    assert dialog.account_label.text() == "Not signed in"
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert dialog.grab().save(str(SHOTS / "settings.png"))

    folder = tmp_path / "elsewhere" / "models"
    dialog.folder_edit.setText(str(folder))
    dialog.threads_spin.setValue(6)
    dialog.gpu_combo.setCurrentIndex(2)
    assert dialog.gpu_layers_spin.isEnabled()
    dialog.gpu_layers_spin.setValue(20)
    dialog.context_spin.setValue(16384)
    dialog.kv_combo.setCurrentIndex(dialog.kv_combo.findData("q8_0"))
    dialog.margin_spin.setValue(1.5)
    dialog.offline_check.setChecked(True)
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):
        dialog.save_button.click()

    expected = Preferences(
        models_dir=str(folder), threads=6, gpu_layers=20, n_ctx=16384, kv_type=KVCacheType.Q8_0,
        margin_bytes=int(1.5 * 2**30), offline=True,
    )  # fmt: skip
    assert Preferences.read(services.settings) == expected
    assert Preferences.read(Settings(services.home / SETTINGS_NAME)) == expected  # on disk
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    # the next start uses the new models folder
    assert Services.create(home=services.home, profile=services.profile).library.models_dir == folder

    again = _dialog(qtbot, services)
    assert again.preferences() == expected
    assert again.gpu_layers_spin.value() == 20 and again.offline_check.isChecked()
    assert "next start" in again.space_label.text()
    again.gpu_combo.setCurrentIndex(1)  # all layers
    again.offline_check.setChecked(False)
    with qtbot.waitSignal(again.accepted, timeout=10_000):
        again.save_button.click()
    assert Preferences.read(services.settings).gpu_layers == -1
    assert "HF_HUB_OFFLINE" not in os.environ


def test_bad_values_in_the_store_read_as_defaults(services: Services) -> None:
    services.settings.update(
        {"prefs.threads": "many", "prefs.kv_type": "q3_k", "prefs.n_ctx": -5, "prefs.gpu_layers": True}
    )
    assert Preferences.read(services.settings) == Preferences()


def test_sign_in_and_out_against_the_local_hub(
    qtbot: QtBot, services: Services, hub: HubServer, signed_out: None
) -> None:
    dialog = _dialog(qtbot, services)
    assert dialog.account_label.text() == "Not signed in"
    assert not dialog.sign_out_button.isEnabled()

    dialog.token_edit.setText("not-a-token")  # the test Hub's whoami refuses it (HTTP 401)
    dialog.sign_in_button.click()
    _settle(qtbot, dialog)
    assert dialog.account_label.text().startswith("The Hugging Face token was refused")
    assert huggingface_hub.get_token() is None

    dialog.token_edit.setText(DEFAULT_TOKEN)
    dialog.sign_in_button.click()
    _settle(qtbot, dialog)
    assert dialog.account_label.text() == "Signed in as kaihe-tester"
    assert dialog.token_edit.text() == ""  # the window keeps no copy
    assert huggingface_hub.get_token() == DEFAULT_TOKEN  # saved by huggingface_hub, in its token file
    saved = services.home / SETTINGS_NAME
    assert not saved.exists() or DEFAULT_TOKEN not in saved.read_text()
    assert dialog.sign_out_button.isEnabled()

    reopened = _dialog(qtbot, services)  # asks whoami with the saved token
    assert reopened.account_label.text() == "Signed in as kaihe-tester"

    reopened.sign_out_button.click()
    _settle(qtbot, reopened)
    assert reopened.account_label.text() == "Not signed in"
    assert huggingface_hub.get_token() is None
