"""Discover: Hub searches (paged), recommendations per use case, and the what-if pane of one repo.

Every core call runs on the quick pool. A new query supersedes the one in flight: the core's search takes no
cancel event, so the old call runs out on its pool thread and its result is dropped (each query has a
generation number; only the newest one's results reach the model). The same holds for what-if plans: only
the newest (repo, context, KV type) is shown.

The catalog needs the machine: it is built from the machine controller's summary once that has loaded (a
search typed before then waits for it), and rebuilt when the machine changes (a profile switch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, QTimer, Signal

from kaihe_desktop.core.fit.estimate import offload_devices
from kaihe_desktop.core.fit.kv_types import KVCacheType
from kaihe_desktop.core.fit.quants import DEFAULT_PICK_CTX, QuantOption
from kaihe_desktop.core.fit.report import FitReport, report_for
from kaihe_desktop.core.hub.catalog import Catalog, CatalogRepo, SearchResult
from kaihe_desktop.core.hub.model_card import fetch_model_card
from kaihe_desktop.core.hub.recommend import RecommendationSet
from kaihe_desktop.core.machine.spec import Machine
from kaihe_desktop.qt.controllers.machine import MachineController
from kaihe_desktop.qt.errors import ErrorPresenter
from kaihe_desktop.qt.models.catalog import (
    CatalogModel,
    DeviceUse,
    RecommendationsModel,
    VariantRow,
    variant_rows,
)
from kaihe_desktop.qt.workers import run_query
from kaihe_desktop.services import MachineSummary

DEBOUNCE_MS = 300
PAGE_SIZE = 20


@dataclass(frozen=True)
class WhatIf:
    """The pane's settings: the context every variant is planned at, and the KV cache type."""

    n_ctx: int
    kv_type: KVCacheType = KVCacheType.F16


@dataclass(frozen=True)
class Details:
    """One repo planned at one what-if: every variant's plan, the picked variant's report and memory."""

    repo: CatalogRepo
    what_if: WhatIf
    rows: tuple[VariantRow, ...]
    report: FitReport | None  # None when the header could not be read (no plan to show)
    devices: tuple[DeviceUse, ...]

    @property
    def reason(self) -> str:
        if self.report is not None and self.report.pick is not None:
            return self.report.pick.reason
        return self.repo.error or "no plan: the model's header could not be read"


def default_context(repo: CatalogRepo) -> int:
    """The context the catalog judged the repo at (the picker's default), so the pane opens on its numbers."""
    trained = repo.context_length or 0
    return min(DEFAULT_PICK_CTX, trained) if trained > 0 else DEFAULT_PICK_CTX


def options_of(repo: CatalogRepo) -> list[QuantOption]:
    """The repo's variants as the picker takes them (the same as the catalog's evaluate_repo builds)."""
    return [
        QuantOption(
            quant=v.variant.quant,
            size_bytes=v.variant.size_bytes,
            files=tuple(f.path for f in v.variant.all_files),
        )
        for v in repo.variants
    ]


def plan_details(repo: CatalogRepo, machine: Machine, what_if: WhatIf) -> Details:
    """Off the GUI thread: the picker and the report at ``what_if``, from the header the catalog kept."""
    if repo.meta is None or not repo.variants:
        return Details(repo, what_if, variant_rows(repo), None, ())
    report = report_for(
        repo.meta,
        machine,
        source=repo.repo_id,
        options=options_of(repo),
        n_ctx=what_if.n_ctx,
        kv_type=what_if.kv_type,
    )
    assert report.pick is not None
    rows = variant_rows(repo, report.pick.candidates, report.pick.quant)
    return Details(repo, what_if, rows, report, devices_of(report))


def devices_of(report: FitReport) -> tuple[DeviceUse, ...]:
    gpus = offload_devices(report.machine)
    margin = report.plan.margin_bytes
    used = []
    for device in report.devices:
        b = device.breakdown
        available = (
            report.machine.ram.available_bytes
            if device.gpu_index is None
            else gpus[device.gpu_index].memory_free_bytes
        )
        used.append(
            DeviceUse(device.name, b.weights, b.kv_cache, b.compute + b.output, b.overhead, available, margin)
        )
    return tuple(used)


class CatalogController(QObject):
    searching = Signal(str)  # the query now asked (after the debounce)
    results = Signal(object)  # SearchResult of the first page
    more_results = Signal(object)  # SearchResult of a later page
    recommendations = Signal(object)  # RecommendationSet
    details = Signal(object)  # Details
    repo_opened = Signal(object)  # CatalogRepo (a recommendation, read by id)
    repo_failed = Signal(str, object)  # repo id, the exception: the pane says it (no banner)
    card = Signal(str, object)  # repo id, its model card's Markdown (None: offline)
    card_failed = Signal(str, object)  # repo id, the exception (no card, unreachable): said in the pane
    failed = Signal(object)

    def __init__(
        self,
        catalog_factory: Callable[[Machine], Catalog],
        recommendations: Callable[[Machine, Catalog], RecommendationSet],
        machine: MachineController,
        errors: ErrorPresenter,
        *,
        page_size: int = PAGE_SIZE,
        debounce_ms: int = DEBOUNCE_MS,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._factory = catalog_factory
        self._errors = errors
        self._recommend = recommendations
        self.page_size = page_size
        self.model = CatalogModel(self)
        self.model.more_requested.connect(self.fetch_more)
        self.recommendation_model = RecommendationsModel(self)
        self.machine: Machine | None = None
        self._catalog: Catalog | None = None
        self.query = ""
        self.page = 0
        self.generation = 0  # bumped by every new query: older results are dropped
        self.busy = False  # a search, page or recommendation of the current generation is in flight
        self._waiting = False  # a query asked before the machine was known
        self._details_generation = 0
        self._card_generation = 0
        self._recommended_for: Machine | None = None
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(debounce_ms)
        self.timer.timeout.connect(self._run_query)
        machine.loaded.connect(self._on_machine)
        if machine.summary is not None:
            self._on_machine(machine.summary)

    # --- the machine ---------------------------------------------------------------------------------

    def _on_machine(self, summary: MachineSummary) -> None:
        changed = self.machine is not None and summary.machine != self.machine
        self.machine = summary.machine
        self._catalog = None  # built on the worker, for this machine
        if self._waiting or changed:
            self._waiting = False
            self._run_query()

    def _catalog_for(self, machine: Machine) -> Catalog:
        """On a pool thread: the catalog for ``machine`` (built once per machine)."""
        catalog = self._catalog
        if catalog is None or catalog.machine != machine:
            catalog = self._factory(machine)
            self._catalog = catalog
        return catalog

    # --- queries -------------------------------------------------------------------------------------

    def set_query(self, text: str) -> None:
        """What the search field says now: asked after the debounce, superseding any query in flight."""
        self.query = text.strip()
        self.timer.start()

    def search_now(self, text: str) -> None:
        self.query = text.strip()
        self.timer.stop()
        self._run_query()

    def _run_query(self) -> None:
        self.generation += 1
        generation = self.generation
        machine = self.machine
        if machine is None:
            self._waiting = True
            return
        query = self.query
        self.searching.emit(query)
        self.busy = True
        if not query:
            self.model.set_repos(())
            self._recommend_for(machine, generation)
            return
        self.page = 1
        limit = self.page_size
        run_query(
            lambda: self._catalog_for(machine).search(query, limit=limit, page=1),
            lambda result: self._on_results(generation, result),
            lambda exc: self._on_failed(generation, exc),
            name=f"catalog search {query!r}",
        )

    def _recommend_for(self, machine: Machine, generation: int) -> None:
        if self._recommended_for == machine and self.recommendation_model.items:
            self.busy = False
            return
        run_query(
            lambda: self._recommend(machine, self._catalog_for(machine)),
            lambda found: self._on_recommendations(generation, machine, found),
            lambda exc: self._on_failed(generation, exc),
            name="recommendations",
        )

    def fetch_more(self) -> None:
        """The next page of the current query (the table scrolled to its end)."""
        machine = self.machine
        if machine is None or not self.query or self.busy:
            self.model.fetching = False
            return
        generation = self.generation
        query, page, limit = self.query, self.page + 1, self.page_size
        self.busy = True
        run_query(
            lambda: self._catalog_for(machine).search(query, limit=limit, page=page),
            lambda result: self._on_more(generation, page, result),
            lambda exc: self._on_failed(generation, exc),
            name=f"catalog page {page} of {query!r}",
        )

    def _on_results(self, generation: int, result: SearchResult) -> None:
        if generation != self.generation:
            return
        self.busy = False
        self.model.set_repos(result.repos, has_more=self._has_more(result))
        self.results.emit(result)

    def _on_more(self, generation: int, page: int, result: SearchResult) -> None:
        if generation != self.generation:
            return
        self.busy = False
        self.page = page
        self.model.append_repos(result.repos, has_more=self._has_more(result))
        self.more_results.emit(result)

    def _has_more(self, result: SearchResult) -> bool:
        # A full page means the Hub may have more; offline, the cache holds only what was fetched.
        return len(result.repos) >= self.page_size and not result.offline

    def _on_recommendations(self, generation: int, machine: Machine, found: RecommendationSet) -> None:
        if generation != self.generation:
            return
        self.busy = False
        self._recommended_for = machine
        self.recommendation_model.set_items(found.items)
        self.recommendations.emit(found)

    def _on_failed(self, generation: int, exc: BaseException) -> None:
        if generation != self.generation:
            return
        self.busy = False
        self.model.fetching = False
        self._errors.show(exc, retry=self._run_query)
        self.failed.emit(exc)

    # --- one repo ------------------------------------------------------------------------------------

    def open_repo(self, repo_id: str) -> None:
        """A repo by id (a recommendation): read through the catalog, then `repo_opened`."""
        machine = self.machine
        if machine is None:
            return
        self._details_generation += 1
        generation = self._details_generation
        run_query(
            lambda: self._catalog_for(machine).repo(repo_id),
            lambda repo: self._on_repo(generation, repo),
            lambda exc: self._on_repo_failed(generation, repo_id, exc),
            name=f"catalog repo {repo_id}",
        )

    def _on_repo(self, generation: int, repo: CatalogRepo) -> None:
        if generation == self._details_generation:
            self.repo_opened.emit(repo)

    def _on_repo_failed(self, generation: int, repo_id: str, exc: BaseException) -> None:
        if generation == self._details_generation:
            self.repo_failed.emit(repo_id, exc)

    def plan(self, repo: CatalogRepo, what_if: WhatIf) -> None:
        """Every variant of ``repo`` at ``what_if``, off the GUI thread; `details` with the newest only."""
        machine = self.machine
        if machine is None:
            return
        self._details_generation += 1
        generation = self._details_generation
        run_query(
            lambda: plan_details(repo, machine, what_if),
            lambda found: self._on_details(generation, found),
            lambda exc: self._on_details_failed(generation, exc),
            name=f"what-if {repo.repo_id} at {what_if.n_ctx}",
        )

    def _on_details(self, generation: int, found: Details) -> None:
        if generation == self._details_generation:
            self.details.emit(found)

    def _on_details_failed(self, generation: int, exc: BaseException) -> None:
        if generation == self._details_generation:
            self._errors.show(exc)
            self.failed.emit(exc)

    def fetch_card(self, repo_id: str) -> None:
        """``repo_id``'s model card off the GUI thread; `card` (or `card_failed`) for the newest ask only."""
        self._card_generation += 1
        generation = self._card_generation
        catalog = self._catalog
        endpoint = catalog.endpoint if catalog is not None else None
        token = catalog.token if catalog is not None else None
        run_query(
            lambda: fetch_model_card(repo_id, endpoint=endpoint, token=token),
            lambda text: self._on_card(generation, repo_id, text),
            lambda exc: self._on_card_failed(generation, repo_id, exc),
            name=f"model card {repo_id}",
        )

    def _on_card(self, generation: int, repo_id: str, text: str | None) -> None:
        if generation == self._card_generation:
            self.card.emit(repo_id, text)

    def _on_card_failed(self, generation: int, repo_id: str, exc: BaseException) -> None:
        if generation == self._card_generation:
            self.card_failed.emit(repo_id, exc)
