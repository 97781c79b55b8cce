"""A download queue that survives a restart: ``<KAIHE_HOME>/downloads.json``.

Each item names a repo and a quant. The bytes already fetched live in the downloader's partial files, so
after a crash an item that was "running" is simply queued again and resumes where its partial file ends.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from kaihe_desktop.core import paths
from kaihe_desktop.core.errors import DownloadCancelled, KaiheError, LibraryError
from kaihe_desktop.core.variants import Variant, find_variant, group_variants

if TYPE_CHECKING:
    from huggingface_hub import HfApi

    from kaihe_desktop.core.downloads import Downloader, ProgressCallback
    from kaihe_desktop.core.library import Library, LibraryEntry

QUEUE_NAME = "downloads.json"
STATES = ("queued", "running", "paused", "failed", "done")
PENDING = ("queued", "running", "paused", "failed")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class QueueItem:
    repo_id: str
    quant: str
    revision: str = "main"
    state: str = "queued"
    error: str | None = None
    added_at: str = ""
    updated_at: str = ""
    total_bytes: int = 0
    files: tuple[str, ...] = ()
    partial_keys: tuple[
        str, ...
    ] = ()  # names of the partial files (downloads.partial_key), for offline cleanup

    @property
    def key(self) -> str:
        return f"{self.repo_id}:{self.quant}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["files"] = list(self.files)
        data["partial_keys"] = list(self.partial_keys)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QueueItem:
        return cls(
            repo_id=str(data["repo_id"]),
            quant=str(data["quant"]),
            revision=str(data.get("revision", "main")),
            state=str(data.get("state", "queued")),
            error=data.get("error"),
            added_at=str(data.get("added_at", "")),
            updated_at=str(data.get("updated_at", "")),
            total_bytes=int(data.get("total_bytes", 0)),
            files=tuple(data.get("files") or ()),
            partial_keys=tuple(data.get("partial_keys") or ()),
        )


@dataclass(frozen=True)
class QueueOutcome:
    item: QueueItem
    entry: LibraryEntry | None
    error: str | None


def resolve_variant(repo_id: str, quant: str, *, api: HfApi | None = None) -> Variant:
    """The files of ``repo_id``'s ``quant`` variant (one tree call)."""
    from huggingface_hub import HfApi

    from kaihe_desktop.core.hub_listing import list_repo_files

    variants = group_variants(list_repo_files(api or HfApi(), repo_id))
    return find_variant(variants, quant)


class DownloadQueue:
    """Items in order of addition; state changes are written to disk at once (atomic replace)."""

    def __init__(self, *, path: Path | None = None) -> None:
        self.path = path if path is not None else paths.home() / QUEUE_NAME
        self._lock = FileLock(str(self.path) + ".lock", timeout=30)
        self._thread_lock = threading.Lock()

    def _read(self) -> list[QueueItem]:
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return [QueueItem.from_dict(d) for d in data.get("items", [])]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LibraryError(f"the download queue {self.path} is unreadable: {exc}") from exc

    def _write(self, items: Sequence[QueueItem]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".downloads-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"version": 1, "items": [i.to_dict() for i in items]}, fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

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

    def set_state(self, key: str, state: str, *, error: str | None = None) -> None:
        if state not in STATES:
            raise ValueError(f"unknown queue state {state!r}")
        self._mutate(
            lambda items: [
                replace(i, state=state, error=error, updated_at=_now()) if i.key.lower() == key.lower() else i
                for i in items
            ]
        )

    def remove(self, key: str) -> None:
        self._mutate(lambda items: [i for i in items if i.key.lower() != key.lower()])

    def prune_done(self) -> None:
        self._mutate(lambda items: [i for i in items if i.state != "done"])

    def recover(self) -> tuple[QueueItem, ...]:
        """After a restart: items left "running" by a dead process go back to "queued"."""
        recovered: list[QueueItem] = []

        def change(items: list[QueueItem]) -> list[QueueItem]:
            out = []
            for i in items:
                if i.state == "running":
                    i = replace(i, state="queued", updated_at=_now())
                    recovered.append(i)
                out.append(i)
            return out

        self._mutate(change)
        return tuple(recovered)

    def run(
        self,
        *,
        downloader: Downloader,
        library: Library,
        resolve: Callable[[QueueItem], Variant] | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        on_start: Callable[[QueueItem], None] | None = None,
        include_failed: bool = True,
    ) -> list[QueueOutcome]:
        """Work through pending items in order. A pause stops the run (DownloadCancelled is raised, the item
        is "paused"); any other error marks its item "failed" and the run goes on with the next one."""
        self.recover()
        outcomes: list[QueueOutcome] = []
        resolver = resolve or (lambda item: resolve_variant(item.repo_id, item.quant))
        for item in self.pending():
            if item.state == "failed" and not include_failed:
                continue
            if on_start is not None:
                on_start(item)
            self.set_state(item.key, "running")
            try:
                variant = resolver(item)
                result = downloader.download_variant(
                    item.repo_id, variant, revision=item.revision, progress=progress, cancel=cancel
                )
                entry = library.add_download(result)
            except DownloadCancelled as exc:
                self.set_state(item.key, "paused", error=str(exc))
                raise
            except KaiheError as exc:
                self.set_state(item.key, "failed", error=str(exc))
                outcomes.append(QueueOutcome(item=item, entry=None, error=str(exc)))
                continue
            except BaseException:
                self.set_state(item.key, "paused", error="interrupted")
                raise
            self.set_state(item.key, "done")
            outcomes.append(QueueOutcome(item=item, entry=entry, error=None))
        return outcomes
