"""The quality ladder of llama.cpp quant types, quant names in file names, and the quant picker.

Sources (llama.cpp, ggml-org/llama.cpp):
- ``tools/quantize/quantize.cpp``, ``QUANT_OPTIONS``: size and perplexity increase of each type on
  Llama-3-8B ("Q4_K_M: 4.58G, +0.1754 ppl @ Llama-3-8B"; F16/BF16 measured on Mistral-7B).
- ``tools/quantize/README.md``, the table for meta-llama/Llama-3.1-8B: bits per weight of each type
  (Q4_K_M 4.8944, Q8_0 8.5008, IQ4_XS 4.4597, ...).
Where a type has no perplexity figure there (the i-quants), its rung follows its bits per weight next to the
k-quants of similar size, which is how llama.cpp's own help text orders them. Unsloth's dynamic quants
(``UD-Q4_K_XL`` ...) keep the important layers at a higher type, so each sits just above its base type.
MXFP4 is gpt-oss's native training format (4.25 bpw: 32 4-bit values + one 8-bit scale): a gpt-oss MXFP4 file
loses nothing against the original, so it ranks with the 8-bit types, not with 4-bit re-quantizations.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from kaihe_desktop.core.fit.kv_types import KVCacheType
from kaihe_desktop.core.fit.placement import Placement
from kaihe_desktop.core.units import format_bytes, format_pct

if TYPE_CHECKING:  # plan: see evaluate()
    from kaihe_desktop.core.fit.plan import Plan
    from kaihe_desktop.core.gguf.model_meta import ModelMeta
    from kaihe_desktop.core.machine.spec import Machine


@dataclass(frozen=True)
class QuantType:
    """One rung of the ladder. ``ppl_increase`` is llama.cpp's published figure (None where none is)."""

    name: str
    bits_per_weight: float
    ppl_increase: float | None = None
    note: str = ""


# Best quality first. bpw from the README table (Llama-3.1-8B); where the README has no row, from the size in
# QUANT_OPTIONS (GiB for Llama-3-8B's 8.03e9 weights) or the type's block layout (marked "nominal").
LADDER: tuple[QuantType, ...] = (
    QuantType("F32", 32.0, 0.0, "the reference"),
    QuantType("BF16", 16.0, -0.0050, "Mistral-7B"),
    QuantType("F16", 16.0005, 0.0020, "Mistral-7B"),
    QuantType("Q8_K_XL", 9.0, None, "unsloth dynamic, above Q8_0"),
    QuantType("Q8_0", 8.5008, 0.0026),
    QuantType("MXFP4", 4.25, None, "gpt-oss native format (nominal bpw)"),
    QuantType("Q6_K_XL", 7.0, None, "unsloth dynamic, above Q6_K"),
    QuantType("Q6_K", 6.5633, 0.0217),
    QuantType("Q5_K_XL", 6.0, None, "unsloth dynamic, above Q5_K_M"),
    QuantType("Q5_K_M", 5.7036, 0.0569),
    QuantType("Q5_K_S", 5.5704, 0.1049),
    QuantType("Q5_1", 6.04, 0.1062),
    QuantType("Q5_0", 5.57, 0.1316),
    QuantType("Q4_K_XL", 5.0, None, "unsloth dynamic, above Q4_K_M"),
    QuantType("Q4_K_M", 4.8944, 0.1754),
    QuantType("Q4_K_S", 4.6672, 0.2689),
    QuantType("IQ4_NL", 4.6818, None),
    QuantType("IQ4_XS", 4.4597, None),
    QuantType("Q4_1", 5.11, 0.4511),
    QuantType("Q4_0", 4.64, 0.4685),
    QuantType("Q3_K_XL", 4.4, None, "unsloth dynamic, above Q3_K_L"),
    QuantType("IQ3_M", 3.7628, None),
    QuantType("Q3_K_L", 4.2979, 0.5562),
    QuantType("Q3_K_M", 4.00, 0.6569),
    QuantType("IQ3_S", 3.6606, None),
    QuantType("IQ3_XS", 3.4977, None),
    QuantType("Q3_K_S", 3.6429, 1.6321),
    QuantType("IQ3_XXS", 3.2548, None),
    QuantType("Q2_K_XL", 3.3, None, "unsloth dynamic, above Q2_K"),
    QuantType("Q2_K", 3.1593, 3.5199),
    QuantType("Q2_K_S", 2.9697, 3.1836),
    QuantType("IQ2_M", 2.9294, None),
    QuantType("IQ2_S", 2.7403, None),
    QuantType("IQ2_XS", 2.5882, None),
    QuantType("IQ2_XXS", 2.3824, None),
    QuantType("TQ2_0", 2.06, None, "ternary (nominal bpw)"),
    QuantType("Q2_0", 2.25, None, "nominal bpw"),
    QuantType("IQ1_M", 2.1460, None),
    QuantType("IQ1_S", 2.0042, None),
    QuantType("TQ1_0", 1.69, None, "ternary (nominal bpw)"),
    QuantType("Q1_0", 1.125, None, "nominal bpw"),
)

_BY_NAME: dict[str, int] = {q.name: i for i, q in enumerate(LADDER)}

# Other spellings of a ladder rung: llama-quantize's aliases, ARM repacks of Q4_0, common file-name forms.
ALIASES: dict[str, str] = {
    "Q3_K": "Q3_K_M",
    "Q4_K": "Q4_K_M",
    "Q5_K": "Q5_K_M",
    "MXFP4_MOE": "MXFP4",
    "FP16": "F16",
    "FP32": "F32",
    "Q4_0_4_4": "Q4_0",
    "Q4_0_4_8": "Q4_0",
    "Q4_0_8_8": "Q4_0",
}

_DYNAMIC_PREFIX = "UD-"
# Rungs placed by quality, not by size: never a reference point for an unknown type's bits per weight.
_OUT_OF_BPW_ORDER = frozenset({"MXFP4"})

# Every spelling, longest first so "Q4_K_M" wins over "Q4_K" and "BF16" over "F16".
_NAMES = sorted([*_BY_NAME, *ALIASES], key=len, reverse=True)
_KNOWN_RE = re.compile(
    r"(?<![A-Z0-9])(?P<ud>UD-)?(?P<q>" + "|".join(map(re.escape, _NAMES)) + r")(?![A-Z0-9_])"
)
# A quant-shaped token we have no rung for (a new type): I?Q<digit>_<suffix>.
_GENERIC_RE = re.compile(r"(?<![A-Z0-9])(?P<ud>UD-)?(?P<q>I?Q\d(?:_[A-Z0-9]+)+)(?![A-Z0-9_])")
_SHARD_SUFFIX_RE = re.compile(r"-\d{5}-OF-\d{5}$")


def canonical(quant: str) -> str:
    """Upper case, aliases resolved ("q4_k" -> "Q4_K_M"); the "UD-" prefix is kept."""
    name = quant.strip().upper()
    prefix = ""
    if name.startswith(_DYNAMIC_PREFIX):
        prefix, name = _DYNAMIC_PREFIX, name[len(_DYNAMIC_PREFIX) :]
    return prefix + ALIASES.get(name, name)


def quant_type(quant: str) -> QuantType | None:
    """The ladder rung of a quant name (a "UD-" dynamic quant answers its base type), None if unknown."""
    name = canonical(quant).removeprefix(_DYNAMIC_PREFIX)
    index = _BY_NAME.get(name)
    return None if index is None else LADDER[index]


def quant_from_filename(name: str) -> str | None:
    """The quant a GGUF file (or folder, or bare quant name) is named after, canonical; None if none.

    "Qwen3-8B-Q4_K_M.gguf" -> "Q4_K_M", "model.q8_0.gguf" -> "Q8_0", "x-UD-Q4_K_XL-00001-of-00002.gguf" ->
    "UD-Q4_K_XL", "f16" -> "F16". The rightmost match wins (model names rarely end in a quant, files do).
    """
    stem = PurePosixPath(name.strip()).name.upper()
    stem = stem.removesuffix(".GGUF")
    stem = _SHARD_SUFFIX_RE.sub("", stem)
    for pattern in (_KNOWN_RE, _GENERIC_RE):
        matches = list(pattern.finditer(stem))
        if matches:
            last = matches[-1]
            return canonical((last["ud"] or "") + last["q"])
    return None


def quality_rank(quant: str, *, bits_per_weight: float | None = None) -> int:
    """Sort key: lower is better quality. Unknown types go by ``bits_per_weight`` when given, else last.

    A "UD-" dynamic quant ranks just above its base type.
    """
    name = canonical(quant)
    dynamic = name.startswith(_DYNAMIC_PREFIX)
    index = _BY_NAME.get(name.removeprefix(_DYNAMIC_PREFIX))
    if index is None:
        if bits_per_weight is None:
            return 2 * len(LADDER) + 1
        # Just below the first rung with no more bits than this file has.
        below = next(
            (
                i
                for i, q in enumerate(LADDER)
                if q.bits_per_weight <= bits_per_weight and q.name not in _OUT_OF_BPW_ORDER
            ),
            len(LADDER),
        )
        return 2 * below + 1 if below < len(LADDER) else 2 * len(LADDER)
    return 2 * index + (-1 if dynamic else 0)


def is_better(a: str, b: str) -> bool:
    """Whether quant ``a`` is higher quality than quant ``b`` on the ladder."""
    return quality_rank(a) < quality_rank(b)


# --- the picker -------------------------------------------------------------------------------------

# The context every variant must hold when the caller names none: LM Studio's and Ollama's default window.
DEFAULT_PICK_CTX = 4096

# Full-GPU preference, and its floor. With a GPU, a variant that runs entirely on it generates several times
# faster than a bigger one split between GPU and CPU, which users notice more than one quality rung; so the
# best variant that runs *fully* on the GPU wins over a better one that only fits partially. Below 4-bit the
# quality loss grows fast (Q3_K_M +0.66 ppl vs Q4_K_M +0.18 on Llama-3-8B), so the preference stops at
# IQ4_XS: if only a 3-bit or smaller variant fits on the GPU, the best variant that fits anywhere wins.
FULL_GPU_FLOOR = "IQ4_XS"


@dataclass(frozen=True)
class QuantOption:
    """One quant variant of a model as offered (e.g. by a Hub repo): its total size over all shards."""

    quant: str
    size_bytes: int
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Candidate:
    """A variant evaluated on the machine."""

    option: QuantOption
    plan: Plan
    rank: int  # quality_rank, lower is better

    @property
    def fits(self) -> bool:
        return self.plan.placement != Placement.NONE

    @property
    def full_gpu(self) -> bool:
        return self.plan.placement == Placement.GPU

    def to_dict(self) -> dict[str, Any]:
        return {
            "quant": self.option.quant,
            "size_bytes": self.option.size_bytes,
            "files": list(self.option.files),
            "placement": str(self.plan.placement),
            "gpu_layers": self.plan.gpu_layers,
            "n_ctx": self.plan.n_ctx,
            "headroom_bytes": self.plan.headroom_bytes,
            "headroom_pct": self.plan.headroom_pct,
        }


@dataclass(frozen=True)
class Pick:
    """The chosen variant, its plan, a one-line reason with numbers, and every variant evaluated."""

    quant: str
    option: QuantOption
    plan: Plan
    reason: str
    candidates: tuple[Candidate, ...]  # best quality first

    @property
    def fits(self) -> bool:
        return self.plan.placement != Placement.NONE

    def to_dict(self) -> dict[str, Any]:
        return {
            "quant": self.quant,
            "size_bytes": self.option.size_bytes,
            "files": list(self.option.files),
            "fits": self.fits,
            "reason": self.reason,
            "candidates": [c.to_dict() for c in self.candidates],
        }


def weights_scale(option: QuantOption, meta: ModelMeta) -> float:
    """How much bigger this variant's tensors are than those of the file ``meta`` was read from.

    Variants of one model share their header (vocabulary, metadata) and differ only in tensor data, so the
    ratio of (file size - header) is the ratio of tensor bytes.
    """
    header = meta.header_size_bytes
    own = meta.file_size_bytes - header if meta.file_size_bytes > header else meta.tensor_bytes
    if own <= 0 or option.size_bytes <= 0:
        return 1.0
    return max(option.size_bytes - header, 1) / own


def evaluate(
    options: Sequence[QuantOption],
    meta: ModelMeta,
    machine: Machine,
    *,
    n_ctx: int,
    margin_bytes: int | None = None,
    kv_type: KVCacheType | str = KVCacheType.F16,
    flash_attn: bool | None = None,
) -> tuple[Candidate, ...]:
    """Plan every variant at the same context; best quality first (equal rank: bigger first)."""
    # Imported here: hub.variants and library use the ladder, not the planner (nor gguf and numpy).
    from kaihe_desktop.core.fit.plan import plan

    candidates = []
    for option in options:
        option_plan = plan(
            meta,
            machine,
            n_ctx=n_ctx,
            kv_type=kv_type,
            flash_attn=flash_attn,
            margin_bytes=margin_bytes,
            weights_scale=weights_scale(option, meta),
        )
        bpw = option.size_bytes * 8 / meta.parameter_count if meta.parameter_count > 0 else None
        rank = quality_rank(option.quant, bits_per_weight=bpw)
        candidates.append(Candidate(option=option, plan=option_plan, rank=rank))
    candidates.sort(key=lambda c: (c.rank, -c.option.size_bytes, c.option.quant))
    return tuple(candidates)


def pick(
    options: Sequence[QuantOption],
    meta: ModelMeta,
    machine: Machine,
    *,
    n_ctx: int | None = None,
    margin_bytes: int | None = None,
    kv_type: KVCacheType | str = KVCacheType.F16,
    flash_attn: bool | None = None,
) -> Pick:
    """The best-quality variant that fits with the margin (see FULL_GPU_FLOOR for the GPU preference).

    Every variant is planned at the same context: ``n_ctx``, or DEFAULT_PICK_CTX capped at the trained
    context. When nothing fits, the smallest variant comes back with placement "none" and a reason saying so.
    """
    if not options:
        raise ValueError("pick() needs at least one quant option")
    ctx = n_ctx if n_ctx is not None else _default_ctx(meta)
    candidates = evaluate(
        options,
        meta,
        machine,
        n_ctx=ctx,
        margin_bytes=margin_bytes,
        kv_type=kv_type,
        flash_attn=flash_attn,
    )
    fitting = [c for c in candidates if c.fits]
    if not fitting:
        smallest = min(candidates, key=lambda c: c.option.size_bytes)
        return _make_pick(smallest, candidates, _reason_none_fits(smallest, ctx))
    floor = quality_rank(FULL_GPU_FLOOR)
    full_gpu = [c for c in fitting if c.full_gpu and c.rank <= floor]
    chosen = full_gpu[0] if full_gpu else fitting[0]
    return _make_pick(chosen, candidates, _reason(chosen, candidates, ctx))


def _default_ctx(meta: ModelMeta) -> int:
    if meta.context_length > 0:
        return min(DEFAULT_PICK_CTX, meta.context_length)
    return DEFAULT_PICK_CTX


def _make_pick(chosen: Candidate, candidates: tuple[Candidate, ...], reason: str) -> Pick:
    return Pick(
        quant=chosen.option.quant,
        option=chosen.option,
        plan=chosen.plan,
        reason=reason,
        candidates=candidates,
    )


def _where(candidate: Candidate) -> str:
    p = candidate.plan
    if p.placement == Placement.GPU:
        return "runs fully on the GPU"
    if p.placement == Placement.PARTIAL:
        return f"fits with {p.gpu_layers} of {p.n_layers} layers on the GPU"
    return "fits in RAM (CPU only)"


def _leaves(p: Plan) -> str:
    return f"{format_pct(p.headroom_pct)} free ({format_bytes(p.headroom_bytes)})"


def _reason(chosen: Candidate, candidates: tuple[Candidate, ...], ctx: int) -> str:
    head = f"{chosen.option.quant}: "
    better = [c for c in candidates if c.rank < chosen.rank]
    if not better:
        return (
            f"{head}the best quality offered; {_where(chosen)} at {ctx} tokens "
            f"and leaves {_leaves(chosen.plan)}"
        )
    nxt = better[-1]  # the rung just above the pick
    text = f"{head}best quality that {_where(chosen)} at {ctx} tokens, leaves {_leaves(chosen.plan)}; "
    if nxt.fits:
        # Passed over only by the full-GPU preference.
        layers = f"{nxt.plan.gpu_layers} of {nxt.plan.n_layers} layers"
        return text + f"{nxt.option.quant} would only fit with {layers} on the GPU (slower)"
    return text + f"{nxt.option.quant} {_shortfall_text(nxt.plan)}"


def _shortfall_text(p: Plan) -> str:
    margin = format_bytes(p.margin_bytes)
    if p.headroom_bytes > 0:
        return f"would leave only {_leaves(p)}, under the {margin} margin"
    short = format_bytes(p.margin_bytes - p.headroom_bytes)
    over = format_bytes(-p.headroom_bytes)
    return f"would be {short} short ({over} more than is free, plus the {margin} margin)"


def _reason_none_fits(smallest: Candidate, ctx: int) -> str:
    return (
        f"nothing fits at {ctx} tokens: even the smallest, {smallest.option.quant} "
        f"({format_bytes(smallest.option.size_bytes)}), {_shortfall_text(smallest.plan)}"
    )
