"""Guardrails before a download or a load: when to stop and ask, the numbers, and what would make it fit.

``check(meta, machine, options=Requested(...))`` plans what the user asked for with the real planner and
returns None when it can go ahead quietly, or a Guardrail when:

- BELOW_MARGIN: it would leave less than the safety margin free on some device (the planner's placement
  "none"); the Guardrail names that device and what it needs, has and would leave;
- STEP_UP: it fits, but is a step up from what is in use now (a bigger model, a higher quant, a longer
  context) and leaves under ``step_up_below_pct`` of that device's free memory (advice's 15% comfort line;
  None asks on every step up). A step up that leaves plenty is not worth a question.

Each Guardrail carries the request's plan, the upgrade it amounts to evaluated on common hardware
(fit/upgrades: the tier and the smallest GPU or Mac that runs it fully on the GPU with the margin kept free),
the plan's warnings (fit/advice), and make-it-fit options. Each option is one concrete change to the request,
re-planned by the planner (memory, headroom, placement, tokens/s): only options that fit with the margin (for
a step up: that also leave more room than the request). The changes:

- FEWER_GPU_LAYERS (n): the same answers, only slower; offered when the request pins the GPU layers (the
  planner's own choice is already the most that fit);
- KV_Q8_0: a q8_0 KV cache, near-lossless (llama.cpp's perplexity tests put it within noise of f16);
- SHORTER_CONTEXT (n_ctx): the same answers over less of the conversation; offered for a pinned context
  (with the default context the planner already takes the largest that fits) or a context step up;
- NEXT_QUANT_DOWN (quant): every answer a little worse; the best offered quant below the request that fits
  (for a step up, the next one down).

Ordered by least quality lost: a lower quant last (it costs every answer), then the longest context kept
(an option planned with the default context may come with a shorter one), then the order above.

Everything here is codes and numbers; the front ends word them (qt/format.py). An option's ``requested``
is the request with the change applied and the planner's choices pinned, so taking it loads what was
predicted (checking it again returns None).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

from kaihe_desktop.core.fit.advice import WARN_HEADROOM_PCT, Advice, warnings
from kaihe_desktop.core.fit.estimate import offload_devices
from kaihe_desktop.core.fit.kv_types import KVCacheType
from kaihe_desktop.core.fit.placement import Placement
from kaihe_desktop.core.fit.plan import CONTEXT_STEP, Plan, _rooms, plan
from kaihe_desktop.core.fit.quants import QuantOption, quality_rank, weights_scale
from kaihe_desktop.core.fit.speed import SpeedRange
from kaihe_desktop.core.fit.upgrades import COMMON_QUANTS, Upgrade, evaluate_upgrade, quant_scale
from kaihe_desktop.core.gguf.model_meta import ModelMeta
from kaihe_desktop.core.machine.spec import Machine

# A model counts as bigger when it has this much more parameters (two quants of one model count the same).
SIZE_STEP_FACTOR: Final = 1.02


class Action(StrEnum):
    """What the guardrail stands before."""

    DOWNLOAD = "download"
    LOAD = "load"


DOWNLOAD: Final = Action.DOWNLOAD
LOAD: Final = Action.LOAD


class Trigger(StrEnum):
    BELOW_MARGIN = "below_margin"  # less than the safety margin would stay free
    STEP_UP = "step_up"  # fits, but a tight step up from what is in use now


class Growth(StrEnum):
    """What grew against what is in use now."""

    MODEL_SIZE = "model_size"
    QUANT = "quant"
    CONTEXT = "context"


class Change(StrEnum):
    """A make-it-fit option's change; at equal context kept, options come in this order."""

    FEWER_GPU_LAYERS = "fewer_gpu_layers"
    KV_Q8_0 = "kv_q8_0"
    SHORTER_CONTEXT = "shorter_context"
    NEXT_QUANT_DOWN = "next_quant_down"


_ORDER: Final = {change: i for i, change in enumerate(Change)}


@dataclass(frozen=True)
class Requested:
    """What the user asked to download or load. None: as the planner chooses (the file's own quant, the
    default context or the largest that fits, the most GPU layers that fit)."""

    quant: str | None = None
    n_ctx: int | None = None
    gpu_layers: int | None = None  # -1: all of them
    kv_type: KVCacheType = KVCacheType.F16
    flash_attn: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kv_type", KVCacheType.parse(self.kv_type))


@dataclass(frozen=True)
class InUse:
    """What runs now (the loaded model): what a step up is measured against."""

    parameter_count: int
    quant: str | None
    n_ctx: int

    @classmethod
    def of(cls, plan_: Plan, *, quant: str | None = None) -> InUse:
        """The model a plan loaded (quant: the variant it stands for; default the file's own)."""
        return cls(
            parameter_count=plan_.meta.parameter_count,
            quant=quant if quant is not None else plan_.meta.file_type,
            n_ctx=plan_.n_ctx,
        )


@dataclass(frozen=True)
class FitOption:
    """One change to the request, planned: what it needs, leaves, where it runs and how fast."""

    change: Change
    plan: Plan
    requested: Requested  # the request with this change applied (the planner's choices pinned)
    quant: str | None  # the quant it runs (the lower one for NEXT_QUANT_DOWN)
    size_bytes: int | None = None  # that variant's files, when the variants are known

    @property
    def n_ctx(self) -> int:
        return self.plan.n_ctx

    @property
    def gpu_layers(self) -> int:
        return self.plan.gpu_layers

    @property
    def kv_type(self) -> KVCacheType:
        return self.plan.kv_type

    @property
    def placement(self) -> Placement:
        return self.plan.placement

    @property
    def total_bytes(self) -> int:
        return self.plan.estimate.total_bytes

    @property
    def headroom_bytes(self) -> int:
        return self.plan.headroom_bytes

    @property
    def tokens_per_s(self) -> SpeedRange | None:
        return self.plan.tokens_per_s


@dataclass(frozen=True)
class Guardrail:
    """Why to stop before a download or a load, with the numbers and the ways to make it fit."""

    action: Action
    trigger: Trigger
    grew: tuple[Growth, ...]  # against what is in use now (empty without it)
    current: InUse | None  # what is in use now, as given
    requested: Requested
    quant: str | None  # the quant asked for
    size_bytes: int | None  # its files, when the variants are known
    plan: Plan  # the request, planned
    device: str  # "RAM" or the GPU's name: the device the numbers are about
    needed_bytes: int  # what the request needs there
    available_bytes: int  # what is free there now
    margin_bytes: int
    upgrade: Upgrade  # the request on common hardware: its tier and the smallest holders
    advice: tuple[Advice, ...]  # the plan's warnings, most severe first
    options: tuple[FitOption, ...]  # least quality lost first

    @property
    def left_bytes(self) -> int:
        """Free there after it is loaded (negative: more than is free)."""
        return self.available_bytes - self.needed_bytes

    @property
    def short_bytes(self) -> int:
        """More than is free, the margin included, that it needs there (0 when it keeps the margin)."""
        return max(self.margin_bytes - self.left_bytes, 0)


def check(
    meta: ModelMeta,
    machine: Machine,
    *,
    options: Requested | None = None,
    variants: Sequence[QuantOption] | None = None,
    current: InUse | None = None,
    kind: Action = Action.LOAD,
    margin_bytes: int | None = None,
    step_up_below_pct: float | None = WARN_HEADROOM_PCT,
) -> Guardrail | None:
    """None when the request goes ahead quietly, else the Guardrail (see the module docstring).

    meta: the header of the model (any variant of it); variants: its repo's quants with their sizes (what
    the quant options are chosen from; without them, COMMON_QUANTS scaled by bits per weight).
    """
    req = options if options is not None else Requested()
    quant = req.quant if req.quant is not None else meta.file_type
    scale = _scale(meta, quant, variants)
    asked = _plan(meta, machine, req, scale, margin_bytes)
    grew = _grew(meta, quant, asked, current)
    if asked.fits:
        tight = step_up_below_pct is None or asked.headroom_pct < step_up_below_pct
        if not grew or not tight:
            return None
        trigger = Trigger.STEP_UP
    else:
        trigger = Trigger.BELOW_MARGIN
    device, need, available = _room(asked)
    upgrade = evaluate_upgrade(
        asked,
        kind=_upgrade_kind(grew),
        label=_upgrade_label(grew, quant, asked),
        weights_scale=scale,
        margin_bytes=asked.margin_bytes,
    )
    return Guardrail(
        action=kind,
        trigger=trigger,
        grew=grew,
        current=current,
        requested=req,
        quant=quant,
        size_bytes=_size_of(quant, variants),
        plan=asked,
        device=device,
        needed_bytes=need,
        available_bytes=available,
        margin_bytes=asked.margin_bytes,
        upgrade=upgrade,
        advice=tuple(warnings(asked)),
        options=_options(meta, machine, req, quant, asked, trigger, grew, current, variants, margin_bytes),
    )


# --- the request ----------------------------------------------------------------------------------------


def _plan(meta: ModelMeta, machine: Machine, req: Requested, scale: float, margin: int | None) -> Plan:
    return plan(
        meta,
        machine,
        n_ctx=req.n_ctx,
        gpu_layers=req.gpu_layers,
        kv_type=req.kv_type,
        flash_attn=req.flash_attn,
        margin_bytes=margin,
        weights_scale=scale,
    )


def _scale(meta: ModelMeta, quant: str | None, variants: Sequence[QuantOption] | None) -> float:
    """The quant's weights against the file meta was read from (its size when offered, else its bpw)."""
    option = _variant(quant, variants)
    if option is not None:
        return weights_scale(option, meta)
    if quant is None or meta.file_type is None or quality_rank(quant) == quality_rank(meta.file_type):
        return 1.0
    return quant_scale(meta.file_type, quant) or 1.0


def _variant(quant: str | None, variants: Sequence[QuantOption] | None) -> QuantOption | None:
    if quant is None or not variants:
        return None
    rank = quality_rank(quant)
    return next((v for v in variants if v.quant == quant), None) or next(
        (v for v in variants if quality_rank(v.quant) == rank), None
    )


def _size_of(quant: str | None, variants: Sequence[QuantOption] | None) -> int | None:
    option = _variant(quant, variants)
    return option.size_bytes if option is not None else None


def _grew(meta: ModelMeta, quant: str | None, asked: Plan, current: InUse | None) -> tuple[Growth, ...]:
    if current is None:
        return ()
    found = []
    if meta.parameter_count > current.parameter_count * SIZE_STEP_FACTOR:
        found.append(Growth.MODEL_SIZE)
    if quant is not None and current.quant is not None and quality_rank(quant) < quality_rank(current.quant):
        found.append(Growth.QUANT)
    if asked.n_ctx > current.n_ctx:
        found.append(Growth.CONTEXT)
    return tuple(found)


def _room(p: Plan) -> tuple[str, int, int]:
    """The device the numbers are about: the one shortest of the margin, else the tightest (as headroom)."""
    rooms = _rooms(p.estimate, p.machine)
    short = [r for r in rooms if r.left < p.margin_bytes]
    if short:
        room = min(short, key=lambda r: r.left)
    else:
        room = min(rooms, key=lambda r: (r.left / r.available if r.available > 0 else -1.0, r.left))
    return room.name, room.need, room.available


def _upgrade_kind(grew: tuple[Growth, ...]) -> str:
    if Growth.MODEL_SIZE in grew:
        return "size"
    if Growth.CONTEXT in grew and Growth.QUANT not in grew:
        return "context"
    return "quant"


def _upgrade_label(grew: tuple[Growth, ...], quant: str | None, asked: Plan) -> str:
    kind = _upgrade_kind(grew)
    if kind == "context":
        return f"{asked.n_ctx} tokens"
    if kind == "size":
        billions = asked.meta.parameter_count / 1e9
        return f"{billions:.0f}B" if billions >= 1 else f"{asked.meta.parameter_count / 1e6:.0f}M"
    return quant or "this model"


# --- make-it-fit options --------------------------------------------------------------------------------


def _options(
    meta: ModelMeta,
    machine: Machine,
    req: Requested,
    quant: str | None,
    asked: Plan,
    trigger: Trigger,
    grew: tuple[Growth, ...],
    current: InUse | None,
    variants: Sequence[QuantOption] | None,
    margin: int | None,
) -> tuple[FitOption, ...]:
    scale = asked.weights_scale

    def planned(change: Change, changed: Requested, option_quant: str | None, option_scale: float) -> None:
        p = _plan(meta, machine, changed, option_scale, margin)
        if not p.fits or (trigger == Trigger.STEP_UP and p.headroom_bytes <= asked.headroom_bytes):
            return
        pinned = replace(changed, n_ctx=p.n_ctx, gpu_layers=p.gpu_layers, kv_type=p.kv_type)
        found.append(FitOption(change, p, pinned, option_quant, _size_of(option_quant, variants)))

    found: list[FitOption] = []
    # fewer GPU layers: only a request that pins more layers than fit (the planner's own choice is the most)
    if req.gpu_layers is not None and offload_devices(machine) and trigger == Trigger.BELOW_MARGIN:
        auto = _plan(meta, machine, replace(req, gpu_layers=None), scale, margin)
        if auto.fits and auto.gpu_layers < asked.gpu_layers:
            planned(Change.FEWER_GPU_LAYERS, replace(req, gpu_layers=auto.gpu_layers), quant, scale)
    # a q8_0 KV cache, from a bigger one
    if req.kv_type.bytes_per_element > KVCacheType.Q8_0.bytes_per_element:
        planned(Change.KV_Q8_0, replace(req, kv_type=KVCacheType.Q8_0), quant, scale)
    # a shorter context
    shorter = _shorter_context(meta, machine, req, asked, trigger, grew, current, scale, margin)
    if shorter is not None:
        planned(Change.SHORTER_CONTEXT, replace(req, n_ctx=shorter), quant, scale)
    # the next quant down
    for lower, lower_scale in _quants_below(meta, quant, variants):
        before = len(found)
        planned(Change.NEXT_QUANT_DOWN, replace(req, quant=lower), lower, lower_scale)
        if len(found) > before or trigger == Trigger.STEP_UP:
            break
    found.sort(key=lambda o: (o.change == Change.NEXT_QUANT_DOWN, -o.n_ctx, _ORDER[o.change]))
    return tuple(found)


def _shorter_context(
    meta: ModelMeta,
    machine: Machine,
    req: Requested,
    asked: Plan,
    trigger: Trigger,
    grew: tuple[Growth, ...],
    current: InUse | None,
    scale: float,
    margin: int | None,
) -> int | None:
    """BELOW_MARGIN with a pinned context: the largest multiple of 1024 below it that fits.
    STEP_UP with a longer context: the context in use now."""
    if trigger == Trigger.STEP_UP:
        if Growth.CONTEXT in grew and current is not None and current.n_ctx < asked.n_ctx:
            return current.n_ctx
        return None
    if req.n_ctx is None or req.n_ctx <= CONTEXT_STEP:
        return None
    hi = (req.n_ctx - 1) // CONTEXT_STEP
    if not _plan(meta, machine, replace(req, n_ctx=CONTEXT_STEP), scale, margin).fits:
        return None
    lo = 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _plan(meta, machine, replace(req, n_ctx=mid * CONTEXT_STEP), scale, margin).fits:
            lo = mid
        else:
            hi = mid - 1
    return lo * CONTEXT_STEP


def _quants_below(
    meta: ModelMeta, quant: str | None, variants: Sequence[QuantOption] | None
) -> list[tuple[str, float]]:
    """The quants offered below ``quant``, best first, each with its weights scale against meta's file."""
    if quant is None:
        return []
    mine = quality_rank(quant)
    if variants:
        below = sorted(
            (v for v in variants if quality_rank(v.quant) > mine),
            key=lambda v: (quality_rank(v.quant), -v.size_bytes),
        )
        return [(v.quant, weights_scale(v, meta)) for v in below]
    if meta.file_type is None:
        return []
    found = []
    for q in sorted((q for q in COMMON_QUANTS if quality_rank(q) > mine), key=quality_rank):
        q_scale = 1.0 if quality_rank(q) == quality_rank(meta.file_type) else quant_scale(meta.file_type, q)
        if q_scale is not None:
            found.append((q, q_scale))
    return found


__all__ = [
    "DOWNLOAD",
    "LOAD",
    "Action",
    "Change",
    "FitOption",
    "Growth",
    "Guardrail",
    "InUse",
    "Requested",
    "Trigger",
    "check",
]
