"""The local model library: what is installed, where, verified how, and used when.

An index file (``<KAIHE_HOME>/library.json``) lists models: downloaded ones (verified before they are added),
imported local GGUF files (validated first), GGUFs found in the Hugging Face cache (referenced, not copied)
and the starter model. Deleting is plan-then-execute, like huggingface_hub's cache delete strategy: the plan
says which files go and how many bytes that frees; only files the library owns are ever removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from kaihe_desktop.core import paths
from kaihe_desktop.core.errors import KaiheError, LibraryError, ModelNotFoundError
from kaihe_desktop.core.model_meta import ModelMeta

if TYPE_CHECKING:
    from kaihe_desktop.core.downloads import DownloadResult

INDEX_NAME = "library.json"
INDEX_VERSION = 1
SOURCES = ("hub", "import", "hf-cache", "starter")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class LibraryEntry:
    """One installed model. ``path`` is what llama.cpp loads; ``files`` are all its files (shards, mmproj)."""

    name: str
    repo_id: str | None
    quant: str | None
    variant: str  # e.g. "Q4_K_M" or "Q4_K_M (3 shards + mmproj)"
    path: Path
    files: tuple[Path, ...]
    size_bytes: int
    sha256: str | None  # of the model file (first shard)
    source: str  # one of SOURCES
    owned: bool  # the files live in the library's models folder and go when the entry is deleted
    added_at: str
    last_used: str | None = None
    revision: str | None = None
    mmproj: Path | None = None
    file_sha256: tuple[str | None, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["files"] = [str(p) for p in self.files]
        data["mmproj"] = str(self.mmproj) if self.mmproj else None
        data["file_sha256"] = list(self.file_sha256)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LibraryEntry:
        return cls(
            name=str(data["name"]),
            repo_id=data.get("repo_id"),
            quant=data.get("quant"),
            variant=str(data.get("variant") or data.get("quant") or ""),
            path=Path(data["path"]),
            files=tuple(Path(p) for p in data.get("files") or [data["path"]]),
            size_bytes=int(data.get("size_bytes", 0)),
            sha256=data.get("sha256"),
            source=str(data.get("source", "import")),
            owned=bool(data.get("owned", False)),
            added_at=str(data.get("added_at", "")),
            last_used=data.get("last_used"),
            revision=data.get("revision"),
            mmproj=Path(data["mmproj"]) if data.get("mmproj") else None,
            file_sha256=tuple(data.get("file_sha256") or ()),
        )

    @property
    def present(self) -> bool:
        return all(p.is_file() for p in self.files)

    def public_dict(self) -> dict[str, Any]:
        """What `kaihe models --json` prints."""
        return {
            "name": self.name,
            "repo_id": self.repo_id,
            "quant": self.quant,
            "variant": self.variant,
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "source": self.source,
            "added_at": self.added_at,
            "last_used": self.last_used,
            "present": self.present,
        }


@dataclass(frozen=True)
class CachedGGUF:
    """A GGUF found in the Hugging Face cache, offered for the library without copying."""

    repo_id: str
    revision: str
    path: Path  # the snapshot path (a symlink into blobs/)
    repo_path: str
    size_bytes: int
    quant: str | None


@dataclass(frozen=True)
class DeletePlan:
    """What deleting an entry does; nothing is touched until `Library.execute(plan)`."""

    entry: LibraryEntry
    delete_files: tuple[Path, ...]
    keep_files: tuple[Path, ...]  # referenced, not owned (imports, HF cache): left alone
    freed_bytes: int
    empty_dirs: tuple[Path, ...] = field(default=())


@dataclass(frozen=True)
class DeleteResult:
    name: str
    freed_bytes: int
    deleted_files: tuple[Path, ...]
    kept_files: tuple[Path, ...]


class Library:
    """The index in ``root/library.json``; models downloaded into ``models_dir``."""

    def __init__(self, *, root: Path | None = None, models_dir: Path | None = None) -> None:
        self.root = root if root is not None else paths.home()
        self.models_dir = models_dir if models_dir is not None else self.root / "models"
        self.index_path = self.root / INDEX_NAME
        self._lock = FileLock(str(self.root / f"{INDEX_NAME}.lock"), timeout=30)

    # --- index --------------------------------------------------------------------------------------

    def _read(self) -> list[LibraryEntry]:
        if not self.index_path.exists():
            return []
        try:
            data = json.loads(self.index_path.read_text(encoding="utf-8"))
            return [LibraryEntry.from_dict(item) for item in data.get("models", [])]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LibraryError(f"the library index {self.index_path} is unreadable: {exc}") from exc

    def _write(self, entries: Sequence[LibraryEntry]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        payload = {"version": INDEX_VERSION, "models": [e.to_dict() for e in entries]}
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".library-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(payload, fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.index_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _mutate(self, change: Callable[[list[LibraryEntry]], list[LibraryEntry]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._write(change(self._read()))

    def entries(self) -> tuple[LibraryEntry, ...]:
        return tuple(self._read())

    def get(self, key: str) -> LibraryEntry:
        """By name, by "repo_id:quant", by repo_id (when one entry has it) or by file path."""
        entries = self._read()
        for e in entries:
            if e.name == key:
                return e
        for e in entries:
            if e.repo_id and e.quant and f"{e.repo_id}:{e.quant}".lower() == key.lower():
                return e
        same_repo = [e for e in entries if e.repo_id and e.repo_id.lower() == key.lower()]
        if len(same_repo) == 1:
            return same_repo[0]
        if len(same_repo) > 1:
            names = ", ".join(e.name for e in same_repo)
            raise LibraryError(f"{key} has several variants in the library; name one of: {names}")
        candidate = Path(key).expanduser()
        for e in entries:
            if candidate.exists() and (e.path == candidate or e.path.resolve() == candidate.resolve()):
                return e
        known = ", ".join(e.name for e in entries) or "the library is empty"
        raise ModelNotFoundError(f"no model named {key!r} in the library ({known})")

    def _unique_name(
        self, wanted: str, entries: Iterable[LibraryEntry], *, replacing: str | None = None
    ) -> str:
        taken = {e.name for e in entries if e.name != replacing}
        name, n = wanted, 2
        while name in taken:
            name, n = f"{wanted}-{n}", n + 1
        return name

    def _upsert(self, entry: LibraryEntry, *, same: Callable[[LibraryEntry], bool]) -> LibraryEntry:
        result: list[LibraryEntry] = []

        def change(entries: list[LibraryEntry]) -> list[LibraryEntry]:
            old = next((e for e in entries if same(e)), None)
            if old is not None:
                final = replace(entry, name=old.name, added_at=old.added_at, last_used=old.last_used)
                result.append(final)
                return [final if e is old else e for e in entries]
            final = replace(entry, name=self._unique_name(entry.name, entries))
            result.append(final)
            return [*entries, final]

        self._mutate(change)
        return result[0]

    # --- adding -------------------------------------------------------------------------------------

    def add_download(self, result: DownloadResult) -> LibraryEntry:
        """Record a verified `downloads.DownloadResult` (only call this after verification succeeded)."""
        files = tuple(f.path for f in result.files)
        shards = len(files) - (1 if result.mmproj_path else 0)
        variant = result.quant
        extras = []
        if shards > 1:
            extras.append(f"{shards} shards")
        if result.mmproj_path:
            extras.append("mmproj")
        if extras:
            variant = f"{result.quant} ({' + '.join(extras)})"
        owner_name = result.repo_id.split("/")[-1]
        entry = LibraryEntry(
            name=f"{owner_name}:{result.quant}",
            repo_id=result.repo_id,
            quant=result.quant,
            variant=variant,
            path=result.model_path,
            files=files,
            size_bytes=sum(f.size_bytes for f in result.files),
            sha256=result.files[0].sha256,
            source="hub",
            owned=True,
            added_at=_now(),
            revision=result.revision,
            mmproj=result.mmproj_path,
            file_sha256=tuple(f.sha256 for f in result.files),
        )
        return self._upsert(
            entry,
            same=lambda e: e.repo_id == entry.repo_id and (e.quant or "").upper() == result.quant.upper(),
        )

    def import_file(
        self,
        path: Path,
        *,
        name: str | None = None,
        copy: bool = False,
        reader: Callable[[Path], ModelMeta] | None = None,
        source: str = "import",
        repo_id: str | None = None,
    ) -> LibraryEntry:
        """Add a local .gguf after reading its header (errors name what is wrong); copy=True copies it in."""
        from kaihe_desktop.core.download_io import sha256_file

        path = Path(path).expanduser()
        if path.suffix.lower() != ".gguf":
            raise LibraryError(f"{path} is not a .gguf file")
        if reader is None:
            from kaihe_desktop.core.gguf_meta import read_local

            reader = read_local
        meta = reader(
            path
        )  # raises NotGGUFError / TruncatedGGUFError / CorruptGGUFError / ModelNotFoundError
        from kaihe_desktop.core.gguf_meta import split_shard_names

        shard_names = split_shard_names(path.name)
        files = [path] if shard_names is None else [path.with_name(s) for s in shard_names]
        owned = False
        if copy:
            dest_dir = self.models_dir / "imported"
            dest_dir.mkdir(parents=True, exist_ok=True)
            copied = []
            for f in files:
                target = dest_dir / f.name
                if target.exists():
                    raise LibraryError(f"{target} already exists; remove it from the library first")
                shutil.copy2(f, target)
                copied.append(target)
            files, owned = copied, True
        quant = meta.file_type
        stem = path.name[:-5]
        entry = LibraryEntry(
            name=name or stem,
            repo_id=repo_id,
            quant=quant,
            variant=quant or "unknown",
            path=files[0],
            files=tuple(files),
            size_bytes=sum(f.stat().st_size for f in files),
            sha256=sha256_file(files[0]),
            source=source,
            owned=owned,
            added_at=_now(),
        )
        target_path = files[0].resolve()
        return self._upsert(entry, same=lambda e: e.path.resolve() == target_path)

    def import_starter(self, *, dest_dir: Path | None = None) -> LibraryEntry:
        """The starter model (a pip package) assembled into the models folder and listed."""
        from kaihe_desktop.core.starter import STARTER_REPO_ID, starter_model_path

        model = starter_model_path(dest_dir or self.models_dir / "starter")
        entry = self.import_file(model, name="starter", source="starter", repo_id=STARTER_REPO_ID)
        return self._upsert(replace(entry, owned=True), same=lambda e: e.name == entry.name)

    def discover_hf_cache(self, *, cache_dir: Path | str | None = None) -> tuple[CachedGGUF, ...]:
        """GGUF files already in the Hugging Face cache (huggingface_hub.scan_cache_dir), not yet listed."""
        from huggingface_hub import scan_cache_dir
        from huggingface_hub.errors import CacheNotFound

        from kaihe_desktop.core.quants import quant_from_filename
        from kaihe_desktop.core.variants import is_mmproj

        try:
            info = scan_cache_dir(cache_dir)
        except CacheNotFound:
            return ()
        listed = {e.path.resolve() for e in self._read()}
        found = []
        for repo in info.repos:
            if repo.repo_type != "model":
                continue
            for revision in repo.revisions:
                for f in revision.files:
                    if not f.file_name.lower().endswith(".gguf") or is_mmproj(f.file_name):
                        continue
                    if f.file_path.resolve() in listed:
                        continue
                    repo_path = str(f.file_path.relative_to(revision.snapshot_path))
                    found.append(
                        CachedGGUF(
                            repo_id=repo.repo_id,
                            revision=revision.commit_hash,
                            path=f.file_path,
                            repo_path=repo_path,
                            size_bytes=f.size_on_disk,
                            quant=quant_from_filename(f.file_name),
                        )
                    )
        found.sort(key=lambda c: (c.repo_id, c.repo_path))
        return tuple(found)

    def add_from_hf_cache(self, cached: CachedGGUF) -> LibraryEntry:
        """List a cached GGUF in place (validated, not copied; deleting it later leaves the cache alone)."""
        entry = self.import_file(
            cached.path,
            name=f"{cached.repo_id.split('/')[-1]}:{cached.quant or Path(cached.repo_path).stem}",
            source="hf-cache",
            repo_id=cached.repo_id,
        )
        return self._upsert(
            replace(entry, quant=cached.quant or entry.quant, revision=cached.revision),
            same=lambda e: e.name == entry.name,
        )

    def touch(self, key: str) -> LibraryEntry:
        """Mark a model as used now."""
        target = self.get(key)
        stamped = replace(target, last_used=_now())
        self._mutate(lambda entries: [stamped if e.name == target.name else e for e in entries])
        return stamped

    # --- deleting -----------------------------------------------------------------------------------

    def plan_delete(self, key: str) -> DeletePlan:
        entry = self.get(key)
        models = self.models_dir.resolve()
        delete: list[Path] = []
        keep: list[Path] = []
        for f in entry.files:
            inside = f.resolve().is_relative_to(models) if f.exists() else str(f).startswith(str(models))
            (delete if entry.owned and inside else keep).append(f)
        freed = sum(f.stat().st_size for f in delete if f.is_file())
        dirs = sorted({f.parent for f in delete if f.parent.resolve() != models}, key=lambda p: -len(p.parts))
        return DeletePlan(
            entry=entry,
            delete_files=tuple(delete),
            keep_files=tuple(keep),
            freed_bytes=freed,
            empty_dirs=tuple(dirs),
        )

    def execute(self, plan: DeletePlan) -> DeleteResult:
        """Remove the entry and its owned files; folders left empty go too."""
        deleted = []
        for f in plan.delete_files:
            try:
                f.unlink()
                deleted.append(f)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise LibraryError(f"cannot delete {f}: {exc.strerror}") from exc
        for d in plan.empty_dirs:
            with contextlib.suppress(OSError):  # not empty, or already gone
                d.rmdir()
        self._mutate(lambda entries: [e for e in entries if e.name != plan.entry.name])
        return DeleteResult(
            name=plan.entry.name,
            freed_bytes=plan.freed_bytes,
            deleted_files=tuple(deleted),
            kept_files=plan.keep_files,
        )

    def delete(self, key: str) -> DeleteResult:
        return self.execute(self.plan_delete(key))


__all__ = [
    "CachedGGUF",
    "DeletePlan",
    "DeleteResult",
    "KaiheError",
    "Library",
    "LibraryEntry",
]
