"""Generation speed estimate: bytes read per token over bandwidth, MoE active experts, devices, compute cap.

Real timings are not asserted here (no timing thresholds in tests): benchmarks/fit_accuracy.py compares the
estimate with a measured run of the starter model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from kaihe_desktop.core.fit.plan import estimate, plan
from kaihe_desktop.core.fit.speed import (
    SHORT_CONTEXT,
    estimate_speed,
    gpu_bandwidth_gbps,
    llama_cpp_threads,
    seconds_per_token,
    token_cost,
)
from kaihe_desktop.core.gguf.meta import read_local
from kaihe_desktop.core.machine.profiles import resolve_profile
from kaihe_desktop.core.machine.spec import CpuInfo, GpuInfo, GpuVendor, Machine, RamInfo
from kaihe_desktop.core.units import GIB
from tests.helpers.synthetic_models import mistral_7b, qwen3_30b_a3b


def cpu_machine(*, bandwidth: float | None = 50.0, logical: int = 16) -> Machine:
    return Machine(
        ram=RamInfo(64 * GIB, 48 * GIB, bandwidth_gbps=bandwidth),
        cpu=CpuInfo("cpu", "x86_64", logical // 2, logical, ("avx", "avx2")),
    )


def test_moe_reads_only_the_experts_it_uses() -> None:
    meta = qwen3_30b_a3b()
    est = estimate(meta, cpu_machine(), n_ctx=4096)
    cost = token_cost(meta, est, context_tokens=0)
    experts = meta.expert_tensor_bytes
    embeddings = meta.token_embd_bytes  # looked up by row: not read per token
    dense = meta.tensor_bytes - experts - embeddings
    assert cost.read_bytes[0] == dense + experts * 8 // 128
    assert cost.read_bytes[0] < 0.2 * meta.tensor_bytes


def test_kv_read_grows_with_the_context() -> None:
    meta = mistral_7b()
    est = estimate(meta, cpu_machine(), n_ctx=32768)
    empty = token_cost(meta, est, context_tokens=0).read_bytes[0]
    full = token_cost(meta, est, context_tokens=32768).read_bytes[0]
    assert full - empty == sum(est.kv_bytes_per_layer)


def test_sliding_window_layers_read_only_their_window(starter_model_path: Path) -> None:
    meta = read_local(starter_model_path)
    est = estimate(meta, cpu_machine(), n_ctx=32768)
    full = token_cost(meta, est, context_tokens=32768).read_bytes[0]
    empty = token_cost(meta, est, context_tokens=0).read_bytes[0]
    per_cell = est.kv_bytes_per_layer[0] // est.kv_cells_per_layer[0]
    # 3 global layers read 32768 cells, 15 sliding-window layers only their 512
    assert full - empty == per_cell * (3 * 32768 + 15 * 512)


def test_tied_output_reads_the_embeddings(starter_model_path: Path) -> None:
    meta = read_local(starter_model_path)
    est = estimate(meta, cpu_machine(), n_ctx=2048)
    assert token_cost(meta, est, context_tokens=0).read_bytes[0] == meta.tensor_bytes


def test_more_bandwidth_is_faster_when_memory_bound() -> None:
    meta = mistral_7b()
    slow, fast = cpu_machine(bandwidth=20), cpu_machine(bandwidth=80)
    t_slow = seconds_per_token(meta, slow, estimate(meta, slow, n_ctx=4096), context_tokens=SHORT_CONTEXT)
    t_fast = seconds_per_token(meta, fast, estimate(meta, fast, n_ctx=4096), context_tokens=SHORT_CONTEXT)
    assert t_slow is not None and t_fast is not None and t_fast < t_slow


def test_few_cores_cap_the_cpu() -> None:
    """With one thread the arithmetic, not the memory, sets the pace: doubling the bandwidth barely helps."""
    meta = mistral_7b()

    def tps(machine: Machine) -> float:
        seconds = seconds_per_token(meta, machine, estimate(meta, machine, n_ctx=4096), context_tokens=512)
        assert seconds is not None
        return 1 / seconds

    one, one_more_bw = cpu_machine(bandwidth=80, logical=2), cpu_machine(bandwidth=160, logical=2)
    many, many_more_bw = cpu_machine(bandwidth=80, logical=64), cpu_machine(bandwidth=160, logical=64)
    assert llama_cpp_threads(one) == 1 and llama_cpp_threads(many) == 32
    assert tps(one_more_bw) / tps(one) < 1.1  # compute-bound
    assert tps(many_more_bw) / tps(many) > 1.6  # memory-bound
    assert tps(many) > 3 * tps(one)


def test_a_gpu_plan_is_faster_than_cpu_only() -> None:
    machine = resolve_profile("rtx4090-32gb")
    gpu = plan(mistral_7b(), machine)
    cpu = plan(mistral_7b(), machine, gpu_layers=0)
    partial = plan(mistral_7b(), machine, gpu_layers=16)
    assert gpu.tokens_per_s and cpu.tokens_per_s and partial.tokens_per_s
    assert cpu.tokens_per_s.high < partial.tokens_per_s.high < gpu.tokens_per_s.high


def test_range_is_ordered_and_explained() -> None:
    machine = cpu_machine()
    meta = mistral_7b()
    speed = estimate_speed(meta, machine, estimate(meta, machine, n_ctx=8192))
    assert speed is not None
    assert 0 < speed.low < speed.mid < speed.high
    assert "bandwidth" in speed.source


def test_unknown_bandwidth_gives_no_estimate() -> None:
    machine = cpu_machine(bandwidth=None)
    meta = mistral_7b()
    assert estimate_speed(meta, machine, estimate(meta, machine, n_ctx=4096)) is None
    # ... unless the caller passes a measured one
    assert estimate_speed(meta, machine, estimate(meta, machine, n_ctx=4096), ram_bandwidth_gbps=30.0)


def test_gpu_bandwidth_from_profile_or_table() -> None:
    assert gpu_bandwidth_gbps(GpuInfo("x", GpuVendor.NVIDIA, GIB, GIB, bandwidth_gbps=123.0)) == 123.0
    card = GpuInfo("NVIDIA GeForce RTX 4090", GpuVendor.NVIDIA, 24 * GIB, 23 * GIB)
    assert gpu_bandwidth_gbps(card) == 1008
    assert gpu_bandwidth_gbps(replace(card, name="Mystery GPU")) is None
