"""Talking to the Hub for the catalog: the GGUF repo listing and each repo's file tree, via huggingface_hub.

Everything here goes through huggingface_hub (``HfApi``, its session and headers, so ``HF_ENDPOINT``,
``HF_TOKEN`` and offline mode behave as in huggingface_hub) and ``http_errors`` turns its exceptions into
ours. ``list_models`` takes no timeout and retries inside huggingface_hub (``http_backoff``, which cannot be
switched off per call), so callers bound the wall-clock time with :func:`run_with_deadline` /
:func:`bounded_map` (daemon threads: a hung socket never blocks exit). The tree listing
(:func:`list_repo_files`) retries in our own loop instead, like header reads and downloads.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx2
from huggingface_hub import HfApi, constants
from huggingface_hub import errors as hf_errors
from huggingface_hub.hf_api import ModelInfo
from huggingface_hub.hf_api import RepoFile as HubRepoFile
from huggingface_hub.utils import (
    build_hf_headers,
    get_session,
    hf_raise_for_status,
    http_backoff,
    validate_repo_id,
)

from kaihe_desktop.core.errors import HubRequestCancelled, HubUnreachableError, KaiheError
from kaihe_desktop.core.hub.http_errors import gave_up, hub_errors, offline_error, translate
from kaihe_desktop.core.hub.http_errors import is_offline as is_offline  # re-exported: one offline check
from kaihe_desktop.core.hub.licenses import LicenseInfo, classify_license
from kaihe_desktop.core.hub.retry import Retrier, RetryPolicy, failure_of, wait_or_cancel
from kaihe_desktop.core.hub.variants import RepoFile

SortKey = Literal["downloads", "likes", "recent"]
SORTS: dict[str, str] = {"downloads": "downloads", "likes": "likes", "recent": "last_modified"}

# What one listing call asks for, so that no per-repo info call is needed afterwards.
LISTING_EXPAND: list[Any] = [
    "downloads",
    "likes",
    "gated",
    "tags",
    "cardData",
    "gguf",
    "lastModified",
]

T = TypeVar("T")
R = TypeVar("R")


# --- bounded, deadline-aware concurrency -----------------------------------------------------------


def run_with_deadline(
    fn: Callable[[], T], *, timeout_s: float, what: str, probe: Callable[[], None] | None = None
) -> T:
    """Run ``fn`` in a daemon thread; past ``timeout_s`` raise HubUnreachableError (thread abandoned).

    ``probe``, run alongside, may raise HubUnreachableError to fail fast: huggingface_hub retries refused
    connections with backoff (1+2+4+8 s) inside ``fn``, which would otherwise eat the whole budget.
    """
    box: queue.Queue[tuple[bool, Any]] = queue.Queue()

    def target() -> None:
        try:
            box.put((True, fn()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box.put((False, exc))

    def probe_target() -> None:
        assert probe is not None
        try:
            probe()
        except HubUnreachableError as exc:
            box.put((False, exc))
        except Exception:  # noqa: BLE001, S110 - only "unreachable" decides anything; fn reports the rest
            pass

    threading.Thread(target=target, name=f"kaihe-hub-{what}", daemon=True).start()
    if probe is not None:
        threading.Thread(target=probe_target, name="kaihe-hub-probe", daemon=True).start()
    try:
        ok, value = box.get(timeout=timeout_s)
    except queue.Empty:
        raise HubUnreachableError(f"{what}: no answer from the Hub within {timeout_s:g} s") from None
    if not ok:
        raise value
    result: T = value
    return result


def probe_endpoint(endpoint: str, *, timeout_s: float) -> None:
    """One HEAD request to the Hub's root: any HTTP answer means reachable; a transport error does not."""
    with hub_errors(f"reaching {endpoint}"):
        get_session().head(endpoint, timeout=timeout_s)


def bounded_map(
    fn: Callable[[T], R], items: Sequence[T], *, max_workers: int, timeout_s: float
) -> list[R | BaseException]:
    """``fn`` over ``items`` with at most ``max_workers`` at once, in daemon threads, within ``timeout_s``.

    Returns one entry per item, in order: the result, or the exception it raised (a HubUnreachableError for
    items still running at the deadline).
    """
    results: list[R | BaseException] = [HubUnreachableError("no answer from the Hub in time") for _ in items]
    if not items:
        return results
    todo: queue.Queue[int] = queue.Queue()
    for index in range(len(items)):
        todo.put(index)
    done = threading.Semaphore(0)

    def worker() -> None:
        while True:
            try:
                index = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results[index] = fn(items[index])
            except BaseException as exc:  # noqa: BLE001 - reported per item
                results[index] = exc
            done.release()

    for n in range(max(1, min(max_workers, len(items)))):
        threading.Thread(target=worker, name=f"kaihe-hub-worker-{n}", daemon=True).start()
    deadline = threading.Event()
    timer = threading.Timer(timeout_s, deadline.set)
    timer.daemon = True
    timer.start()
    try:
        for _ in items:
            while not done.acquire(timeout=0.05):
                if deadline.is_set():
                    return list(results)
    finally:
        timer.cancel()
    return list(results)


# --- the listing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GgufFacts:
    """What the Hub's ``gguf`` field says about a repo's model (None where it says nothing)."""

    parameter_count: int | None = None
    architecture: str | None = None
    context_length: int | None = None
    has_chat_template: bool | None = None


@dataclass(frozen=True)
class HubRepo:
    """One GGUF repo of a listing: everything the listing call returned about it."""

    repo_id: str
    license: LicenseInfo
    gated: bool
    downloads: int
    likes: int
    last_modified: str | None
    base_model: str | None
    tags: tuple[str, ...] = ()
    facts: GgufFacts = field(default_factory=GgufFacts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HubRepo:
        return cls(
            repo_id=data["repo_id"],
            license=LicenseInfo(**data["license"]),
            gated=bool(data["gated"]),
            downloads=int(data["downloads"]),
            likes=int(data["likes"]),
            last_modified=data.get("last_modified"),
            base_model=data.get("base_model"),
            tags=tuple(data.get("tags", ())),
            facts=GgufFacts(**data.get("facts", {})),
        )


def _card_value(info: ModelInfo, key: str) -> Any:
    card = info.card_data
    if card is None:
        return None
    return card.get(key) if hasattr(card, "get") else getattr(card, key, None)


def _base_model(info: ModelInfo) -> str | None:
    base = _card_value(info, "base_model")
    if isinstance(base, list):
        base = base[0] if base else None
    if isinstance(base, str) and base:
        return base
    for tag in info.tags or ():
        if tag.startswith("base_model:") and tag.count(":") == 1:
            return tag.split(":", 1)[1]
    return None


def _facts(info: ModelInfo) -> GgufFacts:
    gguf = info.gguf if isinstance(info.gguf, dict) else {}
    total = gguf.get("total")
    context = gguf.get("context_length")
    template = gguf.get("chat_template")
    return GgufFacts(
        parameter_count=int(total) if isinstance(total, int | float) and total > 0 else None,
        architecture=gguf.get("architecture") if isinstance(gguf.get("architecture"), str) else None,
        context_length=int(context) if isinstance(context, int | float) and context > 0 else None,
        has_chat_template=bool(template) if gguf else None,
    )


def hub_repo_from_info(info: ModelInfo) -> HubRepo:
    license_id = _card_value(info, "license")
    license_name = _card_value(info, "license_name")
    last_modified = info.last_modified.isoformat() if info.last_modified else None
    return HubRepo(
        repo_id=info.id,
        license=classify_license(
            license_id if isinstance(license_id, str) else None,
            license_name=license_name if isinstance(license_name, str) else None,
            tags=tuple(info.tags or ()),
        ),
        gated=bool(info.gated),
        downloads=int(info.downloads or 0),
        likes=int(info.likes or 0),
        last_modified=last_modified,
        base_model=_base_model(info),
        tags=tuple(info.tags or ()),
        facts=_facts(info),
    )


def list_gguf_repos(
    api: HfApi, *, query: str, sort: SortKey = "downloads", limit: int = 20, page: int = 1
) -> list[HubRepo]:
    """One page of GGUF repos matching ``query`` (``page`` counts from 1), in the Hub's ``sort`` order.

    huggingface_hub follows the Hub's cursor pages (Link header) for us; we skip the earlier pages' items.
    """
    if sort not in SORTS:
        raise KaiheError(f"unknown sort {sort!r}; use one of: {', '.join(SORTS)}")
    if limit < 1 or page < 1:
        raise KaiheError("limit and page must be at least 1")
    with hub_errors(f"searching the Hub for {query!r}", token=api.token, endpoint=api.endpoint):
        infos = api.list_models(
            filter="gguf",
            search=query or None,
            sort=SORTS[sort],  # type: ignore[arg-type]
            limit=limit * page,
            expand=LISTING_EXPAND,
        )
        return [hub_repo_from_info(info) for info in islice(infos, limit * (page - 1), limit * page)]


def list_repo_files(
    api: HfApi,
    repo_id: str,
    *,
    revision: str = constants.DEFAULT_REVISION,
    retry: RetryPolicy | None = None,
    cancel: threading.Event | None = None,
    timeout_s: float = 10.0,
) -> tuple[RepoFile, ...]:
    """Every file of a repo with its size and LFS sha256: one recursive tree listing (the only one in KAIHE).

    What ``HfApi.list_repo_tree`` does (its URL, headers, ``RepoFile`` parsing, the Link-header pages), but
    each page is one request with huggingface_hub's retries off, retried on 429/5xx/lost connections by the
    same cancellable loop as header reads and downloads (``hub_retry.Retrier``, per ``retry``), and every
    failure said by ``http_errors``: a busy Hub reads the same from ``kaihe search``, ``fit`` and ``pull``.
    """
    what = f"listing the files of {repo_id}"
    validate_repo_id(repo_id)
    if is_offline():
        raise offline_error(what)
    headers = build_hf_headers(
        token=api.token,
        library_name=api.library_name,
        library_version=api.library_version,
        user_agent=api.user_agent,
        headers=api.headers,
    )
    url: str | None = f"{api.endpoint}/api/models/{repo_id}/tree/{quote(revision, safe='')}"
    params: dict[str, str] | None = {"recursive": "true", "expand": "false"}
    retrier = Retrier(retry or RetryPolicy())
    files: list[RepoFile] = []
    while url is not None:
        try:
            response = http_backoff(
                "GET",
                url,
                params=params,
                headers=headers,
                timeout=timeout_s,
                max_retries=0,
                retry_on_exceptions=(),
                retry_on_status_codes=(),
            )
            hf_raise_for_status(response)
            page = response.json()
        except (hf_errors.HfHubHTTPError, httpx2.TransportError, OSError, ValueError) as exc:
            failure = failure_of(exc)
            if isinstance(exc, hf_errors.OfflineModeIsEnabled | ValueError) or not failure.retryable:
                raise translate(
                    exc,
                    what=what,
                    repo_id=repo_id,
                    revision=revision,
                    token=api.token,
                    endpoint=api.endpoint,
                    timeout_s=timeout_s,
                ) from exc
            wait = retrier.next_wait(failure)
            if wait is None:
                raise gave_up(
                    what, retrier, failure, exc, endpoint=api.endpoint, timeout_s=timeout_s
                ) from exc
            if wait_or_cancel(wait, cancel):
                raise HubRequestCancelled(f"{what}: cancelled while waiting to retry") from exc
            continue
        retrier.progressed()
        files.extend(
            RepoFile(path=e.path, size_bytes=int(e.size), sha256=e.lfs.sha256 if e.lfs else None)
            for e in (HubRepoFile(**item) for item in page if item.get("type") == "file")
        )
        url, params = response.links.get("next", {}).get("url"), None  # the next link holds the query
    return tuple(files)
