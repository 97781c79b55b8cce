"""Upgrades evaluated before buying or downloading: a bigger quant, a bigger model, a longer context.

Each is planned on this machine and on the common GPUs and Macs of the hardware table (with the same safety
margin, so the hardware named never holds it with "exactly enough"), and placed in a tier. ``advice`` turns
them into messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kaihe_desktop.core.fit.hardware_table import smallest_holders
from kaihe_desktop.core.fit.known_hardware import Hardware
from kaihe_desktop.core.fit.plan import Placement, Plan, estimate, plan
from kaihe_desktop.core.fit.quants import quality_rank, quant_type
from kaihe_desktop.core.machine.tiers import tier_of

# Sizes (billions of parameters) model families publish, for "the next size up" (market brief families:
# Qwen3, Llama, Gemma 3, Mistral, Phi-4, gpt-oss). The next size is the smallest at least 1.3x this model.
COMMON_SIZES_B: tuple[float, ...] = (
    0.27, 0.6, 1.0, 1.7, 3.0, 4.0, 7.0, 8.0, 12.0, 14.0, 20.0, 24.0, 27.0, 32.0, 70.0, 120.0, 235.0,
)  # fmt: skip
NEXT_SIZE_FACTOR = 1.3

# The quants most repos publish, for "the next quant up" when the repo's own list is not known.
COMMON_QUANTS: tuple[str, ...] = ("Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "F16")


@dataclass(frozen=True)
class Upgrade:
    """A bigger quant, a bigger model or a longer context, evaluated here and on common hardware."""

    kind: str  # "quant" | "size" | "context"
    label: str  # "Q6_K", "14B", "32768 tokens"
    plan: Plan  # the upgrade planned on this machine
    needed_bytes: int  # memory the upgrade needs in all (RAM + VRAM)
    extra_bytes: int  # more than the current plan needs
    tier: str  # the tier whose memory holds it with the margin
    holders: tuple[Hardware, ...] = ()  # the smallest GPU(s) and Mac that run it fully on the GPU

    @property
    def fits_here(self) -> bool:
        return self.plan.placement != Placement.NONE


def evaluate_upgrade(
    current: Plan,
    *,
    kind: str,
    label: str,
    weights_scale: float = 1.0,
    n_ctx: int | None = None,
    margin_bytes: int | None = None,
) -> Upgrade:
    """Plan the upgrade at the current plan's context (or ``n_ctx``) here and on common hardware.

    ``weights_scale`` is relative to the file ``current.meta`` was read from, like fit.plan's.
    """
    ctx = n_ctx if n_ctx is not None else current.n_ctx
    margin = margin_bytes if margin_bytes is not None else current.margin_bytes
    here = plan(
        current.meta,
        current.machine,
        n_ctx=ctx,
        kv_type=current.kv_type,
        flash_attn=current.flash_attn,
        margin_bytes=margin,
        weights_scale=weights_scale,
    )
    # Same layer split as the current plan, weights scaled: what the upgrade needs wherever it lives.
    needed = estimate(
        current.meta,
        current.machine,
        n_ctx=ctx,
        gpu_layers=current.gpu_layers,
        kv_type=current.kv_type,
        flash_attn=current.flash_attn,
        weights_scale=weights_scale,
    ).total_bytes
    before = current.estimate.total_bytes
    holders = smallest_holders(
        current.meta,
        current.machine,
        n_ctx=ctx,
        weights_scale=weights_scale,
        kv_type=current.kv_type,
        flash_attn=current.flash_attn,
        margin_bytes=margin,
    )
    return Upgrade(
        kind=kind,
        label=label,
        plan=here,
        needed_bytes=needed,
        extra_bytes=max(needed - before, 0),
        tier=str(tier_of(needed + margin + _in_use(current))),
        holders=holders,
    )


def _in_use(p: Plan) -> int:
    """RAM other programs hold here now: a machine that holds the upgrade must hold that too."""
    return max(p.ram_total_bytes - p.ram_available_bytes, 0)


def next_quant_up(quant: str | None, offered: Sequence[str] = COMMON_QUANTS) -> str | None:
    """The lowest quant in ``offered`` that is better than ``quant`` (None at the top or when unknown)."""
    if quant is None:
        return None
    mine = quality_rank(quant)
    better = [q for q in offered if quality_rank(q) < mine]
    return max(better, key=quality_rank) if better else None


def next_size_up(parameter_count: int) -> float | None:
    """The next common model size (billions of parameters) at least 1.3x this one; None past the table."""
    billions = parameter_count / 1e9
    return next((s for s in COMMON_SIZES_B if s >= billions * NEXT_SIZE_FACTOR), None)


def quant_scale(from_quant: str | None, to_quant: str) -> float | None:
    """Weight-size ratio between two quants from their bits per weight (None when either is unknown)."""
    src = quant_type(from_quant) if from_quant else None
    dst = quant_type(to_quant)
    if src is None or dst is None:
        return None
    return dst.bits_per_weight / src.bits_per_weight


def upgrades_for(
    current: Plan,
    *,
    target_quant: str | None = None,
    target_params: int | None = None,
    target_ctx: int | None = None,
    margin_bytes: int | None = None,
    quant: str | None = None,
) -> list[Upgrade]:
    """The upgrades ``upgrade_advice`` describes, as data (the CLI passes them to ``warnings``).

    ``quant`` is the quant ``current`` stands for (default: the file's own); a plan of another quant of the
    same header carries its ``weights_scale``, and every upgrade is scaled from there.
    """
    meta = current.meta
    base = current.weights_scale
    mine = quant if quant is not None else meta.file_type
    explicit = target_quant is not None or target_params is not None or target_ctx is not None
    found: list[Upgrade] = []
    wanted = target_quant if explicit else next_quant_up(mine)
    if wanted is not None:
        scale = quant_scale(mine, wanted)
        if scale is not None:
            found.append(
                evaluate_upgrade(
                    current, kind="quant", label=wanted, weights_scale=base * scale, margin_bytes=margin_bytes
                )
            )
    params = target_params
    if not explicit and meta.parameter_count > 0:
        size = next_size_up(meta.parameter_count)
        params = int(size * 1e9) if size is not None else None
    if params is not None and meta.parameter_count > 0:
        found.append(
            evaluate_upgrade(
                current,
                kind="size",
                label=_size_label(params),
                weights_scale=base * params / meta.parameter_count,
                margin_bytes=margin_bytes,
            )
        )
    if target_ctx is not None:
        found.append(
            evaluate_upgrade(
                current,
                kind="context",
                label=f"{target_ctx} tokens",
                weights_scale=base,
                n_ctx=target_ctx,
                margin_bytes=margin_bytes,
            )
        )
    return found


def _size_label(params: int) -> str:
    billions = params / 1e9
    if billions < 1:
        return f"{params / 1e6:.0f}M"
    return f"{billions:.0f}B" if abs(billions - round(billions)) < 0.05 else f"{billions:.1f}B"
