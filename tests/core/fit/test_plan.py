"""The planner on the shipped machine profiles, with full-size models built from their published shapes
(tests/helpers/synthetic_models.py): placement, the largest context, the margin, headroom, unified memory.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from kaihe_desktop.core.fit.estimate import n_layers_total
from kaihe_desktop.core.fit.plan import (
    CONTEXT_STEP,
    DEFAULT_CONTEXT,
    DEFAULT_MARGIN_BYTES,
    Placement,
    estimate,
    plan,
)
from kaihe_desktop.core.machine.profiles import resolve_profile
from kaihe_desktop.core.machine.spec import CpuInfo, GpuInfo, GpuVendor, Machine, RamInfo
from kaihe_desktop.core.units import GIB
from tests.helpers.synthetic_models import llama32_3b, llama33_70b, mistral_7b, qwen3_30b_a3b, qwen25_14b


def test_a_7b_q4_runs_fully_on_an_rtx_4060() -> None:
    p = plan(mistral_7b(), resolve_profile("rtx4060-16gb"))
    assert p.placement == Placement.GPU
    assert p.gpu_layers == p.n_layers == 33
    assert p.n_ctx == DEFAULT_CONTEXT
    gpu = resolve_profile("rtx4060-16gb").gpus[0]
    assert p.estimate.vram_bytes + p.margin_bytes <= gpu.memory_free_bytes
    # on the GPU: every layer, the output layer and its KV cache; in RAM only the input embeddings
    assert p.estimate.vram[0].kv_cache == sum(p.estimate.kv_bytes_per_layer)
    assert p.estimate.ram.weights < 0.1 * p.estimate.vram[0].weights


def test_a_14b_q4_is_split_between_an_rtx_4060_and_ram() -> None:
    machine = resolve_profile("rtx4060-16gb")
    p = plan(qwen25_14b(), machine)
    assert p.placement == Placement.PARTIAL
    assert 1 < p.gpu_layers < p.n_layers
    # the most layers the GPU holds: one more would not fit in its free memory with the margin
    more = estimate(qwen25_14b(), machine, n_ctx=p.n_ctx, gpu_layers=p.gpu_layers + 1)
    assert more.vram_bytes + p.margin_bytes > machine.gpus[0].memory_free_bytes
    assert p.estimate.vram_bytes + p.margin_bytes <= machine.gpus[0].memory_free_bytes
    assert p.estimate.ram_needed_bytes + p.margin_bytes <= machine.ram.available_bytes


def test_a_7b_does_not_fit_a_4_gb_netbook() -> None:
    p = plan(mistral_7b(), resolve_profile("netbook-4gb"))
    assert p.placement == Placement.NONE
    assert p.headroom_bytes < 0 and p.max_n_ctx == 0
    assert p.tokens_per_s is None
    assert p.reason.startswith("does not fit")


def test_a_3b_runs_on_the_cpu_of_an_8_gb_laptop() -> None:
    p = plan(llama32_3b(), resolve_profile("laptop-8gb"))
    assert p.placement == Placement.CPU and p.gpu_layers == 0
    assert p.estimate.vram == ()
    assert p.tokens_per_s is not None and 0 < p.tokens_per_s.low < p.tokens_per_s.high


def test_a_70b_needs_a_smaller_quant_on_an_m3_max() -> None:
    machine = resolve_profile("m3max-64gb")
    assert plan(llama33_70b(), machine).placement == Placement.NONE
    # a ~3-bit quant of the same model (file 0.7x the Q4_K_M) runs fully on the Metal GPU
    smaller = plan(llama33_70b(), machine, weights_scale=0.7)
    assert smaller.placement == Placement.GPU


def test_moe_needs_all_experts_in_memory() -> None:
    """Qwen3-30B-A3B reads only 3B per token, but all 30B must be resident: it does not fit a 16 GB Mac."""
    assert plan(qwen3_30b_a3b(), resolve_profile("m2-16gb")).placement == Placement.NONE
    assert plan(qwen3_30b_a3b(), resolve_profile("m3max-64gb")).placement == Placement.GPU


def test_unified_memory_is_counted_once() -> None:
    machine = resolve_profile("m2-16gb")
    p = plan(mistral_7b(), machine)
    assert p.placement == Placement.GPU
    est = p.estimate
    # the Metal part lives in the same RAM: RAM pays for it once, and the CPU side holds little
    assert est.ram.weights < est.vram[0].weights
    gpu = machine.gpus[0]
    assert gpu.unified
    assert est.ram_needed_bytes + est.vram_bytes + p.margin_bytes <= machine.ram.available_bytes
    assert p.headroom_bytes == min(
        machine.ram.available_bytes - est.ram_needed_bytes - est.vram_bytes,
        gpu.memory_free_bytes - est.vram_bytes,
    )


def test_max_context_is_the_largest_multiple_of_1024_that_fits() -> None:
    machine = resolve_profile("rtx4060-16gb")
    meta = mistral_7b()
    p = plan(meta, machine)
    assert p.max_n_ctx % CONTEXT_STEP == 0 and p.max_n_ctx < meta.context_length
    at_max = estimate(meta, machine, n_ctx=p.max_n_ctx, gpu_layers=p.gpu_layers)
    beyond = estimate(meta, machine, n_ctx=p.max_n_ctx + CONTEXT_STEP, gpu_layers=p.gpu_layers)
    free = machine.gpus[0].memory_free_bytes
    assert at_max.vram_bytes + p.margin_bytes <= free < beyond.vram_bytes + p.margin_bytes


def test_max_context_stops_at_the_trained_context() -> None:
    p = plan(llama32_3b(), resolve_profile("m3max-64gb"))
    assert p.max_n_ctx == llama32_3b().context_length


def test_default_context_is_min_of_trained_and_8192() -> None:
    short = replace(llama32_3b(), context_length=2048)
    assert plan(short, resolve_profile("rtx4090-32gb")).n_ctx == 2048
    assert plan(llama32_3b(), resolve_profile("rtx4090-32gb")).n_ctx == DEFAULT_CONTEXT


def test_default_context_shrinks_to_what_fits() -> None:
    """A 70B on a 4090 + 32 GB: 8192 tokens do not fit next to the weights, a shorter context does."""
    p = plan(llama33_70b(), resolve_profile("rtx4090-32gb"))
    assert p.placement == Placement.PARTIAL
    assert p.n_ctx < DEFAULT_CONTEXT and p.n_ctx % CONTEXT_STEP == 0
    assert p.max_n_ctx == p.n_ctx


def test_the_margin_is_one_gib_and_keeps_memory_free() -> None:
    machine = resolve_profile("rtx4060-16gb")
    p = plan(mistral_7b(), machine)
    assert p.margin_bytes == DEFAULT_MARGIN_BYTES == GIB
    assert p.headroom_bytes >= p.margin_bytes
    # a bigger margin costs context; a huge one leaves nowhere to run
    tighter = plan(mistral_7b(), machine, margin_bytes=2 * GIB)
    assert tighter.max_n_ctx < p.max_n_ctx
    assert plan(mistral_7b(), machine, margin_bytes=64 * GIB).placement == Placement.NONE


def test_a_requested_context_that_does_not_fit_is_reported_not_shrunk() -> None:
    p = plan(mistral_7b(), resolve_profile("laptop-8gb"), n_ctx=32768)
    assert p.placement == Placement.NONE and p.n_ctx == 32768


def test_requested_gpu_layers_are_taken_as_given() -> None:
    machine = resolve_profile("rtx4090-32gb")
    p = plan(mistral_7b(), machine, gpu_layers=10)
    assert p.placement == Placement.PARTIAL and p.gpu_layers == 10
    assert plan(mistral_7b(), machine, gpu_layers=0).placement == Placement.CPU
    assert plan(mistral_7b(), machine, gpu_layers=-1).gpu_layers == n_layers_total(mistral_7b())


def test_no_offload_support_means_cpu_only() -> None:
    machine = replace(resolve_profile("rtx4090-32gb"), gpu_offload_supported=False)
    p = plan(llama32_3b(), machine)
    assert p.placement == Placement.CPU and p.estimate.vram == ()


def test_headroom_against_available_and_total() -> None:
    machine = resolve_profile("laptop-8gb")
    p = plan(llama32_3b(), machine)
    need = p.estimate.ram_needed_bytes
    assert p.headroom_bytes == machine.ram.available_bytes - need
    assert p.headroom_pct == pytest.approx(100 * p.headroom_bytes / machine.ram.available_bytes)
    assert p.headroom_pct_of_total == pytest.approx(100 * p.headroom_bytes / machine.ram.total_bytes)


def test_quantized_kv_turns_flash_attention_on_and_halves_the_cache() -> None:
    machine = resolve_profile("rtx4060-16gb")
    f16 = plan(mistral_7b(), machine, n_ctx=8192)
    q8 = plan(mistral_7b(), machine, n_ctx=8192, kv_type="q8_0")
    assert not f16.flash_attn and q8.flash_attn
    assert sum(q8.estimate.kv_bytes_per_layer) * 32 == sum(f16.estimate.kv_bytes_per_layer) * 17
    assert q8.max_n_ctx > f16.max_n_ctx


def test_to_dict_has_the_cli_keys() -> None:
    data = plan(mistral_7b(), resolve_profile("rtx4060-16gb")).to_dict()
    for key in (
        "placement", "gpu_layers", "n_ctx", "ram_bytes", "vram_bytes", "breakdown", "headroom_pct",
        "headroom_bytes", "tokens_per_s_estimate", "max_n_ctx", "margin_bytes",
    ):  # fmt: skip
        assert key in data
    assert data["placement"] == "gpu"
    assert set(data["breakdown"]) >= {"weights", "kv_cache", "compute", "output", "overhead"}
    assert sum(data["breakdown"][k] for k in ("weights", "kv_cache", "compute", "output", "overhead")) == (
        data["ram_bytes"] + data["vram_bytes"]
    )
    assert data["tokens_per_s_estimate"]["low"] < data["tokens_per_s_estimate"]["high"]


def test_gpu_overhead_counts_the_cuda_context() -> None:
    machine = resolve_profile("rtx4090-32gb")
    full = estimate(mistral_7b(), machine, n_ctx=4096, gpu_layers=-1)
    none = estimate(mistral_7b(), machine, n_ctx=4096, gpu_layers=0)
    assert full.vram[0].overhead >= 300 * 2**20
    assert none.vram[0].total == 0


def test_two_gpus_share_the_layers() -> None:
    gpu = GpuInfo("RTX 3090", GpuVendor.NVIDIA, 24 * GIB, 23 * GIB, bandwidth_gbps=936)
    machine = Machine(
        ram=RamInfo(64 * GIB, 50 * GIB, bandwidth_gbps=60),
        cpu=CpuInfo("cpu", "x86_64", 16, 32, ("avx", "avx2")),
        gpus=(gpu, replace(gpu, name="RTX 3090 #2")),
        gpu_offload_supported=True,
    )
    p = plan(llama33_70b(), machine, n_ctx=4096, weights_scale=0.8)  # a ~3.5-bit quant: 36 GB
    assert p.placement == Placement.GPU
    first, second = p.estimate.vram
    assert first.weights > 0.4 * (first.weights + second.weights) and second.weights > 0.4 * (
        first.weights + second.weights
    )
