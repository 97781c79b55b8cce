"""The KV cache element types llama.cpp accepts, one table for the estimator, the engine and both front ends.

Each type carries ggml's id (``enum ggml_type`` in ggml.h, what llama.cpp takes as ``type_k``/``type_v``)
and its block layout (``ggml_type_traits``: values per block and bytes per block; gguf's GGML_QUANT_SIZES
mirrors it). The members are the ones llama.cpp's own ``--cache-type-k/-v`` offer (common/arg.cpp,
``kv_cache_types``). A value is the lower-case name, so JSON and saved settings keep writing "f16".

This module needs nothing but the standard library: the engine's child process imports it with the protocol.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from kaihe_desktop.core.errors import UnknownKVCacheTypeError


class KVCacheType(StrEnum):
    """Most precise first."""

    F16 = "f16"
    BF16 = "bf16"
    F32 = "f32"
    Q8_0 = "q8_0"
    Q5_1 = "q5_1"
    Q5_0 = "q5_0"
    Q4_1 = "q4_1"
    Q4_0 = "q4_0"
    IQ4_NL = "iq4_nl"

    @classmethod
    def parse(cls, text: str | KVCacheType) -> KVCacheType:
        """The type text names (any case, blanks around ignored); UnknownKVCacheTypeError otherwise."""
        if isinstance(text, KVCacheType):
            return text
        name = str(text).strip().lower()
        try:
            return cls(name)
        except ValueError:
            choices = ", ".join(t.value for t in cls)
            raise UnknownKVCacheTypeError(
                f"unknown KV cache type {text!r}; llama.cpp accepts: {choices}",
                name=str(text),
                choices=tuple(t.value for t in cls),
            ) from None

    @property
    def ggml_type(self) -> int:
        """ggml's type id, as llama.cpp's context params take it (type_k, type_v)."""
        return _LAYOUT[self][0]

    @property
    def block_size(self) -> int:
        """Values per block (1 for the float types)."""
        return _LAYOUT[self][1]

    @property
    def type_size(self) -> int:
        """Bytes per block."""
        return _LAYOUT[self][2]

    @property
    def bytes_per_element(self) -> float:
        return self.type_size / self.block_size

    @property
    def quantized(self) -> bool:
        """A block-quantized type (llama.cpp needs flash attention for a quantized V cache)."""
        return self.block_size > 1

    def row_bytes(self, n_elements: int) -> int:
        """Bytes of n_elements in whole blocks, like ggml_row_size."""
        return (n_elements + self.block_size - 1) // self.block_size * self.type_size


# ggml id, values per block, bytes per block (ggml.h / ggml.c type_traits)
_LAYOUT: Final[dict[KVCacheType, tuple[int, int, int]]] = {
    KVCacheType.F32: (0, 1, 4),
    KVCacheType.F16: (1, 1, 2),
    KVCacheType.BF16: (30, 1, 2),
    KVCacheType.Q8_0: (8, 32, 34),
    KVCacheType.Q4_0: (2, 32, 18),
    KVCacheType.Q4_1: (3, 32, 20),
    KVCacheType.IQ4_NL: (20, 32, 18),
    KVCacheType.Q5_0: (6, 32, 22),
    KVCacheType.Q5_1: (7, 32, 24),
}

DEFAULT_KV_TYPE: Final = KVCacheType.F16
KV_TYPE_NAMES: Final = tuple(t.value for t in KVCacheType)  # the choices a front end offers


__all__ = ["DEFAULT_KV_TYPE", "KV_TYPE_NAMES", "KVCacheType"]
