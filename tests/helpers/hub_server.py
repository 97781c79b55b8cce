"""A Hub-compatible HTTP server on 127.0.0.1 that the real huggingface_hub client uses via HF_ENDPOINT.

It serves real files (from disk, never copied) with the headers huggingface_hub 2.4 reads, and injects
the faults a real network has: latency, 429 with Retry-After, 5xx, cut connections, throttled bandwidth,
gated repos, missing repos/files, servers that ignore Range, corrupted bytes. It counts the body bytes it
sends per file so tests can prove a resume fetched only the rest.

Routes (what huggingface_hub sends, see hf_api.py / file_download.py / utils/_pagination.py):
  HEAD/GET /{repo}/resolve/{rev}/{path}   200 (small files) or 302 to the "CDN" (LFS files); Range -> 206
  HEAD/GET {cdn}/cdn/{repo}/{rev}/{path}  LFS bytes, on a second port (another origin, like the real CDN)
  GET  /api/models                        search listing: filter, search, author, gated, pipeline_tag,
                                          sort, direction, limit, expand, full, cardData; Link paging
  GET  /api/models/{repo}[/revision/{rev}]     model info (siblings, cardData, gated, tags, gguf, sha)
  GET  /api/models/{repo}/tree/{rev}[/{path}]  tree listing with lfs {oid, size, pointerSize}; paging
  POST /api/models/{repo}/paths-info/{rev}     form body paths=...&expand=...
  GET  /api/whoami-v2                     the user behind a valid token
  GET  /_test/stats                       body bytes sent per file (for standalone runs)

Standalone:
  python -m tests.helpers.hub_server --repo owner/name=FILE [--repo ...] [--port N] [--bandwidth BPS]
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import json
import mmap
import socket
import struct
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

LFS_SUFFIXES = (".gguf", ".bin", ".safetensors", ".pt", ".pth", ".onnx", ".npz", ".zip", ".gz")
LFS_MIN_SIZE = 10 * 1024 * 1024  # anything this big is LFS on the real Hub too
CHUNK = 256 * 1024
DEFAULT_TOKEN = "hf_kaihe_test_token"
_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_SHA_LOCK = threading.Lock()


def _sha256_of_path(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _SHA_LOCK:
        cached = _SHA_CACHE.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(4 * 1024 * 1024), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _SHA_LOCK:
        _SHA_CACHE[key] = value
    return value


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324 - git's own object id


class RepoFileEntry:
    """One file of a repo: bytes in memory or a path on disk (served in place)."""

    def __init__(self, name: str, source: Path | bytes, *, lfs: bool | None = None) -> None:
        self.name = name
        self.path: Path | None = None
        self.data: bytes | None = None
        if isinstance(source, bytes | bytearray):
            self.data = bytes(source)
            self.size = len(self.data)
        else:
            self.path = Path(source)
            self.size = self.path.stat().st_size
        self.is_lfs = (
            lfs if lfs is not None else name.lower().endswith(LFS_SUFFIXES) or self.size >= LFS_MIN_SIZE
        )
        self._lock = threading.Lock()
        self._sha256: str | None = None
        self._blob_oid: str | None = None

    @property
    def sha256(self) -> str:
        with self._lock:
            if self._sha256 is None:
                if self.data is not None:
                    self._sha256 = hashlib.sha256(self.data).hexdigest()
                else:
                    assert self.path is not None
                    self._sha256 = _sha256_of_path(self.path)
            return self._sha256

    @property
    def pointer(self) -> bytes:
        spec = "version https://git-lfs.github.com/spec/v1"
        return f"{spec}\noid sha256:{self.sha256}\nsize {self.size}\n".encode()

    @property
    def blob_oid(self) -> str:
        """The git object id: of the LFS pointer for LFS files, of the content otherwise."""
        if self._blob_oid is None:
            self._blob_oid = _git_blob_oid(self.pointer if self.is_lfs else self.read(0, self.size))
        return self._blob_oid

    def read(self, start: int, length: int) -> bytes:
        if self.data is not None:
            return self.data[start : start + length]
        assert self.path is not None
        with self.path.open("rb") as fh:
            fh.seek(start)
            return fh.read(length)

    def tree_entry(self, *, expand: bool, commit: str, date: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": self.blob_oid, "size": self.size, "path": self.name}
        if self.is_lfs:
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": len(self.pointer)}
        if expand:
            entry["lastCommit"] = {"id": commit, "title": "Upload", "date": date}
        return entry


@dataclasses.dataclass
class HubRepo:
    repo_id: str
    files: dict[str, RepoFileEntry]
    gated: bool | str = False
    license: str | None = None
    tags: tuple[str, ...] = ()
    card_data: dict[str, Any] | None = None
    downloads: int = 0
    likes: int = 0
    pipeline_tag: str | None = None
    base_model: str | None = None
    gguf: dict[str, Any] | None = None
    created_at: str = "2025-01-01T00:00:00.000Z"
    last_modified: str = "2025-01-01T00:00:00.000Z"
    allowed_tokens: set[str] = dataclasses.field(default_factory=lambda: {DEFAULT_TOKEN})
    _gguf_derived: bool = False

    @property
    def sha(self) -> str:
        joined = "\n".join(f"{name}:{f.size}" for name, f in sorted(self.files.items()))
        return hashlib.sha1(f"{self.repo_id}\n{joined}".encode()).hexdigest()  # noqa: S324

    @property
    def author(self) -> str:
        return self.repo_id.split("/", 1)[0]

    def all_tags(self) -> list[str]:
        tags = list(self.tags)
        if any(name.endswith(".gguf") for name in self.files) and "gguf" not in tags:
            tags.append("gguf")
        if self.license and f"license:{self.license}" not in tags:
            tags.append(f"license:{self.license}")
        if self.base_model and f"base_model:{self.base_model}" not in tags:
            tags.append(f"base_model:{self.base_model}")
        return tags

    def full_card_data(self) -> dict[str, Any]:
        card = dict(self.card_data or {})
        if self.license is not None:
            card.setdefault("license", self.license)
        if self.base_model is not None:
            card.setdefault("base_model", self.base_model)
        if self.pipeline_tag is not None:
            card.setdefault("pipeline_tag", self.pipeline_tag)
        tags = [t for t in self.tags if ":" not in t]
        if tags:
            card.setdefault("tags", tags)
        return card


@dataclasses.dataclass
class Fault:
    """What goes wrong for matching requests.

    `times` counts the requests that still get `status`; `cut_times` those still cut after `cut_after` bytes.
    """

    latency_s: float = 0.0
    status: int | None = None
    times: int = 1
    retry_after: int | None = None
    cut_after: int | None = None
    cut_times: int = 1
    bandwidth: float | None = None  # bytes per second
    ignore_range: bool = False
    corrupt: bool = False
    methods: tuple[str, ...] | None = None  # e.g. ("GET",) to spare HEAD requests
    stall_after: int | None = None  # body bytes sent before the server goes silent (connection kept open)
    stall_s: float = 0.0  # how long it stays silent


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    repo_id: str | None
    filename: str | None
    range: str | None
    status: int
    authorization: bool


_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def _read_gguf_kv(buf: bytes | mmap.mmap) -> tuple[dict[str, Any], int]:
    """Scalar and string keys of a GGUF header (arrays skipped) and the total element count of its tensors."""
    if bytes(buf[:4]) != b"GGUF":
        raise ValueError("not a GGUF file")
    _version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
    pos = 24

    def read_str(at: int) -> tuple[str, int]:
        (n,) = struct.unpack_from("<Q", buf, at)
        return bytes(buf[at + 8 : at + 8 + n]).decode("utf-8", "replace"), at + 8 + n

    def skip_value(kind: int, at: int) -> tuple[Any, int]:
        if kind == 8:
            return read_str(at)
        if kind == 9:
            elem, count = struct.unpack_from("<IQ", buf, at)
            at += 12
            if elem == 8:
                for _ in range(count):
                    (n,) = struct.unpack_from("<Q", buf, at)
                    at += 8 + n
            else:
                at += struct.calcsize("<" + _GGUF_SCALARS[elem]) * count
            return None, at
        fmt = "<" + _GGUF_SCALARS[kind]
        return struct.unpack_from(fmt, buf, at)[0], at + struct.calcsize(fmt)

    values: dict[str, Any] = {}
    for _ in range(n_kv):
        key, pos = read_str(pos)
        (kind,) = struct.unpack_from("<I", buf, pos)
        value, pos = skip_value(kind, pos + 4)
        if value is not None:
            values[key] = value
    total = 0
    for _ in range(n_tensors):
        _name, pos = read_str(pos)
        (n_dims,) = struct.unpack_from("<I", buf, pos)
        dims = struct.unpack_from(f"<{n_dims}Q", buf, pos + 4)
        pos += 4 + 8 * n_dims + 4 + 8
        count = 1
        for d in dims:
            count *= d
        total += count
    return values, total


def _derive_gguf_info(files: Mapping[str, RepoFileEntry]) -> dict[str, Any] | None:
    """What the real Hub shows under `gguf` for a GGUF repo, read from the first model file's header."""
    candidates = [f for n, f in sorted(files.items()) if n.endswith(".gguf") and "mmproj" not in n.lower()]
    if not candidates:
        return None
    for entry in candidates:
        try:
            if entry.path is not None:
                with entry.path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                    values, total = _read_gguf_kv(mm)
            else:
                values, total = _read_gguf_kv(entry.data or b"")
            break
        except (ValueError, struct.error, KeyError, OSError, OverflowError):
            continue  # corrupt/truncated fixtures: try the next one, or show no gguf block
    else:
        return None
    info: dict[str, Any] = {"total": total}
    arch = values.get("general.architecture")
    if arch:
        info["architecture"] = arch
        if (ctx := values.get(f"{arch}.context_length")) is not None:
            info["context_length"] = int(ctx)
    if template := values.get("tokenizer.chat_template"):
        info["chat_template"] = template
    return info


class HubServer:
    """The fake Hub. `url` is what HF_ENDPOINT must be; LFS bytes come from a second port (the "CDN")."""

    def __init__(self, root_dir: Path | str | None = None, *, port: int = 0, page_size: int = 1000) -> None:
        self.root_dir = Path(root_dir) if root_dir is not None else None
        self.page_size = page_size
        self._repos: dict[str, HubRepo] = {}
        self._faults: dict[tuple[str, str | None], Fault] = {}
        self._bytes: dict[tuple[str, str], int] = {}
        self._records: list[tuple[int, RequestRecord]] = []
        self._seq = 0
        self._lock = threading.RLock()
        self._port = port
        self._hub: ThreadingHTTPServer | None = None
        self._cdn: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # --- lifecycle ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._hub is None:
            raise RuntimeError("HubServer is not started")
        return f"http://127.0.0.1:{self._hub.server_address[1]}"

    @property
    def cdn_url(self) -> str:
        if self._cdn is None:
            raise RuntimeError("HubServer is not started")
        return f"http://127.0.0.1:{self._cdn.server_address[1]}"

    def start(self) -> HubServer:
        if self._hub is not None:
            return self
        handler = _make_handler(self)
        self._hub = _Server(("127.0.0.1", self._port), handler)
        self._cdn = _Server(("127.0.0.1", 0), handler)
        for srv in (self._hub, self._cdn):
            thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for srv in (self._hub, self._cdn):
            if srv is not None:
                srv.shutdown()
                srv.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        self._hub = self._cdn = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- repos --------------------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, Path | bytes],
        *,
        gated: bool | str = False,
        license: str | None = None,  # noqa: A002 - the Hub's own word
        tags: Iterable[str] = (),
        card_data: Mapping[str, Any] | None = None,
        downloads: int = 0,
        likes: int = 0,
        pipeline_tag: str | None = None,
        base_model: str | None = None,
        gguf: Mapping[str, Any] | None = None,
        last_modified: str | None = None,
        created_at: str | None = None,
        lfs: Iterable[str] | None = None,
    ) -> HubRepo:
        """Serve `files` (name in repo -> path on disk or bytes) as `repo_id`. Replaces a repo of that id.

        `gguf` overrides the `gguf` block of model info (default: read from the first .gguf with `gguf`).
        `lfs` names the files stored in LFS (default: model-like suffixes and anything >= 10 MiB).
        `gated`: True/"auto"/"manual" -> files need a token in `allowed_tokens` (DEFAULT_TOKEN by default).
        """
        if repo_id.count("/") != 1:
            raise ValueError(f"repo id must be owner/name: {repo_id!r}")
        lfs_names = set(lfs) if lfs is not None else None
        entries = {
            name: RepoFileEntry(name, src, lfs=None if lfs_names is None else name in lfs_names)
            for name, src in files.items()
        }
        repo = HubRepo(
            repo_id=repo_id,
            files=entries,
            gated="auto" if gated is True else gated,
            license=license,
            tags=tuple(tags),
            card_data=dict(card_data) if card_data is not None else None,
            downloads=downloads,
            likes=likes,
            pipeline_tag=pipeline_tag,
            base_model=base_model,
            gguf=dict(gguf) if gguf is not None else None,
            _gguf_derived=gguf is not None,
        )
        if last_modified:
            repo.last_modified = last_modified
        if created_at:
            repo.created_at = created_at
        with self._lock:
            self._repos[repo_id] = repo
        return repo

    def remove_repo(self, repo_id: str) -> None:
        with self._lock:
            self._repos.pop(repo_id, None)

    def repo(self, repo_id: str) -> HubRepo | None:
        with self._lock:
            return self._repos.get(repo_id)

    def repo_ids(self) -> list[str]:
        with self._lock:
            return list(self._repos)

    def grant(self, repo_id: str, token: str) -> None:
        """Let `token` download from gated `repo_id` (as if its owner accepted the licence)."""
        with self._lock:
            self._repos[repo_id].allowed_tokens.add(token)

    def file_url(self, repo_id: str, filename: str, *, revision: str = "main") -> str:
        return f"{self.url}/{repo_id}/resolve/{revision}/{quote(filename)}"

    # --- faults and counters ------------------------------------------------------------------------

    def inject(self, repo_id: str, filename: str | None = None, **fault: Any) -> Fault:
        """Add a fault for one file (or, with filename=None, every request about the repo, API included)."""
        value = Fault(**fault)
        with self._lock:
            self._faults[(repo_id, filename)] = value
        return value

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset_counters(self) -> None:
        with self._lock:
            self._bytes.clear()
            self._records.clear()

    def reset(self) -> None:
        self.clear_faults()
        self.reset_counters()

    def bytes_sent(self, repo_id: str | None = None, filename: str | None = None) -> int:
        """Body bytes sent for one file, one repo, or everything."""
        with self._lock:
            return sum(
                n
                for (r, f), n in self._bytes.items()
                if (repo_id is None or r == repo_id) and (filename is None or f == filename)
            )

    def byte_counts(self) -> dict[str, int]:
        """Body bytes sent per "repo/filename" (what the standalone server shows at /_test/stats)."""
        with self._lock:
            return {f"{r}/{f}": n for (r, f), n in self._bytes.items()}

    def requests(self, repo_id: str | None = None, filename: str | None = None) -> list[RequestRecord]:
        with self._lock:
            return [
                rec
                for _seq, rec in self._records
                if (repo_id is None or rec.repo_id == repo_id)
                and (filename is None or rec.filename == filename)
            ]

    # --- internals used by the handler --------------------------------------------------------------

    def _fault_for(self, repo_id: str | None, filename: str | None, method: str) -> Fault | None:
        if repo_id is None:
            return None
        with self._lock:
            for key in ((repo_id, filename), (repo_id, None)):
                fault = self._faults.get(key)
                if fault is not None and (fault.methods is None or method in fault.methods):
                    return fault
        return None

    def _take_status(self, fault: Fault | None) -> int | None:
        if fault is None or fault.status is None:
            return None
        with self._lock:
            if fault.times <= 0:
                return None
            fault.times -= 1
            return fault.status

    def _take_cut(self, fault: Fault | None) -> int | None:
        if fault is None or fault.cut_after is None:
            return None
        with self._lock:
            if fault.cut_times <= 0:
                return None
            fault.cut_times -= 1
            return fault.cut_after

    def _count(self, repo_id: str, filename: str, n: int) -> None:
        with self._lock:
            key = (repo_id, filename)
            self._bytes[key] = self._bytes.get(key, 0) + n

    def _next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def _record(self, seq: int, record: RequestRecord) -> None:
        """Kept in arrival order (a response may finish after the client's next request did)."""
        with self._lock:
            self._records.append((seq, record))
            self._records.sort(key=lambda item: item[0])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


class _CutConnection(Exception):
    pass


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _make_handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_HubHandler):
        server_hub = hub

    return Handler


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "KaiheTestHub/1.0"
    server_hub: HubServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return  # quiet

    # --- dispatch ---------------------------------------------------------------------------------

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        self._status = 0
        self._seq = self.server_hub._next_seq()
        self._recorded = False
        self._method = method
        self._repo_id: str | None = None
        self._filename: str | None = None
        split = urlsplit(self.path)
        self._query = parse_qs(split.query, keep_blank_values=True)
        parts = [unquote(p) for p in split.path.split("/")[1:]]
        try:
            self._route(method, parts)
        except _CutConnection:
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self._record_now()

    def _route(self, method: str, parts: list[str]) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if method == "POST" else b""
        if parts[:2] == ["api", "whoami-v2"]:
            return self._whoami()
        token = self._token()
        if token is not None and not token.startswith("hf_") and parts[:1] != ["_test"]:
            # Like the Hub: a token that is no Hugging Face token fails every request, public repos too
            # (a valid token without access to a gated repo gets 403 from _check_gate instead).
            return self._error(401, "Invalid credentials in Authorization header", None)
        if parts[:2] == ["_test", "stats"]:
            return self._json(
                {"bytes_sent": self.server_hub.bytes_sent(), "per_file": self.server_hub.byte_counts()}
            )
        if parts[:2] == ["api", "models"] and len(parts) == 2:
            return self._list_models()
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id = f"{parts[2]}/{parts[3]}"
            rest = parts[4:]
            self._repo_id = repo_id
            fault = self.server_hub._fault_for(repo_id, None, method)
            if self._apply_pre_faults(fault):
                return None
            if not rest:
                return self._model_info(repo_id, None)
            if rest[0] == "revision" and len(rest) >= 2:
                return self._model_info(repo_id, "/".join(rest[1:]))
            if rest[0] == "tree" and len(rest) >= 2:
                return self._tree(repo_id, rest[1], "/".join(rest[2:]))
            if rest[0] == "paths-info" and len(rest) >= 2 and method == "POST":
                return self._paths_info(repo_id, rest[1], body)
            return self._error(404, "Not Found", None)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(method, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        if len(parts) >= 5 and parts[0] == "cdn":
            return self._cdn(method, f"{parts[1]}/{parts[2]}", parts[3], "/".join(parts[4:]))
        return self._error(404, "Not Found", None)

    # --- helpers ------------------------------------------------------------------------------------

    def _record_now(self) -> None:
        """Record the request once, before its response reaches the client (tests look right after)."""
        if self._recorded:
            return
        self._recorded = True
        self.server_hub._record(
            self._seq,
            RequestRecord(
                method=self._method,
                path=self.path,
                repo_id=self._repo_id,
                filename=self._filename,
                range=self.headers.get("Range"),
                status=self._status,
                authorization=bool(self.headers.get("Authorization")),
            ),
        )

    def _send_headers(self, status: int, headers: Mapping[str, str]) -> None:
        self._status = status
        self._record_now()
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()

    def _json(self, data: Any, *, status: int = 200, extra: Mapping[str, str] | None = None) -> None:
        payload = json.dumps(data).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "Content-Length": str(len(payload))}
        headers.update(extra or {})
        self._send_headers(status, headers)
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _error(
        self, status: int, message: str, code: str | None, *, extra: Mapping[str, str] | None = None
    ) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        headers.update(extra or {})
        self._json({"error": message}, status=status, extra=headers)

    def _apply_pre_faults(self, fault: Fault | None) -> bool:
        """Latency and status faults. True when the request was answered with an error."""
        if fault is None:
            return False
        if fault.latency_s:
            time.sleep(fault.latency_s)
        status = self.server_hub._take_status(fault)
        if status is None:
            return False
        extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        message = "Too Many Requests" if status == 429 else f"Injected error {status}"
        self._error(status, message, None, extra=extra)
        return True

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            return auth[7:].strip() or None
        return None

    def _get_repo(self, repo_id: str) -> HubRepo | None:
        repo = self.server_hub.repo(repo_id)
        if repo is None:
            self._error(404, "Repository not found", "RepoNotFound")
        return repo

    def _check_revision(self, repo: HubRepo, revision: str) -> bool:
        if unquote(revision) in ("main", repo.sha):
            return True
        self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return False

    def _check_gate(self, repo: HubRepo) -> bool:
        if not repo.gated:
            return True
        token = self._token()
        if token is None:
            self._error(
                401,
                f"Access to model {repo.repo_id} is restricted. You must have access to it "
                "and be authenticated to access it. Please log in.",
                "GatedRepo",
            )
            return False
        if token not in repo.allowed_tokens:
            self._error(
                403,
                f"Access to model {repo.repo_id} is restricted and you are not in the authorized list. "
                f"Visit {self.server_hub.url}/{repo.repo_id} to ask for access.",
                "GatedRepo",
            )
            return False
        return True

    def _repo_headers(self, repo: HubRepo) -> dict[str, str]:
        return {"X-Repo-Commit": repo.sha}

    # --- API ----------------------------------------------------------------------------------------

    def _whoami(self) -> None:
        token = self._token()
        if token is None or not token.startswith("hf_"):
            self._error(401, "Invalid credentials in Authorization header", None)
            return
        self._json({"type": "user", "name": "kaihe-tester", "auth": {"type": "access_token"}})

    def _model_payload(self, repo: HubRepo, *, siblings: bool, blobs: bool, card: bool) -> dict[str, Any]:
        if not repo._gguf_derived:
            repo.gguf = _derive_gguf_info(repo.files)
            repo._gguf_derived = True
        data: dict[str, Any] = {
            "_id": repo.sha[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.author,
            "sha": repo.sha,
            "lastModified": repo.last_modified,
            "createdAt": repo.created_at,
            "private": False,
            "disabled": False,
            "gated": repo.gated,
            "downloads": repo.downloads,
            "likes": repo.likes,
            "trendingScore": 0,
            "tags": repo.all_tags(),
            "pipeline_tag": repo.pipeline_tag,
            "library_name": "gguf" if repo.gguf is not None else None,
            "usedStorage": sum(f.size for f in repo.files.values()),
        }
        if repo.gguf is not None:
            data["gguf"] = repo.gguf
        if card:
            data["cardData"] = repo.full_card_data()
        if siblings:
            sibs = []
            for name, entry in sorted(repo.files.items()):
                sib: dict[str, Any] = {"rfilename": name}
                if blobs:
                    sib["size"] = entry.size
                    sib["blobId"] = entry.blob_oid
                    if entry.is_lfs:
                        sib["lfs"] = {
                            "sha256": entry.sha256,
                            "size": entry.size,
                            "pointerSize": len(entry.pointer),
                        }
                sibs.append(sib)
            data["siblings"] = sibs
        return data

    def _model_info(self, repo_id: str, revision: str | None) -> None:
        repo = self._get_repo(repo_id)
        if repo is None:
            return
        if revision is not None and not self._check_revision(repo, revision):
            return
        blobs = _truthy(self._query.get("blobs"))
        data = self._model_payload(repo, siblings=True, blobs=blobs, card=True)
        expand = self._expand()
        if expand:
            data = _select(data, expand)
        self._json(data)

    def _expand(self) -> list[str]:
        values = self._query.get("expand", []) + self._query.get("expand[]", [])
        return [v for item in values for v in item.split(",") if v]

    def _list_models(self) -> None:
        q = self._query
        with self.server_hub._lock:
            repos = list(self.server_hub._repos.values())
        filters = [f for item in q.get("filter", []) for f in item.split(",") if f]
        for wanted in filters:
            repos = [r for r in repos if wanted in r.all_tags() or wanted == (r.gguf and "gguf")]
        if search := (q.get("search") or [""])[0].lower():
            repos = [r for r in repos if search in r.repo_id.lower()]
        if author := (q.get("author") or [""])[0]:
            repos = [r for r in repos if r.author == author]
        if gated := (q.get("gated") or [""])[0]:
            repos = [r for r in repos if bool(r.gated) == (gated.lower() == "true")]
        if pipeline := (q.get("pipeline_tag") or [""])[0]:
            repos = [r for r in repos if r.pipeline_tag == pipeline]
        sort = (q.get("sort") or [""])[0]
        keys = {
            "downloads": lambda r: r.downloads,
            "likes": lambda r: r.likes,
            "lastModified": lambda r: r.last_modified,
            "createdAt": lambda r: r.created_at,
            "trendingScore": lambda r: r.downloads,
        }
        if sort in keys:
            direction = (q.get("direction") or ["-1"])[0]
            repos.sort(key=keys[sort], reverse=direction != "1")
        else:
            repos.sort(key=lambda r: r.repo_id)
        limit_raw = (q.get("limit") or [""])[0]
        page = min(
            int(limit_raw) if limit_raw.isdigit() else self.server_hub.page_size, self.server_hub.page_size
        )
        cursor_raw = (q.get("cursor") or [""])[0]
        start = int(base64.urlsafe_b64decode(cursor_raw.encode()).decode()) if cursor_raw else 0
        chunk = repos[start : start + page]
        full = _truthy(q.get("full"))
        card = _truthy(q.get("cardData")) or full
        expand = self._expand()
        items = []
        for repo in chunk:
            data = self._model_payload(repo, siblings=full or "siblings" in expand, blobs=False, card=card)
            if expand:
                data = _select(data, expand)
            elif not full:
                data = {
                    k: v
                    for k, v in data.items()
                    if k in _LIST_FIELDS or (k == "cardData" and card) or (k == "siblings" and full)
                }
            items.append(data)
        extra: dict[str, str] = {}
        if start + page < len(repos):
            params = [(k, v) for k, vs in q.items() if k != "cursor" for v in vs]
            params.append(("cursor", base64.urlsafe_b64encode(str(start + page).encode()).decode()))
            extra["Link"] = f'<{self.server_hub.url}/api/models?{urlencode(params)}>; rel="next"'
        self._json(items, extra=extra)

    def _tree(self, repo_id: str, revision: str, path: str) -> None:
        repo = self._get_repo(repo_id)
        if repo is None or not self._check_revision(repo, revision) or not self._check_gate(repo):
            return
        recursive = _truthy(self._query.get("recursive"))
        expand = _truthy(self._query.get("expand"))
        prefix = path.strip("/")
        names = sorted(repo.files)
        if prefix and prefix not in {n.rsplit("/", 1)[0] for n in names if "/" in n} | _all_dirs(names):
            if prefix in repo.files:
                self._error(400, f"{prefix} is a file, not a directory", None)
            else:
                self._error(
                    404, f"Entry not found: {prefix}", "EntryNotFound", extra=self._repo_headers(repo)
                )
            return
        entries: list[dict[str, Any]] = []
        seen_dirs: set[str] = set()
        for name in names:
            if prefix and not name.startswith(prefix + "/"):
                continue
            rel = name[len(prefix) + 1 :] if prefix else name
            if "/" in rel and not recursive:
                dirname = (prefix + "/" if prefix else "") + rel.split("/", 1)[0]
                if dirname not in seen_dirs:
                    seen_dirs.add(dirname)
                    entries.append(_dir_entry(dirname))
                continue
            if recursive and "/" in rel:
                parts = rel.split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    dirname = (prefix + "/" if prefix else "") + "/".join(parts[:i])
                    if dirname not in seen_dirs:
                        seen_dirs.add(dirname)
                        entries.append(_dir_entry(dirname))
            entries.append(
                repo.files[name].tree_entry(expand=expand, commit=repo.sha, date=repo.last_modified)
            )
        page = self.server_hub.page_size
        cursor_raw = (self._query.get("cursor") or [""])[0]
        start = int(base64.urlsafe_b64decode(cursor_raw.encode()).decode()) if cursor_raw else 0
        extra = dict(self._repo_headers(repo))
        if start + page < len(entries):
            params = [(k, v) for k, vs in self._query.items() if k != "cursor" for v in vs]
            params.append(("cursor", base64.urlsafe_b64encode(str(start + page).encode()).decode()))
            base = self.path.split("?", 1)[0]
            extra["Link"] = f'<{self.server_hub.url}{base}?{urlencode(params)}>; rel="next"'
        self._json(entries[start : start + page], extra=extra)

    def _paths_info(self, repo_id: str, revision: str, body: bytes) -> None:
        repo = self._get_repo(repo_id)
        if repo is None or not self._check_revision(repo, revision) or not self._check_gate(repo):
            return
        ctype = self.headers.get("Content-Type") or ""
        if "json" in ctype:
            form = json.loads(body or b"{}")
            paths = form.get("paths", [])
            expand = bool(form.get("expand"))
        else:
            parsed = parse_qs(body.decode(), keep_blank_values=True)
            paths = parsed.get("paths", [])
            expand = _truthy(parsed.get("expand"))
        dirs = _all_dirs(sorted(repo.files))
        out: list[dict[str, Any]] = []
        for p in paths:
            p = p.strip("/")
            if p in repo.files:
                out.append(repo.files[p].tree_entry(expand=expand, commit=repo.sha, date=repo.last_modified))
            elif p in dirs:
                out.append(_dir_entry(p))
        self._json(out, extra=self._repo_headers(repo))

    # --- files --------------------------------------------------------------------------------------

    def _file_or_error(
        self, repo_id: str, revision: str, filename: str
    ) -> tuple[HubRepo, RepoFileEntry] | None:
        self._repo_id, self._filename = repo_id, filename
        repo = self._get_repo(repo_id)
        if repo is None or not self._check_revision(repo, revision) or not self._check_gate(repo):
            return None
        entry = repo.files.get(filename)
        if entry is None:
            self._error(404, "Entry not found", "EntryNotFound", extra=self._repo_headers(repo))
            return None
        return repo, entry

    def _resolve(self, method: str, repo_id: str, revision: str, filename: str) -> None:
        self._repo_id, self._filename = repo_id, filename
        fault = self.server_hub._fault_for(repo_id, filename, method)
        if self._apply_pre_faults(fault):
            return
        found = self._file_or_error(repo_id, revision, filename)
        if found is None:
            return
        repo, entry = found
        if entry.is_lfs:
            # Like the Hub: a redirect to the CDN (another origin) with the metadata; signed: no auth there.
            sig = hashlib.sha256(f"{repo_id}/{filename}/{repo.sha}".encode()).hexdigest()[:16]
            location = f"{self.server_hub.cdn_url}/cdn/{repo_id}/{repo.sha}/{quote(filename)}?sig={sig}"
            headers = {
                "Location": location,
                "ETag": f'"{entry.blob_oid}"',
                "X-Linked-Etag": f'"{entry.sha256}"',
                "X-Linked-Size": str(entry.size),
                "Content-Length": "0",
                "Accept-Ranges": "bytes",
                **self._repo_headers(repo),
            }
            self._send_headers(302, headers)
            return
        self._send_file(method, repo, entry, fault, etag=entry.blob_oid)

    def _cdn(self, method: str, repo_id: str, revision: str, filename: str) -> None:
        self._repo_id, self._filename = repo_id, filename
        fault = self.server_hub._fault_for(repo_id, filename, method)
        if self._apply_pre_faults(fault):
            return
        repo = self.server_hub.repo(repo_id)
        entry = repo.files.get(filename) if repo is not None else None
        if repo is None or entry is None:
            self._error(404, "Not Found", None)
            return
        self._send_file(method, repo, entry, fault, etag=entry.sha256)

    def _send_file(
        self, method: str, repo: HubRepo, entry: RepoFileEntry, fault: Fault | None, *, etag: str
    ) -> None:
        size = entry.size
        start, end = 0, size - 1
        status = 200
        range_header = self.headers.get("Range")
        if range_header and not (fault is not None and fault.ignore_range):
            parsed = _parse_range(range_header, size)
            if parsed is None:
                self._send_headers(
                    416,
                    {"Content-Range": f"bytes */{size}", "Content-Length": "0", **self._repo_headers(repo)},
                )
                return
            start, end = parsed
            status = 206
        length = max(end - start + 1, 0)
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(length),
            "Accept-Ranges": "bytes",
            "ETag": f'"{etag}"',
            "Content-Disposition": f'inline; filename="{Path(entry.name).name}"',
            **self._repo_headers(repo),
        }
        if entry.is_lfs:
            headers["X-Linked-Etag"] = f'"{entry.sha256}"'
            headers["X-Linked-Size"] = str(size)
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._send_headers(status, headers)
        if method == "HEAD":
            return
        cut_after = self.server_hub._take_cut(fault) if method == "GET" else None
        bandwidth = fault.bandwidth if fault is not None else None
        corrupt_at = size // 2 if fault is not None and fault.corrupt else None
        stall = (fault.stall_after, fault.stall_s) if fault is not None and fault.stall_after else None
        self._stream(
            repo.repo_id,
            entry,
            start,
            length,
            cut_after=cut_after,
            bandwidth=bandwidth,
            corrupt_at=corrupt_at,
            stall=stall,
        )

    def _stream(
        self,
        repo_id: str,
        entry: RepoFileEntry,
        start: int,
        length: int,
        *,
        cut_after: int | None,
        bandwidth: float | None,
        corrupt_at: int | None,
        stall: tuple[int, float] | None = None,
    ) -> None:
        chunk = CHUNK if bandwidth is None else max(1024, min(CHUNK, int(bandwidth / 20)))
        sent = 0
        began = time.monotonic()
        fh = entry.path.open("rb") if entry.path is not None else None
        try:
            if fh is not None:
                fh.seek(start)
            while sent < length:
                want = min(chunk, length - sent)
                if stall is not None:
                    if sent >= stall[0]:
                        self.wfile.flush()
                        time.sleep(stall[1])  # silent, the connection open: the client's read blocks
                        stall = None
                    else:
                        want = min(want, stall[0] - sent)
                if cut_after is not None:
                    want = min(want, cut_after - sent)
                    if want <= 0:
                        raise _CutConnection
                data = fh.read(want) if fh is not None else entry.read(start + sent, want)
                if not data:
                    break
                if corrupt_at is not None and start + sent <= corrupt_at < start + sent + len(data):
                    i = corrupt_at - start - sent
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
                self.server_hub._count(repo_id, entry.name, len(data))  # before the client can see them
                self.wfile.write(data)
                sent += len(data)
                if bandwidth:
                    ahead = sent / bandwidth - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
            if cut_after is not None and sent >= cut_after and sent < length:
                raise _CutConnection
        finally:
            if fh is not None:
                fh.close()


_LIST_FIELDS = {
    "_id",
    "id",
    "modelId",
    "likes",
    "trendingScore",
    "private",
    "downloads",
    "tags",
    "pipeline_tag",
    "library_name",
    "createdAt",
    "gated",
}


def _select(data: Mapping[str, Any], expand: Sequence[str]) -> dict[str, Any]:
    out = {k: data[k] for k in ("_id", "id") if k in data}
    for key in expand:
        if key in data:
            out[key] = data[key]
    return out


def _truthy(values: Sequence[str] | None) -> bool:
    return bool(values) and values[0].lower() in ("1", "true", "yes")  # type: ignore[index]


def _dir_entry(path: str) -> dict[str, Any]:
    return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}  # noqa: S324


def _all_dirs(names: Iterable[str]) -> set[str]:
    dirs: set[str] = set()
    for name in names:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return dirs


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """'bytes=N-', 'bytes=N-M', 'bytes=-K' -> (start, end) inclusive, or None when unsatisfiable."""
    if not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if first == "":
            k = int(last)
            start, end = max(size - k, 0), size - 1
        else:
            start = int(first)
            end = int(last) if last else size - 1
    except ValueError:
        return None
    end = min(end, size - 1)
    if start >= size or start > end:
        return None
    return start, end


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the test Hub server standalone.")
    parser.add_argument("--repo", action="append", default=[], metavar="OWNER/NAME=FILE[,FILE...]")
    parser.add_argument("--gated", action="append", default=[], metavar="OWNER/NAME")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bandwidth", type=float, default=None, help="bytes per second for every file")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument(
        "--url-file", type=Path, default=None, help="write the endpoint URL here once listening"
    )
    args = parser.parse_args(argv)
    server = HubServer(port=args.port)
    server.start()
    for spec in args.repo:
        repo_id, _, file_list = spec.partition("=")
        files = {Path(f).name: Path(f) for f in file_list.split(",") if f}
        server.add_repo(repo_id, files, gated=repo_id in args.gated, tags=("gguf",), license="apache-2.0")
        if args.bandwidth or args.latency:
            for name in files:
                server.inject(repo_id, name, bandwidth=args.bandwidth, latency_s=args.latency)
    print(server.url, flush=True)
    if args.url_file is not None:
        args.url_file.write_text(server.url)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
