"""ModelMeta of full-size models (7B, 14B, 70B, an MoE) built from their published shapes, tensor by tensor.

Far too big to write in a test, but the planner only needs the header: these are what gguf_meta.read_local
would return for the real files. Shapes are the models' config.json values (Mistral-7B-v0.3, Qwen2.5-14B,
Llama-3.3-70B, Qwen3-30B-A3B, Llama-3.2-3B); each tensor gets the type llama.cpp's Q4_K_M recipe gives it
(Q4_K for most weights, Q6_K for ffn_down/attn_v and the output, F32 norms), so file sizes land on the
published Q4_K_M sizes (7B: 4.37 GB, 14B: 8.99 GB, 70B: 42.5 GB) within 6% (a little above: the real
recipe keeps some ffn_down tensors at Q4_K).
"""

from __future__ import annotations

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from kaihe_desktop.core.gguf.model_meta import ModelMeta, TensorInfo


def _nbytes(ggml_type: str, n: int) -> int:
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[ggml_type]]
    return n // block * size


def synthetic_model(
    name: str,
    *,
    n_layer: int,
    n_embd: int,
    n_head: int,
    n_head_kv: int,
    n_ff: int,
    n_vocab: int,
    n_ctx_train: int,
    head_dim: int | None = None,
    n_expert: int = 0,
    n_expert_used: int = 0,
    n_ff_expert: int = 0,
    tied: bool = False,
    arch: str = "llama",
) -> ModelMeta:
    hd = head_dim or n_embd // n_head
    tensors: list[TensorInfo] = []

    def add(tname: str, ggml_type: str, n: int, layer: int | None) -> None:
        tensors.append(TensorInfo(tname, ggml_type, n, _nbytes(ggml_type, n), layer))

    add("token_embd.weight", "Q4_K", n_vocab * n_embd, None)
    add("output_norm.weight", "F32", n_embd, None)
    if not tied:
        add("output.weight", "Q6_K", n_vocab * n_embd, None)
    for i in range(n_layer):
        p = f"blk.{i}."
        add(p + "attn_norm.weight", "F32", n_embd, i)
        add(p + "attn_q.weight", "Q4_K", n_embd * n_head * hd, i)
        add(p + "attn_k.weight", "Q4_K", n_embd * n_head_kv * hd, i)
        add(p + "attn_v.weight", "Q6_K", n_embd * n_head_kv * hd, i)
        add(p + "attn_output.weight", "Q4_K", n_head * hd * n_embd, i)
        add(p + "ffn_norm.weight", "F32", n_embd, i)
        if n_expert:
            add(p + "ffn_gate_inp.weight", "F32", n_embd * n_expert, i)
            add(p + "ffn_gate_exps.weight", "Q4_K", n_expert * n_ff_expert * n_embd, i)
            add(p + "ffn_up_exps.weight", "Q4_K", n_expert * n_ff_expert * n_embd, i)
            add(p + "ffn_down_exps.weight", "Q6_K", n_expert * n_ff_expert * n_embd, i)
        else:
            add(p + "ffn_gate.weight", "Q4_K", n_embd * n_ff, i)
            add(p + "ffn_up.weight", "Q4_K", n_embd * n_ff, i)
            add(p + "ffn_down.weight", "Q6_K", n_ff * n_embd, i)
    layer_bytes = [0] * n_layer
    for t in tensors:
        if t.layer is not None:
            layer_bytes[t.layer] += t.n_bytes
    non_layer = sum(t.n_bytes for t in tensors if t.layer is None)
    by_name = {t.name: t for t in tensors}
    return ModelMeta(
        source=f"synthetic/{name}.gguf",
        architecture=arch,
        name=name,
        parameter_count=sum(t.n_elements for t in tensors),
        block_count=n_layer,
        embedding_length=n_embd,
        feed_forward_length=n_ff,
        head_count=n_head,
        head_count_kv=(n_head_kv,) * n_layer,
        key_length=hd,
        value_length=hd,
        context_length=n_ctx_train,
        vocab_size=n_vocab,
        file_type="Q4_K_M",
        has_chat_template=True,
        expert_count=n_expert,
        expert_used_count=n_expert_used,
        layer_tensor_bytes=tuple(layer_bytes),
        non_layer_tensor_bytes=non_layer,
        token_embd_bytes=by_name["token_embd.weight"].n_bytes,
        output_bytes=by_name["output.weight"].n_bytes if "output.weight" in by_name else 0,
        expert_tensor_bytes=sum(t.n_bytes for t in tensors if "_exps." in t.name),
        file_size_bytes=sum(t.n_bytes for t in tensors) + 8_000_000,
        header_size_bytes=8_000_000,
        tensors=tuple(tensors),
    )


def mistral_7b() -> ModelMeta:
    return synthetic_model(
        "Mistral-7B-v0.3", n_layer=32, n_embd=4096, n_head=32, n_head_kv=8, n_ff=14336, n_vocab=32768,
        n_ctx_train=32768,
    )  # fmt: skip


def qwen25_14b() -> ModelMeta:
    return synthetic_model(
        "Qwen2.5-14B", n_layer=48, n_embd=5120, n_head=40, n_head_kv=8, n_ff=13824, n_vocab=152064,
        n_ctx_train=32768, arch="qwen2",
    )  # fmt: skip


def llama33_70b() -> ModelMeta:
    return synthetic_model(
        "Llama-3.3-70B", n_layer=80, n_embd=8192, n_head=64, n_head_kv=8, n_ff=28672, n_vocab=128256,
        n_ctx_train=131072,
    )  # fmt: skip


def llama32_3b() -> ModelMeta:
    return synthetic_model(
        "Llama-3.2-3B", n_layer=28, n_embd=3072, n_head=24, n_head_kv=8, n_ff=8192, n_vocab=128256,
        n_ctx_train=131072, tied=True,
    )  # fmt: skip


def qwen3_30b_a3b() -> ModelMeta:
    return synthetic_model(
        "Qwen3-30B-A3B", n_layer=48, n_embd=2048, n_head=32, n_head_kv=4, head_dim=128, n_ff=6144,
        n_vocab=151936, n_ctx_train=40960, n_expert=128, n_expert_used=8, n_ff_expert=768, arch="qwen3moe",
    )  # fmt: skip
