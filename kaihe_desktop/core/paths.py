"""Where KAIHE keeps things: platformdirs' per-user data dir, or KAIHE_HOME when set."""

from __future__ import annotations

import os
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
