"""Resumable, verified downloads of a model variant from the Hub, built on huggingface_hub's own pieces.

`hf_hub_download` resumes a cut connection only inside one call and throws its partial file away when the
call fails, so a crash or a restart would start over. Here every file is fetched into our own partial file,
``<models>/.partial/<sha256>.part``, with ``get_hf_file_metadata`` (size, LFS sha256, CDN location) and
one ``Range`` GET per try (``hub_retry.get_once``: starts over when a server ignores ``Range``). Retries are
ours alone, in one cancellable loop (``hub_retry.Retrier``), with huggingface_hub's own retries off.
One process writes a partial file at a time (``download_lock``: a lock per file, held for the whole
download). The sha256 that admits a file is read back from the part file on disk after the last write and
fsync, and checked against the Hub's LFS hash before the file is moved into place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, NamedTuple

import httpx2
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
from huggingface_hub import errors as hf_errors
from huggingface_hub.utils import build_hf_headers

from kaihe_desktop.core import paths
from kaihe_desktop.core.downloads.lock import DownloadLock, locks_dir
from kaihe_desktop.core.downloads.part_io import (
    DISK_FULL_ERRNOS,
    WRITE_CHUNK,
    DownloadProgress,
    PartWriter,
    ProgressCallback,
    ProgressMeter,
    git_blob_sha1,
    human_size,
    sha256_file,
    sync_and_hash,
)
from kaihe_desktop.core.errors import (
    ChecksumMismatchError,
    DiskFullError,
    DownloadCancelled,
    DownloadError,
    HubUnreachableError,
    KaiheError,
    UnsafeFilenameError,
)
from kaihe_desktop.core.hub.http_errors import gave_up, is_offline, offline_error, translate
from kaihe_desktop.core.hub.retry import (
    Failure,
    Retrier,
    RetryPolicy,
    failure_of,
    get_once,
    wait_or_cancel,
)
from kaihe_desktop.core.hub.variants import RepoFile, Variant

PARTIAL_DIR = ".partial"
DISK_RESERVE_BYTES = 64 * 1024 * 1024  # never fill the disk to the last byte


class DiskUsage(NamedTuple):
    total: int
    used: int
    free: int


@dataclass(frozen=True)
class DownloadedFile:
    repo_path: str
    path: Path
    size_bytes: int
    sha256: str
    fetched_bytes: int  # 0 when it was already complete on disk
    resumed_from: int


@dataclass(frozen=True)
class DownloadResult:
    repo_id: str
    quant: str
    revision: str  # the commit the files came from
    files: tuple[DownloadedFile, ...]  # shards in order, then the projector
    model_path: Path  # the file llama.cpp loads (first shard)
    mmproj_path: Path | None

    @property
    def size_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    @property
    def fetched_bytes(self) -> int:
        return sum(f.fetched_bytes for f in self.files)


@dataclass(frozen=True)
class PartialState:
    """What a previous, interrupted run left on disk for one file."""

    repo_path: str
    part_path: Path
    have_bytes: int
    size_bytes: int


# --- names ------------------------------------------------------------------------------------------


def safe_relative_path(remote_name: str) -> PurePosixPath:
    """The remote file name as a path that stays inside its folder, or UnsafeFilenameError."""
    name = remote_name.replace("\\", "/")
    pure = PurePosixPath(name)
    if (
        not remote_name
        or "\0" in remote_name
        or pure.is_absolute()
        or (len(name) > 1 and name[1] == ":")  # C:\... / C:foo
        or any(part in ("..", ".", "") for part in name.split("/"))
    ):
        raise UnsafeFilenameError(
            f"refusing the remote file name {remote_name!r}: it is absolute or climbs out of the model folder"
        )
    return pure


def repo_folder_name(repo_id: str) -> str:
    owner, _, name = repo_id.partition("/")
    safe_relative_path(owner)
    safe_relative_path(name or owner)
    return f"{owner}__{name}" if name else owner


def partial_key(repo_id: str, revision: str, file: RepoFile) -> str:
    """LFS files are keyed by their sha256 (the same bytes resume whatever the repo); others by name."""
    if file.sha256:
        return file.sha256
    return hashlib.sha256(f"{repo_id}\n{revision}\n{file.path}".encode()).hexdigest()


# --- writing ------------------------------------------------------------------------------------------


def _default_disk_usage(path: Path) -> DiskUsage:
    usage = shutil.disk_usage(path)
    return DiskUsage(total=usage.total, used=usage.used, free=usage.free)


# --- the downloader -----------------------------------------------------------------------------------


class Downloader:
    """Fetches variants into ``models_dir/<owner>__<name>/``; see the module docstring for how."""

    def __init__(
        self,
        *,
        models_dir: Path | None = None,
        endpoint: str | None = None,
        token: str | bool | None = None,
        max_retries: int = 5,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 16.0,
        retry_after_cap_s: float = 60.0,
        give_up_after_s: float = 75.0,
        unreachable_after_s: float = 4.0,
        timeout_s: float = 10.0,
        disk_usage: Callable[[Path], DiskUsage] = _default_disk_usage,
        disk_reserve_bytes: int = DISK_RESERVE_BYTES,
        open_part: Callable[[Path, int], IO[bytes]] | None = None,
    ) -> None:
        self.models_dir = models_dir if models_dir is not None else paths.models_dir()
        self.endpoint = endpoint
        self.token = token
        # one retry budget per file, spent in _download_one's loop (huggingface_hub's own retries are off)
        self.retry_policy = RetryPolicy(
            max_attempts=max_retries + 1,
            backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s,
            retry_after_cap_s=retry_after_cap_s,
            give_up_after_s=give_up_after_s,
            unreachable_after_s=unreachable_after_s,
        )
        self.timeout_s = timeout_s
        self.disk_usage = disk_usage
        self.disk_reserve_bytes = disk_reserve_bytes
        self.open_part = open_part or _open_part

    @property
    def partial_dir(self) -> Path:
        return self.models_dir / PARTIAL_DIR

    @property
    def locks_dir(self) -> Path:
        return locks_dir(self.models_dir)

    def lock(self, repo_id: str, variant: Variant, *, revision: str = "main") -> DownloadLock:
        """The (not yet taken) lock on every partial file of ``variant``: shards another variant shares
        are locked too, so two variants never write one partial file."""
        keys = [partial_key(repo_id, revision, f) for f in variant.all_files]
        return DownloadLock(self.locks_dir, keys, what=f"{repo_id}:{variant.quant}")

    def destination(self, repo_id: str, repo_path: str) -> Path:
        """Where a remote file lands; UnsafeFilenameError when its name would leave the repo folder."""
        folder = self.models_dir / repo_folder_name(repo_id)
        target = folder.joinpath(*safe_relative_path(repo_path).parts)
        if not target.resolve().is_relative_to(folder.resolve()):
            raise UnsafeFilenameError(
                f"refusing the remote file name {repo_path!r}: it leaves the model folder"
            )
        return target

    def partial_path(self, repo_id: str, revision: str, file: RepoFile) -> Path:
        return self.partial_dir / f"{partial_key(repo_id, revision, file)}.part"

    def partial_state(self, repo_id: str, variant: Variant, *, revision: str = "main") -> list[PartialState]:
        """Partial files an interrupted download of this variant left behind (for "resume" messages)."""
        states = []
        for f in variant.all_files:
            part = self.partial_path(repo_id, revision, f)
            if part.exists():
                states.append(PartialState(f.path, part, part.stat().st_size, f.size_bytes))
        return states

    def needed_bytes(self, repo_id: str, files: Sequence[RepoFile], *, revision: str = "main") -> int:
        """Bytes still to write for ``files``: what neither a finished file nor a partial holds yet."""
        needed = 0
        for f in files:
            if self._complete_on_disk(repo_id, f):
                continue
            part = self.partial_path(repo_id, revision, f)
            have = part.stat().st_size if part.exists() else 0
            needed += max(f.size_bytes - have, 0)
        return needed

    def free_space(self) -> tuple[Path, int]:
        """The folder the models folder takes its space from, and the bytes free there."""
        probe = paths.nearest_existing(self.models_dir)
        return probe, self.disk_usage(probe).free

    def shortfall_bytes(self, repo_id: str, files: Sequence[RepoFile], *, revision: str = "main") -> int:
        """Bytes to free before ``files`` fit with the reserve (0 when they fit)."""
        _probe, free = self.free_space()
        needed = self.needed_bytes(repo_id, files, revision=revision)
        return max(needed + self.disk_reserve_bytes - free, 0)

    @property
    def endpoint_url(self) -> str:
        """The Hub this downloader talks to (``HF_ENDPOINT`` unless one was passed)."""
        return (self.endpoint or constants.ENDPOINT).rstrip("/")

    def check_disk_space(self, repo_id: str, files: Sequence[RepoFile], *, revision: str = "main") -> int:
        """Bytes still needed; DiskFullError naming needed and free space when they do not fit."""
        needed = self.needed_bytes(repo_id, files, revision=revision)
        probe, free = self.free_space()
        if needed + self.disk_reserve_bytes > free:
            raise DiskFullError(
                f"not enough disk space for {repo_id}: needs {human_size(needed)} "
                f"(+{human_size(self.disk_reserve_bytes)} reserve), {human_size(free)} free on {probe}"
            )
        return needed

    def download_variant(
        self,
        repo_id: str,
        variant: Variant,
        *,
        revision: str = "main",
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        lock: DownloadLock | None = None,
    ) -> DownloadResult:
        """Every shard and the projector of ``variant``, verified; resumes whatever a previous run left.

        Holds ``lock`` (a caller that must keep it past the download, to add the result to the library,
        passes it; by default ``self.lock(...)``) for the whole download: DownloadInProgressError at once
        when another process holds it.
        """
        files = variant.all_files
        targets = [self.destination(repo_id, f.path) for f in files]  # refuse bad names before any byte
        if is_offline() and not all(self._complete_on_disk(repo_id, f) for f in files):
            raise HubUnreachableError(f"{offline_error(repo_id)}; partial files are kept")
        with lock or self.lock(repo_id, variant, revision=revision):
            return self._download_locked(
                repo_id, variant, targets, revision=revision, progress=progress, cancel=cancel
            )

    def _download_locked(
        self,
        repo_id: str,
        variant: Variant,
        targets: Sequence[Path],
        *,
        revision: str,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> DownloadResult:
        files = variant.all_files
        self.check_disk_space(repo_id, files, revision=revision)
        meter = ProgressMeter(repo_id=repo_id, files=files, callback=progress)
        done: list[DownloadedFile] = []
        commit = revision
        for index, (remote, target) in enumerate(zip(files, targets, strict=True)):
            result, commit = self._download_one(
                repo_id, remote, target, revision=revision, meter=meter, index=index, cancel=cancel
            )
            done.append(result)
            meter.finish_file()
        meter.emit("done")
        mmproj = done[-1].path if variant.mmproj is not None else None
        return DownloadResult(
            repo_id=repo_id,
            quant=variant.quant,
            revision=commit,
            files=tuple(done),
            model_path=done[0].path,
            mmproj_path=mmproj,
        )

    # --- one file -------------------------------------------------------------------------------------

    def _complete_on_disk(self, repo_id: str, remote: RepoFile) -> bool:
        target = self.destination(repo_id, remote.path)
        return target.is_file() and target.stat().st_size == remote.size_bytes

    def _download_one(
        self,
        repo_id: str,
        remote: RepoFile,
        target: Path,
        *,
        revision: str,
        meter: ProgressMeter,
        index: int,
        cancel: threading.Event | None,
    ) -> tuple[DownloadedFile, str]:
        what = f"{repo_id}/{remote.path}"
        if target.is_file() and target.stat().st_size == remote.size_bytes and remote.sha256:
            meter.start_file(index, remote.size_bytes)
            meter.emit("verify")
            digest = sha256_file(target)
            if digest == remote.sha256:
                return DownloadedFile(
                    remote.path, target, remote.size_bytes, digest, 0, remote.size_bytes
                ), revision
        url = hf_hub_url(repo_id, remote.path, revision=revision, endpoint=self.endpoint)
        retrier = Retrier(self.retry_policy)
        fetched_mark = meter.fetched
        while True:
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled(f"{what}: download paused; the partial file is kept for resume")
            try:
                return self._attempt(repo_id, remote, target, url, revision, meter, index, cancel, what)
            except KaiheError:  # cancelled, disk full, checksum, bad name, a size mismatch: said already
                raise
            except (hf_errors.HfHubHTTPError, httpx2.TransportError, OSError, TimeoutError) as exc:
                if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
                    raise DiskFullError(f"the disk filled up while writing {what}; partial kept") from exc
                failure = failure_of(exc)
                if isinstance(exc, hf_errors.OfflineModeIsEnabled) or not failure.retryable:
                    # gone, gated, refused, offline: http_errors says it as listings and header reads do
                    raise self._translate(exc, repo_id, remote.path, revision) from exc
                if meter.fetched > fetched_mark:  # the try moved bytes: a flaky link, not a dead one
                    fetched_mark = meter.fetched
                    retrier.progressed()
                wait = retrier.next_wait(failure)
                if wait is None:
                    raise self._give_up(what, retrier, failure, exc) from exc
                if wait_or_cancel(wait, cancel):
                    raise DownloadCancelled(
                        f"{what}: download paused; the partial file is kept for resume"
                    ) from exc

    def _give_up(self, what: str, retrier: Retrier, failure: Failure, exc: BaseException) -> KaiheError:
        """The one line a failed download ends with (http_errors.gave_up, as for header reads): what failed,
        how often it was tried, for how long; the partial file is kept."""
        return gave_up(
            what,
            retrier,
            failure,
            exc,
            endpoint=self.endpoint_url,
            timeout_s=self.timeout_s,
            kept="; the partial file is kept",
        )

    def _attempt(
        self,
        repo_id: str,
        remote: RepoFile,
        target: Path,
        url: str,
        revision: str,
        meter: ProgressMeter,
        index: int,
        cancel: threading.Event | None,
        what: str,
    ) -> tuple[DownloadedFile, str]:
        meta = get_hf_file_metadata(url, token=self.token, timeout=self.timeout_s, endpoint=self.endpoint)
        size = meta.size if meta.size is not None else remote.size_bytes
        if remote.size_bytes and size != remote.size_bytes:
            raise DownloadError(
                f"{what}: the Hub reports {size} bytes but the listing said {remote.size_bytes}; "
                "the repo changed, search again"
            )
        expected_sha = remote.sha256 or (meta.etag if meta.etag and len(meta.etag) == 64 else None)
        commit = meta.commit_hash or revision
        part = self.partial_path(repo_id, revision, remote)
        part.parent.mkdir(parents=True, exist_ok=True)
        have = part.stat().st_size if part.exists() else 0
        if have > size:
            part.unlink()
            have = 0
        meter.start_file(index, have)
        meter.emit("download")
        fh = self.open_part(part, have)
        writer = PartWriter(fh, have=have, on_bytes=meter.add, cancel=cancel, what=what)
        try:
            headers = build_hf_headers(token=self.token) if _same_origin(meta.location, url) else {}
            get_once(  # one try; the retries are _download_one's
                meta.location,
                writer,
                resume_size=have,
                headers=headers,
                expected_size=size,
                timeout=self.timeout_s,
                cancel=cancel,
                what=what,
                chunk_size=WRITE_CHUNK,
            )
            meter.emit("verify")
            # "verified" means the bytes on disk: the part file read back after the last write, hashed while
            # fsync runs (the read comes from the page cache, so the two overlap instead of adding up)
            digest = sync_and_hash(fh, part)
        except BaseException:
            fh.close()
            raise
        fh.close()
        fetched = writer.written_now
        resumed_from = size - fetched
        if expected_sha is not None and digest != expected_sha:
            part.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"{what} is corrupt: its sha256 is {digest[:16]}… but the Hub says {expected_sha[:16]}…; "
                "the bad file was deleted, download it again"
            )
        git_oid = meta.etag if expected_sha is None and meta.etag and len(meta.etag) == 40 else None
        if git_oid is not None and git_blob_sha1(part) != git_oid:
            part.unlink(missing_ok=True)
            raise ChecksumMismatchError(f"{what} does not match the Hub's git hash; the bad file was deleted")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, target)
        return DownloadedFile(remote.path, target, size, digest, fetched, resumed_from), commit

    def _translate(self, exc: BaseException, repo_id: str, path: str, revision: str) -> KaiheError:
        """The Hub's refusal in http_errors.translate's words: the same as listings and header reads say."""
        return translate(
            exc,
            what=f"{repo_id}/{path}",
            repo_id=repo_id,
            filename=path,
            revision=revision,
            token=self.token,
            endpoint=self.endpoint_url,
            timeout_s=self.timeout_s,
        )

    def discard_partials(self, repo_id: str, variant: Variant, *, revision: str = "main") -> int:
        """Delete what an interrupted download left; bytes freed."""
        freed = 0
        for state in self.partial_state(repo_id, variant, revision=revision):
            freed += state.have_bytes
            state.part_path.unlink(missing_ok=True)
        return freed


def _open_part(path: Path, have: int) -> IO[bytes]:
    fh = open(path, "r+b" if path.exists() else "wb")  # noqa: SIM115 - closed by the caller
    fh.seek(have)
    fh.truncate()
    return fh


def _same_origin(a: str, b: str) -> bool:
    pa, pb = httpx2.URL(a), httpx2.URL(b)
    return (pa.scheme, pa.host, pa.port) == (pb.scheme, pb.host, pb.port)


def describe_exception(exc: BaseException) -> str:
    """One line for logs and the queue file."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


__all__: list[str] = [
    "DiskUsage",
    "DownloadProgress",
    "DownloadResult",
    "DownloadedFile",
    "Downloader",
    "PartialState",
    "ProgressCallback",
    "describe_exception",
    "partial_key",
    "repo_folder_name",
    "safe_relative_path",
]
