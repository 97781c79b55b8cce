"""Checks for names the user types: Hub repo ids, local paths and library display names.

Why here: each command used to hand the raw text to huggingface_hub or the file system, and a bad name came
back as their exception (HFValidationError, ``OSError: File name too long``) with a traceback. These checks
run first and say in one line which rule the name breaks.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from kaihe_desktop.core.errors import InvalidNameError

MAX_COMPONENT_BYTES = 255  # NAME_MAX on Linux, macOS and Windows file systems
MAX_PATH_BYTES = 4096  # PATH_MAX on Linux
MAX_DISPLAY_NAME_CHARS = 200
SHOWN_CHARS = 60


def shown(text: str) -> str:
    """The name as a message quotes it: repr (control characters visible), cut when very long."""
    if len(text) <= SHOWN_CHARS:
        return repr(text)
    return f"{text[:SHOWN_CHARS]!r}... ({len(text)} characters)"


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")


def control_chars(text: str) -> list[str]:
    """The control (and other invisible format) characters in ``text``, as escapes like '\\n'."""
    found: list[str] = []
    for ch in text:
        if _is_control(ch) and ch not in found:
            found.append(ch)
    return [repr(ch)[1:-1] for ch in found]


def escape_controls(text: str) -> str:
    """``text`` with each control character written as its escape, so it stays on one line."""
    return "".join(repr(ch)[1:-1] if _is_control(ch) else ch for ch in text)


def check_path_text(text: str | os.PathLike[str], *, what: str = "path") -> Path:
    """``text`` as a Path, or InvalidNameError when no file system could hold it (too long, NUL byte)."""
    raw = os.fspath(text)
    if "\0" in raw:
        raise InvalidNameError(f"{shown(raw)} is not a usable {what}: it contains a NUL character")
    try:
        encoded = os.fsencode(raw)
    except UnicodeEncodeError as exc:
        raise InvalidNameError(f"{shown(raw)} is not a usable {what}: {exc.reason}") from exc
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidNameError(
            f"{shown(raw)} is not a usable {what}: it is {len(encoded)} bytes long, "
            f"over the {MAX_PATH_BYTES}-byte limit of file system paths"
        )
    for part in encoded.split(b"/"):
        if len(part) > MAX_COMPONENT_BYTES:
            raise InvalidNameError(
                f"{shown(raw)} is not a usable {what}: one of its names is {len(part)} bytes long, "
                f"over the {MAX_COMPONENT_BYTES}-byte limit of file systems"
            )
    return Path(raw)


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if the Hub would accept it as OWNER/NAME; otherwise InvalidNameError naming the rule."""
    text = repo_id.strip()
    bad = control_chars(text)
    if bad:
        raise InvalidNameError(
            f"{shown(text)} is not a Hub repo id: it contains control characters ({', '.join(bad)})"
        )
    if text.count("/") != 1:
        raise InvalidNameError(f"{shown(text)} is not a Hub repo id: expected OWNER/NAME")
    if not text.isascii():  # older huggingface_hub releases let non-ASCII through; the Hub does not
        raise InvalidNameError(
            f"{shown(text)} is not a Hub repo id: only ASCII letters, digits, '-', '_' and '.' are allowed"
        )
    try:
        validate_repo_id(text)
    except HFValidationError as exc:
        rule = " ".join(str(exc).split()).rstrip(".")
        rule = rule.replace(f": '{text}'", "").replace(f" '{text}'", "")
        rule = rule[:1].lower() + rule[1:]
        raise InvalidNameError(f"{shown(text)} is not a Hub repo id: {rule}") from exc
    return text


def check_display_name(name: str) -> str:
    """A library display name: printable (tables and menus show it on one line) and at most 200 characters."""
    text = name.strip()
    if not text:
        raise InvalidNameError("a model name cannot be empty")
    bad = control_chars(text)
    if bad:
        raise InvalidNameError(
            f"the name {shown(text)} contains control characters ({', '.join(bad)}); use printable characters"
        )
    if len(text) > MAX_DISPLAY_NAME_CHARS:
        raise InvalidNameError(
            f"the name {shown(text)} is too long: at most {MAX_DISPLAY_NAME_CHARS} characters"
        )
    return text


__all__ = [
    "check_display_name",
    "check_path_text",
    "check_repo_id",
    "control_chars",
    "escape_controls",
    "shown",
]
