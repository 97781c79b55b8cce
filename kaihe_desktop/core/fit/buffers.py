"""The KV cache and compute buffer models of the memory estimator (fit/estimate.py), as llama.cpp sizes them.

KV cache: per layer, cells x (head_count_kv x key_length) for K and the same with value_length for V, in the
KV type's bytes per element (fit/kv_types.py, ggml's block layout); cells = n_ctx padded to 256
(llama_context), and sliding-window layers n_swa + n_ubatch (llama_kv_cache_iswa) unless the SWA cache is
full-size.
Compute: the ggml graph allocator's peak for one micro-batch, as three phases fitted on real loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from kaihe_desktop.core.fit.kv_types import KVCacheType
from kaihe_desktop.core.gguf.model_meta import ModelMeta

KV_PAD: Final = 256  # llama_context pads n_ctx (and the SWA cache) to a multiple of 256 cells


def pad(value: int, multiple: int) -> int:
    return (value + multiple - 1) // multiple * multiple


def row_bytes(ggml_type: str, n_elements: int) -> int:
    """Bytes of n_elements of a ggml type (whole blocks), like ggml_row_size."""
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[ggml_type.upper()]]
    return (n_elements + block - 1) // block * size


# --- KV cache --------------------------------------------------------------------------------------------


def kv_cells_per_layer(
    meta: ModelMeta, *, n_ctx: int, n_ubatch: int = 512, swa_full: bool = True
) -> tuple[int, ...]:
    """Cells of each layer's KV cache: n_ctx padded to 256; SWA layers n_swa + n_ubatch unless full-size."""
    n_ctx_pad = pad(max(n_ctx, 1), KV_PAD)
    pattern = meta.sliding_window_pattern or (False,) * meta.block_count
    window = meta.sliding_window or 0
    swa_cells = n_ctx_pad if swa_full or not window else pad(min(n_ctx_pad, window + n_ubatch), KV_PAD)
    return tuple(
        swa_cells if (i < len(pattern) and pattern[i] and window) else n_ctx_pad
        for i in range(meta.block_count)
    )


def kv_bytes_per_cell(
    meta: ModelMeta, *, kv_type: KVCacheType | str = KVCacheType.F16, flash_attn: bool = False
) -> tuple[int, ...]:
    """K plus V bytes one cell takes in each layer (GQA: head_count_kv heads of key/value_length each).

    Without flash attention llama.cpp stores V transposed and pads every layer's V to the widest layer.
    MLA models (deepseek2 and kin) cache only the compressed K row; V is a view of it.
    """
    kv = KVCacheType.parse(kv_type)
    heads_kv = tuple(meta.head_count_kv[: meta.block_count])
    if len(heads_kv) < meta.block_count:  # a hand-built header: repeat the last value (0 when none)
        heads_kv += (heads_kv[-1] if heads_kv else 0,) * (meta.block_count - len(heads_kv))
    is_mla = bool(meta.key_length_mla and meta.value_length_mla)
    k_dims = [h * meta.key_length for h in heads_kv]
    v_dims = [0 if is_mla else h * meta.value_length for h in heads_kv]
    if not flash_attn and v_dims and len(set(v_dims)) > 1:
        v_dims = [max(v_dims)] * len(v_dims)
    return tuple(kv.row_bytes(k) + (kv.row_bytes(v) if v else 0) for k, v in zip(k_dims, v_dims, strict=True))


def kv_cache_bytes(
    meta: ModelMeta,
    *,
    n_ctx: int,
    kv_type: KVCacheType | str = KVCacheType.F16,
    flash_attn: bool = False,
    n_ubatch: int = 512,
    swa_full: bool = True,
) -> tuple[int, ...]:
    """KV cache bytes of each layer at this context."""
    cells = kv_cells_per_layer(meta, n_ctx=n_ctx, n_ubatch=n_ubatch, swa_full=swa_full)
    per_cell = kv_bytes_per_cell(meta, kv_type=kv_type, flash_attn=flash_attn)
    return tuple(c * b for c, b in zip(cells, per_cell, strict=True))


# --- compute buffers -------------------------------------------------------------------------------------


def _max_int(value: int | tuple[int, ...]) -> int:
    return max(value) if isinstance(value, tuple) else int(value)


@dataclass(frozen=True)
class Phases:
    attention: int
    feed_forward: int
    logits: int

    @property
    def peak(self) -> int:
        return max(self.attention, self.feed_forward, self.logits)


def compute_phases(
    meta: ModelMeta, *, n_kv: int, n_tokens: int, n_outputs: int, flash_attn: bool, logits: bool = True
) -> Phases:
    """Peak bytes of ggml's graph allocator in the three phases of a forward pass (all f32 activations).

    Fitted on llama.cpp's reported compute buffers of real loads (tiny llama/qwen3/MoE models over n_ctx
    512..32768, n_ubatch 256/512, 16 and 8 heads, n_embd 256..1024, n_ff 512..4096, vocab 4k..262k,
    flash attention on and off); the terms are the tensors alive at each peak:
    - attention without flash attention: the KQ scores, n_kv x n_tokens per head, plus the f32 KQ mask
      (one more "head"); with flash attention only the f16 mask; plus the token activations
      (residual, norm, Q, K, V and positions);
    - feed-forward: gate, up and their product (n_ff wide; for MoE n_ff_exp x experts used), plus the mask,
      which lives through every layer;
    - logits: n_vocab x n_outputs, plus two rows of activations.
    """
    n_embd = meta.embedding_length
    n_head = _max_int(meta.head_count)
    q_dim = n_head * meta.key_length
    kv_dim = max(meta.head_count_kv or (0,)) * max(meta.key_length, meta.value_length)
    activations = n_tokens * 4 * (4 * n_embd + q_dim + 2 * kv_dim + 5)
    # models mixing sliding-window and global layers (iSWA) keep two masks, one per cache
    n_masks = 2 if meta.sliding_window_pattern and len(set(meta.sliding_window_pattern)) > 1 else 1
    if flash_attn:
        mask = n_masks * n_kv * n_tokens * 2
        attention = mask + activations
    else:
        mask = n_masks * n_kv * n_tokens * 4
        attention = n_kv * n_tokens * n_head * 4 + mask + activations
    if meta.is_moe:
        ff_exp = _expert_ff_length(meta)
        ffn_width = 3 * ff_exp * max(meta.expert_used_count, 1) + 2 * meta.expert_count
    else:
        ffn_width = 3 * _max_int(meta.feed_forward_length)
    feed_forward = mask + n_tokens * 4 * (ffn_width + 3 * n_embd)
    logits_bytes = (meta.vocab_size * n_outputs * 4 + 2 * n_embd * n_tokens * 4) if logits else 0
    return Phases(attention=attention, feed_forward=feed_forward, logits=logits_bytes)


def iswa_extra_scores(meta: ModelMeta, *, n_kv: int, n_tokens: int, flash_attn: bool) -> int:
    """Pages a real prompt touches beyond the reserved peak in iSWA models (gemma3): one more KQ-sized block.

    Measured, not derived: RSS after a full micro-batch on gemma3 (the starter and a tiny gemma3) exceeds
    the modelled attention peak by n_kv x n_tokens x n_head f32, while the reserved size matches the model;
    the graphs of sliding-window and global layers are laid out at different offsets.
    """
    pattern = meta.sliding_window_pattern
    if flash_attn or not pattern or len(set(pattern)) < 2:
        return 0
    return n_kv * n_tokens * _max_int(meta.head_count) * 4


def _expert_ff_length(meta: ModelMeta) -> int:
    """Width of one expert's feed-forward, from the expert tensors' size (ModelMeta lacks the key)."""
    if meta.expert_count and meta.embedding_length:
        for tensor in meta.tensors:
            if tensor.name.endswith("ffn_up_exps.weight"):
                return tensor.n_elements // (meta.expert_count * meta.embedding_length)
    return _max_int(meta.feed_forward_length)


__all__ = [
    "KV_PAD",
    "Phases",
    "compute_phases",
    "iswa_extra_scores",
    "kv_bytes_per_cell",
    "kv_cache_bytes",
    "kv_cells_per_layer",
    "pad",
    "row_bytes",
]
