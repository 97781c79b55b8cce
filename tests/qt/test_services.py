"""Services: the Qt-free bundle the window is composed from, over a temporary KAIHE_HOME."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import kaihe_desktop.services as services_module
from kaihe_desktop.core.machine.tiers import Tier
from kaihe_desktop.services import Services, Settings


def test_services_import_no_qt() -> None:
    tree = ast.parse(Path(services_module.__file__).read_text(encoding="utf-8"))
    modules = [
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    ] + [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [m for m in modules if m.startswith(("PySide6", "shiboken6", "kaihe_desktop.qt"))]


def test_everything_lives_under_the_home(kaihe_home: Path) -> None:
    services = Services.create(home=kaihe_home, profile="rtx4060-16gb")
    assert services.library.root == kaihe_home
    assert services.queue.path == kaihe_home / "downloads.json"
    assert services.settings.path == kaihe_home / "settings.json"
    assert services.downloader().models_dir == kaihe_home / "models"
    history = services.open_history()
    try:
        assert history.path == kaihe_home / "history.sqlite3"
    finally:
        history.close()
    summary = services.machine_summary()
    assert summary.tier.tier is Tier.INTERMEDIATE and summary.profile == "rtx4060-16gb"
    assert services.catalog(summary.machine).machine is summary.machine


def test_the_status_snapshot_counts_queued_and_running_downloads(kaihe_home: Path) -> None:
    services = Services.create(home=kaihe_home)
    assert services.status_snapshot().active_downloads == 0
    services.queue.add("org/a-GGUF", "Q4_K_M")
    services.queue.add("org/b-GGUF", "Q8_0")
    services.queue.set_state("org/b-GGUF:Q8_0", "paused")
    snapshot = services.status_snapshot()
    assert snapshot.active_downloads == 1
    assert 0 < snapshot.ram_used_bytes < snapshot.ram_total_bytes


def test_settings_round_trip_and_a_damaged_file_is_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    settings = Settings(path)
    assert settings.get("window.page", "machine") == "machine"
    settings.update({"window.page": "models", "n": 3})
    assert Settings(path).as_dict() == {"window.page": "models", "n": 3}
    assert json.loads(path.read_text())["version"] == 1

    path.write_text("[1, 2", encoding="utf-8")
    assert Settings(path).as_dict() == {}
    assert [p.name for p in tmp_path.glob("settings.json.corrupt-*")]
