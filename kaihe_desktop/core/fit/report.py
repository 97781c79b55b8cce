"""The fit report: will this model run here, how, with how much context, and what to watch.

Everything `kaihe fit` shows, as data, so the window shows the same thing: the model, the machine and its
tier, the plan (placement, layers, context, memory per device, headroom, speed, the planner's reason), the
quant picked for a bare repo with every variant weighed, and the warnings (codes, severities, numbers).

- ``report_for(meta, machine, ...)`` builds it from a header already read (no I/O);
- ``fit_report(model, machine, ...)`` reads what MODEL names first: a local GGUF (any shard), a Hub file
  OWNER/REPO/FILE.gguf (its header only, over HTTP Range), or a bare OWNER/REPO (one tree listing, one
  header; the quant picker then chooses the best-quality variant that fits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from huggingface_hub import HfApi

from kaihe_desktop.core.errors import ModelFileError, ModelNotFoundError
from kaihe_desktop.core.fit.advice import Advice, warnings
from kaihe_desktop.core.fit.estimate import offload_devices
from kaihe_desktop.core.fit.kv_types import KVCacheType
from kaihe_desktop.core.fit.plan import DEFAULT_CONTEXT, Breakdown, Plan, plan
from kaihe_desktop.core.fit.quants import Pick, QuantOption, pick, weights_scale
from kaihe_desktop.core.fit.upgrades import Upgrade, evaluate_upgrade, next_quant_up, upgrades_for
from kaihe_desktop.core.gguf.meta import read_local, read_remote
from kaihe_desktop.core.gguf.model_meta import ModelMeta
from kaihe_desktop.core.hub.listing import list_repo_files, run_with_deadline
from kaihe_desktop.core.hub.variants import Variant, group_variants
from kaihe_desktop.core.machine.spec import Machine
from kaihe_desktop.core.machine.tiers import TierInfo, tier_for
from kaihe_desktop.core.names import check_path_text, check_repo_id

HUB_LISTING_TIMEOUT_S: Final = 60.0


# --- what MODEL names ---------------------------------------------------------------------------------


class SourceKind(StrEnum):
    LOCAL = "local"  # a GGUF on this disk
    HUB_FILE = "file"  # OWNER/REPO/FILE.gguf
    HUB_REPO = "repo"  # OWNER/REPO: the picker chooses the quant


@dataclass(frozen=True)
class ModelRef:
    kind: SourceKind
    location: str  # the local path (user-expanded) or the repo id
    filename: str | None = None  # the file in the repo (HUB_FILE only)


def classify(model: str) -> ModelRef:
    """What MODEL names; ModelNotFoundError for a name that is neither there nor a Hub name."""
    text = model.strip()
    local = check_path_text(text, what="model path or Hub name").expanduser()
    if local.exists() or text.startswith((".", "/", "~", "\\")) or local.is_absolute():
        return ModelRef(SourceKind.LOCAL, str(local))
    parts = [p for p in text.split("/") if p]
    if len(parts) == 2 and not text.lower().endswith(".gguf"):
        return ModelRef(SourceKind.HUB_REPO, check_repo_id("/".join(parts)))
    if len(parts) >= 3 and parts[-1].lower().endswith(".gguf"):
        return ModelRef(SourceKind.HUB_FILE, check_repo_id("/".join(parts[:2])), "/".join(parts[2:]))
    # "model.gguf" or "models/model.gguf" that is not there: a missing local file.
    raise ModelNotFoundError(f"{text}: no such file, and not a Hub name (OWNER/REPO or OWNER/REPO/FILE.gguf)")


# --- the report -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceMemory:
    """One device's share of the plan: system RAM (gpu_index None) or one offload GPU."""

    gpu_index: int | None  # index among the machine's offload devices; None for RAM
    name: str  # "RAM" or the GPU's name
    breakdown: Breakdown


@dataclass(frozen=True)
class FitReport:
    """Everything `kaihe fit` shows: the model, the machine, the plan, the pick (repos) and the warnings."""

    source: str  # the path or OWNER/REPO/FILE the report is about (a repo: the picked variant's first file)
    meta: ModelMeta
    machine: Machine
    tier: TierInfo
    plan: Plan
    advice: tuple[Advice, ...]  # most severe first
    pick: Pick | None = None  # a bare repo: the quant chosen and every variant weighed at one context

    @property
    def quant(self) -> str | None:
        return self.pick.quant if self.pick else self.meta.file_type

    @property
    def file_size_bytes(self) -> int:
        return self.pick.option.size_bytes if self.pick else self.meta.file_size_bytes

    @property
    def devices(self) -> tuple[DeviceMemory, ...]:
        """RAM first, then each offload GPU (the columns of the memory table, before their total)."""
        gpus = offload_devices(self.machine)
        return (DeviceMemory(None, "RAM", self.plan.estimate.ram),) + tuple(
            DeviceMemory(i, gpu.name, b)
            for i, (gpu, b) in enumerate(zip(gpus, self.plan.estimate.vram, strict=True))
        )

    @property
    def memory_total(self) -> Breakdown:
        return self.plan.estimate.breakdown_total()

    def to_dict(self) -> dict[str, Any]:
        """The JSON of `kaihe fit --json`: Plan.to_dict (placement, n_ctx, ram/vram bytes, breakdown,
        headroom, speed, reason) plus the model, the tier, the warnings and the pick."""
        data = self.plan.to_dict()
        if data.get("tokens_per_s_estimate") is None:
            data["tokens_per_s_estimate"] = {"low": None, "high": None}
        data.update(
            {
                "model": self.source,
                "architecture": self.meta.architecture,
                "quant": self.quant,
                "parameter_count": self.meta.parameter_count,
                "trained_ctx": self.meta.context_length,
                "file_size_bytes": self.file_size_bytes,
                "total_bytes": self.plan.estimate.total_bytes,
                "tier": str(self.tier.tier),
                "warnings": [a.to_dict() for a in self.advice],
                "pick": self.pick.to_dict() if self.pick else None,
            }
        )
        return data


def report_for(
    meta: ModelMeta,
    machine: Machine,
    *,
    source: str,
    options: Sequence[QuantOption] | None = None,
    n_ctx: int | None = None,
    gpu_layers: int | None = None,
    kv_type: KVCacheType | str = KVCacheType.F16,
    flash_attn: bool | None = None,
) -> FitReport:
    """The report for a header already read. options: the variants of its repo (the picker chooses one and
    the report follows it; source then becomes OWNER/REPO/its first file, given source as OWNER/REPO)."""
    kv = KVCacheType.parse(kv_type)
    chosen: Pick | None = None
    scale = 1.0
    if options:
        chosen = pick(options, meta, machine, n_ctx=n_ctx, kv_type=kv, flash_attn=flash_attn)
        scale = weights_scale(chosen.option, meta)
        source = f"{source}/{chosen.option.files[0]}" if chosen.option.files else source
    ctx = n_ctx
    if chosen is not None and n_ctx is None and chosen.fits:
        # The pick was planned at the picker's context; show the planner's default context where the pick's
        # placement still holds it, so the report never contradicts the pick's reason.
        ctx = max(chosen.plan.n_ctx, min(DEFAULT_CONTEXT, chosen.plan.max_n_ctx))
    final = plan(
        meta,
        machine,
        n_ctx=ctx,
        gpu_layers=gpu_layers,
        kv_type=kv,
        flash_attn=flash_attn,
        weights_scale=scale,
    )
    next_quant: Upgrade | None = None
    if chosen is not None:
        up = next_quant_up(chosen.quant, [c.option.quant for c in chosen.candidates])
        if up is not None:
            option = next(c.option for c in chosen.candidates if c.option.quant == up)
            next_quant = evaluate_upgrade(
                final, kind="quant", label=up, weights_scale=weights_scale(option, meta)
            )
        upgrades = [u for u in upgrades_for(final, quant=chosen.quant) if u.kind == "size"]
    else:
        upgrades = upgrades_for(final)
        next_quant = next((u for u in upgrades if u.kind == "quant"), None)
    next_size = next((u for u in upgrades if u.kind == "size"), None)
    advice = warnings(final, next_quant=next_quant, next_size=next_size)
    return FitReport(
        source=source,
        meta=meta,
        machine=machine,
        tier=tier_for(machine),
        plan=final,
        advice=tuple(advice),
        pick=chosen,
    )


def fit_report(
    model: str,
    machine: Machine,
    *,
    n_ctx: int | None = None,
    gpu_layers: int | None = None,
    kv_type: KVCacheType | str = KVCacheType.F16,
    flash_attn: bool | None = None,
    revision: str = "main",
    api: HfApi | None = None,
) -> FitReport:
    """Read what MODEL names (header only), plan it, pick a quant for a bare repo, gather the warnings.

    api: the Hub client that lists a repo's files (default: HfApi() with the environment's endpoint).
    """
    kv = KVCacheType.parse(kv_type)  # a bad type fails before any file or network is touched
    ref = classify(model)
    options: list[QuantOption] | None = None
    if ref.kind == SourceKind.LOCAL:
        try:
            meta = read_local(Path(ref.location))
        except OSError as exc:  # unreadable (permissions, I/O error): still one clear line
            raise ModelFileError(f"{ref.location}: cannot read it ({exc.strerror or exc})") from exc
        source = ref.location
    elif ref.kind == SourceKind.HUB_FILE:
        assert ref.filename is not None
        meta = read_remote(ref.location, ref.filename, revision=revision)
        source = f"{ref.location}/{ref.filename}"
    else:
        variants = repo_variants(api or HfApi(), ref.location, revision=revision)
        meta = read_remote(ref.location, header_variant(variants).first_file, revision=revision)
        options = [
            QuantOption(quant=v.quant, size_bytes=v.size_bytes, files=tuple(f.path for f in v.files))
            for v in variants
        ]
        source = ref.location
    return report_for(
        meta,
        machine,
        source=source,
        options=options,
        n_ctx=n_ctx,
        gpu_layers=gpu_layers,
        kv_type=kv,
        flash_attn=flash_attn,
    )


def repo_variants(api: HfApi, repo_id: str, *, revision: str = "main") -> tuple[Variant, ...]:
    """The repo's GGUF variants (one per quant, shards joined), from one recursive tree listing."""

    def listing() -> tuple[Variant, ...]:
        return group_variants(list_repo_files(api, repo_id, revision=revision))

    variants = run_with_deadline(listing, timeout_s=HUB_LISTING_TIMEOUT_S, what=f"listing {repo_id}")
    if not variants:
        raise ModelNotFoundError(f"{repo_id}: no GGUF model files in this repo")
    return variants


def header_variant(variants: Sequence[Variant]) -> Variant:
    """Whose header to read: all variants share one; a single file needs one read, not one per shard."""
    return min(variants, key=lambda v: (len(v.files), v.size_bytes))


__all__ = [
    "DeviceMemory",
    "FitReport",
    "ModelRef",
    "SourceKind",
    "classify",
    "fit_report",
    "header_variant",
    "repo_variants",
    "report_for",
]
