"""The local model library: what is installed, where, verified how, and used when.

An index file (``<KAIHE_HOME>/library.json``) lists models: downloaded ones (verified before they are added),
imported local GGUF files (validated first), GGUFs found in the Hugging Face cache (referenced, not copied)
and the starter model. Deleting is plan-then-execute, like huggingface_hub's cache delete strategy: the plan
says which files go and how many bytes that frees; only files the library owns are ever removed.
"""

from __future__ import annotations

import contextlib
import filecmp
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from filelock import FileLock
from huggingface_hub import scan_cache_dir
from huggingface_hub.errors import CacheNotFound

from kaihe_desktop.core import json_store, paths
from kaihe_desktop.core.downloads.lock import ensure_not_downloading, locks_dir
from kaihe_desktop.core.downloads.part_io import sha256_file
from kaihe_desktop.core.errors import (
    DiskFullError,
    KaiheError,
    LibraryError,
    ModelNotFoundError,
)
from kaihe_desktop.core.fit.quants import quant_from_filename
from kaihe_desktop.core.gguf.meta import read_local, split_shard_names
from kaihe_desktop.core.gguf.model_meta import ModelMeta
from kaihe_desktop.core.hub.variants import is_mmproj
from kaihe_desktop.core.names import (
    MAX_DISPLAY_NAME_CHARS,
    check_display_name,
    check_path_text,
    control_chars,
    shown,
)
from kaihe_desktop.core.reasons import CopyNeedsSpace
from kaihe_desktop.core.starter import STARTER_REPO_ID, starter_model_path
from kaihe_desktop.core.units import format_bytes

if TYPE_CHECKING:
    from kaihe_desktop.core.downloads.fetch import DownloadResult

INDEX_NAME = "library.json"
INDEX_VERSION = 1


class LibrarySource(StrEnum):
    """Where an entry came from; library.json stores the value (the strings it has always held)."""

    HUB = "hub"  # downloaded and verified by kaihe
    IMPORT = "import"  # a local .gguf the user imported (referenced, or copied in)
    HF_CACHE = "hf-cache"  # found in the Hugging Face cache, referenced in place
    STARTER = "starter"  # the bundled starter model


COPY_RESERVE_BYTES = 64 * 1024 * 1024  # an import never fills the disk to the last byte
COPY_TEMP_SUFFIX = ".importing"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _name_from_file(stem: str) -> str:
    """A display name from a file name: control characters (a newline breaks tables) become '_'."""
    cleaned = "".join("_" if control_chars(ch) else ch for ch in stem)
    return cleaned[:MAX_DISPLAY_NAME_CHARS] or "model"


def _sweep_stale_copies(folder: Path) -> None:
    """Remove temporary copies left by imports that were killed (their process is gone)."""
    for tmp in folder.glob(f".*{COPY_TEMP_SUFFIX}"):
        pid_text = tmp.name[: -len(COPY_TEMP_SUFFIX)].rpartition(".")[2]
        if pid_text.isdigit() and not psutil.pid_exists(int(pid_text)):
            with contextlib.suppress(OSError):
                tmp.unlink()


def _is_partial_copy(target: Path, *, of: Path) -> bool:
    """True when ``target`` is a strict prefix of ``of``: an interrupted copy, safe to replace."""
    size = target.stat().st_size
    if size >= of.stat().st_size:
        return False
    with target.open("rb") as a, of.open("rb") as b:
        while True:
            chunk = a.read(1 << 20)
            if not chunk:
                return True
            if b.read(len(chunk)) != chunk:
                return False


def _same_contents(a: Path, b: Path) -> bool:
    return filecmp.cmp(a, b, shallow=False)


def _copy_error(exc: OSError, folder: Path, *, what: str, needed: int) -> KaiheError:
    if exc.errno in json_store.DISK_FULL_ERRNOS:
        return json_store.disk_full_error(folder, exc, what=f"a copy of {what}", needed=needed)
    return LibraryError(f"cannot copy {what} into {folder}: {exc.strerror or exc}")


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
    source: LibrarySource
    owned: bool  # the files live in the library's models folder and go when the entry is deleted
    added_at: str
    last_used: str | None = None
    revision: str | None = None
    mmproj: Path | None = None
    file_sha256: tuple[str | None, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["source"] = str(self.source)
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
            source=LibrarySource(data.get("source") or LibrarySource.IMPORT),
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
            "source": str(self.source),
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
class AdoptResult:
    """What adopting cached GGUFs did: one unreadable file does not stop the others."""

    added: tuple[LibraryEntry, ...]
    skipped: tuple[tuple[CachedGGUF, KaiheError], ...]


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


_TEXT_FIELDS = ("name", "path")
_SOURCE_VALUES = tuple(str(s) for s in LibrarySource)
_OPTIONAL_TEXT_FIELDS = ("repo_id", "quant", "variant", "sha256", "source", "added_at", "last_used")


def _parse_index(data: Any) -> list[LibraryEntry]:
    """library.json's entries; BadShapeError when it is valid JSON of another shape (checked, not guessed)."""
    bad = json_store.BadShapeError
    if not isinstance(data, dict):
        raise bad(f"expected a JSON object, found {type(data).__name__}")
    models = data.get("models", [])
    if not isinstance(models, list):
        raise bad(f"'models' is a {type(models).__name__}, not a list")
    entries = []
    for n, item in enumerate(models):
        if not isinstance(item, dict):
            raise bad(f"model {n + 1} is a {type(item).__name__}, not an object")
        for key in _TEXT_FIELDS:
            if not isinstance(item.get(key), str) or not item[key]:
                raise bad(f"model {n + 1} has no text {key!r}")
        for key in _OPTIONAL_TEXT_FIELDS:
            if item.get(key) is not None and not isinstance(item[key], str):
                raise bad(f"model {n + 1}'s {key!r} is not text")
        if item.get("source") and item["source"] not in _SOURCE_VALUES:
            raise bad(
                f"model {n + 1}'s 'source' is {item['source']!r}, not one of {', '.join(_SOURCE_VALUES)}"
            )
        files = item.get("files")
        if files is not None and (not isinstance(files, list) or not all(isinstance(f, str) for f in files)):
            raise bad(f"model {n + 1}'s 'files' is not a list of paths")
        entries.append(LibraryEntry.from_dict(item))
    return entries


class Library:
    """The index in ``root/library.json``; models downloaded into ``models_dir``."""

    def __init__(self, *, root: Path | None = None, models_dir: Path | None = None) -> None:
        self.root = root if root is not None else paths.home()
        self.models_dir = models_dir if models_dir is not None else self.root / "models"
        self.index_path = self.root / INDEX_NAME
        self._lock = FileLock(str(self.root / f"{INDEX_NAME}.lock"), timeout=30)

    # --- index --------------------------------------------------------------------------------------

    def _read(self) -> list[LibraryEntry]:
        """The index; an unusable one is moved aside (kept, named in a json_store notice), reads as empty."""
        return json_store.read_json(
            self.index_path,
            parse=_parse_index,
            empty=list[LibraryEntry],
            what="the library index",
            version=INDEX_VERSION,
            lock=self._lock,
        ).value

    def _write(self, entries: Sequence[LibraryEntry]) -> None:
        json_store.write_json(
            self.index_path,
            {"models": [e.to_dict() for e in entries]},
            what="the library index",
            version=INDEX_VERSION,
        )

    def _mutate(self, change: Callable[[list[LibraryEntry]], list[LibraryEntry]]) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()  # creates the lock file: a full disk can refuse that too
        except OSError as exc:
            if exc.errno in json_store.DISK_FULL_ERRNOS:
                raise json_store.disk_full_error(self.root, exc, what="the library index", needed=0) from exc
            raise LibraryError(f"cannot open the library in {self.root}: {exc.strerror or exc}") from exc
        try:
            self._write(change(self._read()))
        finally:
            self._lock.release()

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
        candidate = check_path_text(key, what="model name or path").expanduser()
        for e in entries:
            if candidate.exists() and (e.path == candidate or e.path.resolve() == candidate.resolve()):
                return e
        known = ", ".join(e.name for e in entries) or "the library is empty"
        raise ModelNotFoundError(f"no model named {shown(key)} in the library ({known})")

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
            source=LibrarySource.HUB,
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
        source: LibrarySource = LibrarySource.IMPORT,
        repo_id: str | None = None,
        copier: Callable[[Path, Path], object] | None = None,
    ) -> LibraryEntry:
        """Add a local .gguf after reading its header (errors name what is wrong); copy=True copies it in.

        A copy goes to a temporary name and is renamed when complete, so a failed or killed copy never
        leaves a file that blocks the next import.
        """
        path = check_path_text(path, what="file path").expanduser()
        if name is not None:
            name = check_display_name(name)
        if path.suffix.lower() != ".gguf":
            raise LibraryError(f"{path} is not a .gguf file")
        if reader is None:
            reader = read_local
        meta = reader(
            path
        )  # raises NotGGUFError / TruncatedGGUFError / CorruptGGUFError / ModelNotFoundError
        shard_names = split_shard_names(path.name)
        files = [path] if shard_names is None else [path.with_name(s) for s in shard_names]
        owned = False
        made: list[Path] = []
        if copy:
            files, made = self._copy_in(files, copier=copier or shutil.copy2)
            owned = True
        try:
            quant = meta.file_type
            entry = LibraryEntry(
                name=name or _name_from_file(path.name[:-5]),
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
        except BaseException:
            for f in made:  # copies of files the user still has: an unlisted copy would block a re-import
                with contextlib.suppress(OSError):
                    f.unlink()
            raise

    def _copy_in(
        self, files: Sequence[Path], *, copier: Callable[[Path, Path], object]
    ) -> tuple[list[Path], list[Path]]:
        """Copy ``files`` into models/imported: (their paths there, the ones this call created)."""
        dest_dir = self.models_dir / "imported"
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _copy_error(exc, dest_dir, what=f"the folder {dest_dir}", needed=0) from exc
        _sweep_stale_copies(dest_dir)
        listed = {p.resolve() for e in self._read() for p in e.files}
        targets: list[Path] = []
        todo: list[tuple[Path, Path]] = []
        for f in files:
            target = dest_dir / f.name
            targets.append(target)
            if not (target.exists() or target.is_symlink()):
                todo.append((f, target))
            elif target.resolve() in listed:
                raise LibraryError(f"{target} already exists; remove it from the library first")
            elif _is_partial_copy(target, of=f):
                todo.append((f, target))  # left by a copy that failed before this fix: replaced whole
            elif not _same_contents(target, f):
                raise LibraryError(
                    f"{target} already exists, is not in the library and differs from {f}; "
                    "move it away and import again"
                )
        needed = sum(f.stat().st_size for f, _ in todo)
        free = shutil.disk_usage(dest_dir).free
        if needed + COPY_RESERVE_BYTES > free:
            reason = CopyNeedsSpace(
                file_name=files[0].name,
                dest_dir=dest_dir,
                needed_bytes=needed,
                reserve_bytes=COPY_RESERVE_BYTES,
                free_bytes=free,
            )
            raise DiskFullError(
                f"not enough disk space to copy {files[0].name} into {dest_dir}: "
                f"needs {format_bytes(needed)} "
                f"(+{format_bytes(COPY_RESERVE_BYTES)} reserve), {format_bytes(free)} free; "
                f"free at least {format_bytes(reason.shortfall_bytes)} there",
                reason=reason,
            )
        made: list[Path] = []
        source = files[0]
        try:
            for source, target in todo:
                tmp = dest_dir / f".{source.name}.{os.getpid()}{COPY_TEMP_SUFFIX}"
                try:
                    copier(source, tmp)
                    os.replace(tmp, target)
                finally:
                    with contextlib.suppress(OSError):
                        tmp.unlink()
                made.append(target)
        except BaseException as exc:
            for f in made:
                with contextlib.suppress(OSError):
                    f.unlink()
            if isinstance(exc, OSError):
                raise _copy_error(exc, dest_dir, what=str(source), needed=needed) from exc
            raise
        return targets, made

    def import_starter(self, *, dest_dir: Path | None = None) -> LibraryEntry:
        """The starter model (a pip package) assembled into the models folder and listed."""
        model = starter_model_path(dest_dir or self.models_dir / "starter")
        entry = self.import_file(model, name="starter", source=LibrarySource.STARTER, repo_id=STARTER_REPO_ID)
        return self._upsert(replace(entry, owned=True), same=lambda e: e.name == entry.name)

    def discover_hf_cache(self, *, cache_dir: Path | str | None = None) -> tuple[CachedGGUF, ...]:
        """GGUF files already in the Hugging Face cache (huggingface_hub.scan_cache_dir), not yet listed."""
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
            source=LibrarySource.HF_CACHE,
            repo_id=cached.repo_id,
        )
        return self._upsert(
            replace(entry, quant=cached.quant or entry.quant, revision=cached.revision),
            same=lambda e: e.name == entry.name,
        )

    def adopt_hf_cache(self, offers: Sequence[CachedGGUF] | None = None) -> AdoptResult:
        """List cached GGUFs in place (all that are offered when ``offers`` is None), skipping the ones that
        cannot be used, each with its error, so both front ends report the same outcome."""
        added: list[LibraryEntry] = []
        skipped: list[tuple[CachedGGUF, KaiheError]] = []
        for offer in self.discover_hf_cache() if offers is None else offers:
            try:
                added.append(self.add_from_hf_cache(offer))
            except KaiheError as exc:
                skipped.append((offer, exc))
        return AdoptResult(added=tuple(added), skipped=tuple(skipped))

    def touch(self, key: str) -> LibraryEntry:
        """Mark a model as used now."""
        target = self.get(key)
        stamped = replace(target, last_used=_now())
        self._mutate(lambda entries: [stamped if e.name == target.name else e for e in entries])
        return stamped

    # --- deleting -----------------------------------------------------------------------------------

    def plan_delete(self, key: str) -> DeletePlan:
        """What deleting ``key`` would do; DownloadInProgressError while a process downloads its files (it
        would put them back and list the model again right after)."""
        entry = self.get(key)
        self._ensure_not_downloading(entry)
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

    def _ensure_not_downloading(self, entry: LibraryEntry) -> None:
        if entry.source == LibrarySource.HUB:  # a download's partial files are named by their LFS sha256
            keys = [sha for sha in entry.file_sha256 if sha]
            ensure_not_downloading(locks_dir(self.models_dir), keys, what=entry.name)

    def execute(self, plan: DeletePlan) -> DeleteResult:
        """Remove the entry and its owned files; folders left empty go too."""
        self._ensure_not_downloading(plan.entry)  # a plan may be older than a download started since
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
    "LibrarySource",
]
