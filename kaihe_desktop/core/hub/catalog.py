"""The model catalog: GGUF repos from the Hub, grouped into variants, each with its fit on this machine.

A search is one listing call plus, per repo, one recursive tree call and one header read (for the fit
estimator), run concurrently in a bounded pool and within one wall-clock budget (``timeout_s``). Results
are cached on disk (``ListingCache``): within the TTL a search needs no network, and when the Hub cannot be
reached (``HF_HUB_OFFLINE=1``, no network, timeout) the cached listing is shown with an "offline" notice.
Fit verdicts are computed fresh for the machine given, so a cached listing still answers "what fits here".
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from huggingface_hub import HfApi

from kaihe_desktop.core.errors import GatedRepoError, HubUnreachableError, KaiheError
from kaihe_desktop.core.gguf.meta import read_remote
from kaihe_desktop.core.gguf.model_meta import ModelMeta
from kaihe_desktop.core.hub.catalog_entries import (
    CatalogRepo,
    SearchFilter,
    SearchResult,
    VariantFit,
    apply_filter,
    evaluate_repo,
)
from kaihe_desktop.core.hub.listing import (
    SORTS,
    HubRepo,
    SortKey,
    bounded_map,
    hub_errors,
    hub_repo_from_info,
    is_offline,
    list_gguf_repos,
    list_repo_files,
    probe_endpoint,
    run_with_deadline,
)
from kaihe_desktop.core.hub.listing_cache import CachedRepo, ListingCache, search_key
from kaihe_desktop.core.hub.retry import RetryPolicy
from kaihe_desktop.core.hub.variants import Variant, group_variants
from kaihe_desktop.core.library import Library, LibraryEntry
from kaihe_desktop.core.machine.spec import Machine

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_WORKERS = 16
# Read the header of this variant when a repo has it (the most common download), else the smallest.
META_PREFERENCE = ("Q4_K_M", "Q4_0", "Q8_0")

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_WORKERS",
    "Catalog",
    "CatalogRepo",
    "SearchFilter",
    "SearchResult",
    "VariantFit",
    "apply_filter",
    "evaluate_repo",
]


def _meta_file(variants: Sequence[Variant]) -> Variant | None:
    by_quant = {v.quant: v for v in variants}
    for quant in META_PREFERENCE:
        if quant in by_quant:
            return by_quant[quant]
    return min(variants, key=lambda v: v.size_bytes) if variants else None


class Catalog:
    """Search the Hub for GGUF models and judge each against ``machine``."""

    def __init__(
        self,
        *,
        machine: Machine,
        api: HfApi | None = None,
        cache: ListingCache | None = None,
        endpoint: str | None = None,
        token: str | bool | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_workers: int = DEFAULT_WORKERS,
    ) -> None:
        self.machine = machine
        self.endpoint = endpoint
        self.token = token
        self.api = api if api is not None else HfApi(endpoint=endpoint, token=token)
        self.cache = cache if cache is not None else ListingCache()
        self.timeout_s = timeout_s
        self.max_workers = max_workers

    # --- search --------------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        sort: SortKey = "downloads",
        limit: int = 20,
        page: int = 1,
        filters: SearchFilter = SearchFilter(),  # noqa: B008 - frozen, never mutated
        refresh: bool = False,
    ) -> SearchResult:
        """One page of GGUF repos for ``query``, each with variants and fit; the cache when offline."""
        if sort not in SORTS:
            raise KaiheError(f"unknown sort {sort!r}; use one of: {', '.join(SORTS)}")
        key = search_key(query=query, sort=sort, limit=limit, page=page)
        if is_offline():
            return self._offline(
                query,
                key,
                sort=sort,
                limit=limit,
                page=page,
                filters=filters,
                reason="offline mode is on (HF_HUB_OFFLINE)",
            )
        cached = self.cache.get_search(key)
        if cached is not None and not refresh and self.cache.is_fresh(cached.fetched_at):
            entries = [self.cache.get_repo(r) for r in cached.repo_ids]
            if all(e is not None for e in entries):
                hits = [self._evaluate(e) for e in entries if e is not None]
                return SearchResult(
                    query=query,
                    repos=tuple(apply_filter(hits, filters)),
                    from_cache=True,
                    fetched_at=cached.fetched_at,
                )
        deadline = time.monotonic() + self.timeout_s
        try:
            listing = run_with_deadline(
                lambda: list_gguf_repos(self.api, query=query, sort=sort, limit=limit, page=page),
                timeout_s=self.timeout_s,
                what=f"searching the Hub for {query!r}",
                probe=self._probe,
            )
        except HubUnreachableError as exc:
            return self._offline(
                query, key, sort=sort, limit=limit, page=page, filters=filters, reason=str(exc)
            )
        remaining = max(0.5, deadline - time.monotonic())
        details = bounded_map(self._fetch_repo, listing, max_workers=self.max_workers, timeout_s=remaining)
        repos: list[CatalogRepo] = []
        for hub, detail in zip(listing, details, strict=True):
            if isinstance(detail, CachedRepo):
                repos.append(self._evaluate(detail))
            else:
                stale = self.cache.get_repo(hub.repo_id)
                if stale is not None and isinstance(detail, HubUnreachableError):
                    repos.append(self._evaluate(stale))
                else:
                    repos.append(
                        evaluate_repo(hub, (), None, self.machine, fetched_at=time.time(), error=str(detail))
                    )
        self.cache.put_search(key, [h.repo_id for h in listing], query=query)
        return SearchResult(query=query, repos=tuple(apply_filter(repos, filters)), fetched_at=time.time())

    def repo(self, repo_id: str, *, refresh: bool = False) -> CatalogRepo:
        """One repo by id (for pull and recommendations): cache within TTL, else the Hub, else stale cache."""
        cached = self.cache.get_repo(repo_id)
        if cached is not None and not refresh and self.cache.is_fresh(cached.fetched_at):
            return self._evaluate(cached)
        if is_offline():
            if cached is not None:
                return self._evaluate(cached)
            raise HubUnreachableError(f"{repo_id}: offline mode is on and the repo is not in the cache")
        try:
            detail = run_with_deadline(
                lambda: self._fetch_repo(self._info(repo_id)),
                timeout_s=self.timeout_s,
                what=f"reading {repo_id}",
                probe=self._probe,
            )
        except HubUnreachableError:
            if cached is not None:
                return self._evaluate(cached)
            raise
        return self._evaluate(detail)

    def cached_repo(self, repo_id: str) -> CatalogRepo | None:
        """The repo from the cache only (any age), judged for this machine; None when never fetched."""
        cached = self.cache.get_repo(repo_id)
        return self._evaluate(cached) if cached is not None else None

    def is_fresh(self, repo: CatalogRepo) -> bool:
        """Whether ``repo`` was fetched from the Hub within the cache's time-to-live."""
        return self.cache.is_fresh(repo.fetched_at)

    # --- internals -----------------------------------------------------------------------------------

    def _probe(self) -> None:
        probe_endpoint(self.api.endpoint, timeout_s=self.timeout_s)

    def _info(self, repo_id: str) -> HubRepo:
        with hub_errors(
            f"reading {repo_id}", repo_id=repo_id, token=self.api.token, endpoint=self.api.endpoint
        ):
            info = self.api.model_info(
                repo_id,
                timeout=self.timeout_s,
                expand=["downloads", "likes", "gated", "tags", "cardData", "gguf", "lastModified"],
            )
        return hub_repo_from_info(info)

    def _fetch_repo(self, hub: HubRepo) -> CachedRepo:
        """One tree call and one header read for ``hub``; the result goes to the cache."""
        try:
            files = list_repo_files(  # 429/5xx retried like the header read below, never past the budget
                self.api, hub.repo_id, retry=RetryPolicy.within(self.timeout_s), timeout_s=self.timeout_s
            )
        except GatedRepoError as exc:
            return self.cache.put_repo(hub, (), meta=None, meta_error=str(exc))
        meta: ModelMeta | None = None
        meta_error: str | None = None
        target = _meta_file(group_variants(files))
        if target is not None:
            try:
                meta = read_remote(
                    hub.repo_id,
                    target.first_file,
                    token=self.token,
                    endpoint=self.endpoint,
                    timeout=self.timeout_s,
                    retry=RetryPolicy.within(self.timeout_s),  # 429/5xx retried, never past the budget
                )
            except HubUnreachableError:
                raise
            except KaiheError as exc:
                meta_error = str(exc)
        return self.cache.put_repo(hub, files, meta=meta, meta_error=meta_error)

    def _evaluate(self, entry: CachedRepo) -> CatalogRepo:
        return evaluate_repo(
            entry.repo,
            entry.files,
            entry.meta,
            self.machine,
            fetched_at=entry.fetched_at,
            error=entry.meta_error,
        )

    def _offline(
        self,
        query: str,
        key: str,
        *,
        sort: SortKey,
        limit: int,
        page: int,
        filters: SearchFilter,
        reason: str,
    ) -> SearchResult:
        """The cached listing: this query's own page when cached, else every cached repo matching it."""
        cached = self.cache.get_search(key)
        entries: list[CachedRepo] = []
        if cached is not None:
            entries = [e for e in (self.cache.get_repo(r) for r in cached.repo_ids) if e is not None]
        else:
            words = query.lower().split()
            matching = [e for e in self.cache.all_repos() if all(w in e.repo.repo_id.lower() for w in words)]
            order = {
                "downloads": lambda e: -e.repo.downloads,
                "likes": lambda e: -e.repo.likes,
                "recent": lambda e: "~" if not e.repo.last_modified else _invert(e.repo.last_modified),
            }[sort]
            matching.sort(key=order)
            entries = matching[limit * (page - 1) : limit * page]
        repos = [self._evaluate(e) for e in entries]
        oldest = min((e.fetched_at for e in entries), default=None)
        if entries:
            age = self.cache.age_s(oldest) if oldest is not None else 0.0
            notice = f"offline: {reason}; showing the cached listing from {_age_text(age)} ago"
        else:
            notice = f"offline: {reason}; no cached listing matches {query!r}"
        return SearchResult(
            query=query,
            repos=tuple(apply_filter(repos, filters)),
            offline=True,
            from_cache=True,
            notice=notice,
            fetched_at=oldest,
            local_models=_local_models(query),
        )


def _invert(text: str) -> str:
    """A sort key that orders ISO dates newest first."""
    return "".join(chr(0x10FFFF - ord(c)) for c in text)


def _age_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def _local_models(query: str) -> tuple[LibraryEntry, ...]:
    """Installed models whose name or repo matches ``query``: shown next to the cached listing offline."""
    try:
        entries = Library().entries()
    except KaiheError:
        return ()
    words = query.lower().split()
    return tuple(
        e for e in entries if all(w in f"{e.name} {e.repo_id or ''}".lower() for w in words) and e.present
    )
