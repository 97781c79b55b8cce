"""A download queue that survives a restart: ``<KAIHE_HOME>/downloads.json``.

Each item names a repo and a quant. The bytes already fetched live in the downloader's partial files, so
after a crash an item that was "running" is simply queued again and resumes where its partial file ends.
A "running" item whose owner is alive (its partial files' download locks are held) is never taken over.
Items are worked through by ``core.downloads.pull`` (``execute_pull``, ``run_queue``): one path for the CLI,
the window and the queue; a finished item stays "done" until ``prune_done``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from filelock import FileLock
from huggingface_hub import HfApi

from kaihe_desktop.core import json_store, paths
from kaihe_desktop.core.downloads.fetch import Downloader, partial_key
from kaihe_desktop.core.downloads.lock import STOP_FIRST, DownloadLock, is_downloading, pid_alive
from kaihe_desktop.core.errors import DownloadInProgressError, KaiheError, ModelNotFoundError
from kaihe_desktop.core.hub.listing import list_repo_files
from kaihe_desktop.core.hub.variants import Variant, find_variant, group_variants

QUEUE_NAME = "downloads.json"
QUEUE_VERSION = 1


class QueueState(StrEnum):
    """An item's state; written to downloads.json as its value ("queued", ...), as it always was."""

    QUEUED = "queued"
    RUNNING = "running"  # owner_pid names the process downloading it
    PAUSED = "paused"
    FAILED = "failed"
    DONE = "done"

    @property
    def pending(self) -> bool:
        """Not finished: a pull of it resumes the partial files."""
        return self is not QueueState.DONE


PENDING = frozenset(s for s in QueueState if s.pending)


_log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class QueueItem:
    repo_id: str
    quant: str
    revision: str = "main"
    state: QueueState = QueueState.QUEUED
    error: str | None = None
    added_at: str = ""
    updated_at: str = ""
    total_bytes: int = 0
    files: tuple[str, ...] = ()
    partial_keys: tuple[
        str, ...
    ] = ()  # names of the partial files (downloads.partial_key), for offline cleanup
    owner_pid: int | None = None  # the process a "running" item belongs to

    @property
    def key(self) -> str:
        return f"{self.repo_id}:{self.quant}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        data["files"] = list(self.files)
        data["partial_keys"] = list(self.partial_keys)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QueueItem:
        return cls(
            repo_id=str(data["repo_id"]),
            quant=str(data["quant"]),
            revision=str(data.get("revision", "main")),
            state=_state_of(data.get("state")),
            error=data.get("error"),
            added_at=str(data.get("added_at", "")),
            updated_at=str(data.get("updated_at", "")),
            total_bytes=int(data.get("total_bytes", 0)),
            files=tuple(data.get("files") or ()),
            partial_keys=tuple(data.get("partial_keys") or ()),
            owner_pid=int(data["owner_pid"]) if data.get("owner_pid") is not None else None,
        )


def _state_of(value: Any) -> QueueState:
    """A saved state; one this version does not know (a newer one wrote it) reads as "queued": the item's
    partial files resume, nothing is lost."""
    try:
        return QueueState(str(value if value is not None else QueueState.QUEUED))
    except ValueError:
        return QueueState.QUEUED


def resolve_variant(repo_id: str, quant: str, *, api: HfApi | None = None) -> Variant:
    """The files of ``repo_id``'s ``quant`` variant (one tree call)."""
    variants = group_variants(list_repo_files(api or HfApi(), repo_id))
    return find_variant(variants, quant)


class DownloadQueue:
    """Items in order of addition; state changes are written to disk at once (atomic replace)."""

    def __init__(self, *, path: Path | None = None) -> None:
        self.path = path if path is not None else paths.home() / QUEUE_NAME
        self._lock = FileLock(str(self.path) + ".lock", timeout=30)
        self._thread_lock = threading.Lock()

    def _read(self) -> list[QueueItem]:
        """The queue; an unusable file is moved aside (kept, named in a json_store notice), reads as empty."""

        def parse(data: Any) -> list[QueueItem]:
            items = data.get("items", [])
            if not isinstance(items, list) or not all(
                isinstance(d, dict) and isinstance(d.get("repo_id"), str) and isinstance(d.get("quant"), str)
                for d in items
            ):
                raise json_store.BadShapeError("'items' is not a list of downloads")
            return [QueueItem.from_dict(d) for d in items]

        return json_store.read_json(
            self.path,
            parse=parse,
            empty=list[QueueItem],
            what="the download queue",
            version=QUEUE_VERSION,
            lock=self._lock,
        ).value

    def _write(self, items: Sequence[QueueItem]) -> None:
        json_store.write_json(
            self.path,
            {"items": [i.to_dict() for i in items]},
            what="the download queue",
            version=QUEUE_VERSION,
        )

    def set_state_after_error(self, key: str, state: QueueState | str, *, error: str | None = None) -> bool:
        """`set_state` while another error is being reported: a failed write (full disk) must not hide it.

        Nothing is lost when this fails: the item stays as it was ("running" items of a dead process are
        queued again by `recover`) and its partial files resume.
        """
        try:
            self.set_state(key, state, error=error)
        except KaiheError as exc:
            _log.info("could not record %s as %s in %s: %s", key, state, self.path, exc)
            return False
        return True

    def _mutate(self, change: Callable[[list[QueueItem]], list[QueueItem]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, self._lock:
            self._write(change(self._read()))

    def items(self) -> tuple[QueueItem, ...]:
        return tuple(self._read())

    def pending(self) -> tuple[QueueItem, ...]:
        return tuple(i for i in self._read() if i.state in PENDING)

    def get(self, key: str) -> QueueItem | None:
        return next((i for i in self._read() if i.key.lower() == key.lower()), None)

    def find_pending(self, repo_id: str, quant: str | None = None) -> QueueItem | None:
        """The unfinished item for this repo (and quant, when given)."""
        for item in self._read():
            same_repo = item.state in PENDING and item.repo_id.lower() == repo_id.lower()
            if same_repo and (quant is None or item.quant.upper() == quant.upper()):
                return item
        return None

    def add(
        self,
        repo_id: str,
        quant: str,
        *,
        revision: str = "main",
        files: Sequence[str] = (),
        total_bytes: int = 0,
        partial_keys: Sequence[str] = (),
    ) -> QueueItem:
        """Queue a variant (an item already there is queued again, keeping its place)."""
        now = _now()
        fresh = QueueItem(
            repo_id=repo_id,
            quant=quant,
            revision=revision,
            added_at=now,
            updated_at=now,
            total_bytes=total_bytes,
            files=tuple(files),
            partial_keys=tuple(partial_keys),
        )
        result: list[QueueItem] = []

        def change(items: list[QueueItem]) -> list[QueueItem]:
            for n, item in enumerate(items):
                if item.key.lower() == fresh.key.lower():
                    requeued = replace(
                        fresh,
                        added_at=item.added_at,
                        files=fresh.files or item.files,
                        partial_keys=fresh.partial_keys or item.partial_keys,
                        error=None,
                    )
                    result.append(requeued)
                    return [*items[:n], requeued, *items[n + 1 :]]
            result.append(fresh)
            return [*items, fresh]

        self._mutate(change)
        return result[0]

    def set_state(self, key: str, state: QueueState | str, *, error: str | None = None) -> None:
        """A "running" item records this process as its owner, so no other process takes it over."""
        try:
            new = QueueState(state)
        except ValueError:
            raise ValueError(f"unknown queue state {state!r}") from None
        owner = os.getpid() if new is QueueState.RUNNING else None
        self._mutate(
            lambda items: [
                replace(i, state=new, error=error, updated_at=_now(), owner_pid=owner)
                if i.key.lower() == key.lower()
                else i
                for i in items
            ]
        )

    def remove(self, key: str) -> None:
        self._mutate(lambda items: [i for i in items if i.key.lower() != key.lower()])

    def prune_done(self) -> None:
        self._mutate(lambda items: [i for i in items if i.state is not QueueState.DONE])

    def recover(self, *, locks_dir: Path | None = None) -> tuple[QueueItem, ...]:
        """After a restart: items left "running" by a dead process go back to "queued".

        An item whose owner still downloads it stays "running". With ``locks_dir`` (``Downloader.locks_dir``)
        that is decided by its partial files' locks, which die with their holder; otherwise, or when the
        item does not name its partial files, by whether its owner pid is alive.
        """
        recovered: list[QueueItem] = []

        def change(items: list[QueueItem]) -> list[QueueItem]:
            out = []
            for i in items:
                if i.state is QueueState.RUNNING and not _owner_alive(i, locks_dir):
                    i = replace(i, state=QueueState.QUEUED, updated_at=_now(), owner_pid=None)
                    recovered.append(i)
                out.append(i)
            return out

        self._mutate(change)
        return tuple(recovered)

    def discard(self, key: str, *, downloader: Downloader) -> DiscardResult | None:
        """Forget an unfinished download named REPO:QUANT and delete its partial files; None when the queue
        has no such item. DownloadInProgressError while a process downloads it: deleting the partial file
        under a running download would only make it start over and add the model anyway."""
        item = self.get(key)
        if item is None or item.state is QueueState.DONE:
            return None
        keys = item.partial_keys
        if not keys:
            try:
                variant = resolve_variant(item.repo_id, item.quant)
                keys = tuple(partial_key(item.repo_id, item.revision, f) for f in variant.all_files)
            except ModelNotFoundError:
                keys = ()  # the repo is gone: nothing on the Hub to match the partial files against
        if not keys and item.state is QueueState.RUNNING and _owner_alive(item, None):
            raise DownloadInProgressError(
                STOP_FIRST.format(what=item.key, owner=f"process {item.owner_pid}"), pid=item.owner_pid
            )
        freed = 0
        with DownloadLock(downloader.locks_dir, keys, what=item.key, refusal=STOP_FIRST):
            for name in keys:
                part = downloader.partial_dir / f"{name}.part"
                if part.exists():
                    freed += part.stat().st_size
                    part.unlink()
            self.remove(item.key)
        return DiscardResult(key=item.key, freed_bytes=freed)


@dataclass(frozen=True)
class DiscardResult:
    key: str
    freed_bytes: int


def _owner_alive(item: QueueItem, locks_dir: Path | None) -> bool:
    if locks_dir is not None and item.partial_keys:
        return is_downloading(locks_dir, item.partial_keys)
    return item.owner_pid is not None and pid_alive(item.owner_pid)
