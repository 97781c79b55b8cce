"""One KV cache type table: ggml's ids and block sizes, a clear error for any other name, and estimates that
match what llama.cpp allocates when the engine's type_k/type_v reach it (real loads of a tiny model)."""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import pytest
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from kaihe_desktop.core.errors import KaiheError, UnknownKVCacheTypeError
from kaihe_desktop.core.fit.buffers import kv_bytes_per_cell
from kaihe_desktop.core.fit.kv_types import KV_TYPE_NAMES, KVCacheType
from kaihe_desktop.core.fit.plan import estimate, plan
from kaihe_desktop.core.gguf.meta import read_local
from kaihe_desktop.core.machine.probe import probe
from tests.helpers.llama_probe import probe_load
from tests.helpers.tiny_gguf import write_tiny_model

MIB = 2**20
PRINTED = MIB // 100  # llama.cpp prints buffer sizes in MiB with two decimals


@pytest.mark.parametrize("kv", list(KVCacheType))
def test_ids_and_block_layout_are_ggmls(kv: KVCacheType) -> None:
    ggml = GGMLQuantizationType[kv.value.upper()]
    assert kv.ggml_type == int(ggml)
    assert (kv.block_size, kv.type_size) == GGML_QUANT_SIZES[ggml]
    # llama-cpp-python's own constant, where its bindings define one (0.3.x has no GGML_TYPE_BF16)
    binding = getattr(llama_cpp, f"GGML_TYPE_{kv.value.upper()}", None)
    assert binding is None or binding == kv.ggml_type
    assert kv.row_bytes(64) == 64 // kv.block_size * kv.type_size


def test_bytes_per_element() -> None:
    assert KVCacheType.Q8_0.bytes_per_element == 34 / 32
    assert KVCacheType.Q4_0.bytes_per_element == 18 / 32
    assert KVCacheType.BF16.bytes_per_element == KVCacheType.F16.bytes_per_element == 2
    assert KVCacheType.F32.bytes_per_element == 4
    assert not KVCacheType.BF16.quantized and KVCacheType.IQ4_NL.quantized


def test_the_choices_are_llama_cpps_kv_cache_types() -> None:
    """common/arg.cpp's kv_cache_types: what --cache-type-k/-v accept."""
    assert set(KV_TYPE_NAMES) == {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"}
    assert KV_TYPE_NAMES[0] == "f16"


def test_parse_takes_any_case_and_the_enum_itself() -> None:
    assert KVCacheType.parse(" BF16 ") is KVCacheType.BF16
    assert KVCacheType.parse(KVCacheType.Q4_1) is KVCacheType.Q4_1
    assert str(KVCacheType.IQ4_NL) == "iq4_nl" and f"{KVCacheType.Q8_0}" == "q8_0"


@pytest.mark.parametrize("name", ["q3_k", "q8_1", "fp16", "", "q4_k"])
def test_an_unknown_type_is_a_clear_error_naming_the_choices(name: str) -> None:
    with pytest.raises(UnknownKVCacheTypeError) as info:
        KVCacheType.parse(name)
    error = info.value
    assert isinstance(error, KaiheError) and isinstance(error, ValueError)
    assert repr(name) in str(error) and "KV cache type" in str(error)
    for choice in KV_TYPE_NAMES:
        assert choice in str(error)
    assert error.name == name and error.choices == KV_TYPE_NAMES


def test_the_planner_refuses_an_unknown_type(tiny_llama_path: Path) -> None:
    meta = read_local(tiny_llama_path)
    machine = probe()
    with pytest.raises(UnknownKVCacheTypeError, match="q3_k"):
        plan(meta, machine, kv_type="q3_k")
    with pytest.raises(UnknownKVCacheTypeError, match="q3_k"):
        estimate(meta, machine, n_ctx=512, kv_type="q3_k")
    assert plan(meta, machine, kv_type="BF16").kv_type is KVCacheType.BF16


def test_each_type_sizes_the_cache_by_its_own_bytes(tiny_llama_path: Path) -> None:
    meta = read_local(tiny_llama_path)
    sizes = {kv: sum(kv_bytes_per_cell(meta, kv_type=kv, flash_attn=True)) for kv in KVCacheType}
    assert sizes[KVCacheType.BF16] == sizes[KVCacheType.F16] == sizes[KVCacheType.F32] // 2
    assert sizes[KVCacheType.Q4_1] > sizes[KVCacheType.Q4_0] == sizes[KVCacheType.IQ4_NL]
    assert len({sizes[KVCacheType.Q8_0], sizes[KVCacheType.Q5_1], sizes[KVCacheType.Q5_0]}) == 3


# --- against llama.cpp ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kv_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llama with 64-wide heads (whole blocks for every quantized type) and a KV cache of a few MiB."""
    return write_tiny_model(
        tmp_path_factory.mktemp("kv-types") / "llama-kv.gguf", arch="llama", n_layer=4, n_embd=256, n_head=4,
        n_head_kv=2, n_ff=512, n_vocab=4096, n_ctx_train=8192, tensor_type="F16",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kv_type", "flash_attn"),
    [("bf16", False), ("bf16", True), ("q4_1", True), ("iq4_nl", True), ("q5_0", True), ("f32", False)],
)
def test_estimated_kv_cache_matches_what_llama_cpp_allocates(
    kv_model: Path, kv_type: str, flash_attn: bool
) -> None:
    """The probe passes type_k/type_v exactly as the engine does (worker.llama_kwargs), so a type the
    engine dropped back to f16 would show here as a KV buffer of f16's size."""
    meta = read_local(kv_model)
    machine = probe()
    n_ctx = 4096
    est = estimate(meta, machine, n_ctx=n_ctx, kv_type=kv_type, flash_attn=flash_attn)
    result = probe_load(kv_model, n_ctx=n_ctx, kv_type=kv_type, flash_attn=flash_attn, n_gen=1)
    assert result.kv_bytes > 0
    assert abs(est.ram.kv_cache - result.kv_bytes) <= PRINTED, (kv_type, est.ram.kv_cache, result.kv_bytes)
    f16 = estimate(meta, machine, n_ctx=n_ctx, kv_type="f16", flash_attn=flash_attn).ram.kv_cache
    if kv_type != "bf16":
        assert abs(f16 - result.kv_bytes) > PRINTED  # not f16 in disguise
