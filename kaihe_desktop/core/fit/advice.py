"""Headroom warnings and upgrade advice: what the GUI shows next to a plan, and "before upgrading".

``warnings(plan)`` is a pure function of a plan (plus, optionally, pre-computed upgrades): no I/O, no probe.
Each Advice carries a severity, a message with the numbers in it, and the numbers themselves.

Thresholds (free memory left once the model is loaded, as a share of the memory it is loaded into, i.e. the
plan's ``headroom_pct``):
- under 15 %  -> warning: other apps (a browser with a few tabs takes 1-2 GB) will squeeze the model;
- under 5 %   -> critical: the OS will start compressing or swapping memory and generation stalls.
The planner already keeps its safety margin (llama.cpp's 1 GiB); these thresholds are about comfort on top.

Upgrade advice never says "buy exactly enough": the hardware it names runs the model fully on the GPU with the
same margin, checked by the real planner (core.hardware_table.smallest_holders), and the tier is the one whose
memory holds the model, the margin, and the RAM other programs hold on this machine now.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kaihe_desktop.core.fit.estimate import offload_devices
from kaihe_desktop.core.fit.hardware_table import describe_holders
from kaihe_desktop.core.fit.kv_types import KVCacheType
from kaihe_desktop.core.fit.plan import Placement, Plan, estimate, plan
from kaihe_desktop.core.fit.upgrades import (
    COMMON_QUANTS,
    COMMON_SIZES_B,
    Upgrade,
    evaluate_upgrade,
    next_quant_up,
    next_size_up,
    quant_scale,
    upgrades_for,
)
from kaihe_desktop.core.gguf.model_meta import ModelMeta
from kaihe_desktop.core.machine.spec import Machine
from kaihe_desktop.core.units import format_bytes, format_pct

WARN_HEADROOM_PCT = 15.0
CRITICAL_HEADROOM_PCT = 5.0


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Advice:
    code: str  # stable identifier: "low_headroom", "context_limited", "next_quant", ...
    severity: Severity
    message: str
    numbers: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": str(self.severity),
            "message": self.message,
            "numbers": dict(self.numbers),
        }


# --- warnings: pure ---------------------------------------------------------------------------------


def warnings(
    plan_: Plan,
    *,
    next_quant: Upgrade | None = None,
    next_size: Upgrade | None = None,
    longer_context: Upgrade | None = None,
) -> list[Advice]:
    """Every warning a plan deserves, most severe first."""
    found: list[Advice] = []
    found += _fit_and_headroom(plan_)
    found += _swap(plan_)
    found += _other_programs(plan_)
    found += _partial(plan_)
    found += _context(plan_)
    for upgrade in (next_quant, next_size, longer_context):
        if upgrade is not None:
            found.append(describe_upgrade(upgrade))
    order = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
    return sorted(found, key=lambda a: order[a.severity])


def _shortfall(p: Plan) -> int:
    """Bytes more than is free that the plan needs, margin included (0 when it fits)."""
    return max(p.margin_bytes - p.headroom_bytes, 0)


def _fit_and_headroom(p: Plan) -> list[Advice]:
    numbers = {
        "headroom_bytes": p.headroom_bytes,
        "headroom_pct": round(p.headroom_pct, 1),
        "margin_bytes": p.margin_bytes,
    }
    if p.placement == Placement.NONE:
        short = _shortfall(p)
        return [
            Advice(
                "does_not_fit",
                Severity.CRITICAL,
                f"does not fit: needs {format_bytes(short)} more than is free "
                f"(the {format_bytes(p.margin_bytes)} safety margin included)",
                {**numbers, "shortfall_bytes": short},
            )
        ]
    left = f"{format_bytes(p.headroom_bytes)} ({format_pct(p.headroom_pct)})"
    if p.headroom_pct < CRITICAL_HEADROOM_PCT:
        return [
            Advice(
                "low_headroom",
                Severity.CRITICAL,
                f"only {left} stays free for other apps: under {CRITICAL_HEADROOM_PCT:.0f}%, "
                "the system will compress or swap memory and the model will stall",
                numbers,
            )
        ]
    if p.headroom_pct < WARN_HEADROOM_PCT:
        return [
            Advice(
                "low_headroom",
                Severity.WARNING,
                f"little room for other apps: {left} stays free (under {WARN_HEADROOM_PCT:.0f}%); "
                "a browser with a few tabs can take 1-2 GB",
                numbers,
            )
        ]
    return []


def _swap(p: Plan) -> list[Advice]:
    """RAM the model would take beyond what is available: that much would come from swap."""
    ram_need = _ram_need(p)
    over = ram_need - p.ram_available_bytes
    swap_free = p.machine.ram.swap_free_bytes
    if over > 0 and swap_free > 0:
        from_swap = min(over, swap_free)
        return [
            Advice(
                "swap",
                Severity.CRITICAL,
                f"would use {format_bytes(from_swap)} of swap: the model's "
                f"{format_bytes(ram_need)} in RAM is more than the "
                f"{format_bytes(p.ram_available_bytes)} available; "
                "generation would crawl",
                {"swap_bytes": from_swap, "ram_bytes": ram_need},
            )
        ]
    within_margin = ram_need > p.ram_available_bytes - p.margin_bytes
    if over <= 0 and within_margin and swap_free > 0 and ram_need > 0:
        return [
            Advice(
                "swap",
                Severity.WARNING,
                f"less than the {format_bytes(p.margin_bytes)} margin of RAM stays free: "
                "the system may start swapping when another app needs memory",
                {"ram_bytes": ram_need, "ram_available_bytes": p.ram_available_bytes},
            )
        ]
    return []


def _ram_need(p: Plan) -> int:
    """RAM the plan draws on: its RAM part plus what a unified GPU (Apple, APU) takes from the same RAM."""
    gpus = offload_devices(p.machine)
    unified = sum(b.total for b, g in zip(p.estimate.vram, gpus, strict=False) if g.unified)
    return p.estimate.ram_bytes + unified


def _other_programs(p: Plan) -> list[Advice]:
    """Memory other programs hold (total - available) that the model needs, to fit or to reach 15% free.

    Per pool (RAM, GPU memory): when the model plus the margin does not fit in what is available but would in
    the total, closing programs makes it fit (warning); when it fits but leaves under WARN_HEADROOM_PCT of the
    available memory free, and closing programs could lift it there, say how much to close (info).
    """
    found = []
    warn = WARN_HEADROOM_PCT / 100
    for what, total, available, need in (
        ("RAM", p.ram_total_bytes, p.ram_available_bytes, _ram_need(p)),
        ("GPU memory", p.vram_total_bytes, p.vram_available_bytes, p.estimate.vram_bytes),
    ):
        in_use = total - available
        if need <= 0 or in_use <= 0 or available <= 0:
            continue
        left = available - need
        short = p.margin_bytes - left
        if short > 0:
            if need + p.margin_bytes <= total:
                found.append(
                    Advice(
                        "other_programs",
                        Severity.WARNING,
                        f"other programs hold {format_bytes(in_use)} of {what}; the model needs "
                        f"{format_bytes(short)} more than is free now: close some to make it fit",
                        {"in_use_bytes": in_use, "needed_more_bytes": short, "memory": what},
                    )
                )
            continue
        if left / available >= warn:
            continue
        # Freeing x raises both: (left + x) / (available + x) >= warn.
        to_free = int((warn * available - left) / (1 - warn)) + 1
        if to_free <= in_use:
            found.append(
                Advice(
                    "other_programs",
                    Severity.INFO,
                    f"other programs hold {format_bytes(in_use)} of {what}; closing "
                    f"{format_bytes(to_free)} of it would leave {WARN_HEADROOM_PCT:.0f}% free",
                    {"in_use_bytes": in_use, "to_free_bytes": to_free, "memory": what},
                )
            )
    return found


def _partial(p: Plan) -> list[Advice]:
    if p.placement != Placement.PARTIAL:
        return []
    on_cpu = p.n_layers - p.gpu_layers
    return [
        Advice(
            "partial_offload",
            Severity.INFO,
            f"{p.gpu_layers} of {p.n_layers} layers fit on the GPU; the other {on_cpu} run on the CPU, "
            "which is several times slower per layer",
            {"gpu_layers": p.gpu_layers, "n_layers": p.n_layers},
        )
    ]


def _context(p: Plan) -> list[Advice]:
    """A context the model was trained for but that does not fit: what the next step would cost."""
    trained = p.meta.context_length
    if p.placement == Placement.NONE or trained <= 0 or p.max_n_ctx >= trained:
        return []
    step = _next_context(p.max_n_ctx, trained)
    now = estimate(
        p.meta,
        p.machine,
        n_ctx=p.max_n_ctx,
        gpu_layers=p.gpu_layers,
        kv_type=p.kv_type,
        flash_attn=p.flash_attn,
        weights_scale=p.weights_scale,
    )
    then = estimate(
        p.meta,
        p.machine,
        n_ctx=step,
        gpu_layers=p.gpu_layers,
        kv_type=p.kv_type,
        flash_attn=p.flash_attn,
        weights_scale=p.weights_scale,
    )
    more = then.total_bytes - now.total_bytes
    return [
        Advice(
            "context_limited",
            Severity.INFO,
            f"a longer context would not fit: {p.max_n_ctx} tokens is the most here "
            f"(trained for {trained}); {step} tokens would need {format_bytes(more)} more",
            {"max_n_ctx": p.max_n_ctx, "trained_ctx": trained, "next_ctx": step, "needed_more_bytes": more},
        )
    ]


def _next_context(current: int, trained: int) -> int:
    """The next power of two above ``current`` (at least double), capped at the trained context."""
    step = 1024
    while step <= current:
        step *= 2
    return min(step, trained)


def describe_upgrade(upgrade: Upgrade) -> Advice:
    """One Advice for an evaluated upgrade: fits here (and how), or how much more, which tier and hardware."""
    numbers: dict[str, Any] = {
        "kind": upgrade.kind,
        "label": upgrade.label,
        "needed_bytes": upgrade.needed_bytes,
        "extra_bytes": upgrade.extra_bytes,
        "tier": upgrade.tier,
        "hardware": [h.name for h in upgrade.holders],
    }
    code = f"next_{upgrade.kind}"
    what = _upgrade_words(upgrade)
    if upgrade.fits_here:
        p = upgrade.plan
        return Advice(
            code,
            Severity.INFO,
            f"{what} also fits here: it needs {format_bytes(upgrade.extra_bytes)} more and would leave "
            f"{format_bytes(p.headroom_bytes)} ({format_pct(p.headroom_pct)}) free, placement {p.placement}",
            numbers,
        )
    short = _shortfall(upgrade.plan)
    numbers["shortfall_bytes"] = short
    where = describe_holders(upgrade.holders)
    margin = format_bytes(upgrade.plan.margin_bytes)
    hardware = (
        f"; it runs fully on {where}, keeping the {margin} margin free"
        if where
        else "; no GPU or Mac in our table holds it alone"
    )
    return Advice(
        code,
        Severity.INFO,
        f"{what} needs {format_bytes(upgrade.extra_bytes)} more memory ({format_bytes(short)} more than is "
        f"free here, margin included): {upgrade.tier.capitalize()} tier{hardware}",
        numbers,
    )


def _upgrade_words(upgrade: Upgrade) -> str:
    if upgrade.kind == "context":
        return f"a {upgrade.label} context"
    if upgrade.kind == "size":
        return f"the next size up ({upgrade.label})"
    return f"the next quant up ({upgrade.label})"


def upgrade_advice(
    meta: ModelMeta,
    machine: Machine,
    *,
    target_quant: str | None = None,
    target_params: int | None = None,
    target_ctx: int | None = None,
    n_ctx: int | None = None,
    kv_type: KVCacheType | str = KVCacheType.F16,
    margin_bytes: int | None = None,
) -> list[Advice]:
    """Before upgrading: what a bigger quant, a bigger model (same quant) or a longer context would need.

    With no target given, the next quant up (COMMON_QUANTS) and the next size up (COMMON_SIZES_B) are
    evaluated. A bigger model is approximated by scaling this one's weights (its KV cache is kept as is).
    """
    current = plan(meta, machine, n_ctx=n_ctx, kv_type=kv_type, margin_bytes=margin_bytes)
    upgrades = upgrades_for(
        current,
        target_quant=target_quant,
        target_params=target_params,
        target_ctx=target_ctx,
        margin_bytes=margin_bytes,
    )
    return [describe_upgrade(u) for u in upgrades]


__all__ = [
    "COMMON_QUANTS",
    "COMMON_SIZES_B",
    "CRITICAL_HEADROOM_PCT",
    "WARN_HEADROOM_PCT",
    "Advice",
    "Severity",
    "Upgrade",
    "describe_upgrade",
    "evaluate_upgrade",
    "next_quant_up",
    "next_size_up",
    "quant_scale",
    "upgrade_advice",
    "upgrades_for",
    "warnings",
]
