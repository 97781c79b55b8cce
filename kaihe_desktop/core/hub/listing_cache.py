"""The catalog's on-disk cache: Hub listings and repo details with a time-to-live, so browsing works offline.

Two kinds of JSON files under ``<cache_dir>/catalog/``: ``searches/<key>.json`` (the repo ids one query
returned, in order) and ``repos/<owner>--<name>.json`` (a repo's listing entry, its files and the model
metadata read from one of its headers). Within the TTL a search is answered from here without the network;
past it, entries are still served when the Hub cannot be reached, marked with their age. Writes are atomic
(temp file + rename), and a damaged file reads as missing: the cache can never break the catalog.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from kaihe_desktop.core import json_store, paths
from kaihe_desktop.core.gguf.model_meta import ModelMeta, TensorInfo
from kaihe_desktop.core.hub.listing import HubRepo
from kaihe_desktop.core.hub.variants import RepoFile

DEFAULT_TTL_S = 6 * 3600.0
CACHE_VERSION = 1
MAX_FILE_STEM_BYTES = 200  # file names stop at 255 bytes; longer repo ids are hashed instead


@dataclass(frozen=True)
class CachedSearch:
    repo_ids: tuple[str, ...]
    fetched_at: float


@dataclass(frozen=True)
class CachedRepo:
    """What the catalog knows about one repo. ``meta`` is None when its header could not be read."""

    repo: HubRepo
    files: tuple[RepoFile, ...]
    meta: ModelMeta | None
    meta_error: str | None
    fetched_at: float


def search_key(*, query: str, sort: str, limit: int, page: int) -> str:
    raw = json.dumps([query.strip().lower(), sort, limit, page])
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def meta_to_dict(meta: ModelMeta) -> dict[str, Any]:
    return meta.to_dict(with_tensors=True)


def meta_from_dict(data: dict[str, Any]) -> ModelMeta:
    """Rebuild a ModelMeta from :func:`meta_to_dict` output (JSON turns tuples into lists)."""
    known = {f.name for f in fields(ModelMeta)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            continue
        if key == "tensors":
            value = tuple(TensorInfo(**t) for t in value)
        elif isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        values[key] = value
    return ModelMeta(**values)


class ListingCache:
    """Search results and repo details on disk, each stamped with when it was fetched."""

    def __init__(
        self,
        root: Path | None = None,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root if root is not None else paths.cache_dir() / "catalog"
        self.ttl_s = ttl_s
        self._clock = clock

    def is_fresh(self, fetched_at: float) -> bool:
        return 0 <= self._clock() - fetched_at <= self.ttl_s

    def age_s(self, fetched_at: float) -> float:
        return max(0.0, self._clock() - fetched_at)

    # --- searches ------------------------------------------------------------------------------------

    def get_search(self, key: str) -> CachedSearch | None:
        data = self._read(self.root / "searches" / f"{key}.json")
        if data is None:
            return None
        try:
            return CachedSearch(repo_ids=tuple(data["repo_ids"]), fetched_at=float(data["fetched_at"]))
        except (KeyError, TypeError, ValueError):
            return None

    def put_search(self, key: str, repo_ids: list[str], *, query: str) -> None:
        self._write(
            self.root / "searches" / f"{key}.json",
            {"query": query, "repo_ids": repo_ids, "fetched_at": self._clock()},
        )

    # --- repos ---------------------------------------------------------------------------------------

    def _repo_path(self, repo_id: str) -> Path:
        safe = repo_id.replace("/", "--")
        too_long = len(safe.encode("utf-8", "surrogatepass")) > MAX_FILE_STEM_BYTES
        if not safe or safe.startswith(".") or too_long or any(c in safe for c in "\\:\0"):
            safe = hashlib.sha256(repo_id.encode()).hexdigest()
        return self.root / "repos" / f"{safe}.json"

    def get_repo(self, repo_id: str) -> CachedRepo | None:
        data = self._read(self._repo_path(repo_id))
        if data is None:
            return None
        try:
            return CachedRepo(
                repo=HubRepo.from_dict(data["repo"]),
                files=tuple(RepoFile(path=p, size_bytes=int(s), sha256=h) for p, s, h in data["files"]),
                meta=meta_from_dict(data["meta"]) if data.get("meta") else None,
                meta_error=data.get("meta_error"),
                fetched_at=float(data["fetched_at"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def put_repo(
        self,
        repo: HubRepo,
        files: tuple[RepoFile, ...],
        *,
        meta: ModelMeta | None,
        meta_error: str | None = None,
    ) -> CachedRepo:
        fetched_at = self._clock()
        self._write(
            self._repo_path(repo.repo_id),
            {
                "repo": repo.to_dict(),
                "files": [[f.path, f.size_bytes, f.sha256] for f in files],
                "meta": meta_to_dict(meta) if meta is not None else None,
                "meta_error": meta_error,
                "fetched_at": fetched_at,
            },
        )
        return CachedRepo(repo=repo, files=files, meta=meta, meta_error=meta_error, fetched_at=fetched_at)

    def all_repos(self) -> list[CachedRepo]:
        """Every cached repo, any age: what offline browsing searches through."""
        folder = self.root / "repos"
        if not folder.is_dir():
            return []
        found = []
        for file in sorted(folder.glob("*.json")):
            data = self._read(file)
            if data is None or "repo" not in data:
                continue
            cached = self.get_repo(str(data["repo"].get("repo_id", "")))
            if cached is not None:
                found.append(cached)
        return found

    # --- files ---------------------------------------------------------------------------------------

    def _read(self, path: Path) -> dict[str, Any] | None:
        return json_store.read_cache(path, version=CACHE_VERSION)

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        """Atomic write; a cache that cannot be written (read-only, full disk) is a notice, not an error."""
        json_store.write_cache(path, data, what="the catalog cache", version=CACHE_VERSION, indent=None)
