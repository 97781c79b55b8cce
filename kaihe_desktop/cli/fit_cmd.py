"""`kaihe fit PATH|REPO[/FILE]`: will this model run here, how, with how much context, and what to watch.

- PATH: a local GGUF (any shard of a split model).
- OWNER/REPO/FILE.gguf: a file on the Hub; only its header is read (HTTP Range requests).
- OWNER/REPO: every GGUF variant of the repo is listed, one header is read, and the quant picker chooses the
  best-quality variant that fits (``core.quants.pick``); the report says which and why.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi
from huggingface_hub.hf_api import RepoFile as HubRepoFile

from kaihe_desktop.cli.common import (
    add_json_arg,
    add_profile_arg,
    emit_json,
    human_bytes,
    machine_from_args,
    render_table,
)
from kaihe_desktop.core.errors import ModelFileError, ModelNotFoundError
from kaihe_desktop.core.fit.advice import (
    Advice,
    Upgrade,
    evaluate_upgrade,
    next_quant_up,
    upgrades_for,
    warnings,
)
from kaihe_desktop.core.fit.plan import DEFAULT_CONTEXT, Breakdown, Plan, plan
from kaihe_desktop.core.fit.quants import Pick, QuantOption, pick, weights_scale
from kaihe_desktop.core.gguf.meta import read_local, read_remote
from kaihe_desktop.core.gguf.model_meta import ModelMeta
from kaihe_desktop.core.hub.listing import hub_errors, run_with_deadline
from kaihe_desktop.core.hub.variants import RepoFile, Variant, group_variants
from kaihe_desktop.core.machine.spec import Machine
from kaihe_desktop.core.machine.tiers import tier_for
from kaihe_desktop.core.names import check_path_text, check_repo_id

KV_TYPES = ("f16", "q8_0", "q4_0")
HUB_LISTING_TIMEOUT_S = 60.0
BREAKDOWN_FIELDS = ("weights", "kv_cache", "compute", "output", "overhead")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "fit",
        help="what fits: placement, context, memory, speed and warnings for a model",
        description=(
            "Estimate how a GGUF model would run on this machine (or a --profile) before downloading it: "
            "full GPU / partial / CPU only / does not fit, the largest context, memory use and headroom. "
            "MODEL is a local path, OWNER/REPO/FILE.gguf on the Hub (only the header is read), or OWNER/REPO "
            "(the best-quality quant that fits is picked)."
        ),
    )
    parser.add_argument("model", metavar="PATH|REPO[/FILE]", help="local GGUF, Hub repo, or Hub file")
    parser.add_argument(
        "--ctx", type=_positive_int, metavar="N", help="context length (default: the most that fits)"
    )
    parser.add_argument(
        "--gpu-layers",
        type=_gpu_layers,
        default=None,
        metavar="N|auto",
        help="layers on the GPU (default: auto)",
    )
    parser.add_argument("--kv-type", choices=KV_TYPES, default="f16", help="KV cache type (default: f16)")
    parser.add_argument(
        "--flash-attn", choices=("on", "off", "auto"), default="auto", help="flash attention (default: auto)"
    )
    parser.add_argument("--revision", default="main", help="Hub revision (branch, tag or commit)")
    add_json_arg(parser)
    add_profile_arg(parser)
    parser.set_defaults(handler=run)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def _gpu_layers(text: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of layers or 'auto', not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {value}")
    return value


def _flash_attn(choice: str) -> bool | None:
    return {"on": True, "off": False}.get(choice)


# --- what MODEL names ---------------------------------------------------------------------------------


def classify(model: str) -> tuple[str, str, str | None]:
    """("local", path, None), ("file", repo_id, filename) or ("repo", repo_id, None)."""
    text = model.strip()
    local = check_path_text(text, what="model path or Hub name").expanduser()
    if local.exists() or text.startswith((".", "/", "~", "\\")) or local.is_absolute():
        return "local", str(local), None
    parts = [p for p in text.split("/") if p]
    if len(parts) == 2 and not text.lower().endswith(".gguf"):
        return "repo", check_repo_id("/".join(parts)), None
    if len(parts) >= 3 and parts[-1].lower().endswith(".gguf"):
        return "file", check_repo_id("/".join(parts[:2])), "/".join(parts[2:])
    # "model.gguf" or "models/model.gguf" that is not there: a missing local file.
    raise ModelNotFoundError(f"{text}: no such file, and not a Hub name (OWNER/REPO or OWNER/REPO/FILE.gguf)")


def _repo_variants(repo_id: str, *, revision: str) -> tuple[Variant, ...]:
    """The repo's GGUF variants (one per quant, shards joined), from one recursive tree listing."""

    def listing() -> tuple[Variant, ...]:
        with hub_errors(f"listing the files of {repo_id}"):
            entries = HfApi().list_repo_tree(repo_id, recursive=True, revision=revision)
            files = [
                RepoFile(path=e.path, size_bytes=int(e.size), sha256=e.lfs.sha256 if e.lfs else None)
                for e in entries
                if isinstance(e, HubRepoFile)
            ]
        return group_variants(files)

    variants = run_with_deadline(listing, timeout_s=HUB_LISTING_TIMEOUT_S, what=f"listing {repo_id}")
    if not variants:
        raise ModelNotFoundError(f"{repo_id}: no GGUF model files in this repo")
    return variants


def _header_variant(variants: tuple[Variant, ...]) -> Variant:
    """Whose header to read: all variants share one; a single file needs one read, not one per shard."""
    return min(variants, key=lambda v: (len(v.files), v.size_bytes))


# --- the command ------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    machine = machine_from_args(args)
    report = fit_report(
        args.model,
        machine,
        n_ctx=args.ctx,
        gpu_layers=args.gpu_layers,
        kv_type=args.kv_type,
        flash_attn=_flash_attn(args.flash_attn),
        revision=args.revision,
    )
    if args.json:
        emit_json(report.to_dict())
    else:
        print(render(report))
    return 0


@dataclass(frozen=True)
class FitReport:
    """Everything `kaihe fit` shows: the model, the machine, the plan, the pick (repos) and the warnings."""

    meta: ModelMeta
    machine: Machine
    plan: Plan
    advice: tuple[Advice, ...]
    pick: Pick | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        """Plan.to_dict (placement, n_ctx, ram/vram bytes, breakdown, headroom, speed) plus the rest."""
        data = self.plan.to_dict()
        if data.get("tokens_per_s_estimate") is None:
            data["tokens_per_s_estimate"] = {"low": None, "high": None}
        data.update(
            {
                "model": self.source,
                "architecture": self.meta.architecture,
                "quant": self.pick.quant if self.pick else self.meta.file_type,
                "parameter_count": self.meta.parameter_count,
                "trained_ctx": self.meta.context_length,
                "file_size_bytes": self.pick.option.size_bytes if self.pick else self.meta.file_size_bytes,
                "total_bytes": self.plan.estimate.total_bytes,
                "tier": str(tier_for(self.machine).tier),
                "warnings": [a.to_dict() for a in self.advice],
                "pick": self.pick.to_dict() if self.pick else None,
            }
        )
        return data


def fit_report(
    model: str,
    machine: Machine,
    *,
    n_ctx: int | None = None,
    gpu_layers: int | None = None,
    kv_type: str = "f16",
    flash_attn: bool | None = None,
    revision: str = "main",
) -> FitReport:
    """Read the model (header only), plan it, pick a quant for a repo, and gather the warnings."""
    kind, where, filename = classify(model)
    chosen: Pick | None = None
    scale = 1.0
    next_quant: Upgrade | None = None
    if kind == "local":
        try:
            meta = read_local(Path(where))
        except OSError as exc:  # unreadable (permissions, I/O error): still one clear line
            raise ModelFileError(f"{where}: cannot read it ({exc.strerror or exc})") from exc
        source = where
    elif kind == "file":
        assert filename is not None
        meta = read_remote(where, filename, revision=revision)
        source = f"{where}/{filename}"
    else:
        variants = _repo_variants(where, revision=revision)
        header_of = _header_variant(variants)
        meta = read_remote(where, header_of.first_file, revision=revision)
        options = [
            QuantOption(quant=v.quant, size_bytes=v.size_bytes, files=tuple(f.path for f in v.files))
            for v in variants
        ]
        chosen = pick(options, meta, machine, n_ctx=n_ctx, kv_type=kv_type, flash_attn=flash_attn)
        scale = weights_scale(chosen.option, meta)
        source = f"{where}/{chosen.option.files[0]}" if chosen.option.files else where
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
        kv_type=kv_type,
        flash_attn=flash_attn,
        weights_scale=scale,
    )
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
    return FitReport(meta=meta, machine=machine, plan=final, advice=tuple(advice), pick=chosen, source=source)


# --- human output -------------------------------------------------------------------------------------------


def render(report: FitReport) -> str:
    p, meta, machine = report.plan, report.meta, report.machine
    info = tier_for(machine)
    params = (
        f"{meta.parameter_count / 1e9:.2f}B"
        if meta.parameter_count >= 1e9
        else f"{meta.parameter_count / 1e6:.0f}M"
    )
    quant = report.pick.quant if report.pick else (meta.file_type or "?")
    size = report.pick.option.size_bytes if report.pick else meta.file_size_bytes
    speed = p.tokens_per_s
    layers = f"{p.gpu_layers} of {p.n_layers} layers on the GPU"
    rows: list[tuple[str, str]] = [
        ("Model", f"{report.source}"),
        ("", f"{meta.architecture}, {params} parameters, {quant}, file {human_bytes(size)}"),
        ("Machine", f"{machine.name or 'this machine'} ({info.tier.label} tier)"),
        ("Placement", f"{p.placement} ({layers})"),
        (
            "Context",
            f"{p.n_ctx} tokens (most that fits: {p.max_n_ctx}; trained: {meta.context_length}), "
            f"KV cache {p.kv_type}, flash attention {'on' if p.flash_attn else 'off'}",
        ),
        (
            "Memory",
            f"RAM {human_bytes(p.estimate.ram_bytes)}, VRAM {human_bytes(p.estimate.vram_bytes)}, "
            f"total {human_bytes(p.estimate.total_bytes)}",
        ),
        (
            "Headroom",
            f"{human_bytes(p.headroom_bytes)} free ({p.headroom_pct:.0f}% of available, "
            f"{p.headroom_pct_of_total:.0f}% of total), safety margin {human_bytes(p.margin_bytes)}",
        ),
        ("Speed", f"{speed.low:.0f}-{speed.high:.0f} tokens/s (estimate)" if speed else "no estimate"),
        ("Why", p.reason),
    ]
    if report.pick is not None:
        rows.insert(0, ("Pick", report.pick.reason))
    label_width = max(len(label) for label, _ in rows)
    lines = [f"{label.ljust(label_width)}  {value}" for label, value in rows]

    breakdown_rows = []
    parts: list[tuple[str, Breakdown]] = [("RAM", p.estimate.ram)] + [
        (f"GPU {i}", b) for i, b in enumerate(p.estimate.vram)
    ]
    parts.append(("total", p.estimate.breakdown_total()))
    for name in BREAKDOWN_FIELDS:
        breakdown_rows.append([name.replace("_", " ")] + [human_bytes(getattr(b, name)) for _, b in parts])
    breakdown_rows.append(["total"] + [human_bytes(b.total) for _, b in parts])
    lines += ["", render_table(["memory", *(label for label, _ in parts)], breakdown_rows)]

    if report.pick is not None:
        cand_rows = [
            [
                c.option.quant + (" *" if c.option.quant == report.pick.quant else ""),
                human_bytes(c.option.size_bytes),
                str(c.plan.placement),
                f"{c.plan.gpu_layers}/{c.plan.n_layers}",
                human_bytes(c.plan.headroom_bytes),
                f"{c.plan.headroom_pct:.0f}%",
            ]
            for c in report.pick.candidates
        ]
        lines += [
            "",
            f"Variants at {report.pick.plan.n_ctx} tokens (* = picked)",
            render_table(["quant", "size", "placement", "gpu layers", "headroom", "free"], cand_rows),
        ]

    lines += ["", "Warnings" if report.advice else "Warnings: none"]
    for a in report.advice:
        lines.append(f"  [{a.severity}] {a.message}")
    return "\n".join(lines)
