"""GGUF metadata from local files: the real starter model, tiny models of several architectures (cross-checked
against gguf.GGUFReader and against llama.cpp itself), split models, and every kind of bad file."""

from __future__ import annotations

import io
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import llama_cpp
import pytest
from gguf import GGUFReader

from kaihe_desktop.core.errors import (
    CorruptGGUFError,
    ModelFileError,
    ModelNotFoundError,
    NotGGUFError,
    TruncatedGGUFError,
    UnloadableModelError,
)
from kaihe_desktop.core.gguf.header import MAX_HEADER_BYTES, parse_header
from kaihe_desktop.core.gguf.meta import check_loadable, read_local, read_model, split_shard_names, swa_layers
from kaihe_desktop.core.gguf.model_meta import ModelMeta
from tests.helpers.model_fixtures import TINY_GEMMA3, TINY_LLAMA, TINY_MOE, TINY_QWEN3
from tests.helpers.tiny_gguf import TinySpec, write_tiny_model


def _reader_truth(path: Path) -> tuple[int, int, int]:
    """(data offset, parameter count, tensor bytes) as gguf's own reader sees the file."""
    reader = GGUFReader(path)
    return (
        reader.data_offset,
        sum(int(t.n_elements) for t in reader.tensors),
        sum(int(t.n_bytes) for t in reader.tensors),
    )


@pytest.fixture(scope="module")
def starter_meta(starter_model_path: Path) -> ModelMeta:
    return read_local(starter_model_path)


# --- the real starter model -----------------------------------------------------------------------


def test_starter_model_metadata(starter_meta: ModelMeta, starter_model_path: Path) -> None:
    meta = starter_meta
    assert meta.architecture == "gemma3"
    assert meta.name == "Gemma 3 270m"
    assert meta.block_count == 18
    assert meta.embedding_length == 640
    assert meta.feed_forward_length == 2048
    assert meta.head_count == 4
    assert meta.head_count_kv == (1,) * 18
    assert (meta.key_length, meta.value_length) == (256, 256)
    assert meta.context_length == 32768
    assert meta.vocab_size == 262144
    assert meta.file_type == "Q4_K_M"
    assert meta.has_chat_template is False and meta.chat_template is None
    assert (meta.bos_token, meta.eos_token) == ("<bos>", "<eos>")
    assert meta.file_size_bytes == starter_model_path.stat().st_size
    assert meta.n_shards == 1 and not meta.is_moe
    # the 262k-token vocabulary makes a 6.5 MB header
    assert 6_000_000 < meta.header_size_bytes < 7_000_000


def test_starter_sliding_window_every_sixth_layer_global(starter_meta: ModelMeta) -> None:
    assert starter_meta.sliding_window == 512
    pattern = starter_meta.sliding_window_pattern
    assert pattern is not None and len(pattern) == 18
    assert [i for i, swa in enumerate(pattern) if not swa] == [5, 11, 17]


def test_starter_sizes_add_up(starter_meta: ModelMeta) -> None:
    # (gguf.GGUFReader would take ~10 s here: it decodes all 262k tokens; llama.cpp cross-checks below.)
    meta = starter_meta
    assert len(meta.tensors) == 236
    # header + tensor data fill the file, up to the 32-byte alignment padding between tensors
    slack = meta.file_size_bytes - meta.header_size_bytes - meta.tensor_bytes
    assert 0 <= slack < 32 * len(meta.tensors)
    # embeddings are tied: no output.weight, and token_embd is the biggest non-layer tensor
    assert meta.output_bytes == 0
    assert 0 < meta.token_embd_bytes <= meta.non_layer_tensor_bytes
    assert len(meta.layer_tensor_bytes) == 18 and min(meta.layer_tensor_bytes) > 0


def test_starter_metadata_matches_llama_cpp(starter_meta: ModelMeta, starter_model_path: Path) -> None:
    llm = llama_cpp.Llama(model_path=str(starter_model_path), n_ctx=256, verbose=False)
    try:
        model = llm.model
        assert llama_cpp.llama_model_n_layer(model) == starter_meta.block_count
        assert llama_cpp.llama_model_n_ctx_train(model) == starter_meta.context_length
        assert llama_cpp.llama_model_n_embd(model) == starter_meta.embedding_length
        assert llama_cpp.llama_model_n_swa(model) == starter_meta.sliding_window
        assert llama_cpp.llama_model_n_params(model) == starter_meta.parameter_count
        assert llama_cpp.llama_model_size(model) == starter_meta.tensor_bytes
        assert llm.n_vocab() == starter_meta.vocab_size
    finally:
        llm.close()


# --- tiny models of several architectures -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "spec"),
    [
        ("tiny_llama_path", TINY_LLAMA),
        ("tiny_qwen3_path", TINY_QWEN3),
        ("tiny_moe_path", TINY_MOE),
        ("tiny_gemma3_path", TINY_GEMMA3),
    ],
)
def test_tiny_model_metadata(fixture: str, spec: TinySpec, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(fixture)
    meta = read_local(path)
    assert meta.architecture == spec.arch
    assert meta.name == f"tiny-{spec.arch}"
    assert meta.block_count == spec.n_layer
    assert meta.embedding_length == spec.n_embd
    assert meta.feed_forward_length == spec.n_ff
    assert meta.head_count == spec.n_head
    assert meta.head_count_kv == tuple(spec.kv_heads())
    assert meta.key_length == meta.value_length == spec.hd
    assert meta.context_length == spec.n_ctx_train
    assert meta.vocab_size == spec.n_vocab
    assert meta.file_type == "F16"
    assert meta.has_chat_template is (spec.chat_template is not None)
    assert meta.chat_template == spec.chat_template
    assert meta.bos_token == "<s>"
    data_offset, n_params, tensor_bytes = _reader_truth(path)
    assert (meta.header_size_bytes, meta.parameter_count, meta.tensor_bytes) == (
        data_offset,
        n_params,
        tensor_bytes,
    )
    assert meta.file_size_bytes == path.stat().st_size
    assert sum(meta.layer_tensor_bytes) + meta.non_layer_tensor_bytes == tensor_bytes


@pytest.mark.parametrize(
    "fixture", ["tiny_llama_path", "tiny_qwen3_path", "tiny_moe_path", "tiny_gemma3_path"]
)
def test_tiny_models_load_and_generate_in_llama_cpp(fixture: str, request: pytest.FixtureRequest) -> None:
    """The tiny models are real: llama.cpp loads them, agrees with our metadata, and generates."""
    path: Path = request.getfixturevalue(fixture)
    meta = read_local(path)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, verbose=False)
    try:
        model = llm.model
        assert llama_cpp.llama_model_n_layer(model) == meta.block_count
        assert llama_cpp.llama_model_n_embd(model) == meta.embedding_length
        assert llama_cpp.llama_model_n_ctx_train(model) == meta.context_length
        assert llama_cpp.llama_model_n_head_kv(model) == meta.head_count_kv[0]
        assert llama_cpp.llama_model_n_params(model) == meta.parameter_count
        assert llama_cpp.llama_model_size(model) == meta.tensor_bytes
        assert llm.n_vocab() == meta.vocab_size
        out = llm("The weather today is", max_tokens=4, temperature=0.0)
        assert out["usage"]["completion_tokens"] >= 1
    finally:
        llm.close()


def test_moe_expert_metadata(tiny_moe_path: Path) -> None:
    meta = read_local(tiny_moe_path)
    assert (meta.expert_count, meta.expert_used_count) == (8, 2)
    assert meta.is_moe
    expert_tensors = [t for t in meta.tensors if "_exps." in t.name]
    assert len(expert_tensors) == 3 * TINY_MOE.n_layer
    # gate/up/down experts: 3 * n_expert * n_embd * n_ff_expert F16 weights per layer
    per_layer = 3 * 8 * TINY_MOE.n_embd * TINY_MOE.n_ff_expert * 2
    assert meta.expert_tensor_bytes == per_layer * TINY_MOE.n_layer
    assert meta.expert_tensor_bytes < sum(meta.layer_tensor_bytes)


def test_gemma3_window_pattern_follows_llama_cpp(tiny_gemma3_path: Path) -> None:
    meta = read_local(tiny_gemma3_path)
    assert meta.sliding_window == 64
    assert meta.sliding_window_pattern == (True, True, True, True, True, False, True)
    llm = llama_cpp.Llama(model_path=str(tiny_gemma3_path), n_ctx=256, verbose=False)
    try:
        assert llama_cpp.llama_model_n_swa(llm.model) == 64
    finally:
        llm.close()


def test_models_without_window_have_no_pattern(tiny_llama_path: Path) -> None:
    meta = read_local(tiny_llama_path)
    assert meta.sliding_window is None and meta.sliding_window_pattern is None


def test_window_pattern_key_overrides_arch_default(tmp_path: Path) -> None:
    period = write_tiny_model(
        tmp_path / "p.gguf", TINY_GEMMA3, extra_kv={"gemma3.attention.sliding_window_pattern": 3}
    )
    assert read_local(period).sliding_window_pattern == swa_layers(3, TINY_GEMMA3.n_layer)
    flags = [True, False, True, False, True, False, False]
    per_layer = write_tiny_model(
        tmp_path / "a.gguf", TINY_GEMMA3, extra_kv={"gemma3.attention.sliding_window_pattern": flags}
    )
    assert read_local(per_layer).sliding_window_pattern == tuple(flags)


def test_swa_layers_matches_llama_cpp_formula() -> None:
    assert swa_layers(6, 12) == (True,) * 5 + (False,) + (True,) * 5 + (False,)
    assert swa_layers(2, 4) == (True, False, True, False)
    assert swa_layers(0, 3) == (True, True, True)


def test_per_layer_kv_heads(tmp_path: Path) -> None:
    path = write_tiny_model(tmp_path / "varkv.gguf", TINY_LLAMA, n_head_kv=[2, 1, 4, 8])
    meta = read_local(path)
    assert meta.head_count_kv == (2, 1, 4, 8)
    assert meta.head_count == 8
    kv_tensor_bytes = [t.n_bytes for t in meta.tensors if t.name.endswith("attn_k.weight")]
    assert kv_tensor_bytes == [n * TINY_LLAMA.hd * TINY_LLAMA.n_embd * 2 for n in (2, 1, 4, 8)]


def test_quantized_file_type_and_tensor_types(tmp_path: Path) -> None:
    path = write_tiny_model(tmp_path / "q8.gguf", TINY_LLAMA, tensor_type="Q8_0")
    meta = read_local(path)
    assert meta.file_type == "Q8_0"
    types = {t.ggml_type for t in meta.tensors}
    assert types == {"Q8_0", "F32"}  # norms stay F32
    assert _reader_truth(path)[2] == meta.tensor_bytes


def test_long_chat_template_is_flagged_but_not_kept(tmp_path: Path) -> None:
    template = "{{ messages }}" + " " * (300 * 1024)
    meta = read_local(write_tiny_model(tmp_path / "long.gguf", TINY_LLAMA, chat_template=template))
    assert meta.has_chat_template is True and meta.chat_template is None


def test_injection_template_is_read_as_plain_text(injection_gguf_path: Path) -> None:
    meta = read_local(injection_gguf_path)
    assert meta.chat_template is not None and "__subclasses__" in meta.chat_template


# --- split models -------------------------------------------------------------------------------------


def test_split_model_sums_all_shards(split_model_dir: Path, tiny_llama_path: Path) -> None:
    shards = sorted(split_model_dir.glob("*.gguf"))
    assert [p.name for p in shards] == [f"tiny-split-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    whole = read_local(tiny_llama_path)
    for shard in shards:  # any shard names the whole model
        meta = read_local(shard)
        assert meta.n_shards == 3
        assert meta.source == str(shards[0])
        assert meta.parameter_count == whole.parameter_count
        assert meta.tensor_bytes == whole.tensor_bytes
        assert meta.layer_tensor_bytes == whole.layer_tensor_bytes
        assert meta.file_size_bytes == sum(p.stat().st_size for p in shards)
        assert (meta.architecture, meta.block_count, meta.vocab_size) == ("llama", 4, TINY_LLAMA.n_vocab)


def test_split_model_loads_in_llama_cpp(split_model_dir: Path) -> None:
    first = split_model_dir / "tiny-split-00001-of-00003.gguf"
    llm = llama_cpp.Llama(model_path=str(first), n_ctx=256, verbose=False)
    try:
        assert llama_cpp.llama_model_n_params(llm.model) == read_local(first).parameter_count
    finally:
        llm.close()


def test_missing_shard_names_it(split_model_dir: Path, tmp_path: Path) -> None:
    for shard in ("tiny-split-00001-of-00003.gguf", "tiny-split-00003-of-00003.gguf"):
        shutil.copy(split_model_dir / shard, tmp_path / shard)
    with pytest.raises(ModelNotFoundError, match=r"tiny-split-00002-of-00003\.gguf is missing"):
        read_local(tmp_path / "tiny-split-00001-of-00003.gguf")


def test_split_shard_names() -> None:
    assert split_shard_names("m-00002-of-00002.gguf") == ["m-00001-of-00002.gguf", "m-00002-of-00002.gguf"]
    assert split_shard_names("model.gguf") is None


# --- bad files: one clear error naming the file and the problem --------------------------------------------


def test_text_file_is_not_gguf(text_file_path: Path) -> None:
    with pytest.raises(NotGGUFError, match=r"^model\.gguf is not a GGUF file \(starts with b'<htm'\)$"):
        read_local(text_file_path)


def test_empty_file_is_not_gguf(tmp_path: Path) -> None:
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(NotGGUFError, match=r"empty\.gguf is not a GGUF file"):
        read_local(tmp_path / "empty.gguf")


def test_truncated_header(truncated_gguf_path: Path) -> None:
    with pytest.raises(
        TruncatedGGUFError, match=r"truncated-header\.gguf is truncated: .* the file has 2,000 bytes"
    ):
        read_local(truncated_gguf_path)


def test_truncated_tensor_data(truncated_data_gguf_path: Path, tiny_llama_path: Path) -> None:
    full = tiny_llama_path.stat().st_size
    with pytest.raises(TruncatedGGUFError) as info:
        read_local(truncated_data_gguf_path)
    message = str(info.value)
    assert message.startswith("truncated-data.gguf is truncated: its tensor data ends at byte")
    assert f"{full:,}" in message and f"{full - 1000:,} bytes" in message


def test_corrupt_header(corrupt_gguf_path: Path) -> None:
    with pytest.raises(CorruptGGUFError, match=r"^corrupt\.gguf has an? (absurd|corrupt) header"):
        read_local(corrupt_gguf_path)


def test_absurd_array_is_refused_within_a_bounded_read(absurd_gguf_path: Path) -> None:
    with pytest.raises(
        CorruptGGUFError, match=r"absurd header: array of 2\^40 elements in key tokenizer\.ggml\.tokens"
    ):
        read_local(absurd_gguf_path)

    class CountingStream(io.BytesIO):
        consumed = 0

        def read(self, n: int | None = -1, /) -> bytes:
            data = super().read(n)
            self.consumed += len(data)
            return data

    # No file size given (as for a stream of unknown length): the cap alone must stop it before reading.
    stream = CountingStream(absurd_gguf_path.read_bytes() + b"\0" * (8 * 1024 * 1024))
    with pytest.raises(CorruptGGUFError, match="2\\^40 elements"):
        parse_header(stream, name="absurd.gguf")
    assert stream.consumed < 128 * 1024  # the array claims 2^43 bytes; the cap is 512 MiB
    assert MAX_HEADER_BYTES == 512 * 1024 * 1024


def test_unsupported_version(tmp_path: Path) -> None:
    path = tmp_path / "v9.gguf"
    path.write_bytes(b"GGUF" + (9).to_bytes(4, "little") + b"\0" * 64)
    with pytest.raises(CorruptGGUFError, match=r"v9\.gguf has GGUF version 9"):
        read_local(path)


def test_missing_path_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        read_local(tmp_path / "nope.gguf")
    with pytest.raises(ModelNotFoundError, match="is a folder"):
        read_local(tmp_path)


def test_read_model_dispatches_local_paths(tiny_llama_path: Path, tmp_path: Path) -> None:
    assert read_model(str(tiny_llama_path)).architecture == "llama"
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        read_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelNotFoundError, match="neither an existing file nor a Hub file"):
        read_model("missing.gguf")


def test_mla_fields(tmp_path: Path) -> None:
    extra = {
        "llama.attention.kv_lora_rank": 512,
        "llama.attention.key_length_mla": 192,
        "llama.attention.value_length_mla": 128,
    }
    meta = read_local(write_tiny_model(tmp_path / "mla.gguf", TINY_LLAMA, extra_kv=extra))
    assert (meta.kv_lora_rank, meta.key_length_mla, meta.value_length_mla) == (512, 192, 128)
    assert read_local(write_tiny_model(tmp_path / "plain.gguf", TINY_LLAMA)).kv_lora_rank is None


def test_sized_model_factory_writes_the_size_asked(sized_model: Callable[..., Path]) -> None:
    path = sized_model("qwen3", 32 * 1024 * 1024)
    assert sized_model("qwen3", 32 * 1024 * 1024) == path  # written once per session
    meta = read_local(path)
    assert meta.architecture == "qwen3"
    assert 0.75 < meta.tensor_bytes / (32 * 1024 * 1024) < 1.25


# --- models llama.cpp cannot load, and files that are not files ------------------------------------------

UNLOADABLE_CASES = {
    "no-heads": ({"drop_kv": ("{arch}.attention.head_count",)}, "llama.attention.head_count is missing"),
    "zero-heads": ({"extra_kv": {"llama.attention.head_count": 0}}, "llama.attention.head_count is 0"),
    "foo-arch": ({"arch_name": "foo"}, "unknown architecture 'foo'"),
    "no-ctx": ({"drop_kv": ("{arch}.context_length",)}, "llama.context_length is missing"),
    "no-blocks": ({"drop_kv": ("{arch}.block_count",)}, "llama.block_count is missing"),
    "zero-width": ({"extra_kv": {"llama.embedding_length": 0}}, "llama.embedding_length is 0"),
}


@pytest.mark.parametrize("case", sorted(UNLOADABLE_CASES))
def test_models_llama_cpp_cannot_load_are_refused_naming_the_key(case: str, tmp_path: Path) -> None:
    overrides, says = UNLOADABLE_CASES[case]
    path = write_tiny_model(tmp_path / f"{case}.gguf", TINY_LLAMA, **overrides)
    with pytest.raises(UnloadableModelError) as err:
        read_local(path)
    assert str(err.value) == f"{case}.gguf: llama.cpp cannot load it: {says}"
    with pytest.raises(ValueError, match="Failed to load model"):  # and llama.cpp agrees
        llama_cpp.Llama(str(path), n_ctx=64, verbose=False)


def test_loadability_follows_llama_cpp_rules() -> None:
    base = {"mamba.context_length": 1, "mamba.embedding_length": 8, "mamba.block_count": 2,
            "tokenizer.ggml.model": "gpt2"}  # fmt: skip
    check_loadable(base, "mamba", "m.gguf")  # recurrent: no attention heads to need
    check_loadable({}, "clip", "mmproj.gguf")  # a projector: llama.cpp reads no hyperparameters
    llama = {k.replace("mamba", "llama"): v for k, v in base.items()}
    check_loadable({**llama, "llama.attention.head_count": [0, 4]}, "llama", "m.gguf")  # per-layer, some >0
    with pytest.raises(UnloadableModelError, match=r"llama\.attention\.head_count is 0"):
        check_loadable({**llama, "llama.attention.head_count": [0, 0]}, "llama", "m.gguf")
    deep = {**llama, "llama.block_count": 600, "llama.attention.head_count": 4}
    with pytest.raises(UnloadableModelError, match=r"block_count is 600 \(llama\.cpp takes 1 to 512"):
        check_loadable(deep, "llama", "m.gguf")
    no_tokenizer = {k: v for k, v in llama.items() if k != "tokenizer.ggml.model"}
    with pytest.raises(UnloadableModelError, match=r"tokenizer\.ggml\.model is missing"):
        check_loadable({**no_tokenizer, "llama.attention.head_count": 4}, "llama", "m.gguf")


def test_devices_and_pipes_are_not_regular_files(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError) as err:
        read_local(Path("/dev/zero"))
    assert str(err.value) == "/dev/zero is not a regular file (a character device)"
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []
    reader = threading.Thread(target=lambda: outcome.extend(_raised(read_local, fifo)), daemon=True)
    reader.start()
    reader.join(10)  # opening a FIFO for reading blocks until a writer comes: it must never be opened
    assert not reader.is_alive(), "read_local blocked on a FIFO"
    assert [str(e) for e in outcome] == [f"{fifo} is not a regular file (a named pipe)"]


def _raised(fn: Callable[[Path], object], path: Path) -> list[BaseException]:
    try:
        fn(path)
    except ModelFileError as exc:
        return [exc]
    return []
