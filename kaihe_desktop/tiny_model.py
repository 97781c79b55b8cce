"""A tiny but real llama GGUF (random weights, a byte-level BPE tokenizer) that llama.cpp loads and runs.

What ``kaihe-desktop --self-test`` generates a few tokens with, and what ``--screenshots`` fills a library
with, without the network. Written with the ``gguf`` package (a dependency); the shapes follow llama.cpp's
llama loader. The tests have a fuller writer (tests/helpers/tiny_gguf.py); the app cannot import tests/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFWriter
from gguf.constants import GGMLQuantizationType, LlamaFileType
from gguf.quants import quantize

FILE_TYPES = {
    "F32": LlamaFileType.ALL_F32,
    "F16": LlamaFileType.MOSTLY_F16,
    "Q8_0": LlamaFileType.MOSTLY_Q8_0,
    "Q4_0": LlamaFileType.MOSTLY_Q4_0,
}
SPECIAL = ("<s>", "</s>", "<unk>", "<pad>", "<|im_start|>", "<|im_end|>")
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _byte_chars() -> list[str]:
    """GPT-2's reversible byte → printable character map, in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    by_byte = {b: chr(c) for b, c in zip(printable, chars, strict=True)}
    return [by_byte[b] for b in range(256)]


def write_tiny_llama(
    path: Path,
    *,
    quant: str = "F16",
    name: str = "tiny-llama",
    n_layer: int = 2,
    n_embd: int = 64,
    n_ff: int = 128,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_vocab: int = 512,
    n_ctx_train: int = 2048,
    seed: int = 0,
) -> Path:
    """Write the model to ``path`` (F32, F16, Q8_0 or Q4_0 weights; norms stay F32) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(path, "llama")
    hd = n_embd // n_head
    writer.add_name(name)
    writer.add_file_type(int(FILE_TYPES[quant]))
    writer.add_quantization_version(2)
    writer.add_context_length(n_ctx_train)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_dimension_count(hd)
    writer.add_rope_freq_base(10000.0)
    merged = ["Ġt", "Ġa", "he", "in", "Ġthe"]
    tokens = list(SPECIAL) + _byte_chars() + merged
    tokens += [f"<filler_{i}>" for i in range(n_vocab - len(tokens))]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3] * len(SPECIAL) + [1] * (n_vocab - len(SPECIAL)))
    writer.add_token_merges(["Ġ t", "Ġ a", "h e", "i n", "Ġt he"])
    writer.add_bos_token_id(tokens.index("<s>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_unk_token_id(tokens.index("<unk>"))
    writer.add_pad_token_id(tokens.index("<pad>"))
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)

    rng = np.random.default_rng(seed)

    def weight(tensor: str, shape: tuple[int, int]) -> None:
        data = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
        raw: Any = None
        if quant == "F16":
            data = data.astype(np.float16)
        elif quant != "F32":
            raw = GGMLQuantizationType[quant]
            data = quantize(data, raw)
        writer.add_tensor(tensor, data, raw_dtype=raw)

    def norm(tensor: str) -> None:
        writer.add_tensor(tensor, np.ones(n_embd, dtype=np.float32))

    weight("token_embd.weight", (n_vocab, n_embd))
    norm("output_norm.weight")
    weight("output.weight", (n_vocab, n_embd))
    for i in range(n_layer):
        p = f"blk.{i}."
        norm(p + "attn_norm.weight")
        weight(p + "attn_q.weight", (n_head * hd, n_embd))
        weight(p + "attn_k.weight", (n_head_kv * hd, n_embd))
        weight(p + "attn_v.weight", (n_head_kv * hd, n_embd))
        weight(p + "attn_output.weight", (n_embd, n_head * hd))
        norm(p + "ffn_norm.weight")
        weight(p + "ffn_gate.weight", (n_ff, n_embd))
        weight(p + "ffn_up.weight", (n_ff, n_embd))
        weight(p + "ffn_down.weight", (n_embd, n_ff))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


__all__ = ["write_tiny_llama"]
