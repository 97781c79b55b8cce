"""Recommendations: per use case, the best curated model that fits this machine with the margin.

Each use case lists repos best first (``data/recommendations.json``). For each, the quant picker first
judges an estimate built from the curated shape (no network); the first candidate the estimate admits is
then checked against the Hub through the catalog (real files, sizes and header). A candidate the Hub shows
not to fit, or cannot serve (gated, gone), is skipped. When the Hub cannot be reached the estimate stands,
marked ``checked_on_hub=False``, so the list always shows.

On a machine llama.cpp can offload to, the first pass only admits picks that run fully on the GPU (at 4 bits
or more): a model entirely in VRAM generates several times faster than a larger one split with the CPU, which
is what users of LM Studio or Jan expect. Only when no curated model of the use case runs fully on the GPU
does the largest that fits anywhere win (Apple's unified memory counts as the GPU within its Metal budget).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from kaihe_desktop.core.errors import HubError, HubUnreachableError
from kaihe_desktop.core.fit.estimate import offload_devices
from kaihe_desktop.core.fit.placement import Placement
from kaihe_desktop.core.fit.quants import Pick, QuantOption, pick, quality_rank
from kaihe_desktop.core.gguf.model_meta import ModelMeta
from kaihe_desktop.core.hub.catalog import Catalog, CatalogRepo
from kaihe_desktop.core.hub.licenses import commercial_use_of
from kaihe_desktop.core.hub.listing import is_offline
from kaihe_desktop.core.hub.recommend_data import (
    CuratedRepo,
    Recommendations,
    UseCase,
    estimated_meta,
    estimated_options,
    load_recommendations,
)
from kaihe_desktop.core.machine.spec import Machine

# Below 4 bits a quant loses quality fast (llama.cpp's table: Q3_K_M +0.66 ppl vs Q4_K_M +0.18 on
# Llama-3-8B), so a smaller model at 4 bits or more is the better recommendation. Every 4-bit rung passes
# (Q4_0 included: Gemma's QAT files are Q4_0). Only when no curated model reaches it is the floor dropped.
QUALITY_FLOOR = "Q4_0"


@dataclass(frozen=True)
class Recommendation:
    use_case: str
    title: str
    repo_id: str | None  # None when nothing curated for the use case fits
    family: str | None
    params_b: float | None
    quant: str | None
    size_bytes: int | None
    placement: str
    headroom_pct: float | None
    reason: str
    checked_on_hub: bool
    license: str | None
    commercial_use: str
    gated: bool
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RecommendationSet:
    items: tuple[Recommendation, ...]
    first_run: Recommendation | None  # the one-click download for a first start
    offline: bool
    notice: str | None
    data_version: int
    data_updated: str

    def to_list(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.items]


class _HubState:
    """Shared across use cases: after the first unreachable answer, stop asking (one timeout, not six)."""

    def __init__(self, catalog: Catalog | None) -> None:
        self.catalog = catalog
        self.down_reason: str | None = "offline mode is on (HF_HUB_OFFLINE)" if is_offline() else None
        if catalog is None and self.down_reason is None:
            self.down_reason = "the Hub was not asked"

    def live(self, repo_id: str) -> CatalogRepo | str | None:
        """The repo as the Hub (or a fresh cache) has it; an error text when the Hub refuses it (gone,
        gated); None when the Hub cannot be asked and nothing is cached."""
        if self.catalog is None:
            return None
        if self.down_reason is not None:
            return self.catalog.cached_repo(repo_id)
        try:
            return self.catalog.repo(repo_id)
        except HubUnreachableError as exc:
            self.down_reason = str(exc)
            return self.catalog.cached_repo(repo_id)
        except HubError as exc:
            return str(exc)


def _from_pick(
    case: UseCase,
    repo: CuratedRepo,
    chosen: Pick,
    *,
    checked: bool,
    prefix: str,
    gated: bool,
    license_id: str | None = None,
) -> Recommendation:
    """``license_id``: what the Hub's card says, when it says something; else the curated licence."""
    licence = license_id or repo.license
    return Recommendation(
        use_case=case.id,
        title=case.title,
        repo_id=repo.repo_id,
        family=repo.family,
        params_b=repo.params_b,
        quant=chosen.quant,
        size_bytes=chosen.option.size_bytes,
        placement=str(chosen.plan.placement),
        headroom_pct=chosen.plan.headroom_pct,
        reason=f"{prefix}{chosen.reason}",
        checked_on_hub=checked,
        license=licence,
        commercial_use=commercial_use_of(licence),
        gated=gated,
        note=repo.note,
    )


@dataclass(frozen=True)
class _Rules:
    """What a candidate must meet beyond fitting with the margin."""

    floor: str | None = QUALITY_FLOOR
    min_headroom_pct: float | None = None
    max_bytes: int | None = None  # largest download (weights) accepted
    allow_gated: bool = True
    full_gpu: bool = False  # only picks whose placement is "gpu"


def _has_gpu(machine: Machine) -> bool:
    """Whether this llama.cpp build can put layers on a GPU here (placement "gpu" is possible at all)."""
    return bool(offload_devices(machine))


def _choose(case: UseCase, machine: Machine, hub: _HubState, rules: _Rules) -> Recommendation:
    """The first candidate meeting ``rules`` that runs fully on the GPU (when there is one); failing that,
    the first that fits anywhere; failing that, the same without the quality floor."""
    skipped: list[str] = []
    passes = [rules, replace(rules, floor=None)]
    if _has_gpu(machine):
        passes.insert(0, replace(rules, full_gpu=True))
    for rules_now in passes:
        found = _walk(case, machine, hub, rules_now)
        if isinstance(found, Recommendation):
            return found
        skipped += found
    return _nothing_fits(case, machine, skipped)


def _pick_within(
    options: Sequence[QuantOption], meta: ModelMeta, machine: Machine, rules: _Rules
) -> Pick | None:
    allowed = [o for o in options if rules.max_bytes is None or o.size_bytes <= rules.max_bytes]
    return pick(allowed, meta, machine) if allowed else None


def _walk(case: UseCase, machine: Machine, hub: _HubState, rules: _Rules) -> Recommendation | list[str]:
    """The first candidate (best first) whose estimate and then Hub check meet ``rules``; else the reasons."""
    skipped: list[str] = []
    passed_over: str | None = None  # the first better candidate that fits, but not fully on the GPU
    for rank, repo in enumerate(case.repos):
        if repo.gated and not rules.allow_gated:
            continue
        estimate = _pick_within(estimated_options(repo), estimated_meta(repo), machine, rules)
        if estimate is None or not _acceptable(estimate, rules):
            if estimate is not None and passed_over is None and _passed_over(estimate, rules):
                passed_over = _off_gpu_text(repo, estimate)
            continue
        prefix = _prefix(case, rank, rules, passed_over)
        live = hub.live(repo.repo_id)
        if isinstance(live, str):
            skipped.append(f"{repo.repo_id}: {live}")
            continue
        if live is None or live.meta is None or not live.variants:
            if live is not None and live.error and hub.down_reason is None:
                skipped.append(f"{repo.repo_id}: {live.error}")
                continue  # the Hub answered but cannot serve it (gated, no GGUF, unreadable header)
            return _from_pick(case, repo, estimate, checked=False, prefix=prefix + "estimated: ",
                              gated=repo.gated)  # fmt: skip
        real_options = [
            QuantOption(
                quant=v.variant.quant,
                size_bytes=v.variant.size_bytes,
                files=tuple(f.path for f in v.variant.all_files),
            )
            for v in live.variants
        ]
        real = _pick_within(real_options, live.meta, machine, rules)
        if real is None or not _acceptable(real, rules):
            if real is not None and real.fits and rules.full_gpu:
                if passed_over is None and _passed_over(real, rules):
                    passed_over = _off_gpu_text(repo, real)
                continue  # fits, only not fully on the GPU: the next pass judges it again
            skipped.append(f"{repo.repo_id}: {real.reason if real else 'no variant within the size limit'}")
            continue
        checked = hub.catalog is not None and hub.catalog.is_fresh(live) and hub.down_reason is None
        return _from_pick(
            case,
            repo,
            real,
            checked=checked,
            prefix=prefix,
            gated=live.hub.gated,
            license_id=live.hub.license.license_id,
        )
    return skipped


def _prefix(case: UseCase, rank: int, rules: _Rules, passed_over: str | None) -> str:
    """Why this candidate: the best of the list, the largest that fits, or the largest fully on the GPU."""
    title = case.title.lower()
    if rules.full_gpu:
        if passed_over is None:
            return (
                f"the best {title} pick that fits; "
                if rank == 0
                else f"largest {title} pick that runs fully on the GPU; "
            )
        return f"largest {title} pick that runs fully on the GPU (several times faster); {passed_over}; "
    if rank == 0:
        return f"the best {title} pick that fits; "
    return f"largest {title} pick that fits with the margin; "


def _passed_over(chosen: Pick, rules: _Rules) -> bool:
    """Whether a candidate failed the full-GPU pass only for running (partly) off the GPU."""
    return rules.full_gpu and _acceptable(chosen, replace(rules, full_gpu=False))


def _off_gpu_text(repo: CuratedRepo, chosen: Pick) -> str:
    """What a passed-over candidate would need: "Qwen3-14B-GGUF Q6_K would need partial offload (...)"."""
    name = repo.repo_id.rsplit("/", 1)[-1]
    p = chosen.plan
    if p.placement == Placement.PARTIAL:
        where = f"would need partial offload ({p.gpu_layers} of {p.n_layers} layers on the GPU)"
    else:
        where = "would run on the CPU only"
    return f"{name} {chosen.quant} {where}"


def _nothing_fits(case: UseCase, machine: Machine, skipped: list[str]) -> Recommendation:
    smallest = min(case.repos, key=lambda r: r.params_b)
    unique = list(dict.fromkeys(skipped))
    if unique:
        reason = (
            f"no curated {case.title.lower()} model both fits this machine and could be used from the Hub "
            f"({len(unique)} checked there; first: {unique[0]})"
        )
    else:
        estimate = pick(estimated_options(smallest), estimated_meta(smallest), machine)
        reason = (
            f"nothing curated for {case.title.lower()} fits this machine with the margin; "
            f"the smallest, {smallest.repo_id}: {estimate.reason}"
        )
    return Recommendation(
        use_case=case.id,
        title=case.title,
        repo_id=None,
        family=None,
        params_b=None,
        quant=None,
        size_bytes=None,
        placement="none",
        headroom_pct=None,
        reason=reason,
        checked_on_hub=False,
        license=None,
        commercial_use="unknown",
        gated=False,
    )


def _acceptable(chosen: Pick, rules: _Rules) -> bool:
    if not chosen.fits:
        return False
    if rules.floor is not None and quality_rank(chosen.quant) > quality_rank(rules.floor):
        return False
    if rules.full_gpu and chosen.plan.placement != Placement.GPU:
        return False
    return rules.min_headroom_pct is None or chosen.plan.headroom_pct >= rules.min_headroom_pct


def recommend(
    machine: Machine,
    *,
    catalog: Catalog | None = None,
    use_case: str | None = None,
    data: Recommendations | None = None,
) -> RecommendationSet:
    """The best model per use case (or just ``use_case``) for ``machine``, plus the first-run pick.

    With ``catalog`` the choices are checked on the Hub; without one (or offline) they are estimates.
    """
    recs = data if data is not None else load_recommendations()
    cases = (recs.use_case(use_case),) if use_case else recs.use_cases
    hub = _HubState(catalog)
    items = tuple(_choose(case, machine, hub, _Rules()) for case in cases)
    first_case = recs.use_case(recs.first_run_use_case)
    first_rules = _Rules(
        min_headroom_pct=recs.first_run_min_headroom_pct,
        max_bytes=int(recs.first_run_max_download_gb * 1e9),
        allow_gated=False,
    )
    first_run: Recommendation | None = _choose(first_case, machine, hub, first_rules)
    if first_run is not None and first_run.repo_id is None:
        first_run = next((i for i in items if i.use_case == first_case.id and i.repo_id), None)
    offline = hub.down_reason is not None and catalog is not None
    notice = None
    if hub.down_reason is not None:
        notice = f"not checked against the Hub ({hub.down_reason}): sizes and fit are estimates"
    return RecommendationSet(
        items=items,
        first_run=first_run,
        offline=offline,
        notice=notice,
        data_version=recs.version,
        data_updated=recs.updated,
    )
