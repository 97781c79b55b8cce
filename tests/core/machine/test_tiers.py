"""The tier rule on every shipped profile and on the boundaries."""

from __future__ import annotations

import pytest

from kaihe_desktop.core.machine.gpus import apple_metal_budget
from kaihe_desktop.core.machine.profiles import resolve_profile, shipped_profiles
from kaihe_desktop.core.machine.spec import CpuInfo, GpuInfo, GpuVendor, Machine, RamInfo
from kaihe_desktop.core.machine.tiers import Tier, nominal_bytes, tier_for, tier_of, usable_model_memory

GIB = 2**30
MIB = 2**20

EXPECTED_TIERS = {
    "netbook-4gb": Tier.MINIMAL,
    "laptop-8gb": Tier.ENTRY,
    "rtx4060-16gb": Tier.INTERMEDIATE,  # 16 GB RAM + 8 GB VRAM = 24 GB
    "rtx4090-32gb": Tier.PROFESSIONAL,
    "m2-16gb": Tier.ENTRY,  # Metal budget 10.7 GB of 16 GB
    "m3max-64gb": Tier.PROFESSIONAL,  # Metal budget 48 GB of 64 GB
}


def pc(ram_bytes: int, *gpus: GpuInfo) -> Machine:
    return Machine(
        ram=RamInfo(total_bytes=ram_bytes, available_bytes=ram_bytes // 2),
        cpu=CpuInfo("Test CPU", "x86_64", 4, 8),
        gpus=gpus,
    )


def mac(ram_gib: int, wired_limit_mb: int | None = None) -> Machine:
    budget = apple_metal_budget(ram_gib * GIB, wired_limit_mb)
    gpu = GpuInfo("Apple M GPU", GpuVendor.APPLE, budget, budget, unified=True)
    return Machine(
        ram=RamInfo(total_bytes=ram_gib * GIB, available_bytes=ram_gib * GIB // 2),
        cpu=CpuInfo("Apple M", "arm64", 8, 8),
        gpus=(gpu,),
    )


def nvidia(total_bytes: int) -> GpuInfo:
    return GpuInfo("NVIDIA Test", GpuVendor.NVIDIA, total_bytes, total_bytes - 300 * MIB)


def test_every_shipped_profile_is_covered() -> None:
    assert set(shipped_profiles()) == set(EXPECTED_TIERS)


@pytest.mark.parametrize(("name", "tier"), EXPECTED_TIERS.items())
def test_shipped_profile_tier(name: str, tier: Tier) -> None:
    info = tier_for(resolve_profile(name))
    assert info.tier == tier
    assert info.usable_bytes == usable_model_memory(resolve_profile(name))


def test_profile_rules_name_the_memory_that_counted() -> None:
    assert "Metal budget of 10.7 GB (of 16 GB RAM)" in tier_for(resolve_profile("m2-16gb")).rule
    rtx = tier_for(resolve_profile("rtx4060-16gb"))
    assert rtx.usable_bytes == 24 * GIB
    assert "16 GB system RAM + 8 GB VRAM (NVIDIA GeForce RTX 4060)" in rtx.rule
    assert "no discrete GPU" in tier_for(resolve_profile("laptop-8gb")).rule


@pytest.mark.parametrize(
    ("reported", "nominal"),
    [
        (int(15.5 * GIB), 16 * GIB),  # a "16 GB" laptop
        (int(7.75 * GIB), 8 * GIB),
        (8188 * MIB, 8 * GIB),  # an RTX 4060
        (24564 * MIB, 24 * GIB),  # an RTX 4090
        (int(31.2 * GIB), 32 * GIB),
        (16 * GIB, 16 * GIB),
        (13 * GIB, 13 * GIB),  # not within 10% of 16: counts as reported
        (int(7.1 * GIB), int(7.1 * GIB)),
        (600 * GIB, 600 * GIB),  # above every standard size
    ],
)
def test_nominal_size_rounding(reported: int, nominal: int) -> None:
    assert nominal_bytes(reported) == nominal


@pytest.mark.parametrize(
    ("usable_gib", "tier"),
    [
        (0, Tier.MINIMAL),
        (7.99, Tier.MINIMAL),
        (8, Tier.ENTRY),
        (15.99, Tier.ENTRY),
        (16, Tier.INTERMEDIATE),
        (31.99, Tier.INTERMEDIATE),
        (32, Tier.PROFESSIONAL),
        (512, Tier.PROFESSIONAL),
    ],
)
def test_boundaries_lower_bound_inclusive(usable_gib: float, tier: Tier) -> None:
    assert tier_of(int(usable_gib * GIB)) == tier


@pytest.mark.parametrize(
    ("machine", "tier"),
    [
        (pc(int(7.3 * GIB)), Tier.ENTRY),  # an 8 GB machine that reserved 0.7 GB
        (pc(int(7.1 * GIB)), Tier.MINIMAL),  # too far below 8 GB to be one
        (pc(int(15.5 * GIB)), Tier.INTERMEDIATE),
        (pc(int(14 * GIB)), Tier.ENTRY),
        (pc(int(31.2 * GIB)), Tier.PROFESSIONAL),
        (pc(8 * GIB, nvidia(8188 * MIB)), Tier.INTERMEDIATE),  # 8 + 8 = 16
        (pc(4 * GIB, nvidia(4 * GIB)), Tier.ENTRY),
        (pc(16 * GIB, nvidia(16 * GIB)), Tier.PROFESSIONAL),
        (mac(8), Tier.MINIMAL),  # 5.3 GB Metal budget
        (mac(16), Tier.ENTRY),
        (mac(16, wired_limit_mb=12288), Tier.ENTRY),
        (mac(24), Tier.INTERMEDIATE),  # exactly 16 GB budget
        (mac(36), Tier.INTERMEDIATE),  # 24 GB
        (mac(48), Tier.PROFESSIONAL),  # 36 GB
        (mac(32, wired_limit_mb=32768), Tier.PROFESSIONAL),  # raised to all 32 GB
    ],
)
def test_tier_rule_on_boundary_machines(machine: Machine, tier: Tier) -> None:
    assert tier_for(machine).tier == tier


def test_integrated_gpus_share_ram_and_add_nothing_but_a_carveout() -> None:
    intel = GpuInfo("Intel iGPU", GpuVendor.INTEL, 8 * GIB, 8 * GIB, unified=True)
    assert usable_model_memory(pc(16 * GIB, intel)) == 16 * GIB
    apu = GpuInfo(
        "AMD APU", GpuVendor.AMD, 512 * MIB + 15 * GIB, 14 * GIB, unified=True, carveout_bytes=512 * MIB
    )
    assert usable_model_memory(pc(int(15.5 * GIB), apu)) == 16 * GIB + 512 * MIB
    strix = GpuInfo("AMD Strix Halo", GpuVendor.AMD, 96 * GIB, 95 * GIB)  # a big carve-out reads as VRAM
    info = tier_for(pc(int(31.3 * GIB), strix))
    assert info.usable_bytes == 128 * GIB and info.tier == Tier.PROFESSIONAL


def test_next_tier_says_what_it_adds_and_how_much_more_it_needs() -> None:
    info = tier_for(resolve_profile("m2-16gb"))
    assert info.next_tier == Tier.INTERMEDIATE
    assert info.missing_bytes == 16 * GIB - info.usable_bytes
    assert info.next_tier_adds is not None
    assert info.next_tier_adds.startswith("Intermediate (16 GB+): 13B–20B models")
    assert "needs 5.3 GB more" in info.next_tier_adds
    assert info.unlocks.startswith("3B–7B models (8B at 4-bit)")


def test_top_tier_has_no_next() -> None:
    info = tier_for(resolve_profile("m3max-64gb"))
    assert (info.next_tier, info.next_tier_adds, info.missing_bytes) == (None, None, 0)
    assert "70B" in info.unlocks


def test_minimal_points_to_entry() -> None:
    info = tier_for(resolve_profile("netbook-4gb"))
    assert info.next_tier == Tier.ENTRY and info.next_tier_adds is not None
    assert "needs 4 GB more" in info.next_tier_adds


def test_tier_info_as_json() -> None:
    data = tier_for(resolve_profile("rtx4090-32gb")).to_dict()
    assert data["tier"] == "professional" and data["label"] == "Professional"
    assert data["usable_bytes"] == 56 * GIB and data["next_tier"] is None
