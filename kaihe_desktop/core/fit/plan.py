"""The planner: where a model runs on a machine (full GPU, N of M layers, CPU, or not at all) and how much
context fits, with a safety margin and the headroom left over.

The estimator it stands on lives in fit/estimate.py (re-exported here, so
`from kaihe_desktop.core.fit.plan import estimate, plan` is the one import callers need).

Which memory counts:
- the CPU part (mapped weights, repacked copies, KV and compute of CPU layers, runtime) must fit in RAM
  *available* now, not total: what other programs hold is not ours;
- each discrete GPU's part must fit in that GPU's *free* memory;
- a unified GPU (Apple Silicon, APUs) has its own limit (the Metal working-set budget, as memory_free of the
  GpuInfo) and shares the same physical RAM: its part counts against the GPU limit *and*, once, against RAM
  available, never twice.

Safety margin: llama.cpp's own parameter fitting (`llama_params_fit`, the `--fit` option of llama-server)
keeps 1 GiB free on every device it fills (`--fit-target`, default 1024 MiB). We keep the same 1 GiB free on
every device a plan uses (RAM, and each GPU), so the OS, the desktop and the app itself keep breathing room.

Context: the default is min(trained context, 8192) — enough for chat with documents, and a KV cache size any
tier can afford for small models; when that does not fit, the largest multiple of 1024 that does. max_n_ctx is
the largest multiple of 1024 (at most the trained context) that fits with the chosen placement and margin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final

from kaihe_desktop.core.fit.estimate import (
    Breakdown,
    MemoryEstimate,
    estimate,
    n_layers_total,
    offload_devices,
)
from kaihe_desktop.core.fit.kv_types import KVCacheType
from kaihe_desktop.core.fit.placement import Placement
from kaihe_desktop.core.fit.speed import SpeedRange, estimate_speed
from kaihe_desktop.core.gguf.model_meta import ModelMeta
from kaihe_desktop.core.machine.spec import Machine
from kaihe_desktop.core.units import GIB, format_bytes

DEFAULT_MARGIN_BYTES: Final = 1 * GIB  # llama.cpp's --fit-target default: 1024 MiB free per device
DEFAULT_CONTEXT: Final = 8192
CONTEXT_STEP: Final = 1024
UNKNOWN_TRAINED_CONTEXT: Final = 4096  # a header without context_length: llama.cpp's common default


@dataclass(frozen=True)
class Plan:
    """Where a model runs on a machine, with which context, and what room is left."""

    meta: ModelMeta
    machine: Machine
    placement: Placement
    gpu_layers: int  # llama.cpp's n_gpu_layers (the output layer counts as one)
    n_layers: int  # block_count + 1, as llama.cpp counts them ("offloaded 19/19 layers")
    n_ctx: int
    max_n_ctx: int  # the largest multiple of 1024 (<= trained) that fits with this placement; 0 if none
    kv_type: KVCacheType
    flash_attn: bool
    estimate: MemoryEstimate
    margin_bytes: int
    ram_available_bytes: int
    ram_total_bytes: int
    vram_available_bytes: int
    vram_total_bytes: int
    headroom_bytes: int  # free memory left on the tightest device after loading (negative: over)
    headroom_pct: float  # headroom_bytes against that device's available memory
    headroom_pct_of_total: float  # ... and against its total memory
    tokens_per_s: SpeedRange | None
    reason: str
    weights_scale: float = 1.0

    @property
    def fits(self) -> bool:
        return self.placement != Placement.NONE

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of `kaihe fit --json` (the CLI adds `warnings`)."""
        breakdown = self.estimate.breakdown_total()
        return {
            "placement": str(self.placement),
            "gpu_layers": self.gpu_layers,
            "n_layers": self.n_layers,
            "n_ctx": self.n_ctx,
            "max_n_ctx": self.max_n_ctx,
            "kv_type": str(self.kv_type),
            "flash_attn": self.flash_attn,
            "ram_bytes": self.estimate.ram_bytes,
            "vram_bytes": self.estimate.vram_bytes,
            "resident_bytes": self.estimate.resident_bytes,
            "breakdown": breakdown.to_dict(),
            "ram_breakdown": self.estimate.ram.to_dict(),
            "vram_breakdown": [b.to_dict() for b in self.estimate.vram],
            "kv_bytes_per_layer": list(self.estimate.kv_bytes_per_layer),
            "headroom_bytes": self.headroom_bytes,
            "headroom_pct": round(self.headroom_pct, 2),
            "headroom_pct_of_total": round(self.headroom_pct_of_total, 2),
            "margin_bytes": self.margin_bytes,
            "ram_available_bytes": self.ram_available_bytes,
            "ram_total_bytes": self.ram_total_bytes,
            "vram_available_bytes": self.vram_available_bytes,
            "vram_total_bytes": self.vram_total_bytes,
            "tokens_per_s_estimate": (
                None
                if self.tokens_per_s is None
                else {"low": round(self.tokens_per_s.low, 1), "high": round(self.tokens_per_s.high, 1)}
            ),
            "reason": self.reason,
        }


# --- memory checks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Room:
    """One memory pool a plan draws on: what it needs from it, what is free, and the pool's size."""

    name: str
    need: int
    available: int
    total: int

    @property
    def left(self) -> int:
        return self.available - self.need


def _rooms(est: MemoryEstimate, machine: Machine) -> list[_Room]:
    gpus = offload_devices(machine)
    unified_need = sum(b.total for b, g in zip(est.vram, gpus, strict=True) if g.unified)
    ram_need = est.ram.total + unified_need
    rooms = [_Room("RAM", ram_need, machine.ram.available_bytes, machine.ram.total_bytes)]
    for part, gpu in zip(est.vram, gpus, strict=True):
        if part.total > 0:
            rooms.append(_Room(gpu.name, part.total, gpu.memory_free_bytes, gpu.memory_total_bytes))
    return rooms


def _fits(est: MemoryEstimate, machine: Machine, margin: int) -> bool:
    return all(room.left >= margin for room in _rooms(est, machine))


def _gpus_fit(est: MemoryEstimate, machine: Machine, margin: int) -> bool:
    """The GPU side alone: more layers only ever need more of it (while RAM needs less)."""
    return all(room.left >= margin for room in _rooms(est, machine)[1:])


def _tightest(est: MemoryEstimate, machine: Machine) -> _Room:
    return min(
        _rooms(est, machine), key=lambda r: (r.left / r.available if r.available > 0 else -1.0, r.left)
    )


# --- the planner -----------------------------------------------------------------------------------------


def plan(
    meta: ModelMeta,
    machine: Machine,
    *,
    n_ctx: int | None = None,
    gpu_layers: int | None = None,
    kv_type: KVCacheType | str = KVCacheType.F16,
    flash_attn: bool | None = None,
    margin_bytes: int | None = None,
    weights_scale: float = 1.0,
    use_mmap: bool = True,
) -> Plan:
    """Choose placement and context for meta on machine (see the module docstring for the rules).

    n_ctx None: the default context (or the largest that fits below it). gpu_layers None: the most layers
    that fit (full GPU, else partial, else CPU); a number (-1: all) is taken as given. flash_attn None: on
    when the KV cache is quantized (llama.cpp needs it for a quantized V cache), otherwise off as in
    llama-cpp-python. weights_scale: another quant of the same model, its file size over this one's.
    kv_type: a KVCacheType or its name (UnknownKVCacheTypeError for any other).
    """
    kv = KVCacheType.parse(kv_type)
    if n_ctx is not None and n_ctx <= 0:
        raise ValueError("n_ctx must be positive")
    margin = DEFAULT_MARGIN_BYTES if margin_bytes is None else max(0, margin_bytes)
    use_fa = flash_attn if flash_attn is not None else kv != KVCacheType.F16
    total_layers = n_layers_total(meta)
    has_gpu = bool(offload_devices(machine))
    trained = meta.context_length if meta.context_length > 0 else UNKNOWN_TRAINED_CONTEXT

    def est(ctx: int, layers: int) -> MemoryEstimate:
        return estimate(
            meta, machine, n_ctx=ctx, gpu_layers=layers, kv_type=kv, flash_attn=use_fa,
            weights_scale=weights_scale, use_mmap=use_mmap,
        )  # fmt: skip

    def fits(ctx: int, layers: int) -> bool:
        return _fits(est(ctx, layers), machine, margin)

    def best_layers(ctx: int) -> int | None:
        """The most GPU layers that fit at ctx (0 = CPU), or None when not even the CPU holds it."""
        if gpu_layers is not None:
            fixed = 0 if not has_gpu else (total_layers if gpu_layers < 0 else min(gpu_layers, total_layers))
            return fixed if fits(ctx, fixed) else None
        if not has_gpu:
            return 0 if fits(ctx, 0) else None
        if fits(ctx, total_layers):
            return total_layers
        # VRAM need grows with the layers and RAM need shrinks: the most layers the GPUs hold is the best
        # partial placement, and the only one to check against RAM
        most = _largest(1, total_layers - 1, lambda n: _gpus_fit(est(ctx, n), machine, margin))
        if most is not None and fits(ctx, most):
            return most
        return 0 if fits(ctx, 0) else None

    if n_ctx is not None:
        chosen_ctx = n_ctx
        layers = best_layers(n_ctx)
    else:
        chosen_ctx = min(trained, DEFAULT_CONTEXT)
        layers = best_layers(chosen_ctx)
        if layers is None:
            step_ctx = _largest(
                1, chosen_ctx // CONTEXT_STEP, lambda k: best_layers(k * CONTEXT_STEP) is not None
            )
            if step_ctx is not None:
                chosen_ctx = step_ctx * CONTEXT_STEP
                layers = best_layers(chosen_ctx)

    if layers is None:
        attempt_layers = _least_short_layers(
            gpu_layers, total_layers, has_gpu, lambda n: est(chosen_ctx, n), machine
        )
        final = est(chosen_ctx, attempt_layers)
        placement = Placement.NONE
        max_ctx = 0
    else:
        final = est(chosen_ctx, layers)
        placement = _placement(final.gpu_layers, total_layers)
        max_k = _largest(
            1, max(trained // CONTEXT_STEP, 1), lambda k: fits(min(k * CONTEXT_STEP, trained), layers)
        )
        max_ctx = min(max_k * CONTEXT_STEP, trained) if max_k is not None else 0

    room = _tightest(final, machine)
    gpus = offload_devices(machine)
    vram_available = sum(g.memory_free_bytes for g in gpus)
    vram_total = sum(g.memory_total_bytes for g in gpus)
    speed = (
        estimate_speed(meta, machine, final, weights_scale=weights_scale)
        if placement != Placement.NONE
        else None
    )
    result = Plan(
        meta=meta,
        machine=machine,
        placement=placement,
        gpu_layers=final.gpu_layers,
        n_layers=total_layers,
        n_ctx=chosen_ctx,
        max_n_ctx=max_ctx,
        kv_type=kv,
        flash_attn=use_fa,
        estimate=final,
        margin_bytes=margin,
        ram_available_bytes=machine.ram.available_bytes,
        ram_total_bytes=machine.ram.total_bytes,
        vram_available_bytes=vram_available,
        vram_total_bytes=vram_total,
        headroom_bytes=room.left,
        headroom_pct=100.0 * room.left / room.available if room.available > 0 else -100.0,
        headroom_pct_of_total=100.0 * room.left / room.total if room.total > 0 else -100.0,
        tokens_per_s=speed,
        reason="",
        weights_scale=weights_scale,
    )
    return _with_reason(result, room)


def _placement(gpu_layers: int, total_layers: int) -> Placement:
    if gpu_layers <= 0:
        return Placement.CPU
    return Placement.GPU if gpu_layers >= total_layers else Placement.PARTIAL


def _largest(lo: int, hi: int, ok: Callable[[int], bool]) -> int | None:
    """The largest n in [lo, hi] with ok(n), assuming ok is monotone (true up to some n, then false)."""
    if hi < lo or not ok(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _least_short_layers(
    requested: int | None,
    total_layers: int,
    has_gpu: bool,
    est: Callable[[int], MemoryEstimate],
    machine: Machine,
) -> int:
    """For a model that fits nowhere: the configuration that misses by the least (what advice quotes)."""
    if requested is not None:
        return (total_layers if requested < 0 else min(requested, total_layers)) if has_gpu else 0
    options = [0, total_layers] if has_gpu else [0]
    return max(options, key=lambda n: _tightest(est(n), machine).left)


def _with_reason(p: Plan, room: _Room) -> Plan:
    est = p.estimate
    left = f"{format_bytes(room.left)} of {format_bytes(room.available)} {_room_word(room)} stays free"
    if p.placement == Placement.NONE:
        short = p.margin_bytes - room.left
        text = (
            f"does not fit: needs {format_bytes(room.need)} of {_room_word(room)} at {p.n_ctx} context, "
            f"{format_bytes(room.available)} is free; {format_bytes(short)} short with the "
            f"{format_bytes(p.margin_bytes)} margin"
        )
    elif p.placement == Placement.GPU:
        text = (
            f"full GPU offload ({p.gpu_layers}/{p.n_layers} layers, {format_bytes(est.vram_bytes)}); {left}"
        )
    elif p.placement == Placement.PARTIAL:
        text = (
            f"partial offload: {p.gpu_layers} of {p.n_layers} layers on the GPU "
            f"({format_bytes(est.vram_bytes)}), the rest in RAM ({format_bytes(est.ram_bytes)}); {left}"
        )
    else:
        text = f"CPU only: {format_bytes(est.ram_bytes)} of RAM; {left}"
    return replace(p, reason=text)


def _room_word(room: _Room) -> str:
    return "RAM" if room.name == "RAM" else f"{room.name} memory"


__all__ = [
    "DEFAULT_CONTEXT",
    "DEFAULT_MARGIN_BYTES",
    "Breakdown",
    "KVCacheType",
    "MemoryEstimate",
    "Placement",
    "Plan",
    "SpeedRange",
    "estimate",
    "plan",
]
