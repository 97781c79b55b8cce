"""The engine's messages: KV types checked when load options are built and passed to llama.cpp as ggml ids,
stop reasons as one enum whose values are what the JSON and the history write."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import llama_cpp
import pytest

from kaihe_desktop.core.engine import protocol as p
from kaihe_desktop.core.engine.client import EngineClient
from kaihe_desktop.core.engine.loading import LoadOverrides, decide
from kaihe_desktop.core.engine.worker import llama_kwargs
from kaihe_desktop.core.errors import UnknownKVCacheTypeError
from kaihe_desktop.core.fit.kv_types import KVCacheType
from kaihe_desktop.core.gguf.meta import read_local
from kaihe_desktop.core.machine.probe import probe
from tests.helpers.tiny_gguf import write_tiny_model


def test_load_options_take_a_kv_type_name_and_keep_the_enum() -> None:
    options = p.LoadOptions(path="m.gguf", n_ctx=512, kv_type="Q4_1")  # type: ignore[arg-type]
    assert options.kv_type is KVCacheType.Q4_1
    assert p.LoadOptions(path="m.gguf", n_ctx=512).kv_type is KVCacheType.F16


@pytest.mark.parametrize("name", ["q3_k", "fp8", "q8"])
def test_an_unknown_kv_type_fails_when_the_options_are_built(name: str) -> None:
    with pytest.raises(UnknownKVCacheTypeError, match=f"unknown KV cache type '{name}'.*bf16.*iq4_nl"):
        p.LoadOptions(path="m.gguf", n_ctx=512, kv_type=name)  # type: ignore[arg-type]
    with pytest.raises(UnknownKVCacheTypeError):
        LoadOverrides(kv_type=name)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kv", "ggml_id"),
    [
        (KVCacheType.F16, llama_cpp.GGML_TYPE_F16),
        (KVCacheType.F32, llama_cpp.GGML_TYPE_F32),
        (KVCacheType.BF16, 30),  # GGML_TYPE_BF16 in ggml.h; llama-cpp-python 0.3.x has no constant for it
        (KVCacheType.Q8_0, llama_cpp.GGML_TYPE_Q8_0),
        (KVCacheType.Q4_1, llama_cpp.GGML_TYPE_Q4_1),
        (KVCacheType.IQ4_NL, llama_cpp.GGML_TYPE_IQ4_NL),
        (KVCacheType.Q5_1, llama_cpp.GGML_TYPE_Q5_1),
    ],
)
def test_the_engine_passes_ggmls_id_for_k_and_v(kv: KVCacheType, ggml_id: int) -> None:
    kwargs = llama_kwargs(p.LoadOptions(path="m.gguf", n_ctx=2048, kv_type=kv, flash_attn=True))
    assert kwargs["type_k"] == kwargs["type_v"] == ggml_id
    assert kwargs["flash_attn"] is True and kwargs["n_ctx"] == 2048


def test_a_decided_load_carries_the_planned_kv_type(tiny_llama_path: Path) -> None:
    decision = decide(
        tiny_llama_path,
        read_local(tiny_llama_path),
        probe(),
        overrides=LoadOverrides(n_ctx=1024, kv_type="bf16"),  # type: ignore[arg-type]
    )
    assert decision.options.kv_type is KVCacheType.BF16 is decision.plan.kv_type  # type: ignore[union-attr]
    assert llama_kwargs(decision.options)["type_k"] == 30


def test_load_options_and_events_pickle_across_the_pipe() -> None:
    options = p.LoadOptions(path="m.gguf", n_ctx=512, kv_type=KVCacheType.IQ4_NL)
    assert pickle.loads(pickle.dumps(options)) == options
    done = p.Done(p.StopReason.CONTEXT_FULL, 1, 2, 0.1, 0.2)
    assert pickle.loads(pickle.dumps(done)).stop_reason is p.StopReason.CONTEXT_FULL


def test_stop_reason_values_are_the_saved_strings() -> None:
    assert {r.value for r in p.StopReason} == {
        "eos", "length", "context_full", "stopped", "stop_sequence", "crashed",
    }  # fmt: skip
    assert json.dumps({"stop_reason": p.StopReason.STOPPED}) == '{"stop_reason": "stopped"}'
    assert p.StopReason("length") is p.StopReason.LENGTH


def test_a_quantized_kv_cache_loads_and_generates(tmp_path: Path) -> None:
    """llama.cpp takes the id the engine sends: q4_1 with flash attention (64-wide heads: whole blocks)."""
    model = write_tiny_model(
        tmp_path / "llama-64.gguf", arch="llama", n_layer=2, n_embd=128, n_head=2, n_head_kv=1, n_ff=256,
        tensor_type="F16",
    )  # fmt: skip
    options = p.LoadOptions(
        path=str(model), n_ctx=512, kv_type=KVCacheType.Q4_1, flash_attn=True, n_threads=1
    )
    with EngineClient(log_path=tmp_path / "engine.log") as client:
        loaded = client.load(options)
        assert loaded.options.kv_type is KVCacheType.Q4_1
        result = client.generate("ab", sampling=p.SamplingSettings(temperature=0.0, max_tokens=2, seed=1))
        assert isinstance(result.stop_reason, p.StopReason)
        assert result.stop_reason in (p.StopReason.LENGTH, p.StopReason.EOS)
