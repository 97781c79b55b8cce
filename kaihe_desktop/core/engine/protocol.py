"""The messages between the app and its engine process: small frozen dataclasses sent over a pipe.

Requests go parent → worker, events go worker → parent. Everything here pickles with the standard
library only, so the worker never needs anything from the parent but this module (and the KV cache type
table it shares with the planner, core/fit/kv_types.py, standard library only too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from kaihe_desktop.core.fit.kv_types import KVCacheType


class StopReason(StrEnum):
    """Why a reply ended; the value is what chat --json and the saved history write."""

    EOS = "eos"  # the model said it was done (end-of-generation token)
    LENGTH = "length"  # max_tokens reached
    CONTEXT_FULL = "context_full"  # the context window is full
    STOPPED = "stopped"  # the caller asked to stop
    STOP_SEQUENCE = "stop_sequence"  # one of the stop strings appeared
    CRASHED = "crashed"  # the engine process died (set by the client, never sent)


# --- settings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadOptions:
    """Everything llama.cpp needs to load one model; built from the fit plan plus user overrides.

    kv_type is checked here, where the options are built: a name llama.cpp does not take raises
    UnknownKVCacheTypeError (a name it does is turned into its KVCacheType), so what the engine loads is
    what the planner estimated.
    """

    path: str
    n_ctx: int
    n_gpu_layers: int = 0
    n_threads: int = 1
    n_threads_batch: int = 1
    flash_attn: bool = False
    use_mmap: bool = True
    kv_type: KVCacheType = KVCacheType.F16
    n_batch: int = 512

    def __post_init__(self) -> None:
        object.__setattr__(self, "kv_type", KVCacheType.parse(self.kv_type))


@dataclass(frozen=True)
class SamplingSettings:
    """Per-conversation sampling; the defaults are llama.cpp's own."""

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    max_tokens: int = 512
    seed: int | None = None
    stop: tuple[str, ...] = ()


# --- requests (parent → worker) -------------------------------------------------------------------


@dataclass(frozen=True)
class LoadRequest:
    options: LoadOptions


@dataclass(frozen=True)
class Generate:
    prompt: str
    sampling: SamplingSettings
    max_tokens: int  # already clamped to the room left in the context


@dataclass(frozen=True)
class Stop:
    """Checked by the worker between two tokens."""


@dataclass(frozen=True)
class Unload:
    pass


@dataclass(frozen=True)
class Tokenize:
    text: str


@dataclass(frozen=True)
class Shutdown:
    pass


Request = LoadRequest | Generate | Stop | Unload | Tokenize | Shutdown


# --- events (worker → parent) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    pid: int
    gpu_offload_supported: bool


@dataclass(frozen=True)
class Progress:
    stage: str  # "reading", "loading", "context"
    fraction: float  # 0.0 … 1.0 within the whole load


@dataclass(frozen=True)
class Loaded:
    path: str
    n_ctx: int
    n_ctx_train: int
    n_vocab: int
    load_s: float
    options: LoadOptions
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Unloaded:
    was_loaded: bool


@dataclass(frozen=True)
class Token:
    text: str  # may be "" while a multi-byte character is still incomplete
    index: int  # 0-based position in the reply


@dataclass(frozen=True)
class Done:
    stop_reason: StopReason
    prompt_tokens: int
    completion_tokens: int
    prompt_eval_s: float  # worker-side: request received → first token sampled
    generation_s: float  # worker-side: first token → last token


@dataclass(frozen=True)
class TokenCount:
    count: int


@dataclass(frozen=True)
class Error:
    kind: str  # "load", "generate", "tokenize", "state", "internal"
    message: str


Event = Ready | Progress | Loaded | Unloaded | Token | Done | TokenCount | Error
