"""What the installed llama.cpp build is: one place that the engine, the probe and the estimator ask.

`pip install llama-cpp-python` compiles llama.cpp for the CPU it is built on (GGML_NATIVE). On Xeons with
AMX (Sapphire Rapids and later: amx_int8/amx_tile/amx_bf16) that build includes ggml's AMX backend, whose
extra buffer type crashes the first decode of a quantized model (general protection fault in ldtilecfg in
VMs that report AMX without enabling its tile state; llama.cpp issue #20824). Such a build must load with
`llama_model_params.use_extra_bufts = False`: then llama.cpp creates no extra CPU buffers at all, neither
the AMX one nor the CPU_REPACK copies of Q4_0/Q4_K/... weights, and the memory estimate must not count them.
A build without AMX (GGML_NATIVE=OFF, or a CPU without AMX) keeps its extra buffers.
"""

from __future__ import annotations

import functools

_AMX_MARKERS = ("AMX_INT8 = 1", "AMX_BF16 = 1")


@functools.cache
def llama_system_info() -> str:
    """llama.cpp's build summary ("CPU : SSE3 = 1 | AVX = 1 | ... | REPACK = 1 |"), read once per process.

    Imports llama_cpp (the native library) on first call; raises ImportError/OSError if it cannot load.
    """
    import llama_cpp  # here, not at the top: importing it loads the native library (and may fail)

    raw = llama_cpp.llama_print_system_info()
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def extra_buffers_usable() -> bool:
    """Whether llama.cpp may use its extra CPU buffer types (CPU_REPACK weight copies, AMX tiles).

    False when the installed build has the AMX backend (see the module docstring: it crashes), True
    otherwise. The engine loads with use_extra_bufts set to this, and the estimator counts repacked copies
    only when it is True (Machine.llama_extra_buffers).
    """
    info = llama_system_info()
    return not any(marker in info for marker in _AMX_MARKERS)


__all__ = ["extra_buffers_usable", "llama_system_info"]
