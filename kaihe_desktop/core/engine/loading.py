"""From a model file to load options: the fit planner's choice, the user's overrides, and the refusal.

The planner (core/fit/plan.py) decides placement, GPU layers, context, flash attention and KV type from the
GGUF header and the machine; the user may override each. A plan whose placement is "none" (does not
fit) is refused with the headroom warning unless the caller forces it: DoesNotFitError, whose ``reason``
(a reasons.DoesNotFit) holds the numbers for each front end to word, with its own way to force the load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kaihe_desktop.core.engine import protocol as p
from kaihe_desktop.core.engine.client import EngineClient
from kaihe_desktop.core.errors import DoesNotFitError, ModelFileError, ModelLoadError
from kaihe_desktop.core.fit.advice import warnings as advice_warnings
from kaihe_desktop.core.fit.kv_types import KVCacheType
from kaihe_desktop.core.fit.placement import Placement
from kaihe_desktop.core.fit.plan import Plan
from kaihe_desktop.core.fit.plan import plan as fit_plan
from kaihe_desktop.core.gguf.meta import read_local
from kaihe_desktop.core.gguf.model_meta import ModelMeta
from kaihe_desktop.core.machine.spec import Machine
from kaihe_desktop.core.reasons import DoesNotFit


@dataclass(frozen=True)
class LoadOverrides:
    """What the user set by hand; None means "as the planner chose"."""

    n_ctx: int | None = None
    gpu_layers: int | None = None
    n_threads: int | None = None
    flash_attn: bool | None = None
    kv_type: KVCacheType | None = None
    use_mmap: bool = True

    def __post_init__(self) -> None:
        if self.kv_type is not None:  # a name is checked here (UnknownKVCacheTypeError), not at load time
            object.__setattr__(self, "kv_type", KVCacheType.parse(self.kv_type))


@dataclass(frozen=True)
class LoadDecision:
    options: p.LoadOptions
    placement: Placement
    reason: str
    warnings: tuple[str, ...] = ()
    forced: bool = False
    plan: Plan | None = field(default=None, repr=False, compare=False)


def decide(
    path: Path,
    meta: ModelMeta,
    machine: Machine,
    *,
    overrides: LoadOverrides | None = None,
    force: bool = False,
) -> LoadDecision:
    """Plan the load; DoesNotFitError (the headroom warning; its reason, the numbers) when it does not fit
    and is not forced."""
    o = overrides or LoadOverrides()
    plan = fit_plan(
        meta,
        machine,
        n_ctx=o.n_ctx,
        gpu_layers=o.gpu_layers,
        kv_type=o.kv_type or KVCacheType.F16,
        flash_attn=o.flash_attn,
    )
    placement = plan.placement
    notes = tuple(a.message for a in advice_warnings(plan))
    if placement == Placement.NONE and not force:
        headroom = notes[0] if notes else str(plan.reason)
        reason = DoesNotFit(
            model=path.name,
            shortfall_bytes=max(plan.margin_bytes - plan.headroom_bytes, 0),
            margin_bytes=plan.margin_bytes,
            headroom_bytes=plan.headroom_bytes,
            context_tokens=plan.n_ctx,
            max_fitting_context_tokens=plan.max_n_ctx,
        )
        raise DoesNotFitError(f"{path.name} {headroom}", reason=reason)
    threads = o.n_threads or max(1, machine.cpu.cores_physical)
    n_ctx = o.n_ctx or int(plan.n_ctx) or min(meta.context_length or 4096, 4096)
    gpu_layers = o.gpu_layers if o.gpu_layers is not None else int(plan.gpu_layers)
    if not machine.gpu_offload_supported:
        gpu_layers = 0
    options = p.LoadOptions(
        path=str(path),
        n_ctx=n_ctx,
        n_gpu_layers=gpu_layers,
        n_threads=threads,
        n_threads_batch=threads,
        flash_attn=bool(plan.flash_attn),
        use_mmap=o.use_mmap,
        kv_type=plan.kv_type,
    )
    return LoadDecision(
        options=options,
        placement=placement,
        reason=str(plan.reason),
        warnings=notes,
        forced=force and placement == Placement.NONE,
        plan=plan,
    )


def read_meta(path: Path) -> ModelMeta:
    """The GGUF header; a broken file becomes ModelLoadError naming it."""
    try:
        return read_local(path)
    except ModelFileError as exc:
        raise ModelLoadError(f"cannot load {path}: {exc}") from exc


def load_model(
    engine: EngineClient,
    path: Path,
    *,
    machine: Machine,
    meta: ModelMeta | None = None,
    overrides: LoadOverrides | None = None,
    force: bool = False,
    on_progress: Callable[[p.Progress], None] | None = None,
) -> tuple[p.Loaded, LoadDecision]:
    """Read the header, plan, and load into the engine (starting a fresh process if the last one died)."""
    meta = meta if meta is not None else read_meta(path)
    decision = decide(path, meta, machine, overrides=overrides, force=force)
    loaded = engine.load(decision.options, on_progress=on_progress)
    return loaded, decision
