"""The memory estimator against real llama.cpp loads, and its KV/weights rules on known shapes.

Real loads (a handful, each in a fresh process, see tests/helpers/llama_probe.py): the starter model at 2048
and 32768 context, and tiny llama (GQA, Q4_0: repacked on AVX2), qwen3moe (MoE) and gemma3 (sliding window)
models. The bars are the issue's: the estimated buffers within 10% of the sum llama.cpp reports, and the
estimated resident memory within 15% of the process's measured RSS growth.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from kaihe_desktop.core.fit.estimate import (
    gpu_layer_set,
    kv_bytes_per_cell,
    kv_cells_per_layer,
    repack_types,
    row_bytes,
)
from kaihe_desktop.core.fit.plan import estimate
from kaihe_desktop.core.gguf.meta import read_local
from kaihe_desktop.core.gguf.model_meta import ModelMeta
from kaihe_desktop.core.machine.probe import probe
from kaihe_desktop.core.machine.spec import CpuInfo, Machine, RamInfo
from tests.helpers.llama_probe import ProbeResult, parse_buffers, probe_load
from tests.helpers.tiny_gguf import write_tiny_model

MIB = 2**20
BUFFER_BAR = 0.10
RSS_BAR = 0.15


def x86_machine(*features: str) -> Machine:
    return Machine(
        ram=RamInfo(total_bytes=16 * 2**30, available_bytes=12 * 2**30),
        cpu=CpuInfo("test cpu", "x86_64", 4, 8, features),
    )


# --- real loads ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_fit_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny models big enough (5-15 MB) that llama.cpp's buffers dominate the process's own noise."""
    root = tmp_path_factory.mktemp("fit-models")
    return {
        "llama-gqa-q4_0": write_tiny_model(
            root / "llama.gguf", arch="llama", n_layer=4, n_embd=256, n_head=8, n_head_kv=2, n_ff=768,
            n_vocab=8192, n_ctx_train=8192, tensor_type="Q4_0",
        ),
        "qwen3moe": write_tiny_model(
            root / "moe.gguf", arch="qwen3moe", n_layer=3, n_embd=256, n_head=8, n_head_kv=4, head_dim=32,
            n_expert=16, n_expert_used=4, n_ff_expert=256, n_vocab=8192, n_ctx_train=8192, tensor_type="Q8_0",
        ),
        "gemma3-swa": write_tiny_model(
            root / "gemma3.gguf", arch="gemma3", n_layer=6, n_embd=256, n_head=4, n_head_kv=1, head_dim=128,
            n_ff=1024, n_vocab=16384, n_ctx_train=8192, sliding_window=256, tensor_type="Q8_0",
        ),
    }  # fmt: skip


LOADS = [
    ("starter", 2048),
    ("starter", 32768),
    ("llama-gqa-q4_0", 4096),
    ("qwen3moe", 4096),
    ("gemma3-swa", 8192),
]


@pytest.fixture(scope="module")
def this_machine() -> Machine:
    return probe()


@pytest.fixture(scope="module")
def loads(starter_model_path: Path, tiny_fit_models: dict[str, Path]) -> dict[tuple[str, int], ProbeResult]:
    """Each model and context loaded once by llama.cpp in a fresh process."""
    paths = {"starter": starter_model_path, **tiny_fit_models}
    return {(name, n_ctx): probe_load(paths[name], n_ctx=n_ctx) for name, n_ctx in LOADS}


def _model_path(name: str, starter: Path, tiny: dict[str, Path]) -> Path:
    return starter if name == "starter" else tiny[name]


@pytest.mark.parametrize(("name", "n_ctx"), LOADS)
def test_estimate_matches_llama_cpp_buffers(
    name: str,
    n_ctx: int,
    loads: dict[tuple[str, int], ProbeResult],
    starter_model_path: Path,
    tiny_fit_models: dict[str, Path],
    this_machine: Machine,
) -> None:
    result = loads[(name, n_ctx)]
    meta = read_local(_model_path(name, starter_model_path, tiny_fit_models))
    est = estimate(meta, this_machine, n_ctx=n_ctx)
    reported = result.reported_total
    assert reported > 0 and result.kv_bytes > 0 and result.compute_bytes > 0
    error = est.buffers_bytes / reported - 1
    assert abs(error) <= BUFFER_BAR, f"{name}@{n_ctx}: estimated {est.buffers_bytes} vs reported {reported}"
    # each part on its own, so a wrong part cannot hide behind a right total
    printed = MIB // 100  # llama.cpp prints MiB with two decimals
    assert abs(est.ram.kv_cache - result.kv_bytes) <= printed
    assert abs(est.ram.output - result.output_bytes) <= printed
    assert abs((est.ram.weights + est.ram_reclaimable) / result.model_bytes - 1) < 0.01
    assert abs(est.ram.compute / result.compute_bytes - 1) < BUFFER_BAR


@pytest.mark.parametrize(("name", "n_ctx"), LOADS)
def test_resident_estimate_matches_rss_growth(
    name: str,
    n_ctx: int,
    loads: dict[tuple[str, int], ProbeResult],
    starter_model_path: Path,
    tiny_fit_models: dict[str, Path],
    this_machine: Machine,
) -> None:
    result = loads[(name, n_ctx)]
    meta = read_local(_model_path(name, starter_model_path, tiny_fit_models))
    est = estimate(meta, this_machine, n_ctx=n_ctx)
    error = est.resident_bytes / result.rss_growth - 1
    assert abs(error) <= RSS_BAR, f"{name}@{n_ctx}: resident {est.resident_bytes} vs RSS +{result.rss_growth}"


def test_repacked_weights_are_reported_as_a_second_copy(
    loads: dict[tuple[str, int], ProbeResult], tiny_fit_models: dict[str, Path], this_machine: Machine
) -> None:
    """Q4_0 weights on an AVX2 CPU: llama.cpp keeps the mapped file and an interleaved copy (CPU_REPACK).

    Unless the build loads without extra buffer types (an AMX build, as the engine loads it): then no
    copy at all, neither CPU_REPACK nor AMX, and the estimate counts none.
    """
    result = loads[("llama-gqa-q4_0", 4096)]
    est = estimate(read_local(tiny_fit_models["llama-gqa-q4_0"]), this_machine, n_ctx=4096)
    assert result.extra_buffers == this_machine.llama_extra_buffers  # the probe loads as the engine does
    if "avx2" in this_machine.cpu.features and this_machine.llama_extra_buffers:
        assert result.buffers.get("model:CPU_REPACK", 0) > 0
        assert abs(est.ram.repack - result.buffers["model:CPU_REPACK"]) < MIB // 100
    else:
        assert est.ram.repack == result.buffers.get("model:CPU_REPACK", 0) == 0
        assert set(result.buffers) & {"model:CPU_REPACK", "model:AMX"} == set()
        assert est.ram_reclaimable == 0  # every weight is read from the mapped file


def test_without_mmap_weights_are_read_into_an_own_buffer(
    tiny_fit_models: dict[str, Path], this_machine: Machine
) -> None:
    """use_mmap=False: no mapped span, so the repacked tensors are not held twice."""
    path = tiny_fit_models["llama-gqa-q4_0"]
    result = probe_load(path, n_ctx=4096, use_mmap=False)
    est = estimate(read_local(path), this_machine, n_ctx=4096, use_mmap=False)
    assert "model:CPU_Mapped" not in result.buffers and est.ram_reclaimable == 0
    assert abs(est.buffers_bytes / result.reported_total - 1) <= BUFFER_BAR
    assert abs(est.ram.weights / result.model_bytes - 1) < 0.01
    assert abs(est.resident_bytes / result.rss_growth - 1) <= RSS_BAR


def test_context_grows_kv_and_compute_but_not_weights(loads: dict[tuple[str, int], ProbeResult]) -> None:
    short, long = loads[("starter", 2048)], loads[("starter", 32768)]
    assert long.model_bytes == short.model_bytes
    assert long.kv_bytes == 16 * short.kv_bytes  # full-size SWA cache: every layer grows with n_ctx
    assert long.rss_growth > short.rss_growth + 400 * MIB


def test_parse_buffers_sums_per_kind_and_device() -> None:
    log = (
        "load_tensors:   CPU_Mapped model buffer size =   235.16 MiB\n"
        "load_tensors:   CPU_REPACK model buffer size =    12.66 MiB\n"
        "llama_kv_cache:        CPU KV buffer size =     6.00 MiB\n"
        "llama_kv_cache:        CPU KV buffer size =    30.00 MiB\n"
        "sched_reserve:        CPU compute buffer size =   514.50 MiB\n"
        "llama_context:        CPU  output buffer size =     1.00 MiB\n"
    )
    found = parse_buffers(log)
    assert found == {
        "model:CPU_Mapped": round(235.16 * MIB),
        "model:CPU_REPACK": round(12.66 * MIB),
        "KV:CPU": 36 * MIB,
        "compute:CPU": round(514.5 * MIB),
        "output:CPU": MIB,
    }


# --- KV cache rules (pure) ------------------------------------------------------------------------------


def shaped_meta(**overrides: object) -> ModelMeta:
    """A 4-layer GQA model header (no tensors needed for KV sizing)."""
    base = ModelMeta(
        source="shapes.gguf", architecture="llama", name=None, parameter_count=0, block_count=4,
        embedding_length=1024, feed_forward_length=2048, head_count=16, head_count_kv=(4, 4, 4, 4),
        key_length=64, value_length=64, context_length=32768, vocab_size=32000, file_type="Q4_K_M",
        has_chat_template=False,
    )  # fmt: skip
    return replace(base, **overrides)  # type: ignore[arg-type]


def test_kv_per_cell_honours_gqa() -> None:
    # f16: (4 KV heads x 64) for K and the same for V, 2 bytes each; 16 query heads do not count
    assert kv_bytes_per_cell(shaped_meta()) == (4 * 64 * 2 * 2,) * 4
    assert kv_bytes_per_cell(shaped_meta(head_count_kv=(16,) * 4)) == (16 * 64 * 2 * 2,) * 4


def test_kv_q8_0_and_q4_0_use_ggml_block_sizes() -> None:
    # q8_0 blocks: 32 values in 34 bytes; q4_0: 32 values in 18 bytes
    assert kv_bytes_per_cell(shaped_meta(), kv_type="q8_0", flash_attn=True) == (2 * 256 * 34 // 32,) * 4
    assert kv_bytes_per_cell(shaped_meta(), kv_type="q4_0", flash_attn=True) == (2 * 256 * 18 // 32,) * 4
    assert row_bytes("q8_0", 256) == 272


def test_kv_cells_are_padded_to_256() -> None:
    assert kv_cells_per_layer(shaped_meta(), n_ctx=1000) == (1024,) * 4
    assert kv_cells_per_layer(shaped_meta(), n_ctx=4096) == (4096,) * 4


def test_sliding_window_layers_keep_only_window_plus_ubatch_unless_full() -> None:
    meta = shaped_meta(sliding_window=512, sliding_window_pattern=(True, True, True, False))
    assert kv_cells_per_layer(meta, n_ctx=8192, swa_full=True) == (8192,) * 4
    # llama_kv_cache_iswa: GGML_PAD(min(n_ctx, n_swa + n_ubatch), 256)
    assert kv_cells_per_layer(meta, n_ctx=8192, n_ubatch=512, swa_full=False) == (1024, 1024, 1024, 8192)
    small = estimate(meta, x86_machine(), n_ctx=8192, swa_full=False)
    full = estimate(meta, x86_machine(), n_ctx=8192, swa_full=True)
    per_cell = 4 * 64 * 2 * 2
    assert small.ram.kv_cache == (3 * 1024 + 8192) * per_cell
    assert full.ram.kv_cache == 4 * 8192 * per_cell


def test_mla_caches_only_the_compressed_k() -> None:
    # deepseek2 with MLA: one KV "head" of kv_lora_rank + rope dims (576), no V cache
    meta = shaped_meta(
        head_count_kv=(1,) * 4, key_length=576, value_length=512, kv_lora_rank=512, key_length_mla=192,
        value_length_mla=128,
    )  # fmt: skip
    assert kv_bytes_per_cell(meta) == (576 * 2,) * 4


def test_variable_v_width_is_padded_without_flash_attention() -> None:
    meta = shaped_meta(head_count_kv=(4, 8, 4, 8))
    padded = kv_bytes_per_cell(meta, flash_attn=False)
    exact = kv_bytes_per_cell(meta, flash_attn=True)
    assert exact == (1024, 2048, 1024, 2048)
    assert padded == (512 + 1024, 2048, 512 + 1024, 2048)


# --- weights rules (pure) -------------------------------------------------------------------------------


def test_repack_types_follow_ggml_cpu() -> None:
    assert repack_types(x86_machine("avx", "avx2", "fma")) == {"Q4_0", "Q4_K", "IQ4_NL", "MXFP4"}
    assert "Q2_K" in repack_types(x86_machine("avx2", "avx512f"))
    assert repack_types(x86_machine("avx")) == frozenset()
    # a build loaded without extra buffer types (AMX builds) repacks nothing, whatever the CPU
    assert repack_types(replace(x86_machine("avx2", "avx512f"), llama_extra_buffers=False)) == frozenset()
    arm = Machine(
        ram=RamInfo(8 * 2**30, 6 * 2**30), cpu=CpuInfo("M2", "arm64", 8, 8, ("neon", "dotprod", "apple"))
    )
    assert {"Q8_0", "Q6_K", "Q4_K"} <= repack_types(arm)


def test_output_layer_is_offloaded_first() -> None:
    meta = shaped_meta()
    assert gpu_layer_set(meta, 0) == (frozenset(), False)
    assert gpu_layer_set(meta, 1) == (frozenset(), True)  # llama.cpp: n_gpu_layers=1 is the output layer
    assert gpu_layer_set(meta, 3) == (frozenset({2, 3}), True)
    assert gpu_layer_set(meta, 5) == (frozenset({0, 1, 2, 3}), True)


def test_starter_weights_split_between_mapped_file_and_repack(starter_model_path: Path) -> None:
    meta = read_local(starter_model_path)
    avx2 = estimate(meta, x86_machine("avx", "avx2"), n_ctx=2048)
    plain = estimate(meta, x86_machine(), n_ctx=2048)
    q4k = sum(t.n_bytes for t in meta.tensors if t.ggml_type == "Q4_K")
    assert plain.ram.repack == 0 and plain.ram.weights == meta.tensor_bytes
    # llama.cpp maps the whole file and repacks the Q4_K tensors into a copy; their mapped pages are never
    # read again (reclaimable): reported in CPU_Mapped, not needed
    assert avx2.ram.repack == q4k and avx2.ram_reclaimable == q4k
    assert avx2.ram.weights == meta.tensor_bytes
    assert avx2.buffers_bytes - avx2.ram_reclaimable == avx2.ram.total - avx2.ram.overhead
    # the compute buffer of the 262k vocabulary: n_vocab x n_ubatch f32 logits dominate (~514 MiB)
    assert 510 * MIB < avx2.ram.compute < 520 * MIB
    assert avx2.ram.output == 262144 * 4


def test_without_extra_buffers_every_weight_stays_in_the_mapped_file(starter_model_path: Path) -> None:
    meta = read_local(starter_model_path)
    avx2 = x86_machine("avx", "avx2")
    repacked = estimate(meta, avx2, n_ctx=2048)
    plain = estimate(meta, replace(avx2, llama_extra_buffers=False), n_ctx=2048)
    assert plain.ram.repack == 0 and plain.ram_reclaimable == 0
    assert plain.ram.weights == meta.tensor_bytes == repacked.ram.weights
    # llama.cpp reports the repacked copy on top of the mapped file; without it only the file
    assert repacked.buffers_bytes - plain.buffers_bytes == repacked.ram.repack > 0
    assert plain.resident_bytes < repacked.resident_bytes


def test_weights_scale_scales_weights_only(starter_model_path: Path) -> None:
    meta = read_local(starter_model_path)
    base = estimate(meta, x86_machine(), n_ctx=2048)
    half = estimate(meta, x86_machine(), n_ctx=2048, weights_scale=0.5)
    assert abs(half.ram.weights - base.ram.weights / 2) <= 1
    assert half.ram.kv_cache == base.ram.kv_cache and half.ram.compute == base.ram.compute


def test_flash_attention_shrinks_compute_at_long_context(starter_model_path: Path) -> None:
    meta = read_local(starter_model_path)
    meta = replace(meta, vocab_size=32000)  # let attention, not logits, dominate
    off = estimate(meta, x86_machine(), n_ctx=32768, flash_attn=False)
    on = estimate(meta, x86_machine(), n_ctx=32768, flash_attn=True)
    assert off.ram.compute > 4 * on.ram.compute


def test_bad_settings_are_refused(starter_model_path: Path) -> None:
    meta = read_local(starter_model_path)
    with pytest.raises(ValueError, match="KV cache type"):
        estimate(meta, x86_machine(), n_ctx=2048, kv_type="q3_k")
    with pytest.raises(ValueError, match="positive"):
        estimate(meta, x86_machine(), n_ctx=0)


def test_a_short_head_count_kv_is_broadcast_to_every_layer() -> None:
    """A header built by hand may give head_count_kv once: it applies to every layer, as in GGUF."""
    assert kv_bytes_per_cell(shaped_meta(head_count_kv=(4,))) == kv_bytes_per_cell(shaped_meta())
    assert kv_bytes_per_cell(shaped_meta(head_count_kv=())) == (0,) * 4
