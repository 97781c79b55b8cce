"""Small JSON state files (library index, download queue, caches) written atomically and read defensively.

Why one helper: every state file had its own temp-file dance, and each got a different part wrong (a full
disk became a traceback, a 0-byte temp file was left behind, valid JSON of the wrong shape crashed every
command). Here a write goes to a temp file in the same folder, is fsynced and renamed over the old file;
on any failure the temp file is removed and the old file is untouched. A full disk (ENOSPC, EDQUOT, EFBIG)
becomes one `DiskFullError` naming the folder and how much to free.

A read hands the parsed data to a caller-supplied parser. A file that cannot be used (not JSON, wrong
shape, unreadable) is moved aside to ``<name>.corrupt-<timestamp>`` (kept, never deleted) and the caller
gets an empty value plus a `StoreNotice`; notices are also recorded here so a front end (the CLI prints one
line on stderr) can tell the user which file was moved where.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

from kaihe_desktop.core.errors import DiskFullError, StateFileError
from kaihe_desktop.core.units import format_bytes

T = TypeVar("T")

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
MIN_FREE_HINT = 1024 * 1024  # "free at least" never says a few bytes: other writes need room too
TEMP_SUFFIX = ".tmp"
CORRUPT_TAG = ".corrupt-"

Opener = Callable[[int], BinaryIO]  # fd of the temp file -> a binary file object (injectable for tests)


def _open_temp(fd: int) -> BinaryIO:
    """How a temp file is opened; tests swap it for one that fails like a full disk."""
    return os.fdopen(fd, "wb")


class BadShapeError(ValueError):
    """Raised by parsers: the JSON is valid but not what this file should hold."""


@dataclass(frozen=True)
class StoreNotice:
    """Something the user should hear about once: a state file moved aside, or a cache not written."""

    path: Path
    message: str
    moved_to: Path | None = None


@dataclass(frozen=True)
class Loaded(Generic[T]):
    value: T
    notice: StoreNotice | None = None


_notices: list[StoreNotice] = []
_seen: set[str] = set()
_listener: Callable[[StoreNotice], None] | None = None
_notice_lock = threading.Lock()


def set_notice_listener(listener: Callable[[StoreNotice], None] | None) -> None:
    """A front end's hook: called once per new notice, as soon as it happens (the CLI prints a line).

    Setting one starts a new session: notices said before are said again if they recur.
    """
    global _listener
    reset_notices()
    with _notice_lock:
        _listener = listener


def reset_notices() -> None:
    """Forget recorded notices and which ones were already said."""
    with _notice_lock:
        _notices.clear()
        _seen.clear()


def take_notices() -> tuple[StoreNotice, ...]:
    """Notices recorded since the last call (for front ends that poll, like the GUI)."""
    with _notice_lock:
        out = tuple(_notices)
        _notices.clear()
    return out


def notify(notice: StoreNotice, *, once_per: str | None = None) -> None:
    """Record a notice; each ``once_per`` key (default: the message) is reported once per process."""
    key = once_per or notice.message
    with _notice_lock:
        if key in _seen:
            return
        _seen.add(key)
        _notices.append(notice)
        listener = _listener
    if listener is not None:
        listener(notice)


# --- writing ------------------------------------------------------------------------------------------


def disk_full_error(folder: Path, exc: OSError, *, what: str, needed: int) -> DiskFullError:
    """The one line for a state write that hit a full disk or quota."""
    free_hint = format_bytes(max(needed, MIN_FREE_HINT))
    cause = "the disk quota is used up" if exc.errno == errno.EDQUOT else "the disk is full"
    if exc.errno == errno.EFBIG:
        cause = "the file size limit was reached"
    return DiskFullError(
        f"cannot save {what}: {cause} in {folder}; free at least {free_hint} there and try again"
    )


def write_json(
    path: Path,
    payload: dict[str, Any],
    *,
    what: str,
    version: int | None = None,
    indent: int | None = 2,
    durable: bool = True,
    opener: Opener | None = None,
) -> None:
    """Replace ``path`` with ``payload`` atomically (temp, fsync, rename); no temp outlives a failure.

    ``version`` is stored as the ``"version"`` field; ``durable=False`` skips the fsync (caches).
    Raises DiskFullError (full disk / quota) or StateFileError (any other OS error), each one line
    naming the file.
    """
    path = Path(path)
    folder = path.parent
    body = {"version": version, **payload} if version is not None else payload
    data = json.dumps(body, indent=indent).encode("utf-8")
    tmp: str | None = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        try:
            fh = (opener or _open_temp)(fd)
        except BaseException:
            os.close(fd)
            raise
        with fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        if exc.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(folder, exc, what=what, needed=len(data)) from exc
        raise StateFileError(f"cannot save {what} to {path}: {exc.strerror or exc}") from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_cache(
    path: Path,
    payload: dict[str, Any],
    *,
    what: str,
    version: int | None = None,
    indent: int | None = None,
    opener: Opener | None = None,
) -> bool:
    """Like `write_json` for a cache: failing costs only a refetch, so it is a notice, not an error."""
    try:
        write_json(path, payload, what=what, version=version, indent=indent, durable=False, opener=opener)
    except (DiskFullError, StateFileError) as exc:
        message = f"{exc} (it is only a cache; carrying on without it)"
        notify(StoreNotice(path=path, message=message), once_per=f"cache:{what}:{type(exc).__name__}")
        return False
    return True


# --- reading ------------------------------------------------------------------------------------------


def _moved_aside_name(path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = path.with_name(f"{path.name}{CORRUPT_TAG}{stamp}")
    n = 2
    while candidate.exists():
        candidate = path.with_name(f"{path.name}{CORRUPT_TAG}{stamp}-{n}")
        n += 1
    return candidate


def _parse(raw: bytes, parse: Callable[[Any], T], *, version: int | None, what: str, path: Path) -> T:
    """Parse raw bytes; ValueError/TypeError/KeyError/AttributeError mean "cannot use this file"."""
    data = json.loads(raw.decode("utf-8"))
    if version is not None:
        if not isinstance(data, dict):
            raise BadShapeError(f"expected a JSON object, found {type(data).__name__}")
        found = data.get("version", version)
        if not isinstance(found, int) or isinstance(found, bool):
            raise BadShapeError(f"its version field is {found!r}")
        if found > version:
            raise StateFileError(
                f"{what} {path} was written by a newer KAIHE (format {found}; this one reads up to "
                f"{version}): update KAIHE, or move the file away to start afresh"
            )
    return parse(data)


class _Reread(Exception):
    """The file changed between the read and the move: it is not the bad one any more."""


def read_json(
    path: Path,
    *,
    parse: Callable[[Any], T],
    empty: Callable[[], T],
    what: str,
    version: int | None = None,
    lock: AbstractContextManager[Any] | None = None,
) -> Loaded[T]:
    """The parsed file, or ``empty()`` when it is missing; an unusable file is moved aside (kept) first.

    ``parse`` gets the decoded JSON and raises ValueError/TypeError/KeyError/AttributeError (or
    BadShapeError) when the shape is wrong. ``lock`` (the writers' lock) is taken before moving a file
    aside, so a file another process has just rewritten is never mistaken for the bad one.
    """
    path = Path(path)
    for _ in range(5):
        try:
            return _read_once(path, parse=parse, empty=empty, what=what, version=version, lock=lock)
        except _Reread:
            continue  # another writer replaced it while it was being judged: judge the new one
    return _read_once(path, parse=parse, empty=empty, what=what, version=version, lock=lock)


def _read_once(
    path: Path,
    *,
    parse: Callable[[Any], T],
    empty: Callable[[], T],
    what: str,
    version: int | None,
    lock: AbstractContextManager[Any] | None,
) -> Loaded[T]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Loaded(empty())
    except OSError as exc:
        return _move_aside(path, None, f"it cannot be read ({exc.strerror or exc})", empty, what, lock)
    try:
        return Loaded(_parse(raw, parse, version=version, what=what, path=path))
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        return _move_aside(path, raw, _why(exc), empty, what, lock)


def _why(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "it is not UTF-8 text"
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg.lower()} (line {exc.lineno}, column {exc.colno})"
    if isinstance(exc, BadShapeError):
        return str(exc)
    if isinstance(exc, KeyError):
        return f"the field {exc} is missing"
    return f"unexpected content: {exc}"


def _move_aside(
    path: Path,
    raw: bytes | None,
    why: str,
    empty: Callable[[], T],
    what: str,
    lock: AbstractContextManager[Any] | None,
) -> Loaded[T]:
    with lock if lock is not None else contextlib.nullcontext():
        if raw is not None:
            try:
                again = path.read_bytes()
            except FileNotFoundError:
                return Loaded(empty())  # someone else moved it aside already
            except OSError:
                again = raw
            if again != raw:
                raise _Reread()
        target = _moved_aside_name(path)
        try:
            os.replace(path, target)
        except FileNotFoundError:
            return Loaded(empty())
        except OSError as exc:
            raise StateFileError(
                f"{what} {path} is unusable ({why}) and cannot be moved aside ({exc.strerror or exc}); "
                "move it away by hand"
            ) from exc
    notice = StoreNotice(
        path=path,
        moved_to=target,
        message=f"{what} {path} was unusable ({why}); kept it as {target} and started with an empty one",
    )
    notify(notice)
    return Loaded(empty(), notice)


def read_cache(path: Path, *, version: int | None = None) -> dict[str, Any] | None:
    """A cache file's object, or None when it is missing, damaged or of another version (it is refetched)."""
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if version is not None and data.get("version") != version:
        return None
    return data


__all__ = [
    "BadShapeError",
    "Loaded",
    "StoreNotice",
    "notify",
    "read_cache",
    "read_json",
    "reset_notices",
    "set_notice_listener",
    "take_notices",
    "write_cache",
    "write_json",
]
