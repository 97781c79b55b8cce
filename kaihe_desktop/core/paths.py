"""Where KAIHE keeps things: platformdirs' per-user data dir, or KAIHE_HOME when set."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "kaihe"


def home() -> Path:
    """The root of everything KAIHE writes. KAIHE_HOME overrides the platform default."""
    override = os.environ.get("KAIHE_HOME")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def models_dir() -> Path:
    return home() / "models"


def cache_dir() -> Path:
    return home() / "cache"


def history_db() -> Path:
    return home() / "history.sqlite3"


def ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest existing parent: where a folder not made yet would take its space from."""
    probe = path.expanduser()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return probe


@dataclass(frozen=True)
class FolderSpace:
    path: Path
    free_bytes: int
    total_bytes: int


def folder_space(path: Path) -> FolderSpace:
    """Free and total space of the disk ``path`` is (or would be) on."""
    usage = shutil.disk_usage(nearest_existing(path))
    return FolderSpace(path, int(usage.free), int(usage.total))
