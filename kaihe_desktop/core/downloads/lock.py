"""One writer per download: an exclusive lock per partial file, held for the whole download.

Two processes writing one ``<sha256>.part`` corrupt it (one truncates it when a server ignores Range while
the other keeps writing at its offset), so every partial key has a lock file in ``<models>/.locks/`` and a
download holds the locks of all its files, shards shared with other variants included. The OS drops a lock
when its holder dies, SIGKILL included: a free lock means nobody is writing, whatever the queue file says.
The holder's pid is kept in a ``.pid`` file beside the lock (filelock truncates the lock file on every
attempt, so the lock file cannot carry it).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import psutil
from filelock import FileLock, Timeout

from kaihe_desktop.core.errors import DownloadInProgressError

LOCK_DIR = ".locks"
ACQUIRE_WAIT_S = 0.5  # rides over another process's brief probe (is_downloading) without refusing
OWNER_WAIT_S = 1.0  # a new holder writes its pid right after it gets the lock
ALREADY = "{what} is already being downloaded by {owner}; wait for it to finish or stop it first"
STOP_FIRST = "{what} is being downloaded by {owner}; stop it first"


def locks_dir(models_dir: Path) -> Path:
    return models_dir / LOCK_DIR


class DownloadLock:
    """The locks of some partial keys, taken together or not at all; reentrant, usable across threads."""

    def __init__(self, directory: Path, keys: Iterable[str], *, what: str, refusal: str = ALREADY) -> None:
        self.directory = directory
        self.keys = tuple(sorted(set(keys)))
        self.what = what
        self.refusal = refusal
        self._locks = [FileLock(str(directory / f"{k}.lock"), thread_local=False) for k in self.keys]
        self._depth = 0
        self._guard = threading.Lock()

    @property
    def held(self) -> bool:
        return self._depth > 0

    def acquire(self) -> DownloadLock:
        """Take every lock, or DownloadInProgressError naming the process that holds one."""
        with self._guard:
            if self._depth:
                self._depth += 1
                return self
            self.directory.mkdir(parents=True, exist_ok=True)
            taken: list[FileLock] = []
            for key, lock in zip(self.keys, self._locks, strict=True):
                try:
                    lock.acquire(timeout=ACQUIRE_WAIT_S)
                except Timeout:
                    for got in reversed(taken):
                        got.release()
                    raise self._refused(_owner(self.directory, key)) from None
                taken.append(lock)
            for key in self.keys:
                _write_pid(self.directory / f"{key}.pid")
            self._depth = 1
            return self

    def release(self) -> None:
        with self._guard:
            if not self._depth:
                return
            self._depth -= 1
            if self._depth:
                return
            for key, lock in zip(self.keys, self._locks, strict=True):
                with contextlib.suppress(OSError):
                    (self.directory / f"{key}.pid").unlink()
                lock.release()

    def _refused(self, pid: int | None) -> DownloadInProgressError:
        owner = f"process {pid}" if pid is not None else "another process"
        return DownloadInProgressError(self.refusal.format(what=self.what, owner=owner), pid=pid)

    def __enter__(self) -> DownloadLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def is_downloading(directory: Path, keys: Iterable[str]) -> bool:
    """Whether some live process holds the lock of any of these partial keys (a quick probe)."""
    return _busy_key(directory, keys) is not None


def ensure_not_downloading(
    directory: Path, keys: Iterable[str], *, what: str, refusal: str = STOP_FIRST
) -> None:
    """DownloadInProgressError when a download of any of these partial keys is running."""
    busy = _busy_key(directory, keys)
    if busy is not None:
        pid = _owner(directory, busy)
        owner = f"process {pid}" if pid is not None else "another process"
        raise DownloadInProgressError(refusal.format(what=what, owner=owner), pid=pid)


def _busy_key(directory: Path, keys: Iterable[str]) -> str | None:
    for key in sorted(set(keys)):
        path = directory / f"{key}.lock"
        if not path.exists():
            continue
        probe = FileLock(str(path), thread_local=False)
        try:
            probe.acquire(timeout=0)
        except Timeout:
            return key
        probe.release()
    return None


def pid_alive(pid: int) -> bool:
    return pid == os.getpid() or psutil.pid_exists(pid)


def _write_pid(path: Path) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(str(os.getpid()), encoding="ascii")
    os.replace(tmp, path)


def _owner(directory: Path, key: str) -> int | None:
    """The pid of the lock's holder; None when it cannot be told (it died, or has not written it yet)."""
    deadline = time.monotonic() + OWNER_WAIT_S
    while True:
        try:
            pid = int((directory / f"{key}.pid").read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            pid = None
        if pid is not None and pid_alive(pid):
            return pid
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


__all__ = [
    "ALREADY",
    "LOCK_DIR",
    "STOP_FIRST",
    "DownloadLock",
    "ensure_not_downloading",
    "is_downloading",
    "locks_dir",
    "pid_alive",
]
