"""pytest plugin: session-wide tiny GGUF models and broken model files (see tiny_gguf.py for what they are).

Small models (< 1 MB, F16) load in llama.cpp in milliseconds. `write_tiny_model` is a factory for custom
shapes; `sized_model` writes 30-120 MB models once per session for tests that measure llama.cpp's buffers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.tiny_gguf import (
    INJECTION_TEMPLATE,
    TinySpec,
    spec_for_size,
    write_absurd_array_gguf,
    write_corrupt_gguf,
    write_text_file,
    write_truncated_copy,
)
from tests.helpers.tiny_gguf import (
    write_tiny_model as _write_tiny_model,
)

# Shapes of the session models (tests may read them to check metadata).
TINY_LLAMA = TinySpec(arch="llama", n_layer=4, n_embd=128, n_head=8, n_head_kv=2, n_ff=256, tensor_type="F16")
TINY_QWEN3 = TinySpec(
    arch="qwen3", n_layer=3, n_embd=128, n_head=4, n_head_kv=2, head_dim=64, n_ff=256, tensor_type="F16"
)
TINY_MOE = TinySpec(
    arch="qwen3moe", n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256, n_expert=8, n_expert_used=2,
    n_ff_expert=64, tensor_type="F16",
)  # fmt: skip
TINY_GEMMA3 = TinySpec(
    arch="gemma3", n_layer=7, n_embd=128, n_head=4, n_head_kv=1, head_dim=32, n_ff=256, sliding_window=64,
    n_ctx_train=4096, tensor_type="F16", chat_template=None,
)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_llama_path(tiny_models_dir: Path) -> Path:
    """llama with GQA (8 query heads, 2 KV heads), 4 layers, ChatML template, F16."""
    return _write_tiny_model(tiny_models_dir / "tiny-llama.gguf", TINY_LLAMA)


@pytest.fixture(scope="session")
def tiny_qwen3_path(tiny_models_dir: Path) -> Path:
    """qwen3 (QK-norm, head_dim 64 != n_embd / n_head), 3 layers, F16."""
    return _write_tiny_model(tiny_models_dir / "tiny-qwen3.gguf", TINY_QWEN3)


@pytest.fixture(scope="session")
def tiny_moe_path(tiny_models_dir: Path) -> Path:
    """qwen3moe: 8 experts, 2 used per token, 2 layers, F16."""
    return _write_tiny_model(tiny_models_dir / "tiny-qwen3moe.gguf", TINY_MOE)


@pytest.fixture(scope="session")
def tiny_gemma3_path(tiny_models_dir: Path) -> Path:
    """gemma3: 7 layers, sliding window 64 on all but layer 5 (every 6th is global), no chat template."""
    return _write_tiny_model(tiny_models_dir / "tiny-gemma3.gguf", TINY_GEMMA3)


@pytest.fixture(scope="session")
def corrupt_gguf_path(tiny_models_dir: Path) -> Path:
    """GGUF magic and version, then random bytes."""
    return write_corrupt_gguf(tiny_models_dir / "corrupt.gguf")


@pytest.fixture(scope="session")
def absurd_gguf_path(tiny_models_dir: Path) -> Path:
    """A 5 KB file whose tokenizer.ggml.tokens array claims 2^40 elements."""
    return write_absurd_array_gguf(tiny_models_dir / "absurd.gguf")


@pytest.fixture(scope="session")
def truncated_gguf_path(tiny_models_dir: Path, tiny_llama_path: Path) -> Path:
    """tiny_llama cut in the middle of its header (inside the token list)."""
    return write_truncated_copy(tiny_llama_path, tiny_models_dir / "truncated-header.gguf", keep_bytes=2000)


@pytest.fixture(scope="session")
def truncated_data_gguf_path(tiny_models_dir: Path, tiny_llama_path: Path) -> Path:
    """tiny_llama with its header intact but the last 1000 bytes of tensor data missing."""
    size = tiny_llama_path.stat().st_size
    return write_truncated_copy(
        tiny_llama_path, tiny_models_dir / "truncated-data.gguf", keep_bytes=size - 1000
    )


@pytest.fixture(scope="session")
def text_file_path(tiny_models_dir: Path) -> Path:
    """An HTML error page saved as model.gguf (what a failed download often leaves)."""
    return write_text_file(tiny_models_dir / "model.gguf")


@pytest.fixture(scope="session")
def split_model_dir(tiny_models_dir: Path) -> Path:
    """A folder holding tiny-split-0000{1,2,3}-of-00003.gguf (a tiny llama split by tensor count)."""
    folder = tiny_models_dir / "split"
    _write_tiny_model(folder / "tiny-split.gguf", TINY_LLAMA, split_max_tensors=14)
    return folder


@pytest.fixture(scope="session")
def injection_gguf_path(tiny_models_dir: Path) -> Path:
    """A loadable tiny llama whose chat template tries to reach Python internals through Jinja."""
    return _write_tiny_model(
        tiny_models_dir / "tiny-injection.gguf", TINY_LLAMA, chat_template=INJECTION_TEMPLATE, seed=3
    )


@pytest.fixture(scope="session")
def write_tiny_model() -> Callable[..., Path]:
    """Factory: write_tiny_model(tmp_dir, arch="llama", **TinySpec fields) -> path of the (first) file."""

    def write(tmp_dir: Path, *, arch: str = "llama", filename: str | None = None, **sizes: Any) -> Path:
        return _write_tiny_model(Path(tmp_dir) / (filename or f"tiny-{arch}.gguf"), arch=arch, **sizes)

    return write


@pytest.fixture(scope="session")
def sized_model(tiny_models_dir: Path) -> Callable[..., Path]:
    """Factory: sized_model(arch, target_bytes, tensor_type="F16", **overrides) -> path, written once per
    session per argument set (for fit-accuracy tests that need 30-120 MB models)."""
    cache: dict[tuple[Any, ...], Path] = {}

    def make(arch: str, target_bytes: int, *, tensor_type: str = "F16", **overrides: Any) -> Path:
        key = (arch, target_bytes, tensor_type, tuple(sorted(overrides.items())))
        if key not in cache:
            spec = spec_for_size(arch, target_bytes, tensor_type=tensor_type, **overrides)
            name = f"sized-{arch}-{target_bytes // 2**20}MiB-{tensor_type}-{len(cache)}.gguf"
            cache[key] = _write_tiny_model(tiny_models_dir / name, spec)
        return cache[key]

    return make
