"""A full disk for json_store writes, without root: the temp file is real, its first write fails like the
kernel's ENOSPC (or EDQUOT). Every state write goes through `json_store`, so this fills the disk for all."""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable

import pytest

from kaihe_desktop.core import json_store


class _FullFile(io.FileIO):
    """A real open file whose writes fail the way a full disk's do."""

    def __init__(self, fd: int, code: int) -> None:
        super().__init__(fd, "wb")
        self._code = code

    def write(self, data: object) -> int:  # type: ignore[override]
        raise OSError(self._code, os.strerror(self._code))


def fill_the_disk(monkeypatch: pytest.MonkeyPatch, *, code: int = errno.ENOSPC) -> Callable[[], None]:
    """From now on (this test only) every json_store write hits ``code``; call the result to free space.

    (Not ``monkeypatch.undo()``: that would also undo the test's KAIHE_HOME.)
    """
    opener = json_store._open_temp
    monkeypatch.setattr(json_store, "_open_temp", lambda fd: _FullFile(fd, code))
    return lambda: monkeypatch.setattr(json_store, "_open_temp", opener)


def stray_temp_files(folder: os.PathLike[str] | str) -> list[str]:
    """json_store temp files left anywhere under ``folder`` (there must never be any)."""
    found = []
    for root, _dirs, files in os.walk(folder):
        found += [os.path.join(root, f) for f in files if f.endswith(json_store.TEMP_SUFFIX)]
    return found
