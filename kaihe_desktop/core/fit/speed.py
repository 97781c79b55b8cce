"""Generation speed (tokens/s) of a plan, before anything is downloaded.

Generating one token reads every active weight once, plus the KV cache of the context so far. So the time per
token is, summed over the devices holding them (GPU layers and CPU layers run one after the other), the bytes
each device reads divided by its memory bandwidth, plus a fixed cost per token (building the graph, sampling
over the vocabulary in Python). On a CPU with few cores the arithmetic matters too: the CPU part takes
sqrt(memory_time^2 + compute_time^2), a smooth roofline (memory and compute overlap only partly), where
compute_time = weights it multiplies / (threads x weights per second per thread).

Active weights: every tensor except the input embeddings (only one row of them is read), but with tied
embeddings the output layer reads the whole embedding matrix; an MoE model reads only the experts it uses
(expert tensor bytes x experts used / experts). Threads: what the engine passes to llama.cpp, one per
physical core (core.engine.loading).

Constants, and how they were set:
- CPU_BANDWIDTH_EFFICIENCY: llama.cpp reaches 60-80% of a STREAM-copy bandwidth on memory-bound CPU
  generation (the RAM bandwidth here is `core.bandwidth`'s copy figure); 0.7 is the centre.
- CPU_WEIGHTS_PER_S_PER_THREAD: calibrated on this project's 2-core Xeon (AVX-512 kernels, no AMX; RAM copy
  bandwidth 24 GB/s) with the starter model (Gemma 3 270M Q4_K_M: 268 M weights, 256 MB read per token as
  its tied Q8_0 output reads the whole embedding matrix): 28 tokens/s on 1 thread, 44 on 2. With the
  smooth roofline above, 8e9 weights/s per thread reproduces both within 6%. Those kernels used the
  repacked Q4_K copies (CPU_REPACK); an AMX build loaded without extra buffers (core.llama_build) multiplies
  the file's own blocks and measured the same here (1 thread, CPU time: 26.8 vs 26.5 tokens/s), so the
  constant does not depend on Machine.llama_extra_buffers.
- Fixed cost per token: 0.25 ms plus 3 ns per vocabulary entry (graph building, and llama-cpp-python copying
  and sampling the logits), what is left of the time per token of tiny models (4k and 32k vocabularies,
  ~2000 and ~700-1000 tokens/s) once their weights' compute is taken out.
- GPU_BANDWIDTH_EFFICIENCY: llama.cpp's CUDA generation reaches ~60% of the data-sheet bandwidth (an RTX
  4090, 1008 GB/s, runs an 8B Q4_K_M, 4.9 GB, at ~130 tokens/s: 0.63); Metal ~80% (llama.cpp's Apple
  Silicon benchmarks, discussion #4167: an M2, 100 GB/s, runs a 7B Q4_0, 3.8 GB, at ~22 tokens/s: 0.83).
  GPU bandwidth comes from the profile's GpuInfo.bandwidth_gbps or the packaged hardware table by name.
  These GPU figures are from published runs, not measured in this project.
The range: low = the centre at a full context with the efficiency 25% lower, high = the centre at a short
context (512 tokens) 20% higher; benchmarks/fit_accuracy.py checks the centre at a short context against a
real measurement of the starter model (within 35%).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Final

from kaihe_desktop.core.fit.estimate import MemoryEstimate, gpu_layer_set, offload_devices
from kaihe_desktop.core.fit.known_hardware import load_table
from kaihe_desktop.core.gguf.model_meta import ModelMeta
from kaihe_desktop.core.machine.spec import GpuInfo, GpuVendor, Machine

CPU_BANDWIDTH_EFFICIENCY: Final = 0.7
GPU_BANDWIDTH_EFFICIENCY: Final = 0.62
APPLE_BANDWIDTH_EFFICIENCY: Final = 0.8
CPU_WEIGHTS_PER_S_PER_THREAD: Final = 8.0e9
FIXED_S_PER_TOKEN: Final = 0.25e-3
FIXED_S_PER_VOCAB_ENTRY: Final = 3e-9
LOW_FACTOR: Final = 0.75
HIGH_FACTOR: Final = 1.2
SHORT_CONTEXT: Final = 512  # tokens in the cache for the "empty context" end of the range


@dataclass(frozen=True)
class SpeedRange:
    """Generation tokens/s, low (full context) to high (short context), and what it rests on."""

    low: float
    high: float
    source: str

    @property
    def mid(self) -> float:
        return (self.low + self.high) / 2


@dataclass(frozen=True)
class TokenCost:
    """Bytes and weights one generated token reads, per device (index 0 = CPU, then each GPU)."""

    read_bytes: tuple[int, ...]
    cpu_weights: int  # weights the CPU multiplies (for the compute cap)


def llama_cpp_threads(machine: Machine) -> int:
    """Threads the engine gives llama.cpp: one per physical core."""
    return max(1, machine.cpu.cores_physical or (os.cpu_count() or 2) // 2)


def gpu_bandwidth_gbps(gpu: GpuInfo) -> float | None:
    """A GPU's memory bandwidth: the profile's figure, or the packaged hardware table's by name."""
    if gpu.bandwidth_gbps:
        return gpu.bandwidth_gbps
    name = gpu.name.lower()
    best = None
    for row in load_table():
        matches = row.name.lower() in name or bool(row.chip and row.chip.lower() in name)
        if matches and (best is None or len(row.name) > len(best.name)):
            best = row
    return best.bandwidth_gbps if best else None


def token_cost(
    meta: ModelMeta, est: MemoryEstimate, *, context_tokens: int, weights_scale: float = 1.0
) -> TokenCost:
    """What one token reads where, with context_tokens already in the KV cache."""
    n_dev = 1 + len(est.vram)
    read = [0.0] * n_dev
    on_gpu, output_on_gpu = gpu_layer_set(meta, est.gpu_layers)
    gpu_of = _gpu_of_layers(sorted(on_gpu), len(est.vram))
    moe_share = meta.expert_used_count / meta.expert_count if meta.is_moe and meta.expert_count else 1.0
    tied = not any(t.name == "output.weight" for t in meta.tensors)
    cpu_weights = 0.0
    for tensor in meta.tensors:
        size = tensor.n_bytes * weights_scale
        elements = float(tensor.n_elements)
        if "_exps." in tensor.name:
            size *= moe_share
            elements *= moe_share
        if tensor.name == "token_embd.weight":
            if not tied:
                continue  # a lookup reads one row
            device = (1 + gpu_of.get(-1, len(est.vram) - 1)) if output_on_gpu and est.vram else 0
        elif tensor.layer is None:
            device = (1 + gpu_of.get(-1, len(est.vram) - 1)) if output_on_gpu and est.vram else 0
        else:
            device = 1 + gpu_of[tensor.layer] if tensor.layer in gpu_of else 0
        read[device] += size
        if device == 0:
            cpu_weights += elements
    # KV read per token: every layer reads the cells in use (sliding-window layers at most their window)
    window = meta.sliding_window or 0
    pattern = meta.sliding_window_pattern or ()
    for layer, (layer_bytes, cells) in enumerate(
        zip(est.kv_bytes_per_layer, est.kv_cells_per_layer, strict=False)
    ):
        if cells <= 0:
            continue
        used = min(context_tokens, cells)
        if window and layer < len(pattern) and pattern[layer]:
            used = min(used, window)
        device = 1 + gpu_of[layer] if layer in gpu_of else 0
        read[device] += layer_bytes * used / cells
    return TokenCost(read_bytes=tuple(int(r) for r in read), cpu_weights=int(cpu_weights))


def _gpu_of_layers(layers: list[int], n_gpus: int) -> dict[int, int]:
    """Layer -> GPU index, contiguous and even (for reads only the device matters)."""
    if not n_gpus:
        return {}
    result = {layer: min(i * n_gpus // max(len(layers), 1), n_gpus - 1) for i, layer in enumerate(layers)}
    result[-1] = result[layers[-1]] if layers else n_gpus - 1
    return result


def seconds_per_token(
    meta: ModelMeta,
    machine: Machine,
    est: MemoryEstimate,
    *,
    context_tokens: int,
    weights_scale: float = 1.0,
    ram_bandwidth_gbps: float | None = None,
) -> float | None:
    """The centre estimate of one token's time; None when a bandwidth it needs is unknown."""
    cost = token_cost(meta, est, context_tokens=context_tokens, weights_scale=weights_scale)
    ram_bw = ram_bandwidth_gbps or machine.ram.bandwidth_gbps
    if not ram_bw:
        return None
    seconds = FIXED_S_PER_TOKEN + FIXED_S_PER_VOCAB_ENTRY * meta.vocab_size
    memory_s = cost.read_bytes[0] / (ram_bw * 1e9 * CPU_BANDWIDTH_EFFICIENCY)
    compute_s = cost.cpu_weights / (llama_cpp_threads(machine) * CPU_WEIGHTS_PER_S_PER_THREAD)
    seconds += math.hypot(memory_s, compute_s) if cost.read_bytes[0] else 0.0
    gpus = offload_devices(machine)
    for i, gpu in enumerate(gpus):
        if i + 1 >= len(cost.read_bytes) or not cost.read_bytes[i + 1]:
            continue
        bandwidth = gpu_bandwidth_gbps(gpu)
        if not bandwidth:
            return None
        efficiency = APPLE_BANDWIDTH_EFFICIENCY if gpu.vendor == GpuVendor.APPLE else GPU_BANDWIDTH_EFFICIENCY
        seconds += cost.read_bytes[i + 1] / (bandwidth * 1e9 * efficiency)
    return seconds


def estimate_speed(
    meta: ModelMeta,
    machine: Machine,
    est: MemoryEstimate,
    *,
    weights_scale: float = 1.0,
    ram_bandwidth_gbps: float | None = None,
) -> SpeedRange | None:
    """Tokens/s from a short context (high) to a full one (low); None without the bandwidths it needs."""
    short = seconds_per_token(
        meta, machine, est, context_tokens=SHORT_CONTEXT, weights_scale=weights_scale,
        ram_bandwidth_gbps=ram_bandwidth_gbps,
    )  # fmt: skip
    full = seconds_per_token(
        meta, machine, est, context_tokens=est.n_ctx, weights_scale=weights_scale,
        ram_bandwidth_gbps=ram_bandwidth_gbps,
    )  # fmt: skip
    if short is None or full is None:
        return None
    where = "GPU and RAM" if any(b.weights for b in est.vram) else "RAM"
    bw = ram_bandwidth_gbps or machine.ram.bandwidth_gbps
    source = (
        f"bytes read per token over the memory bandwidth of the {where} (RAM {bw:.0f} GB/s), "
        f"{llama_cpp_threads(machine)} CPU thread(s); full context ({est.n_ctx}) to a short one"
    )
    return SpeedRange(low=LOW_FACTOR / full, high=HIGH_FACTOR / short, source=source)


__all__ = [
    "SpeedRange",
    "TokenCost",
    "estimate_speed",
    "gpu_bandwidth_gbps",
    "seconds_per_token",
    "token_cost",
]
