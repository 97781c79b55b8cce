"""Model metadata from GGUF headers, local or on the Hub, without reading tensor data.

Public API: `read_local(path)`, `read_remote(repo_id, filename, ...)` and
`read_model("path" or "owner/repo/file.gguf")`.
Split models (`name-00001-of-00003.gguf`) are read shard by shard and summed. The byte-level parsing is in
`gguf_header` (bounded, streaming); the Hub transport in `gguf_remote`.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gguf.constants import MODEL_ARCH_NAMES, GGMLQuantizationType, Keys, LlamaFileType

from kaihe_desktop.core.errors import (
    UNLOADABLE,
    CorruptGGUFError,
    ModelFileError,
    ModelNotFoundError,
    UnloadableModelError,
)
from kaihe_desktop.core.gguf.header import (
    ArraySummary,
    GGUFHeader,
    RawTensor,
    check_tensor_data,
    parse_header,
)
from kaihe_desktop.core.gguf.model_meta import ModelMeta, TensorInfo
from kaihe_desktop.core.gguf.remote import open_remote

if TYPE_CHECKING:
    import threading

    from kaihe_desktop.core.hub.retry import RetryPolicy

CHAT_TEMPLATE_CAP = 256 * 1024  # longer templates count as present, but their text is not kept
MAX_BLOCK_COUNT = 4096  # beyond this the header is corrupt rather than merely unloadable
LLAMA_MAX_LAYERS = 512  # llama.cpp aborts (GGML_ASSERT) on a block_count of 0 or above this
# The architecture names llama.cpp knows: gguf's list (the one llama.cpp's gguf-py carries), plus those the
# llama.cpp bundled with llama-cpp-python 0.3.36 (src/llama-arch.cpp) knows ahead of the gguf 0.19 release.
# fmt: off
LLAMA_CPP_ONLY_ARCHITECTURES = frozenset({
    "bailingmoe3", "cohere2moe", "deepseek32", "deepseek4", "dflash", "dots3note", "eagle3",
    "gemma4-assistant", "glm5-next", "granite_swa", "graniteswitch", "hrm_text", "hy_v3", "hy_v4", "kimi-k3",
    "laguna", "maple", "mellum", "minimax-01", "minimax-m3", "muse-glimmer", "nanbeige", "pockettts",
    "qwen3tts", "qwen4exp", "spark2_5", "talkie",
})
# fmt: on
KNOWN_ARCHITECTURES = frozenset(MODEL_ARCH_NAMES.values()) | LLAMA_CPP_ONLY_ARCHITECTURES
# llm_arch_is_recurrent: no attention at all, so no attention.head_count to require.
RECURRENT_ARCHITECTURES = frozenset({"mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7"})
SPLIT_RE = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")

# Architectures whose sliding-window layout llama.cpp hard-codes in its loader (src/llama-model.cpp,
# `hparams.set_swa_pattern(period)`): a layer il uses the window when il % period < period - 1, so with
# period 6 every 6th layer (5, 11, ...) is global. A `{arch}.attention.sliding_window_pattern` key overrides
# the period (or gives a per-layer bool array).
# Values: (period, default window, or None when the window must be in the file).
ARCH_SWA_DEFAULTS: dict[str, tuple[int, int | None]] = {
    "gemma2": (2, 4096),
    "gemma3": (6, None),
    "gemma3n": (5, None),
    "gemma-embedding": (6, None),
    "cohere2": (4, None),
    "gpt-oss": (2, None),
    "llama4": (4, 8192),  # chunked attention, 3 chunked : 1 full
}


def swa_layers(period: int, n_layer: int) -> tuple[bool, ...]:
    """llama_hparams::set_swa_pattern(period) without dense_first: True where the layer is sliding-window."""
    return tuple(period == 0 or (il % period < period - 1) for il in range(n_layer))


def split_shard_names(filename: str) -> list[str] | None:
    """All shard names of a split model given any one of them, or None for a single-file model."""
    match = SPLIT_RE.match(filename)
    if match is None:
        return None
    count = int(match["count"])
    if count < 1:
        return None
    return [f"{match['stem']}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]


# --- local ----------------------------------------------------------------------------------------


def read_local(path: Path) -> ModelMeta:
    """Metadata of a local GGUF (any shard of a split model selects the whole model)."""
    path = Path(path)
    if not path.exists():
        raise ModelNotFoundError(f"{path} does not exist")
    if path.is_dir():
        raise ModelNotFoundError(f"{path} is a folder, not a GGUF file")
    _check_regular(path, os.stat(path).st_mode)
    shards = split_shard_names(path.name)
    paths = [path] if shards is None else [path.with_name(s) for s in shards]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise ModelNotFoundError(
            f"{path.name} is one shard of a {len(paths)}-part model, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing from {path.parent}"
        )
    for shard in paths:
        _check_regular(shard, os.stat(shard).st_mode)  # before open(): opening a FIFO would block
    headers = []
    for shard in paths:
        with open(shard, "rb") as stream:
            info = os.fstat(stream.fileno())
            _check_regular(shard, info.st_mode)  # replaced between the stat and the open
            header = parse_header(stream, name=shard.name, file_size=info.st_size)
        check_tensor_data(header)
        headers.append(header)
    return build_meta(headers, source=str(paths[0]))


_FILE_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
)


def _check_regular(path: Path, mode: int) -> None:
    """Devices and pipes have no size and never end (/dev/zero): refuse them before reading a byte."""
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a file")
    raise ModelFileError(f"{path} is not a regular file ({kind})")


# --- remote ---------------------------------------------------------------------------------------


def read_remote(
    repo_id: str,
    filename: str,
    *,
    revision: str = "main",
    token: str | bool | None = None,
    endpoint: str | None = None,
    timeout: float = 10.0,
    retry: RetryPolicy | None = None,
    cancel: threading.Event | None = None,
) -> ModelMeta:
    """Metadata of a GGUF on the Hub, fetching only its header(s) with HTTP Range requests.

    429/5xx/lost connections are retried per ``retry`` (hub_retry's defaults when None); ``cancel`` stops
    a wait between tries.
    """
    shards = split_shard_names(Path(filename).name)
    prefix = filename[: len(filename) - len(Path(filename).name)]
    names = [filename] if shards is None else [prefix + s for s in shards]
    headers = []
    for name in names:
        with open_remote(
            repo_id,
            name,
            revision=revision,
            token=token,
            endpoint=endpoint,
            timeout=timeout,
            retry=retry,
            cancel=cancel,
        ) as reader:
            header = parse_header(reader, name=f"{repo_id}/{name}")
            header.file_size = reader.size  # known once the first range has come back
        check_tensor_data(header)
        headers.append(header)
    return build_meta(headers, source=f"{repo_id}/{names[0]}")


def read_model(path_or_repo: str, *, revision: str = "main", token: str | bool | None = None) -> ModelMeta:
    """A local path when it exists (or looks like one), else "owner/repo/path/in/repo.gguf" on the Hub."""
    local = Path(path_or_repo).expanduser()
    if local.exists() or path_or_repo.startswith((".", "/", "~", "\\")) or local.is_absolute():
        return read_local(local)
    parts = path_or_repo.strip("/").split("/")
    if len(parts) < 3 or not parts[-1].endswith(".gguf"):
        raise ModelNotFoundError(
            f"{path_or_repo} is neither an existing file nor a Hub file of the form owner/repo/file.gguf"
        )
    return read_remote("/".join(parts[:2]), "/".join(parts[2:]), revision=revision, token=token)


# --- header(s) -> ModelMeta ---------------------------------------------------------------------------


def _layer_of(tensor_name: str) -> int | None:
    if tensor_name.startswith("blk."):
        index = tensor_name.split(".", 2)[1]
        if index.isdigit():
            return int(index)
    return None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _per_layer(value: Any, n_layer: int, *, key: str, source: str) -> tuple[int, ...] | None:
    """A scalar broadcast to every layer, or a per-layer array checked for length."""
    if value is None:
        return None
    if isinstance(value, ArraySummary):
        raise CorruptGGUFError(f"{source} has a corrupt header: {key} is an array of {value.length:,} values")
    if isinstance(value, list):
        if len(value) < n_layer or not all(isinstance(v, int) for v in value):
            raise CorruptGGUFError(
                f"{source} has a corrupt header: {key} has {len(value)} values for {n_layer} layers"
            )
        return tuple(int(v) for v in value[:n_layer])
    if isinstance(value, int):
        return (value,) * n_layer
    raise CorruptGGUFError(f"{source} has a corrupt header: {key} is {type(value).__name__}, not a number")


def _file_type_name(value: Any, tensors: Sequence[RawTensor]) -> str | None:
    if isinstance(value, int):
        try:
            name = LlamaFileType(value).name
        except ValueError:
            name = ""
        if name:
            return "F32" if name == "ALL_F32" else name.removeprefix("MOSTLY_")
    # Guess: the type holding the most bytes among 2-D weights.
    totals: dict[GGMLQuantizationType, int] = {}
    for tensor in tensors:
        if len(tensor.shape) >= 2:
            totals[tensor.ggml_type] = totals.get(tensor.ggml_type, 0) + tensor.n_bytes
    return max(totals, key=lambda t: totals[t]).name if totals else None


def _sliding_window(
    fields: dict[str, Any], arch: str, n_layer: int, source: str
) -> tuple[int | None, tuple[bool, ...] | None]:
    window = _int_or_none(fields.get(Keys.Attention.SLIDING_WINDOW.format(arch=arch)))
    pattern_value = fields.get(Keys.Attention.SLIDING_WINDOW_PATTERN.format(arch=arch))
    period, default_window = ARCH_SWA_DEFAULTS.get(arch, (None, None))
    if window is None:
        window = default_window
    if not window:
        return None, None
    if isinstance(pattern_value, list):
        if len(pattern_value) < n_layer:
            raise CorruptGGUFError(
                f"{source} has a corrupt header: sliding_window_pattern has {len(pattern_value)} values "
                f"for {n_layer} layers"
            )
        return window, tuple(bool(v) for v in pattern_value[:n_layer])
    if isinstance(pattern_value, int) and not isinstance(pattern_value, bool):
        period = pattern_value
    if period is None:
        return window, (True,) * n_layer  # a window with no known pattern: llama.cpp windows every layer
    return window, swa_layers(period, n_layer)


def check_loadable(fields: dict[str, Any], arch: str, name: str) -> None:
    """Refuse what llama.cpp's loader (llama_model::load_hparams) refuses, naming the key, so that no fit plan
    or import is made for a model that cannot run. Only what it requires: its other keys have defaults.
    """

    def unloadable(why: str) -> UnloadableModelError:
        return UnloadableModelError(f"{name}: {UNLOADABLE}: {why}")

    if arch not in KNOWN_ARCHITECTURES:
        raise unloadable(f"unknown architecture {arch!r}")
    if arch == "clip":  # a vision projector: llama.cpp reads no hyperparameters from it
        return
    values: dict[str, int] = {}
    for template in (Keys.LLM.CONTEXT_LENGTH, Keys.LLM.EMBEDDING_LENGTH, Keys.LLM.BLOCK_COUNT):
        key = template.format(arch=arch)
        if key not in fields:
            raise unloadable(f"{key} is missing")
        number = _int_or_none(fields[key])
        if number is None:
            raise unloadable(f"{key} is {type(fields[key]).__name__}, not a number")
        values[template] = number
    blocks, width = values[Keys.LLM.BLOCK_COUNT], values[Keys.LLM.EMBEDDING_LENGTH]
    if blocks == 0 or LLAMA_MAX_LAYERS < blocks <= MAX_BLOCK_COUNT:  # beyond: corrupt, said by build_meta
        key = Keys.LLM.BLOCK_COUNT.format(arch=arch)
        raise unloadable(f"{key} is {blocks} (llama.cpp takes 1 to {LLAMA_MAX_LAYERS} blocks)")
    if width <= 0:
        raise unloadable(f"{Keys.LLM.EMBEDDING_LENGTH.format(arch=arch)} is {width}")
    if arch not in RECURRENT_ARCHITECTURES:  # every other architecture has attention layers
        key = Keys.Attention.HEAD_COUNT.format(arch=arch)
        heads = fields.get(key)
        if heads is None:
            raise unloadable(f"{key} is missing")
        numbers = [_int_or_none(v) for v in (heads if isinstance(heads, list) else [heads])]
        if None not in numbers and not any(n is not None and n > 0 for n in numbers):
            raise unloadable(f"{key} is 0")  # a value of the wrong type is corrupt, said by build_meta
    if Keys.Tokenizer.MODEL not in fields:
        raise unloadable(f"{Keys.Tokenizer.MODEL} is missing (no tokenizer)")


def build_meta(headers: Sequence[GGUFHeader], *, source: str) -> ModelMeta:
    """Combine the headers of all shards (first shard carries the metadata) into one ModelMeta."""
    first = headers[0]
    fields = first.fields
    name = first.source
    split_count = fields.get(Keys.Split.LLM_KV_SPLIT_COUNT)
    if isinstance(split_count, int) and split_count != len(headers):
        raise CorruptGGUFError(
            f"{name} says the model has {split_count} shards, but {len(headers)} were read"
        )
    arch = fields.get(Keys.General.ARCHITECTURE)
    if not isinstance(arch, str) or not arch:
        raise CorruptGGUFError(f"{name} has no general.architecture: it is not a model GGUF")
    check_loadable(fields, arch, name)

    def key(template: str) -> Any:
        return fields.get(template.format(arch=arch))

    raw_tensors = [t for h in headers for t in h.tensors]
    tensors = tuple(
        TensorInfo(t.name, t.ggml_type.name, t.n_elements, t.n_bytes, _layer_of(t.name)) for t in raw_tensors
    )
    layers = [t.layer for t in tensors if t.layer is not None]
    block_count = _int_or_none(key(Keys.LLM.BLOCK_COUNT))
    if block_count is None:
        block_count = max(layers) + 1 if layers else 0
    if not 0 <= block_count <= MAX_BLOCK_COUNT:
        raise CorruptGGUFError(f"{name} has a corrupt header: block_count is {block_count}")

    by_name = {t.name: t for t in raw_tensors}
    token_embd = by_name.get("token_embd.weight")
    embedding_length = _int_or_none(key(Keys.LLM.EMBEDDING_LENGTH))
    if embedding_length is None:
        embedding_length = token_embd.shape[0] if token_embd else 0

    head_count_value = key(Keys.Attention.HEAD_COUNT)
    heads = _per_layer(head_count_value, block_count, key="head_count", source=name) or (0,) * block_count
    heads_kv = _per_layer(key(Keys.Attention.HEAD_COUNT_KV), block_count, key="head_count_kv", source=name)
    head_count: int | tuple[int, ...] = (
        heads if isinstance(head_count_value, list) else (heads[0] if heads else 0)
    )
    n_head0 = heads[0] if heads else 0
    default_head_dim = embedding_length // n_head0 if n_head0 else 0
    key_length = _int_or_none(key(Keys.Attention.KEY_LENGTH)) or default_head_dim
    value_length = _int_or_none(key(Keys.Attention.VALUE_LENGTH)) or default_head_dim

    ff_value = key(Keys.LLM.FEED_FORWARD_LENGTH)
    ff = _per_layer(ff_value, block_count, key="feed_forward_length", source=name)
    feed_forward: int | tuple[int, ...] = (
        ff if isinstance(ff_value, list) and ff is not None else _int_or_none(ff_value) or 0
    )

    tokens = fields.get(Keys.Tokenizer.LIST)
    vocab_size = _int_or_none(key(Keys.LLM.VOCAB_SIZE))
    if vocab_size is None:
        if isinstance(tokens, (list, ArraySummary)):
            vocab_size = len(tokens) if isinstance(tokens, list) else tokens.length
        else:
            vocab_size = token_embd.shape[1] if token_embd and len(token_embd.shape) > 1 else 0

    def token_text(id_key: str) -> str | None:
        token_id = _int_or_none(fields.get(id_key))
        if isinstance(tokens, list) and token_id is not None and 0 <= token_id < len(tokens):
            return str(tokens[token_id])
        return None

    template = fields.get(Keys.Tokenizer.CHAT_TEMPLATE)
    has_template = isinstance(template, str) and bool(template.strip())
    window, pattern = _sliding_window(fields, arch, block_count, name)

    layer_bytes = [0] * max(block_count, max(layers) + 1 if layers else 0)
    non_layer = 0
    for tensor in tensors:
        if tensor.layer is None:
            non_layer += tensor.n_bytes
        else:
            layer_bytes[tensor.layer] += tensor.n_bytes

    return ModelMeta(
        source=source,
        architecture=arch,
        name=fields.get(Keys.General.NAME) if isinstance(fields.get(Keys.General.NAME), str) else None,
        parameter_count=sum(t.n_elements for t in tensors),
        block_count=block_count,
        embedding_length=embedding_length,
        feed_forward_length=feed_forward,
        head_count=head_count,
        head_count_kv=heads_kv or heads,
        key_length=key_length,
        value_length=value_length,
        context_length=_int_or_none(key(Keys.LLM.CONTEXT_LENGTH)) or 0,
        vocab_size=vocab_size,
        file_type=_file_type_name(fields.get(Keys.General.FILE_TYPE), raw_tensors),
        has_chat_template=has_template,
        chat_template=template
        if isinstance(template, str) and has_template and len(template) <= CHAT_TEMPLATE_CAP
        else None,
        sliding_window=window,
        sliding_window_pattern=pattern,
        expert_count=_int_or_none(key(Keys.LLM.EXPERT_COUNT)) or 0,
        expert_used_count=_int_or_none(key(Keys.LLM.EXPERT_USED_COUNT)) or 0,
        kv_lora_rank=_int_or_none(key(Keys.Attention.KV_LORA_RANK)),
        key_length_mla=_int_or_none(key(Keys.Attention.KEY_LENGTH_MLA)),
        value_length_mla=_int_or_none(key(Keys.Attention.VALUE_LENGTH_MLA)),
        layer_tensor_bytes=tuple(layer_bytes),
        non_layer_tensor_bytes=non_layer,
        token_embd_bytes=token_embd.n_bytes if token_embd else 0,
        output_bytes=by_name["output.weight"].n_bytes if "output.weight" in by_name else 0,
        expert_tensor_bytes=sum(t.n_bytes for t in tensors if "_exps." in t.name),
        file_size_bytes=sum(h.file_size or h.tensor_data_end for h in headers),
        header_size_bytes=first.data_offset,
        n_shards=len(headers),
        tensors=tensors,
        bos_token=token_text(Keys.Tokenizer.BOS_ID),
        eos_token=token_text(Keys.Tokenizer.EOS_ID),
    )


__all__ = [
    "build_meta",
    "check_loadable",
    "read_local",
    "read_model",
    "read_remote",
    "split_shard_names",
    "swa_layers",
]
