"""The pieces of a download that touch bytes: the writer handed to the GET (writes, honours cancel, turns a
full disk into DiskFullError), the progress meter, and the hashes of files as they are on disk."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from huggingface_hub.utils.sha import git_hash

from kaihe_desktop.core.errors import DiskFullError, DownloadCancelled, DownloadError
from kaihe_desktop.core.hub.variants import RepoFile

# huggingface_hub writes what it receives in DOWNLOAD_CHUNK_SIZE pieces (10 MiB by default): whatever sits
# in that buffer is lost when the process is killed. 1 MiB keeps a SIGKILL's loss small, at no speed cost.
WRITE_CHUNK = 1024 * 1024
# Written bytes are flushed to the disk in the background every this many, so the fsync before the
# read-back verification is short.
WRITEBACK_EVERY = 32 * 1024 * 1024
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@dataclass(frozen=True)
class DownloadProgress:
    """A snapshot for progress bars: the current file and the whole variant, in bytes on disk."""

    repo_id: str
    file: str  # path in the repo
    file_index: int  # 1-based
    file_count: int
    file_done: int
    file_total: int
    done_bytes: int  # whole variant, resumed bytes included
    total_bytes: int
    fetched_bytes: int  # bytes fetched by this run (what speed is computed from)
    speed_bps: float
    eta_s: float | None
    phase: str  # "download", "verify" or "done"

    @property
    def fraction(self) -> float:
        return self.done_bytes / self.total_bytes if self.total_bytes else 1.0


ProgressCallback = Callable[[DownloadProgress], None]


class PartWriter:
    """The file object handed to the GET: writes, reports progress, honours cancel, turns ENOSPC into
    DiskFullError.

    It does not hash: what admits a file is the sha256 of the part file read back from disk after the last
    write (``sha256_file``), not of the bytes that went through the socket, so a second writer or a bad
    disk cannot get a corrupt file approved. The GET rewinds and truncates it when a server ignores Range.
    """

    def __init__(
        self,
        fh: IO[bytes],
        *,
        have: int,
        on_bytes: Callable[[int], None],
        cancel: threading.Event | None,
        what: str,
    ) -> None:
        self._fh = fh
        self._on_bytes = on_bytes
        self._cancel = cancel
        self._what = what
        self.position = have
        self.written_now = 0
        self._unsynced = 0
        self._syncer: threading.Thread | None = None

    def write(self, data: bytes) -> int:
        if self._cancel is not None and self._cancel.is_set():
            raise DownloadCancelled(f"{self._what}: download paused; the partial file is kept for resume")
        try:
            self._fh.write(data)
        except OSError as exc:
            if exc.errno in DISK_FULL_ERRNOS:
                raise DiskFullError(
                    f"the disk filled up while writing {self._what} ({exc.strerror}); "
                    "the partial download is kept: free some space and run the download again"
                ) from exc
            raise
        self.position += len(data)
        self.written_now += len(data)
        self._unsynced += len(data)
        if self._unsynced >= WRITEBACK_EVERY:
            self._start_writeback()
        self._on_bytes(len(data))
        return len(data)

    def _start_writeback(self) -> None:
        """Flush what is written so far to the disk in the background, so the final fsync (which the
        verification waits for) has little left to do. One at a time; on a duplicate descriptor, so closing
        the file never races it."""
        if self._syncer is not None and self._syncer.is_alive():
            return
        self._fh.flush()
        self._unsynced = 0
        fd = os.dup(self._fh.fileno())

        def sync() -> None:
            try:
                (os.fdatasync if hasattr(os, "fdatasync") else os.fsync)(fd)
            except OSError:
                pass  # the final fsync reports what matters
            finally:
                os.close(fd)

        self._syncer = threading.Thread(target=sync, name="kaihe-writeback", daemon=True)
        self._syncer.start()

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        self._fh.flush()
        self.position = self._fh.seek(offset, whence)
        return self.position

    def truncate(self, size: int | None = None) -> int:
        self._fh.flush()
        new_size = self._fh.truncate(self.position if size is None else size)
        if new_size != 0:
            raise DownloadError(f"{self._what}: cannot restart the download from byte {new_size}")
        # the server ignored Range: the file starts over
        self._on_bytes(-self.written_now)
        self.written_now = 0
        return new_size

    def flush(self) -> None:
        self._fh.flush()


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class ProgressMeter:
    """Overall progress and a speed over the last few seconds."""

    def __init__(self, *, repo_id: str, files: Sequence[RepoFile], callback: ProgressCallback | None) -> None:
        self.repo_id = repo_id
        self.files = files
        self.total = sum(f.size_bytes for f in files)
        self.callback = callback
        self.done_before = 0  # completed files
        self.file_done = 0
        self.index = 0
        self.fetched = 0
        self._window: deque[tuple[float, int]] = deque()
        self._last_emit = 0.0

    def start_file(self, index: int, have: int) -> None:
        self.index = index
        self.file_done = have

    def finish_file(self) -> None:
        self.done_before += self.files[self.index].size_bytes
        self.file_done = 0

    def add(self, n: int) -> None:
        self.file_done += n
        self.fetched += n
        now = time.monotonic()
        self._window.append((now, self.fetched))
        while len(self._window) > 2 and now - self._window[0][0] > 3.0:
            self._window.popleft()
        if now - self._last_emit >= 0.1:
            self.emit("download")

    def speed(self) -> float:
        if len(self._window) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._window[0], self._window[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def emit(self, phase: str) -> None:
        if self.callback is None:
            return
        self._last_emit = time.monotonic()
        speed = self.speed()
        done = self.done_before + self.file_done
        remaining = self.total - done
        current = self.files[self.index] if self.files else None
        self.callback(
            DownloadProgress(
                repo_id=self.repo_id,
                file=current.path if current else "",
                file_index=self.index + 1,
                file_count=len(self.files),
                file_done=self.file_done,
                file_total=current.size_bytes if current else 0,
                done_bytes=done,
                total_bytes=self.total,
                fetched_bytes=self.fetched,
                speed_bps=speed,
                eta_s=remaining / speed if speed > 0 else None,
                phase=phase,
            )
        )


def sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def sync_and_hash(fh: IO[bytes], path: Path) -> str:
    """fsync ``fh`` and, meanwhile, the sha256 of ``path`` read back after the last write to it.

    The hash reads the page cache, so it overlaps the fsync instead of adding to it; both are done when
    this returns, so the digest is that of the bytes on disk.
    """
    fh.flush()
    digests: list[str] = []
    errors: list[BaseException] = []

    def digest() -> None:
        try:
            digests.append(sha256_file(path))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    hasher = threading.Thread(target=digest, name="kaihe-sha256", daemon=True)
    hasher.start()
    try:
        os.fsync(fh.fileno())
    finally:
        hasher.join()
    if errors:
        raise errors[0]
    return digests[0]


def git_blob_sha1(path: Path) -> str:
    """Git's object id: the Hub's hash for files kept outside LFS (small, by the Hub's own rules)."""
    return git_hash(path.read_bytes())
