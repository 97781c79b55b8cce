"""The machine's tier (the KAIHE buying guide), from the memory a model can actually use.

Which memory counts:
- Apple Silicon (unified memory): the Metal budget only, i.e. the GPU's `memory_total_bytes` as the probe
  records it (`iogpu.wired_limit_mb`, else ~2/3 of RAM up to 36 GB and 3/4 above). RAM beyond the budget
  is not added: llama.cpp on a Mac runs the model on the GPU, and macOS keeps the rest for itself. So a
  16 GB Mac (10.7 GiB budget) is Entry, a 24 GB Mac Intermediate, a 64 GB Mac Professional.
- Everything else: system RAM plus the memory of each discrete GPU, because llama.cpp splits a model's
  layers between VRAM and RAM (partial offload). Integrated GPUs share system RAM, so they add nothing,
  except the part of an AMD APU's memory carved out at boot (`carveout_bytes`), which RAM no longer reports.

Reported sizes are rounded up to the nominal size people know their machine by, before comparing: a
"16 GB" laptop reports about 15.5 GiB (firmware, the kernel and an iGPU reserve some), an "8 GB" RTX 4060
reports 7.996 GiB. Each RAM or VRAM amount within 10% below a standard module/card size counts as that
size; anything else counts as reported. The Apple Metal budget is not rounded (it is a rule, not a chip).

Boundaries are in GiB, the lower bound inclusive: Minimal < 8, Entry 8-16, Intermediate 16-32,
Professional 32+ (../shared/docs/market-brief.md). The tier is a label for people; what fits a given model
with its context is the fit estimator's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from kaihe_desktop.core.machine.spec import GpuVendor, Machine

GIB = 2**30

# Standard sizes (GiB) of RAM configurations and GPU memories, for rounding reported totals up.
NOMINAL_SIZES_GIB: tuple[int, ...] = (
    1, 2, 3, 4, 6, 8, 10, 11, 12, 16, 18, 20, 24, 32, 36, 40, 48, 64, 80, 96, 128, 192, 256, 384, 512,
)  # fmt: skip
NOMINAL_TOLERANCE = 0.10


class Tier(StrEnum):
    MINIMAL = "minimal"
    ENTRY = "entry"
    INTERMEDIATE = "intermediate"
    PROFESSIONAL = "professional"

    @property
    def label(self) -> str:
        return self.value.capitalize()


@dataclass(frozen=True)
class TierSpec:
    tier: Tier
    min_gib: int
    models: str  # "3B–7B models (8B at 4-bit)"
    good_for: str

    @property
    def range_text(self) -> str:
        return f"{self.min_gib} GB+" if self.min_gib else "under 8 GB"


TIERS: tuple[TierSpec, ...] = (
    TierSpec(Tier.MINIMAL, 0, "0.5B–3B models", "short Q&A and edge devices"),
    TierSpec(Tier.ENTRY, 8, "3B–7B models (8B at 4-bit)", "daily writing and Q&A"),
    TierSpec(Tier.INTERMEDIATE, 16, "13B–20B models", "code generation and complex reasoning"),
    TierSpec(Tier.PROFESSIONAL, 32, "70B-class models", "deep domain analysis"),
)


@dataclass(frozen=True)
class TierInfo:
    tier: Tier
    usable_bytes: int  # memory a model can use, after rounding to nominal sizes
    rule: str  # which memory counted, with the numbers
    unlocks: str  # "3B–7B models (8B at 4-bit) for daily writing and Q&A"
    next_tier: Tier | None
    next_tier_adds: str | None  # "Intermediate (16 GB+): 13B–20B models for code ...; 5.3 GB more memory"
    missing_bytes: int = 0  # how much more usable memory the next tier needs

    def to_dict(self) -> dict[str, object]:
        return {
            "tier": self.tier.value,
            "label": self.tier.label,
            "usable_bytes": self.usable_bytes,
            "rule": self.rule,
            "unlocks": self.unlocks,
            "next_tier": self.next_tier.value if self.next_tier else None,
            "next_tier_adds": self.next_tier_adds,
            "missing_bytes": self.missing_bytes,
        }


def nominal_bytes(reported: int) -> int:
    """Round a reported RAM or VRAM size up to the standard size it is sold as, when within 10% of it."""
    for size in NOMINAL_SIZES_GIB:
        nominal = size * GIB
        if reported <= nominal:
            return nominal if reported >= nominal * (1 - NOMINAL_TOLERANCE) else reported
    return reported


def usable_model_memory(machine: Machine) -> int:
    """Bytes of memory a model can use on this machine, per the rule in the module docstring."""
    return _usable(machine)[0]


def _usable(machine: Machine) -> tuple[int, str]:
    apple = [g for g in machine.gpus if g.vendor == GpuVendor.APPLE and g.unified]
    if apple:
        budget = max(g.memory_total_bytes for g in apple)
        return budget, (
            f"Apple unified memory: the Metal budget of {_gib(budget)} "
            f"(of {_gib(machine.ram.total_bytes)} RAM) is what a model can use"
        )
    ram = nominal_bytes(machine.ram.total_bytes)
    parts = [f"{_gib(ram)} system RAM"]
    total = ram
    for gpu in machine.gpus:
        if not gpu.unified:
            vram = nominal_bytes(gpu.memory_total_bytes)
            parts.append(f"{_gib(vram)} VRAM ({gpu.name})")
            total += vram
        elif gpu.carveout_bytes > 0:
            parts.append(f"{_gib(gpu.carveout_bytes)} reserved for {gpu.name}")
            total += gpu.carveout_bytes
    if len(parts) == 1:
        rule = f"{parts[0]} (no discrete GPU: the model runs from RAM)"
    else:
        rule = " + ".join(parts) + " (a model can be split between GPU and RAM)"
    return total, f"{rule} = {_gib(total)}"


def tier_of(usable_bytes: int) -> Tier:
    tier = Tier.MINIMAL
    for spec in TIERS:
        if usable_bytes >= spec.min_gib * GIB:
            tier = spec.tier
    return tier


def tier_for(machine: Machine) -> TierInfo:
    usable, rule = _usable(machine)
    tier = tier_of(usable)
    index = [spec.tier for spec in TIERS].index(tier)
    spec = TIERS[index]
    unlocks = f"{spec.models} for {spec.good_for}"
    if index + 1 >= len(TIERS):
        return TierInfo(tier, usable, rule, unlocks, next_tier=None, next_tier_adds=None)
    nxt = TIERS[index + 1]
    missing = nxt.min_gib * GIB - usable
    adds = f"{nxt.tier.label} ({nxt.range_text}): {nxt.models} for {nxt.good_for}; needs {_gib(missing)} more"
    return TierInfo(tier, usable, rule, unlocks, nxt.tier, adds, missing_bytes=missing)


def _gib(n: int) -> str:
    value = n / GIB
    return f"{value:.0f} GB" if abs(value - round(value)) < 0.05 else f"{value:.1f} GB"
