"""Write small but real GGUF models (random weights, llama.cpp-loadable) and broken GGUF-like files for tests.

Models use a byte-level GPT-2 BPE tokenizer (256 byte tokens + a few merges + special tokens + fillers up to
n_vocab), so llama.cpp can tokenize any text. Tensor names and shapes follow llama.cpp's loaders for each
architecture; weights are N(0, 0.02) so generation stays finite.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFWriter
from gguf.constants import GGML_QUANT_SIZES, GGUF_MAGIC, GGMLQuantizationType, GGUFValueType, LlamaFileType
from gguf.quants import quantize

ARCHS = ("llama", "qwen3", "qwen3moe", "gemma3")
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
INJECTION_TEMPLATE = (
    "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    "{% for message in messages %}{{ message['content'] }}{% endfor %}"
)
_FILE_TYPES = {
    "F32": LlamaFileType.ALL_F32,
    "F16": LlamaFileType.MOSTLY_F16,
    "Q8_0": LlamaFileType.MOSTLY_Q8_0,
    "Q4_0": LlamaFileType.MOSTLY_Q4_0,
}
SPECIAL_TOKENS = ("<s>", "</s>", "<unk>", "<pad>", "<|im_start|>", "<|im_end|>")


@dataclass(frozen=True)
class TinySpec:
    """Shape of a tiny model. head_dim defaults to n_embd // n_head."""

    arch: str = "llama"
    n_layer: int = 2
    n_embd: int = 64
    n_ff: int = 128
    n_head: int = 4
    n_head_kv: int | list[int] = 2
    head_dim: int | None = None
    n_vocab: int = 512
    n_ctx_train: int = 2048
    n_expert: int = 4
    n_expert_used: int = 2
    n_ff_expert: int = 64
    sliding_window: int = 128
    tensor_type: str = "F32"  # F32, F16, Q8_0 or Q4_0 for the 2-D weights (norms stay F32)
    chat_template: str | None = CHATML_TEMPLATE
    tied_output: bool = False
    name: str | None = None
    seed: int = 0
    extra_kv: dict[str, Any] = field(default_factory=dict)
    drop_kv: tuple[str, ...] = ()  # keys left out ("{arch}" stands for the architecture written)
    arch_name: str | None = None  # general.architecture as written, when not `arch` (an unknown one)

    @property
    def hd(self) -> int:
        return self.head_dim or self.n_embd // self.n_head

    def kv_heads(self) -> list[int]:
        if isinstance(self.n_head_kv, list):
            return list(self.n_head_kv)
        return [self.n_head_kv] * self.n_layer


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (what byte-level BPE vocabularies store)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def tokenizer_vocab(n_vocab: int) -> tuple[list[str], list[int], list[str]]:
    """tokens, token types, merges for a byte-level BPE vocabulary of exactly n_vocab tokens."""
    byte_chars = [_bytes_to_unicode()[b] for b in range(256)]
    merges = ["Ġ t", "Ġ a", "h e", "i n", "Ġt he"]
    merged = ["Ġt", "Ġa", "he", "in", "Ġthe"]
    tokens = list(SPECIAL_TOKENS) + byte_chars + merged
    if n_vocab < len(tokens):
        raise ValueError(f"n_vocab must be at least {len(tokens)}")
    tokens += [f"<filler_{i}>" for i in range(n_vocab - len(tokens))]
    types = [3] * len(SPECIAL_TOKENS) + [1] * (n_vocab - len(SPECIAL_TOKENS))  # 3 = CONTROL, 1 = NORMAL
    return tokens, types, merges


def _weight(rng: np.random.Generator, shape: tuple[int, ...], ttype: str) -> tuple[np.ndarray, Any]:
    """A random weight in numpy (rows, cols) order, converted to ttype; returns (array, raw_dtype)."""
    data = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
    if ttype == "F32":
        return data, None
    if ttype == "F16":
        return data.astype(np.float16), None
    qtype = GGMLQuantizationType[ttype]
    return quantize(data, qtype), qtype


def _norm(n: int) -> np.ndarray:
    return np.ones(n, dtype=np.float32)


def _tensors(spec: TinySpec) -> list[tuple[str, np.ndarray, Any]]:
    rng = np.random.default_rng(spec.seed)
    t = spec.tensor_type
    hd, n_embd = spec.hd, spec.n_embd
    out: list[tuple[str, np.ndarray, Any]] = []

    def add(name: str, shape: tuple[int, ...] | None = None, norm: int | None = None) -> None:
        if norm is not None:
            out.append((name, _norm(norm), None))
        else:
            assert shape is not None
            out.append((name, *_weight(rng, shape, t)))

    add("token_embd.weight", (spec.n_vocab, n_embd))
    add("output_norm.weight", norm=n_embd)
    if not spec.tied_output and spec.arch != "gemma3":
        add("output.weight", (spec.n_vocab, n_embd))
    for i, n_kv in enumerate(spec.kv_heads()):
        p = f"blk.{i}."
        add(p + "attn_norm.weight", norm=n_embd)
        add(p + "attn_q.weight", (spec.n_head * hd, n_embd))
        add(p + "attn_k.weight", (n_kv * hd, n_embd))
        add(p + "attn_v.weight", (n_kv * hd, n_embd))
        add(p + "attn_output.weight", (n_embd, spec.n_head * hd))
        if spec.arch in ("qwen3", "qwen3moe", "gemma3"):
            add(p + "attn_q_norm.weight", norm=hd)
            add(p + "attn_k_norm.weight", norm=hd)
        if spec.arch == "gemma3":
            add(p + "post_attention_norm.weight", norm=n_embd)
            add(p + "post_ffw_norm.weight", norm=n_embd)
        add(p + "ffn_norm.weight", norm=n_embd)
        if spec.arch == "qwen3moe":
            # the router stays F32, as in real MoE GGUFs
            out.append((p + "ffn_gate_inp.weight", *_weight(rng, (spec.n_expert, n_embd), "F32")))
            add(p + "ffn_gate_exps.weight", (spec.n_expert, spec.n_ff_expert, n_embd))
            add(p + "ffn_up_exps.weight", (spec.n_expert, spec.n_ff_expert, n_embd))
            add(p + "ffn_down_exps.weight", (spec.n_expert, n_embd, spec.n_ff_expert))
        else:
            add(p + "ffn_gate.weight", (spec.n_ff, n_embd))
            add(p + "ffn_up.weight", (spec.n_ff, n_embd))
            add(p + "ffn_down.weight", (n_embd, spec.n_ff))
    return out


def _add_metadata(writer: GGUFWriter, spec: TinySpec) -> None:
    arch = spec.arch
    writer.add_name(spec.name or f"tiny-{arch}")
    writer.add_file_type(int(_FILE_TYPES[spec.tensor_type]))
    writer.add_quantization_version(2)
    writer.add_context_length(spec.n_ctx_train)
    writer.add_embedding_length(spec.n_embd)
    writer.add_block_count(spec.n_layer)
    writer.add_feed_forward_length(spec.n_ff)
    writer.add_head_count(spec.n_head)
    kv = spec.kv_heads()
    writer.add_head_count_kv(kv if isinstance(spec.n_head_kv, list) else kv[0])
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_dimension_count(spec.hd)
    writer.add_rope_freq_base(10000.0)
    if spec.head_dim is not None or arch in ("qwen3", "qwen3moe", "gemma3"):
        writer.add_key_length(spec.hd)
        writer.add_value_length(spec.hd)
    if arch == "qwen3moe":
        writer.add_expert_count(spec.n_expert)
        writer.add_expert_used_count(spec.n_expert_used)
        writer.add_expert_feed_forward_length(spec.n_ff_expert)
    if arch == "gemma3":
        writer.add_sliding_window(spec.sliding_window)
    tokens, types, merges = tokenizer_vocab(spec.n_vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index("<s>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>" if spec.chat_template else "</s>"))
    writer.add_unk_token_id(tokens.index("<unk>"))
    writer.add_pad_token_id(tokens.index("<pad>"))
    writer.add_add_bos_token(False)
    if spec.chat_template is not None:
        writer.add_chat_template(spec.chat_template)
    for key, value in spec.extra_kv.items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        else:
            writer.add_array(key, value)


def write_tiny_model(path: Path, spec: TinySpec | None = None, **overrides: Any) -> Path:
    """Write one model (or its shards, with split_max_tensors=N in overrides) and return the (first) path."""
    split_max_tensors = int(overrides.pop("split_max_tensors", 0))
    spec = replace(spec or TinySpec(), **overrides)
    if spec.arch not in ARCHS:
        raise ValueError(f"unknown tiny arch {spec.arch!r}; known: {ARCHS}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(path, spec.arch_name or spec.arch, split_max_tensors=split_max_tensors)
    _add_metadata(writer, spec)
    for key in spec.drop_kv:
        writer.kv_data[0].pop(key.format(arch=spec.arch_name or spec.arch), None)
    for name, array, raw_dtype in _tensors(spec):
        writer.add_tensor(name, array, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    shards = writer.format_shard_names(path)
    return shards[0]


def spec_for_size(arch: str, target_bytes: int, *, tensor_type: str = "F16", **overrides: Any) -> TinySpec:
    """A spec whose weights take about target_bytes (big enough for llama.cpp's buffers to dominate noise)."""
    block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[tensor_type]]
    bytes_per_weight = type_size / block
    base = TinySpec(
        arch=arch,
        n_layer=8,
        n_embd=512,
        n_head=8,
        n_head_kv=2,
        n_ff=1536,
        n_vocab=8192,
        n_expert=8,
        n_expert_used=2,
        n_ff_expert=512,
        tensor_type=tensor_type,
    )
    base = replace(base, **overrides)
    hd = base.hd
    per_layer = (
        base.n_embd * hd * (2 * base.n_head + 2 * base.n_head_kv if isinstance(base.n_head_kv, int) else 0)
    )
    ffn = 3 * base.n_embd * (base.n_ff_expert * base.n_expert if arch == "qwen3moe" else base.n_ff)
    embd = base.n_vocab * base.n_embd * (1 if arch == "gemma3" else 2)
    layers = max(1, round((target_bytes / bytes_per_weight - embd) / (per_layer + ffn)))
    return replace(base, n_layer=layers)


# --- broken files -------------------------------------------------------------------------------------


def _gguf_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def write_absurd_array_gguf(path: Path, *, key: str = "tokenizer.ggml.tokens", length: int = 1 << 40) -> Path:
    """Valid magic and counts, then a string array that claims `length` elements (file is a few KB)."""
    body = struct.pack("<IIQQ", GGUF_MAGIC, 3, 0, 2)
    body += (
        _gguf_string("general.architecture") + struct.pack("<I", GGUFValueType.STRING) + _gguf_string("llama")
    )
    body += _gguf_string(key) + struct.pack("<IIQ", GGUFValueType.ARRAY, GGUFValueType.STRING, length)
    body += _gguf_string("a") * 100 + b"\0" * 4096
    path.write_bytes(body)
    return path


def write_corrupt_gguf(path: Path, *, seed: int = 1) -> Path:
    """Valid magic and version followed by random garbage (absurd counts/lengths/types)."""
    rng = np.random.default_rng(seed)
    garbage = rng.integers(0, 256, size=64 * 1024, dtype=np.uint8).tobytes()
    path.write_bytes(struct.pack("<II", GGUF_MAGIC, 3) + struct.pack("<QQ", 7, 3) + garbage)
    return path


def write_truncated_copy(source: Path, dest: Path, *, keep_bytes: int) -> Path:
    """The first keep_bytes of source (cut mid-header or mid-tensor-data)."""
    with open(source, "rb") as src:
        dest.write_bytes(src.read(keep_bytes))
    return dest


def write_text_file(path: Path) -> Path:
    path.write_text("<html><body>404 Not Found</body></html>\n" * 20)
    return path
