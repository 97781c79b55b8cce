"""How much memory llama.cpp will take for a model, per device, before anything is loaded.

Every number mirrors what llama.cpp (the build in llama-cpp-python 0.3.36) allocates and prints with
verbose=True, and is checked against real loads in tests/core/fit/test_estimate.py and
benchmarks/fit_accuracy.py:

- weights ("<dev> model buffer size"): repeating layers live where `n_gpu_layers` puts them, the input
  embeddings always stay in RAM, and the output layer is the *first* thing offloaded (llama.cpp assigns
  layer n_layer, the output, to the GPU as soon as n_gpu_layers >= 1; n_gpu_layers = n_layer + 1 offloads
  everything). On the CPU the file is mmap'd: the mapped buffer spans from the first to the last tensor kept
  in it (llama.cpp unmaps the rest), and weights of some types get a second, repacked copy (CPU_REPACK).
- KV cache ("KV buffer size"): per layer, cells x (head_count_kv x key_length) for K and the same with
  value_length for V (GQA), in the KV type's bytes per element; MLA models keep only K; sliding-window
  layers keep n_swa + n_ubatch cells unless the SWA cache is full-size (llama-cpp-python's default, see
  llama_kv_cache_iswa); cells = n_ctx padded to 256, as llama_context does.
- compute ("compute buffer size"): the graph allocator's peak for a worst-case micro-batch, modelled as the
  largest of three phases (attention, feed-forward, logits); fitted on real loads (fit/buffers.py holds the
  KV cache and compute buffer models).
- output ("output buffer size"): the logits of one token (n_vocab f32).
- overhead (not printed by llama.cpp): the runtime's own memory, e.g. the CUDA context on each GPU.

Checked on a CPU here (2-core Xeon, AVX-512), with a build that repacks and with pip's native AMX build
loaded without extra buffers: every buffer within 1.5% of llama.cpp's report, RSS within 7%.
GPU buffers follow the same rules (llama.cpp sizes them with the same code) but could not be checked against
a real GPU in this project; the CUDA/Metal context overheads are documented assumptions (see below).
Builds with the AMX backend (pip's native build on Sapphire Rapids and later Xeons) crash in it (llama.cpp
issue #20824), so the engine loads them without extra buffer types (core.llama_build): no CPU_REPACK or AMX
copies at all, every CPU weight stays in the mapped file. Machine.llama_extra_buffers says which case
applies; repacked copies are counted only when it is True. Split models are treated as one mapped span
across their shards (llama.cpp maps each shard; the difference is the gaps).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final

from kaihe_desktop.core.fit.buffers import (
    KV_PAD,
    compute_phases,
    iswa_extra_scores,
    kv_bytes_per_cell,
    kv_cache_bytes,
    kv_cells_per_layer,
    pad,
    row_bytes,
)
from kaihe_desktop.core.fit.kv_types import KVCacheType
from kaihe_desktop.core.gguf.model_meta import ModelMeta, TensorInfo
from kaihe_desktop.core.machine.spec import GpuInfo, GpuVendor, Machine

MIB: Final = 2**20
GGUF_ALIGNMENT: Final = 32  # tensor data alignment in GGUF files (general.alignment default)

# Runtime memory llama.cpp does not print. Host: the process's own tables and scratch (vocabulary with its
# token-to-piece cache, graph metadata, thread pools), measured here as RSS growth minus printed buffers:
# a base plus a per-token cost of the vocabulary (llama.cpp's token tables, ~165 B/token, and the binding's
# per-token logits rows and sampling candidates, ~48 B/token, both measured with the starter's 262k vocab
# against 4k-32k tiny vocabularies). GPU: the driver context and the BLAS workspace, which
# llama.cpp users commonly see as 300-500 MiB per CUDA/ROCm device (nvidia-smi with a model loaded minus
# its buffers); Metal has no comparable context.
HOST_OVERHEAD_BASE: Final = 6 * MIB + MIB // 2
HOST_OVERHEAD_PER_VOCAB_TOKEN: Final = 213
GPU_CONTEXT_OVERHEAD: Final[dict[GpuVendor, int]] = {
    GpuVendor.NVIDIA: 400 * MIB,
    GpuVendor.AMD: 400 * MIB,
    GpuVendor.INTEL: 256 * MIB,
    GpuVendor.APPLE: 32 * MIB,
    GpuVendor.OTHER: 256 * MIB,
}
# The CUDA/ROCm runtime itself, mapped into the process (host RAM), once per process with any such GPU.
GPU_RUNTIME_HOST_OVERHEAD: Final = 256 * MIB

# Weight types ggml-cpu repacks into an interleaved copy (CPU_REPACK buffer), from
# ggml/src/ggml-cpu/repack.cpp ggml_repack_get_optimal_repack_type: on x86 with AVX2 Q4_0, Q4_K, IQ4_NL and
# MXFP4 (plus Q2_K with AVX-512); on ARM with the dot-product extension also Q5_K, Q6_K and Q8_0.
_REPACK_X86_AVX2: Final = frozenset({"Q4_0", "Q4_K", "IQ4_NL", "MXFP4"})
_REPACK_X86_AVX512: Final = _REPACK_X86_AVX2 | {"Q2_K"}
_REPACK_ARM_DOTPROD: Final = frozenset({"Q4_0", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "MXFP4", "Q8_0"})


@dataclass(frozen=True)
class Breakdown:
    """Bytes on one device. `weights` includes `repack`, the repacked copies of CPU weights."""

    weights: int = 0
    kv_cache: int = 0
    compute: int = 0
    output: int = 0
    overhead: int = 0
    repack: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.output + self.overhead

    @property
    def buffers(self) -> int:
        """What llama.cpp itself reports for this device (everything but the runtime overhead)."""
        return self.total - self.overhead

    def to_dict(self) -> dict[str, int]:
        return {
            "weights": self.weights,
            "kv_cache": self.kv_cache,
            "compute": self.compute,
            "output": self.output,
            "overhead": self.overhead,
            "repack": self.repack,
        }


@dataclass(frozen=True)
class MemoryEstimate:
    """Memory of one configuration: system RAM and each GPU's memory (unified GPUs count in `vram`)."""

    ram: Breakdown
    vram: tuple[Breakdown, ...]
    n_ctx: int  # as llama.cpp will use it (padded to 256)
    gpu_layers: int  # llama.cpp's n_gpu_layers, clamped to what this machine can offload
    kv_type: KVCacheType
    flash_attn: bool
    n_batch: int
    n_ubatch: int
    kv_bytes_per_layer: tuple[int, ...]
    swa_full: bool = True
    ram_resident: int = 0  # expected RSS growth of the process in use (see resident_bytes)
    ram_reclaimable: int = 0  # mapped pages llama.cpp reports but never reads again (see ram_needed_bytes)
    kv_cells_per_layer: tuple[int, ...] = field(default=(), repr=False)

    @property
    def ram_bytes(self) -> int:
        """RAM the model needs (ram.total): see ram_needed_bytes for what is left out."""
        return self.ram.total

    @property
    def ram_needed_bytes(self) -> int:
        """RAM the model needs to run well; the same as ram_bytes, named for what it means.

        llama.cpp maps the whole span of the file it uses from the CPU; tensors inside that span which were
        repacked into a copy, or copied to a GPU (or, on a unified GPU, are the GPU's own mapping of the same
        pages) are read once at load and never again, so under memory pressure the kernel drops them
        first and for free. Those pages (ram_reclaimable) count in llama.cpp's CPU_Mapped size
        (buffers_bytes) and in RSS (resident_bytes), not in ram.weights nor in what the planner needs free.
        """
        return self.ram.total

    @property
    def vram_bytes(self) -> int:
        return sum(b.total for b in self.vram)

    @property
    def total_bytes(self) -> int:
        return self.ram_bytes + self.vram_bytes

    @property
    def buffers_bytes(self) -> int:
        """What llama.cpp prints (model incl. mapped span and repack, KV, compute, output, every device)."""
        return self.ram.buffers + self.ram_reclaimable + sum(b.buffers for b in self.vram)

    @property
    def resident_bytes(self) -> int:
        """Expected growth of the process's RSS once loaded and after a prompt of one full micro-batch.

        The mmap'd weights are all resident (llama.cpp maps with MAP_POPULATE), and so are the repacked copies
        and the KV cache (cleared at load). Of the compute buffer only what a real prompt writes becomes
        resident: its attention and feed-forward scratch, and one token's logits instead of n_ubatch rows.
        """
        return self.ram_resident

    def breakdown_total(self) -> Breakdown:
        """RAM and every GPU summed: the `breakdown` the CLI shows."""
        parts = (self.ram, *self.vram)
        return Breakdown(
            weights=sum(p.weights for p in parts),
            kv_cache=sum(p.kv_cache for p in parts),
            compute=sum(p.compute for p in parts),
            output=sum(p.output for p in parts),
            overhead=sum(p.overhead for p in parts),
            repack=sum(p.repack for p in parts),
        )


# --- helpers ----------------------------------------------------------------------------------------------


def offload_devices(machine: Machine) -> tuple[GpuInfo, ...]:
    """The GPUs llama.cpp can put layers on: none unless this llama.cpp build can offload at all."""
    return machine.gpus if machine.gpu_offload_supported else ()


def repack_types(machine: Machine) -> frozenset[str]:
    """Weight types the CPU backend keeps a second, repacked copy of on this CPU and llama.cpp build.

    None when the build loads without extra buffer types (Machine.llama_extra_buffers False: AMX builds).
    """
    if not machine.llama_extra_buffers:
        return frozenset()
    features = set(machine.cpu.features)
    if machine.cpu.arch == "x86_64" and "avx2" in features:
        return _REPACK_X86_AVX512 if "avx512f" in features else _REPACK_X86_AVX2
    if machine.cpu.arch == "arm64" and features & {"dotprod", "i8mm", "apple"}:
        return _REPACK_ARM_DOTPROD
    return frozenset()


def _is_matmul_weight(tensor: TensorInfo) -> bool:
    """Weights used by a matrix multiplication (embeddings are looked up by row, norms are added)."""
    name = tensor.name
    return name.endswith(".weight") and "token_embd" not in name and "norm" not in name


def n_layers_total(meta: ModelMeta) -> int:
    """Layers as llama.cpp counts them for n_gpu_layers: the repeating blocks plus the output layer."""
    return meta.block_count + 1


def gpu_layer_set(meta: ModelMeta, gpu_layers: int) -> tuple[frozenset[int], bool]:
    """(block indexes on the GPU, output layer on the GPU) for llama.cpp's n_gpu_layers = gpu_layers."""
    n_layer = meta.block_count
    n = max(0, min(gpu_layers, n_layer + 1))
    start = n_layer + 1 - n
    return frozenset(range(start, n_layer)), n >= 1


def _split_layers(layers: frozenset[int], gpus: tuple[GpuInfo, ...]) -> dict[int, int]:
    """Which GPU each offloaded layer goes to: contiguous runs in proportion to free memory (llama.cpp)."""
    ordered = sorted(layers)
    if not gpus or not ordered:
        return {}
    weights = [max(g.memory_free_bytes, 1) for g in gpus]
    total = sum(weights)
    bounds, acc = [], 0
    for w in weights:
        acc += w
        bounds.append(acc / total)
    result = {}
    for i, layer in enumerate(ordered):
        frac = i / len(ordered)
        result[layer] = next(j for j, b in enumerate(bounds) if frac < b or j == len(bounds) - 1)
    return result


# --- weights ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Weights:
    mapped: int  # CPU mapped span (file-backed, resident)
    repack: int  # repacked CPU copies
    per_gpu: tuple[int, ...]
    reclaimable: int  # mapped pages never read again after loading (repacked or offloaded tensors)


def _weights(
    meta: ModelMeta, machine: Machine, on_gpu: dict[int, int], output_gpu: int | None, scale: float
) -> _Weights:
    gpus = offload_devices(machine)
    per_gpu = [0] * len(gpus)
    repackable = repack_types(machine)
    repack = 0
    cpu_spans: list[tuple[int, int]] = []
    kept = 0
    offset = 0
    tied = not any(t.name == "output.weight" for t in meta.tensors)
    for tensor in meta.tensors:
        size = pad(tensor.n_bytes, GGUF_ALIGNMENT)
        start, offset = offset, offset + size
        gpu = on_gpu.get(tensor.layer) if tensor.layer is not None else None
        if tensor.layer is None and tensor.name.startswith(("output.", "output_norm.")):
            gpu = output_gpu
        if gpu is not None:
            per_gpu[gpu] += tensor.n_bytes
            continue
        if tensor.ggml_type.upper() in repackable and _is_matmul_weight(tensor):
            repack += tensor.n_bytes
            continue
        cpu_spans.append((start, start + tensor.n_bytes))
        kept += size
        if tied and tensor.name == "token_embd.weight":
            # the output layer reuses the embeddings: a copy on the GPU, or a repacked copy on the CPU
            if output_gpu is not None:
                per_gpu[output_gpu] += tensor.n_bytes
            elif tensor.ggml_type.upper() in repackable:
                repack += tensor.n_bytes
    mapped = cpu_spans[-1][1] - cpu_spans[0][0] if cpu_spans else 0
    return _Weights(
        mapped=round(mapped * scale),
        repack=round(repack * scale),
        per_gpu=tuple(round(b * scale) for b in per_gpu),
        reclaimable=round(max(0, mapped - kept) * scale),
    )


def _tensors_or_summary(meta: ModelMeta) -> ModelMeta:
    """A meta without its tensor list (e.g. built by hand) gets one synthesized from the per-layer totals."""
    if meta.tensors:
        return meta
    ttype = "Q4_K" if (meta.file_type or "").upper().startswith("Q4_K") else "F16"
    tensors: list[TensorInfo] = []
    other = meta.non_layer_tensor_bytes - meta.token_embd_bytes - meta.output_bytes
    if meta.token_embd_bytes:
        tensors.append(TensorInfo("token_embd.weight", "Q8_0", 0, meta.token_embd_bytes, None))
    if meta.output_bytes:
        tensors.append(TensorInfo("output.weight", "Q6_K", 0, meta.output_bytes, None))
    if other > 0:
        tensors.append(TensorInfo("output_norm.weight", "F32", 0, other, None))
    for i, size in enumerate(meta.layer_tensor_bytes):
        tensors.append(TensorInfo(f"blk.{i}.ffn_up.weight", ttype, 0, size, i))
    return replace(meta, tensors=tuple(tensors))


# --- the estimator ---------------------------------------------------------------------------------------


def estimate(
    meta: ModelMeta,
    machine: Machine,
    *,
    n_ctx: int,
    gpu_layers: int = 0,
    kv_type: KVCacheType | str = KVCacheType.F16,
    flash_attn: bool = False,
    n_batch: int = 512,
    n_ubatch: int = 512,
    swa_full: bool = True,
    weights_scale: float = 1.0,
    use_mmap: bool = True,
) -> MemoryEstimate:
    """Bytes llama.cpp will allocate in RAM and on each GPU for this model and these settings.

    gpu_layers is llama.cpp's n_gpu_layers (the output layer counts as one: block_count + 1 offloads all;
    a negative value means all). weights_scale multiplies every weight size (another quant of the model).
    use_mmap False: llama.cpp reads the CPU weights into its own buffer, so nothing is mapped (and nothing
    is reclaimable); the same bytes stay resident. kv_type: a KVCacheType or its name
    (UnknownKVCacheTypeError for any other).
    """
    kv = KVCacheType.parse(kv_type)
    if n_ctx <= 0 or n_batch <= 0 or n_ubatch <= 0:
        raise ValueError("n_ctx, n_batch and n_ubatch must be positive")
    meta = _tensors_or_summary(meta)
    gpus = offload_devices(machine)
    total_layers = n_layers_total(meta)
    if not gpus:
        gpu_layers = 0
    elif gpu_layers < 0 or gpu_layers > total_layers:
        gpu_layers = total_layers
    layers_on_gpu, output_on_gpu = gpu_layer_set(meta, gpu_layers)
    # the output layer joins the GPU of the last block (or the last GPU when no block is offloaded)
    on_gpu = _split_layers(layers_on_gpu, gpus)
    output_gpu = (on_gpu[max(layers_on_gpu)] if layers_on_gpu else len(gpus) - 1) if output_on_gpu else None

    n_ctx_pad = pad(n_ctx, KV_PAD)
    n_ubatch = min(n_ubatch, n_batch)
    n_tokens = min(n_ctx_pad, n_ubatch)
    n_outputs = min(n_tokens, n_batch)

    weights = _weights(meta, machine, on_gpu, output_gpu, weights_scale)
    if not use_mmap:
        weights = replace(weights, mapped=weights.mapped - weights.reclaimable, reclaimable=0)
    cells = kv_cells_per_layer(meta, n_ctx=n_ctx_pad, n_ubatch=n_ubatch, swa_full=swa_full)
    kv_layers = kv_cache_bytes(
        meta, n_ctx=n_ctx_pad, kv_type=kv, flash_attn=flash_attn, n_ubatch=n_ubatch, swa_full=swa_full
    )
    kv_gpu = [0] * len(gpus)
    kv_cpu = 0
    for layer, size in enumerate(kv_layers):
        if layer in on_gpu:
            kv_gpu[on_gpu[layer]] += size
        else:
            kv_cpu += size
    n_kv = max(cells) if cells else n_ctx_pad
    output_buffer = meta.vocab_size * 4

    any_cpu_layer = len(layers_on_gpu) < meta.block_count
    reserved = compute_phases(meta, n_kv=n_kv, n_tokens=n_tokens, n_outputs=n_outputs, flash_attn=flash_attn)
    # a prompt of one micro-batch in a fresh context: llama.cpp's graph spans only the used cells (padded to
    # 256, get_n_kv), so far less than the reserved worst case becomes resident
    n_kv_used = min(n_kv, pad(n_tokens + 1, KV_PAD))
    touched = compute_phases(meta, n_kv=n_kv_used, n_tokens=n_tokens, n_outputs=1, flash_attn=flash_attn)
    touched_peak = touched.peak + iswa_extra_scores(
        meta, n_kv=n_kv_used, n_tokens=n_tokens, flash_attn=flash_attn
    )
    gpu_compute = [0] * len(gpus)
    if output_on_gpu or layers_on_gpu:
        # every GPU holding layers gets a worst-case graph; the output GPU also the logits
        gpu_reserved = compute_phases(
            meta, n_kv=n_kv, n_tokens=n_tokens, n_outputs=n_outputs, flash_attn=flash_attn, logits=False
        )
        for g in set(on_gpu.values()) | ({output_gpu} if output_gpu is not None else set()):
            gpu_compute[g] = gpu_reserved.peak if g != output_gpu else max(gpu_reserved.peak, reserved.logits)
        # the host keeps a staging buffer for the inputs (embeddings, mask) and computes its own layers
        host_inputs = n_tokens * 4 * (meta.embedding_length + n_kv)
        cpu_phases = compute_phases(
            meta,
            n_kv=n_kv,
            n_tokens=n_tokens,
            n_outputs=n_outputs,
            flash_attn=flash_attn,
            logits=not output_on_gpu,
        )
        cpu_compute = max(cpu_phases.peak, host_inputs) if any_cpu_layer or not output_on_gpu else host_inputs
        cpu_touched = cpu_compute
    else:
        cpu_compute = reserved.peak
        cpu_touched = touched_peak

    host_overhead = HOST_OVERHEAD_BASE + HOST_OVERHEAD_PER_VOCAB_TOKEN * meta.vocab_size
    if any(g.vendor in (GpuVendor.NVIDIA, GpuVendor.AMD) for g in gpus) and gpu_layers > 0:
        host_overhead += GPU_RUNTIME_HOST_OVERHEAD
    ram = Breakdown(
        weights=weights.mapped - weights.reclaimable + weights.repack,
        kv_cache=kv_cpu,
        compute=cpu_compute,
        output=output_buffer,
        overhead=host_overhead,
        repack=weights.repack,
    )
    vram = tuple(
        Breakdown(
            weights=weights.per_gpu[i],
            kv_cache=kv_gpu[i],
            compute=gpu_compute[i],
            overhead=GPU_CONTEXT_OVERHEAD.get(gpu.vendor, 256 * MIB)
            if (weights.per_gpu[i] or gpu_compute[i])
            else 0,
        )
        for i, gpu in enumerate(gpus)
    )
    resident = ram.total + weights.reclaimable - ram.compute + cpu_touched
    return MemoryEstimate(
        ram=ram,
        vram=vram,
        n_ctx=n_ctx_pad,
        gpu_layers=gpu_layers,
        kv_type=kv,
        flash_attn=flash_attn,
        n_batch=n_batch,
        n_ubatch=n_ubatch,
        kv_bytes_per_layer=kv_layers,
        swa_full=swa_full,
        ram_resident=resident,
        ram_reclaimable=weights.reclaimable,
        kv_cells_per_layer=cells,
    )


__all__ = [
    "Breakdown",
    "KVCacheType",
    "MemoryEstimate",
    "estimate",
    "kv_bytes_per_cell",
    "kv_cache_bytes",
    "kv_cells_per_layer",
    "n_layers_total",
    "gpu_layer_set",
    "offload_devices",
    "repack_types",
    "row_bytes",
]
