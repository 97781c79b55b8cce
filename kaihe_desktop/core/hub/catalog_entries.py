"""What the catalog shows: repos with their variants, fit verdicts and the picker's choice; filters. Pure.

``evaluate_repo`` turns what the Hub said about one repo (listing entry, files, one header's metadata) into a
:class:`CatalogRepo` for a given machine; the network side lives in ``catalog.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kaihe_desktop.core.errors import UNLOADABLE
from kaihe_desktop.core.fit.quants import Pick, QuantOption, pick
from kaihe_desktop.core.gguf.model_meta import ModelMeta
from kaihe_desktop.core.hub.listing import HubRepo
from kaihe_desktop.core.hub.recommend_data import use_case_matches
from kaihe_desktop.core.hub.variants import RepoFile, Variant, group_variants
from kaihe_desktop.core.library import LibraryEntry
from kaihe_desktop.core.machine.spec import Machine


@dataclass(frozen=True)
class SearchFilter:
    """Filters applied to the fetched page. Sizes are parameter counts in billions."""

    fits_only: bool = False
    commercial_only: bool = False
    use_case: str | None = None
    min_params_b: float | None = None
    max_params_b: float | None = None


@dataclass(frozen=True)
class VariantFit:
    """One variant and how it sits on the machine: ``placement`` "unknown" when no header could be read,
    "unusable" when the header says llama.cpp cannot load the model (the repo's error says why)."""

    variant: Variant
    placement: str
    headroom_pct: float | None
    headroom_bytes: int | None

    def to_dict(self) -> dict[str, Any]:
        v = self.variant
        return {
            "quant": v.quant,
            "files": [f.path for f in v.files],
            "size_bytes": v.size_bytes,
            "mmproj": v.mmproj.path if v.mmproj else None,
            "sha256": [f.sha256 for f in v.files],
            "fit": {
                "placement": self.placement,
                "headroom_pct": self.headroom_pct,
                "headroom_bytes": self.headroom_bytes,
            },
        }


@dataclass(frozen=True)
class CatalogRepo:
    """A repo as the catalog shows it: Hub facts, variants with fit verdicts, the picker's choice."""

    hub: HubRepo
    variants: tuple[VariantFit, ...]
    meta: ModelMeta | None
    pick: Pick | None
    fetched_at: float
    error: str | None = None

    @property
    def repo_id(self) -> str:
        return self.hub.repo_id

    @property
    def parameter_count(self) -> int | None:
        return self.meta.parameter_count if self.meta else self.hub.facts.parameter_count

    @property
    def architecture(self) -> str | None:
        return self.meta.architecture if self.meta else self.hub.facts.architecture

    @property
    def context_length(self) -> int | None:
        return self.meta.context_length if self.meta else self.hub.facts.context_length

    @property
    def has_chat_template(self) -> bool | None:
        return self.meta.has_chat_template if self.meta else self.hub.facts.has_chat_template

    @property
    def kind(self) -> str:
        """ "instruct" when the model ships a chat template, "base" when not, "unknown" when unread."""
        template = self.has_chat_template
        return "unknown" if template is None else ("instruct" if template else "base")

    @property
    def unread_placement(self) -> str:
        """The FIT shown without a pick: "unusable" when llama.cpp cannot load the model, else "unknown"."""
        return "unusable" if self.error is not None and UNLOADABLE in self.error else "unknown"

    @property
    def fits(self) -> bool:
        return self.pick is not None and self.pick.fits

    def to_dict(self) -> dict[str, Any]:
        hub = self.hub
        return {
            "repo_id": hub.repo_id,
            "license": hub.license.license_id,
            "commercial_use": hub.license.commercial_use,
            "license_note": hub.license.note,
            "gated": hub.gated,
            "downloads": hub.downloads,
            "likes": hub.likes,
            "last_modified": hub.last_modified,
            "base_model": hub.base_model,
            "parameter_count": self.parameter_count,
            "architecture": self.architecture,
            "context_length": self.context_length,
            "chat_template": self.has_chat_template,
            "kind": self.kind,
            "picked_quant": self.pick.quant if self.pick and self.pick.fits else None,
            "pick_reason": self.pick.reason if self.pick else None,
            "placement": str(self.pick.plan.placement) if self.pick else self.unread_placement,
            "headroom_pct": self.pick.plan.headroom_pct if self.pick else None,
            "variants": [v.to_dict() for v in self.variants],
            "error": self.error,
        }


@dataclass(frozen=True)
class SearchResult:
    query: str
    repos: tuple[CatalogRepo, ...]
    offline: bool = False
    from_cache: bool = False
    notice: str | None = None
    fetched_at: float | None = None
    local_models: tuple[LibraryEntry, ...] = field(default=())

    def to_list(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.repos]


def evaluate_repo(
    hub: HubRepo,
    files: Sequence[RepoFile],
    meta: ModelMeta | None,
    machine: Machine,
    *,
    fetched_at: float,
    error: str | None = None,
) -> CatalogRepo:
    """Group files into variants and put every variant through the quant picker for ``machine``. Pure."""
    variants = group_variants(files)
    chosen: Pick | None = None
    fits: tuple[VariantFit, ...]
    if meta is not None and variants:
        options = [
            QuantOption(quant=v.quant, size_bytes=v.size_bytes, files=tuple(f.path for f in v.all_files))
            for v in variants
        ]
        chosen = pick(options, meta, machine)
        plans = {c.option.quant: c.plan for c in chosen.candidates}
        fits = tuple(
            VariantFit(
                variant=v,
                placement=str(plans[v.quant].placement),
                headroom_pct=plans[v.quant].headroom_pct,
                headroom_bytes=plans[v.quant].headroom_bytes,
            )
            for v in variants
        )
    else:
        unusable = meta is None and error is not None and UNLOADABLE in error
        fits = tuple(VariantFit(v, "unusable" if unusable else "unknown", None, None) for v in variants)
    if not variants and error is None:
        error = "no GGUF model files in this repo"
    return CatalogRepo(hub=hub, variants=fits, meta=meta, pick=chosen, fetched_at=fetched_at, error=error)


def apply_filter(repos: Sequence[CatalogRepo], filters: SearchFilter) -> list[CatalogRepo]:
    kept = []
    for repo in repos:
        if filters.fits_only and not repo.fits:
            continue
        if filters.commercial_only and repo.hub.license.commercial_use != "yes":
            continue
        if filters.use_case and not use_case_matches(filters.use_case, repo.repo_id, repo.hub.tags):
            continue
        params = repo.parameter_count
        if filters.min_params_b is not None and (params is None or params < filters.min_params_b * 1e9):
            continue
        if filters.max_params_b is not None and (params is None or params > filters.max_params_b * 1e9):
            continue
        kept.append(repo)
    return kept
