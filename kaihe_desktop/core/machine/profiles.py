"""Shipped machine profiles: a 4 GB netbook up to an M3 Max, so any command can act as that machine.

A profile is a `Machine` saved as JSON (package data under `kaihe_desktop/data/profiles/`). `--profile`
takes either a shipped name ("m2-16gb") or the path of a profile file (e.g. one `kaihe hardware
--save-profile` wrote).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from kaihe_desktop.core.machine.spec import Machine, ProfileError


def profiles_dir() -> Path:
    return Path(str(resources.files("kaihe_desktop").joinpath("data", "profiles")))


def shipped_profiles() -> dict[str, Path]:
    """Shipped profile names ("laptop-8gb") and their files, sorted by name."""
    try:
        files = sorted(profiles_dir().glob("*.json"))
    except OSError:
        return {}
    return {path.stem: path for path in files}


def resolve_profile(name_or_path: str) -> Machine:
    """The machine a shipped profile name or a profile file describes; ProfileError if neither."""
    shipped = shipped_profiles()
    if name_or_path in shipped:
        return Machine.load(shipped[name_or_path])
    path = Path(name_or_path).expanduser()
    if path.exists():
        return Machine.load(path)
    names = ", ".join(shipped) or "none"
    raise ProfileError(f"no profile named {name_or_path!r}: not a file, and not a shipped profile ({names})")
