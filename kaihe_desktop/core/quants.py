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
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


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
