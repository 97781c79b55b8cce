"""Session-wide isolation and shared fixtures.

Runs before any test module imports huggingface_hub (which reads HF_ENDPOINT and HF_HOME once, at import),
so the environment is set here at import time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_SESSION_ROOT = Path(tempfile.mkdtemp(prefix="kaihe-tests-"))
os.environ["KAIHE_HOME"] = str(_SESSION_ROOT / "kaihe-home")
os.environ["HF_HOME"] = str(_SESSION_ROOT / "hf-home")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.pop("HF_TOKEN", None)
os.environ.pop("HF_HUB_OFFLINE", None)

# Fixture modules shared across test files (each owned by the part of the code it serves).
pytest_plugins: list[str] = ["tests.helpers.hub_fixtures", "tests.helpers.model_fixtures"]

STARTER_CACHE = Path(os.environ.get("KAIHE_TEST_CACHE", Path.home() / ".cache" / "kaihe-tests"))


@pytest.fixture(scope="session")
def session_root() -> Path:
    return _SESSION_ROOT


@pytest.fixture(scope="session")
def starter_model_path() -> Path:
    """The real starter model (Gemma 3 270M Q4_K_M, 253 MB), assembled once and reused across sessions."""
    from kaihe_desktop.core.starter import starter_model_path as assemble

    return assemble(STARTER_CACHE)


@pytest.fixture
def kaihe_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh KAIHE_HOME for one test."""
    home = tmp_path / "kaihe-home"
    monkeypatch.setenv("KAIHE_HOME", str(home))
    yield home
