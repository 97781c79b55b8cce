"""`kaihe fit PATH|REPO[/FILE]`: will this model run here, how, with how much context, and what to watch.

- PATH: a local GGUF (any shard of a split model).
- OWNER/REPO/FILE.gguf: a file on the Hub; only its header is read (HTTP Range requests).
- OWNER/REPO: every GGUF variant of the repo is listed, one header is read, and the quant picker chooses the
  best-quality variant that fits; the report says which and why.

The report is core's (``core.fit.report.fit_report``); this module parses the arguments and renders it.
"""

from __future__ import annotations

import argparse
from typing import Any

from kaihe_desktop.cli.common import (
    add_json_arg,
    add_profile_arg,
    emit_json,
    human_bytes,
    machine_from_args,
    render_table,
)
from kaihe_desktop.core.fit.kv_types import DEFAULT_KV_TYPE, KV_TYPE_NAMES
from kaihe_desktop.core.fit.report import FitReport, fit_report

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
    parser.add_argument(
        "--kv-type",
        choices=KV_TYPE_NAMES,
        default=str(DEFAULT_KV_TYPE),
        help=f"KV cache type (default: {DEFAULT_KV_TYPE})",
    )
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


# --- human output -------------------------------------------------------------------------------------------


def render(report: FitReport) -> str:
    p, meta, machine = report.plan, report.meta, report.machine
    params = (
        f"{meta.parameter_count / 1e9:.2f}B"
        if meta.parameter_count >= 1e9
        else f"{meta.parameter_count / 1e6:.0f}M"
    )
    quant = report.quant or "?"
    size = report.file_size_bytes
    speed = p.tokens_per_s
    layers = f"{p.gpu_layers} of {p.n_layers} layers on the GPU"
    rows: list[tuple[str, str]] = [
        ("Model", f"{report.source}"),
        ("", f"{meta.architecture}, {params} parameters, {quant}, file {human_bytes(size)}"),
        ("Machine", f"{machine.name or 'this machine'} ({report.tier.tier.label} tier)"),
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
    parts = [("RAM" if d.gpu_index is None else f"GPU {d.gpu_index}", d.breakdown) for d in report.devices]
    parts.append(("total", report.memory_total))
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
