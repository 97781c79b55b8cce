"""ModelMeta of real, well-known models, as gguf_meta would read them from their headers (numbers from the
published GGUF headers / config.json of each model), for picker and advice tests that need models far bigger
than anything a test can write to disk. Each builder takes the quant, so one model serves every quant.
"""

from __future__ import annotations

from kaihe_desktop.core.gguf.model_meta import ModelMeta

GB = 10**9

# Llama-3.1-8B-Instruct GGUF sizes as published by bartowski/Meta-Llama-3.1-8B-Instruct-GGUF (bytes).
LLAMA31_8B_QUANT_SIZES: dict[str, int] = {
    "F16": 16_068_890_000,
    "Q8_0": 8_540_775_000,
    "Q6_K": 6_596_006_000,
    "Q5_K_M": 5_732_987_000,
    "Q4_K_M": 4_920_734_000,
    "IQ4_XS": 4_447_671_000,
    "Q3_K_M": 4_018_917_000,
    "Q2_K": 3_179_131_000,
}

# Qwen3-14B GGUF sizes (Qwen/Qwen3-14B-GGUF and common community quants), bytes.
QWEN3_14B_QUANT_SIZES: dict[str, int] = {
    "Q8_0": 15_700_000_000,
    "Q6_K": 12_100_000_000,
    "Q5_K_M": 10_500_000_000,
    "Q4_K_M": 9_000_000_000,
    "Q3_K_M": 7_300_000_000,
    "Q2_K": 5_750_000_000,
}


def _layers(n: int, total: int) -> tuple[int, ...]:
    per = total // n
    return tuple([per] * n)


def llama31_8b(*, quant: str = "Q4_K_M") -> ModelMeta:
    size = LLAMA31_8B_QUANT_SIZES[quant]
    header = 8_000_000
    non_layer = int((size - header) * 0.13)  # token_embd + output (128256 x 4096 each)
    return ModelMeta(
        source=f"bartowski/Meta-Llama-3.1-8B-Instruct-GGUF/Meta-Llama-3.1-8B-Instruct-{quant}.gguf",
        architecture="llama",
        name="Meta Llama 3.1 8B Instruct",
        parameter_count=8_030_261_248,
        block_count=32,
        embedding_length=4096,
        feed_forward_length=14336,
        head_count=32,
        head_count_kv=(8,) * 32,
        key_length=128,
        value_length=128,
        context_length=131072,
        vocab_size=128256,
        file_type=quant,
        has_chat_template=True,
        layer_tensor_bytes=_layers(32, size - header - non_layer),
        non_layer_tensor_bytes=non_layer,
        token_embd_bytes=non_layer // 2,
        output_bytes=non_layer - non_layer // 2,
        file_size_bytes=size,
        header_size_bytes=header,
    )


def qwen3_14b(*, quant: str = "Q4_K_M") -> ModelMeta:
    size = QWEN3_14B_QUANT_SIZES[quant]
    header = 9_000_000
    non_layer = int((size - header) * 0.1)
    return ModelMeta(
        source=f"Qwen/Qwen3-14B-GGUF/Qwen3-14B-{quant}.gguf",
        architecture="qwen3",
        name="Qwen3 14B",
        parameter_count=14_768_307_200,
        block_count=40,
        embedding_length=5120,
        feed_forward_length=17408,
        head_count=40,
        head_count_kv=(8,) * 40,
        key_length=128,
        value_length=128,
        context_length=40960,
        vocab_size=151936,
        file_type=quant,
        has_chat_template=True,
        layer_tensor_bytes=_layers(40, size - header - non_layer),
        non_layer_tensor_bytes=non_layer,
        token_embd_bytes=non_layer // 2,
        output_bytes=non_layer - non_layer // 2,
        file_size_bytes=size,
        header_size_bytes=header,
    )
