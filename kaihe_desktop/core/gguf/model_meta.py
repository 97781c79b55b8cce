"""What a GGUF model is, as data: everything the fit estimator needs, read from the header only."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class TensorInfo:
    name: str
    ggml_type: str  # "Q4_K", "F16", ...
    n_elements: int
    n_bytes: int
    layer: int | None  # the block index for "blk.N.*" tensors, None for the rest


@dataclass(frozen=True)
class ModelMeta:
    """One model, summed over all its shards. Per-layer values are tuples of length block_count."""

    source: str  # path or "repo/file" it was read from (first shard)
    architecture: str
    name: str | None
    parameter_count: int  # from tensor shapes (sum of elements)
    block_count: int
    embedding_length: int
    feed_forward_length: int | tuple[int, ...]
    head_count: int | tuple[int, ...]
    head_count_kv: tuple[int, ...]  # per layer (scalar in the file is broadcast)
    key_length: int  # per head
    value_length: int  # per head
    context_length: int  # trained
    vocab_size: int
    file_type: str | None  # "Q4_K_M", ... from general.file_type, or guessed from the dominant tensor type
    has_chat_template: bool
    chat_template: str | None = None
    sliding_window: int | None = None
    sliding_window_pattern: tuple[bool, ...] | None = None  # per layer: True where the layer uses SWA
    expert_count: int = 0
    expert_used_count: int = 0
    kv_lora_rank: int | None = None  # MLA (deepseek2)
    key_length_mla: int | None = None
    value_length_mla: int | None = None
    layer_tensor_bytes: tuple[int, ...] = ()  # per block
    non_layer_tensor_bytes: int = 0
    token_embd_bytes: int = 0
    output_bytes: int = 0  # output.weight (0 when tied to the embeddings)
    expert_tensor_bytes: int = 0  # bytes of *_exps tensors (all experts)
    file_size_bytes: int = 0  # all shards
    header_size_bytes: int = 0  # tensor-data offset of the first shard
    n_shards: int = 1
    tensors: tuple[TensorInfo, ...] = field(default=(), repr=False)
    bos_token: str | None = None
    eos_token: str | None = None

    @property
    def tensor_bytes(self) -> int:
        return sum(self.layer_tensor_bytes) + self.non_layer_tensor_bytes

    @property
    def is_moe(self) -> bool:
        return self.expert_count > 1

    def to_dict(self, *, with_tensors: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_tensors:
            data.pop("tensors")
        data.pop("chat_template")
        return data
