"""Headroom warnings and upgrade advice, on real plans of real model shapes on the shipped profiles."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kaihe_desktop.core.fit.advice import (
    CRITICAL_HEADROOM_PCT,
    WARN_HEADROOM_PCT,
    Advice,
    Severity,
    evaluate_upgrade,
    next_quant_up,
    next_size_up,
    quant_scale,
    upgrade_advice,
    upgrades_for,
    warnings,
)
from kaihe_desktop.core.fit.hardware_table import hypothetical_machine, load_table
from kaihe_desktop.core.fit.plan import Placement, Plan, estimate, plan
from kaihe_desktop.core.machine.profiles import resolve_profile
from kaihe_desktop.core.machine.tiers import tier_of
from kaihe_desktop.core.units import format_bytes
from tests.helpers.fit_metas import LLAMA31_8B_QUANT_SIZES, llama31_8b, qwen3_14b


def _codes(advice: list[Advice]) -> dict[str, Advice]:
    return {a.code: a for a in advice}


@pytest.fixture(scope="module")
def comfy() -> Plan:
    """Llama 3.1 8B Q4_K_M at 8192 tokens on a 64 GB M3 Max: plenty of room."""
    return plan(llama31_8b(), resolve_profile("m3max-64gb"), n_ctx=8192)


# --- headroom thresholds ------------------------------------------------------------------------------


def test_comfortable_plan_has_no_headroom_or_fit_warning(comfy: Plan) -> None:
    assert comfy.placement != Placement.NONE
    assert comfy.headroom_pct >= WARN_HEADROOM_PCT
    codes = _codes(warnings(comfy))
    assert "low_headroom" not in codes and "does_not_fit" not in codes and "swap" not in codes


@pytest.mark.parametrize(
    ("pct", "severity"),
    [(WARN_HEADROOM_PCT - 0.1, Severity.WARNING), (CRITICAL_HEADROOM_PCT - 0.1, Severity.CRITICAL)],
)
def test_low_headroom_thresholds(comfy: Plan, pct: float, severity: Severity) -> None:
    tight = replace(
        comfy, headroom_pct=pct, headroom_bytes=int(comfy.headroom_bytes * pct / comfy.headroom_pct)
    )
    low = _codes(warnings(tight))["low_headroom"]
    assert low.severity == severity
    assert format_bytes(tight.headroom_bytes) in low.message
    assert low.numbers["headroom_pct"] == round(pct, 1)


def test_just_above_the_warning_threshold_is_quiet(comfy: Plan) -> None:
    ok = replace(comfy, headroom_pct=WARN_HEADROOM_PCT + 0.1)
    assert "low_headroom" not in _codes(warnings(ok))


def test_warnings_is_pure(comfy: Plan) -> None:
    first = warnings(comfy)
    assert warnings(comfy) == first
    assert comfy == plan(llama31_8b(), resolve_profile("m3max-64gb"), n_ctx=8192)


def test_does_not_fit_is_critical_with_the_shortfall() -> None:
    p = plan(qwen3_14b(), resolve_profile("netbook-4gb"), n_ctx=4096)
    assert p.placement == Placement.NONE
    advice = warnings(p)
    top = advice[0]
    assert top.code == "does_not_fit" and top.severity == Severity.CRITICAL
    short = top.numbers["shortfall_bytes"]
    assert short > 0
    assert format_bytes(short) in top.message


# --- context, swap, other programs ------------------------------------------------------------------------


def test_longer_context_that_would_not_fit() -> None:
    """Llama 3.1 is trained for 131072 tokens; on a 16 GB Mac only a fraction fits."""
    p = plan(llama31_8b(), resolve_profile("m2-16gb"))
    assert p.placement != Placement.NONE and p.max_n_ctx < 131072
    ctx = _codes(warnings(p))["context_limited"]
    step = ctx.numbers["next_ctx"]
    assert p.max_n_ctx < step <= 131072
    assert ctx.numbers["needed_more_bytes"] > 0
    assert str(step) in ctx.message and format_bytes(ctx.numbers["needed_more_bytes"]) in ctx.message
    # The numbers are real: planning at that context does not fit here.
    at_step = plan(llama31_8b(), resolve_profile("m2-16gb"), n_ctx=step)
    assert at_step.placement != p.placement or at_step.gpu_layers < p.gpu_layers


def test_swap_when_ram_needed_exceeds_available(comfy: Plan) -> None:
    machine = resolve_profile("laptop-8gb")
    p = plan(llama31_8b(), machine, n_ctx=4096)
    squeezed = replace(p, ram_available_bytes=p.estimate.ram_bytes // 2)
    swap = _codes(warnings(squeezed))["swap"]
    assert swap.severity == Severity.CRITICAL
    expected = min(p.estimate.ram_bytes - p.estimate.ram_bytes // 2, machine.ram.swap_free_bytes)
    assert swap.numbers["swap_bytes"] == expected
    assert format_bytes(expected) in swap.message


def test_other_programs_hold_memory_the_model_needs() -> None:
    p = plan(llama31_8b(), resolve_profile("laptop-8gb"), n_ctx=4096)
    need = p.estimate.ram_bytes
    # Same machine, but other programs hold all but half of what the model needs.
    busy = replace(
        p, ram_available_bytes=need // 2, placement=Placement.NONE, headroom_bytes=need // 2 - need
    )
    other = _codes(warnings(busy))["other_programs"]
    in_use = p.ram_total_bytes - need // 2
    assert other.numbers["in_use_bytes"] == in_use
    assert other.numbers["needed_more_bytes"] == need + p.margin_bytes - need // 2
    assert format_bytes(in_use) in other.message


def test_other_programs_could_make_room_for_comfort() -> None:
    p = plan(qwen3_14b(quant="Q8_0"), resolve_profile("rtx4090-32gb"), n_ctx=4096, gpu_layers=0)
    assert p.placement == Placement.CPU
    need = p.estimate.ram_bytes
    available = need + p.margin_bytes + 100 * 2**20  # fits, but with little room left
    tight = replace(p, ram_available_bytes=available)
    others = [a for a in warnings(tight) if a.code == "other_programs" and a.numbers["memory"] == "RAM"]
    assert len(others) == 1
    other = others[0]
    assert other.severity == Severity.INFO
    to_free = other.numbers["to_free_bytes"]
    left = available - need
    assert (left + to_free) / (available + to_free) >= WARN_HEADROOM_PCT / 100
    assert (left + to_free - 2**20) / (available + to_free - 2**20) < WARN_HEADROOM_PCT / 100  # not more
    assert format_bytes(to_free) in other.message
    roomy = warnings(replace(p, ram_available_bytes=p.ram_total_bytes))
    assert not [a for a in roomy if a.code == "other_programs" and a.numbers["memory"] == "RAM"]


def test_partial_offload_is_explained() -> None:
    p = plan(qwen3_14b(), resolve_profile("rtx4060-16gb"), n_ctx=4096)
    assert p.placement == Placement.PARTIAL  # a 9 GB Q4_K_M does not fit an 8 GB GPU with the margin
    partial = _codes(warnings(p))["partial_offload"]
    assert f"{p.gpu_layers} of {p.n_layers}" in partial.message


# --- upgrades -------------------------------------------------------------------------------------------


def test_next_quant_and_size_lookups() -> None:
    assert next_quant_up("Q4_K_M") == "Q5_K_M"
    assert next_quant_up("Q8_0") == "F16"
    assert next_quant_up("F16") is None
    assert next_quant_up("Q4_K_M", ["Q2_K", "Q8_0", "Q6_K"]) == "Q6_K"
    assert next_size_up(8_030_000_000) == 12.0
    assert next_size_up(268_000_000) == 0.6
    assert quant_scale("Q4_K_M", "Q8_0") == pytest.approx(8.5008 / 4.8944)


def test_upgrade_hardware_holds_it_with_the_margin_and_is_the_smallest() -> None:
    """Next quant up of Qwen3-14B Q4_K_M on the 8 GB RTX 4060: the named GPU and Mac run it fully on the
    GPU with the margin (checked by planning on them), and the next smaller GPU size does not."""
    machine = resolve_profile("rtx4060-16gb")
    current = plan(qwen3_14b(), machine, n_ctx=8192)
    scale = quant_scale("Q4_K_M", "Q8_0")
    assert scale is not None
    up = evaluate_upgrade(current, kind="quant", label="Q8_0", weights_scale=scale)
    assert not up.fits_here or up.plan.placement != Placement.GPU
    assert up.holders, "a Q8_0 14B fits some GPU or Mac in the table"
    table = load_table()
    for kind in ("gpu", "mac"):
        named = [h for h in up.holders if h.kind == kind]
        if not named:
            continue
        for h in named:
            on_it = plan(qwen3_14b(), hypothetical_machine(h, machine), n_ctx=8192, weights_scale=scale)
            assert on_it.placement == Placement.GPU
            assert on_it.headroom_bytes >= on_it.margin_bytes  # never "exactly enough"
        smaller = [h for h in table if h.kind == kind and h.memory_bytes < named[0].memory_bytes]
        for h in smaller:
            on_it = plan(qwen3_14b(), hypothetical_machine(h, machine), n_ctx=8192, weights_scale=scale)
            assert on_it.placement != Placement.GPU
    assert up.tier == str(tier_of(up.needed_bytes + current.margin_bytes))
    advice = warnings(current, next_quant=up)
    msg = _codes(advice)["next_quant"].message
    assert "Q8_0" in msg and format_bytes(up.extra_bytes) in msg
    assert up.holders[0].short in msg  # e.g. "a 24 GB GPU"
    assert up.tier.capitalize() in msg


def test_upgrade_that_fits_here_says_so(comfy: Plan) -> None:
    ups = upgrades_for(comfy, target_quant="Q5_K_M")
    assert [u.kind for u in ups] == ["quant"]
    assert ups[0].fits_here
    advice = warnings(comfy, next_quant=ups[0])
    assert "also fits here" in _codes(advice)["next_quant"].message


def test_upgrade_advice_for_quant_size_and_context() -> None:
    machine = resolve_profile("m2-16gb")
    advice = upgrade_advice(
        llama31_8b(),
        machine,
        target_quant="Q8_0",
        target_params=70_000_000_000,
        target_ctx=131072,
        n_ctx=4096,
    )
    codes = _codes(advice)
    assert set(codes) == {"next_quant", "next_size", "next_context"}
    big = codes["next_size"]
    assert "70B" in big.message
    assert big.numbers["extra_bytes"] > 30 * 10**9  # 70B at ~4.9 bpw is ~40 GB more weights
    assert big.numbers["tier"] == "professional"
    ctx = codes["next_context"]
    assert "131072" in ctx.message and ctx.numbers["extra_bytes"] > 0


def test_default_upgrade_advice_names_next_quant_and_size() -> None:
    advice = upgrade_advice(llama31_8b(), resolve_profile("laptop-8gb"), n_ctx=4096)
    labels = {a.code: a.numbers["label"] for a in advice}
    assert labels == {"next_quant": "Q5_K_M", "next_size": "12B"}


def test_hardware_table_has_the_common_gpus_and_mac_sizes() -> None:
    table = load_table()
    gpus = {h.name for h in table if h.kind == "gpu"}
    common = ("RTX 3060 12GB", "RTX 4060", "RTX 4060 Ti 16GB", "RTX 4070", "RTX 4080", "RTX 4090", "RTX 5090")
    for name in (*common, "RX 7900 XTX"):
        assert name in gpus
    macs = sorted(h.memory_gb for h in table if h.kind == "mac")
    assert macs == [8, 16, 18, 24, 36, 48, 64, 96, 128]
    for h in table:
        if h.kind == "mac":
            assert h.budget_bytes < h.memory_bytes  # a Mac's GPU never gets all of its memory
        else:
            assert h.budget_bytes == h.memory_bytes


def test_upgrades_scale_from_the_quant_the_plan_stands_for() -> None:
    """A plan of Q8_0 made from a Q4_K_M header (weights_scale) is upgraded from Q8_0, not from the header."""
    meta, machine = llama31_8b(), resolve_profile("m3max-64gb")
    scale = LLAMA31_8B_QUANT_SIZES["Q8_0"] / LLAMA31_8B_QUANT_SIZES["Q4_K_M"]
    q8 = plan(meta, machine, n_ctx=8192, weights_scale=scale)
    (bigger,) = upgrades_for(q8, target_params=2 * meta.parameter_count, quant="Q8_0")
    expected = estimate(meta, machine, n_ctx=8192, gpu_layers=q8.gpu_layers, weights_scale=2 * scale)
    assert bigger.needed_bytes == expected.total_bytes
    assert bigger.extra_bytes == expected.total_bytes - q8.estimate.total_bytes > 0
    (f16,) = upgrades_for(q8, target_quant="F16", quant="Q8_0")
    assert f16.label == "F16"
    f16_scale = scale * 16.0005 / 8.5008
    assert (
        f16.needed_bytes
        == estimate(meta, machine, n_ctx=8192, gpu_layers=q8.gpu_layers, weights_scale=f16_scale).total_bytes
    )
