"""The engine process: owns one llama_cpp.Llama and answers requests from the app over a pipe.

It runs in a child process of its own so that a crash, an out-of-memory kill or a runaway load never
takes the app down. It ignores SIGINT (Ctrl-C belongs to the app, which turns it into a Stop) and
checks for Stop between two generated tokens.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import gc
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from kaihe_desktop.core.engine import protocol as p
from kaihe_desktop.core.machine.llama_build import extra_buffers_usable

# How much of the whole load the model file is; the rest is creating the context (KV cache).
_MODEL_SHARE = 0.9


def run(conn: Connection, log_path: str | None) -> None:
    """Entry point of the child process (the target of multiprocessing's spawn)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if log_path:
        _redirect_stderr(log_path)
    import llama_cpp  # imported here: the parent never loads the native library

    worker = _Worker(conn, llama_cpp)
    conn.send(p.Ready(pid=os.getpid(), gpu_offload_supported=bool(llama_cpp.llama_supports_gpu_offload())))
    worker.serve()


def llama_kwargs(options: p.LoadOptions) -> dict[str, Any]:
    """llama_cpp.Llama's keyword arguments for these options; the KV type goes as ggml's id for K and V."""
    return {
        "model_path": options.path,
        "n_ctx": options.n_ctx,
        "n_gpu_layers": options.n_gpu_layers,
        "n_threads": options.n_threads,
        "n_threads_batch": options.n_threads_batch,
        "flash_attn": options.flash_attn,
        "use_mmap": options.use_mmap,
        "n_batch": min(options.n_batch, options.n_ctx),
        "type_k": options.kv_type.ggml_type,
        "type_v": options.kv_type.ggml_type,
        "verbose": False,
    }


def _redirect_stderr(log_path: str) -> None:
    """llama.cpp writes to fd 2 directly; send it to a log file instead of the user's terminal."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)


def _release_freed_heap() -> None:
    """Hand freed malloc arenas back to the OS, so unloading shows in the RSS (glibc only)."""
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


class _Worker:
    def __init__(self, conn: Connection, llama_cpp: Any) -> None:
        self._conn = conn
        self._lib = llama_cpp
        disarm_template_compilation(llama_cpp)
        self._llm: Any = None
        self._path: str | None = None
        self._pending: list[p.Request] = []
        self._stop_seen = False
        # Checked by llama.cpp between graph nodes while a prompt is evaluated (a long prompt can take
        # seconds); switched off once tokens flow, where the check between tokens is enough and free.
        self._abort_check = llama_cpp.ggml_abort_callback(lambda _data: self._stop_requested())
        self._no_abort_check = llama_cpp.ggml_abort_callback()

    # --- loop -----------------------------------------------------------------------------------

    def serve(self) -> None:
        while True:
            request = self._next_request()
            if request is None or isinstance(request, p.Shutdown):
                self._unload()
                return
            try:
                self._handle(request)
            except Exception as exc:  # noqa: BLE001 - the app must hear about every failure
                self._conn.send(p.Error("internal", f"{type(exc).__name__}: {exc}"))

    def _next_request(self) -> p.Request | None:
        if self._pending:
            return self._pending.pop(0)
        try:
            request: p.Request = self._conn.recv()
        except (EOFError, OSError):
            return None  # the app went away: nothing left to serve
        return request

    def _handle(self, request: p.Request) -> None:
        if isinstance(request, p.LoadRequest):
            self._load(request.options)
        elif isinstance(request, p.Generate):
            self._generate(request)
        elif isinstance(request, p.Tokenize):
            self._tokenize(request.text)
        elif isinstance(request, p.Unload):
            was_loaded = self._llm is not None
            self._unload()
            self._conn.send(p.Unloaded(was_loaded=was_loaded))
        elif isinstance(request, p.Stop):
            pass  # arrived after the reply ended: nothing to stop
        else:
            self._conn.send(p.Error("state", f"unknown request {type(request).__name__}"))

    # --- load / unload --------------------------------------------------------------------------

    def _load(self, options: p.LoadOptions) -> None:
        self._unload()
        started = time.perf_counter()
        self._conn.send(p.Progress(stage="reading", fraction=0.0))
        try:
            with model_params_patched(
                self._lib,
                on_progress=self._send_progress,
                extra_buffers=extra_buffers_usable(),
            ):
                llm = self._lib.Llama(**llama_kwargs(options))
        except Exception as exc:  # noqa: BLE001 - llama-cpp-python raises ValueError/RuntimeError
            _release_freed_heap()
            self._conn.send(p.Error("load", str(exc) or type(exc).__name__))
            return
        self._llm = llm
        self._path = options.path
        self._conn.send(p.Progress(stage="context", fraction=1.0))
        self._conn.send(
            p.Loaded(
                path=options.path,
                n_ctx=int(llm.n_ctx()),
                n_ctx_train=int(llm._model.n_ctx_train()),
                n_vocab=int(llm.n_vocab()),
                load_s=time.perf_counter() - started,
                options=options,
                metadata={str(k): str(v) for k, v in llm.metadata.items() if len(str(v)) < 4096},
            )
        )

    def _send_progress(self, fraction: float) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(p.Progress(stage="loading", fraction=round(fraction * _MODEL_SHARE, 3)))

    def _unload(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None
            self._path = None
        _release_freed_heap()

    # --- tokens ---------------------------------------------------------------------------------

    def _prompt_tokens(self, text: str) -> list[int]:
        """Tokens as create_completion would feed them: BOS once (even if the template wrote it)."""
        llm = self._llm
        tokens: list[int] = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        bos = int(llm.token_bos())
        if llm._model.add_bos_token() and bos >= 0 and (not tokens or tokens[0] != bos):
            tokens.insert(0, bos)
        return tokens

    def _tokenize(self, text: str) -> None:
        if self._llm is None:
            self._conn.send(p.Error("state", "no model is loaded"))
            return
        self._conn.send(p.TokenCount(count=len(self._prompt_tokens(text))))

    # --- generation -----------------------------------------------------------------------------

    def _generate(self, request: p.Generate) -> None:
        llm = self._llm
        if llm is None:
            self._conn.send(p.Error("state", "no model is loaded"))
            return
        started = time.perf_counter()
        prompt = self._prompt_tokens(request.prompt)
        room = int(llm.n_ctx()) - len(prompt)
        if room <= 0:
            self._conn.send(
                p.Error("generate", f"the prompt is {len(prompt)} tokens; the context holds {llm.n_ctx()}")
            )
            return
        budget = min(request.max_tokens, room)
        s = request.sampling
        llm.set_seed(s.seed if s.seed is not None else random.randint(0, 2**31 - 1))
        tokens = llm.generate(
            prompt,
            top_k=s.top_k,
            top_p=s.top_p,
            min_p=s.min_p,
            temp=s.temperature,
            repeat_penalty=s.repeat_penalty,
        )
        is_end = self._end_of_generation_check()
        stop_text = _StopTextFilter(s.stop)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        reason = p.StopReason.LENGTH if budget == request.max_tokens else p.StopReason.CONTEXT_FULL
        produced = 0
        first_at: float | None = None
        self._stop_seen = False
        self._set_abort_check(True)
        try:
            for token in tokens:
                if first_at is None:
                    first_at = time.perf_counter()
                    self._set_abort_check(False)
                if is_end(token):
                    reason = p.StopReason.EOS
                    break
                produced += 1
                text, hit = stop_text.feed(decoder.decode(llm.detokenize([token])))
                self._conn.send(p.Token(text=text, index=produced - 1))
                if hit:
                    reason = p.StopReason.STOP_SEQUENCE
                    break
                if self._stop_requested():
                    reason = p.StopReason.STOPPED
                    break
                if produced >= budget:
                    break
        except RuntimeError:
            if first_at is not None or not self._stop_seen:
                raise
            reason = p.StopReason.STOPPED  # llama_decode aborted the prompt; llama-cpp-python drops the rest
        finally:
            self._set_abort_check(False)
            tokens.close()
        ended_by_stop_text = reason == p.StopReason.STOP_SEQUENCE
        tail = "" if ended_by_stop_text else stop_text.flush(decoder.decode(b"", final=True))
        if tail:
            self._conn.send(p.Token(text=tail, index=max(produced - 1, 0)))
        ended = time.perf_counter()
        self._conn.send(
            p.Done(
                stop_reason=reason,
                prompt_tokens=len(prompt),
                completion_tokens=produced,
                prompt_eval_s=(first_at or ended) - started,
                generation_s=ended - (first_at or ended),
            )
        )

    def _end_of_generation_check(self) -> Callable[[int], bool]:
        vocab = self._llm._model.vocab
        is_eog = self._lib.llama_vocab_is_eog
        return lambda token: bool(is_eog(vocab, token))

    def _set_abort_check(self, enabled: bool) -> None:
        callback = self._abort_check if enabled else self._no_abort_check
        self._lib.llama_set_abort_callback(self._llm.ctx, callback, None)

    def _stop_requested(self) -> bool:
        """Drain whatever arrived while generating; a Stop ends the reply, anything else waits."""
        try:
            while not self._stop_seen and self._conn.poll():
                request = self._conn.recv()
                if isinstance(request, p.Stop):
                    self._stop_seen = True
                else:
                    self._pending.append(request)
        except (EOFError, OSError):
            self._stop_seen = True  # the app is gone: stop and let serve() notice
        return self._stop_seen


class _InertChatFormatter:
    """Stands in for llama-cpp-python's Jinja2ChatFormatter inside the engine process.

    Llama() compiles every `tokenizer.chat_template*` of the GGUF at load, whatever chat_format is asked for,
    in a sandbox that does not guard operators: Jinja folds constants while compiling, so a template holding
    `{{ 'a' * 300000000 }}` costs seconds and a gigabyte before a single token. KAIHE renders templates in
    its own hardened sandbox in the parent (core/chat/sandbox.py) and never calls create_chat_completion,
    so the engine compiles nothing.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def to_chat_handler(self) -> Callable[..., Any]:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("chat templates are rendered by KAIHE's sandbox, not by the engine")

        return refuse


def disarm_template_compilation(llama_cpp: Any) -> None:
    """Make Llama() skip compiling the GGUF's chat templates (see _InertChatFormatter)."""
    llama_cpp.llama.llama_chat_format.Jinja2ChatFormatter = _InertChatFormatter


@contextlib.contextmanager
def model_params_patched(
    llama_cpp: Any, *, on_progress: Callable[[float], None] | None, extra_buffers: bool
) -> Iterator[None]:
    """Set llama_model_params that Llama() does not expose (progress callback, extra buffer types).

    Llama() builds its llama_model_params itself and hands them to _internals.LlamaModel; a subclass
    of that class, swapped in for one load, sets the fields on the way through.
    """
    internals = llama_cpp.llama.internals
    original = internals.LlamaModel
    last = [-1.0]

    def progress(fraction: float, _user_data: object) -> bool:
        if on_progress is not None and (fraction - last[0] >= 0.05 or fraction >= 1.0):
            last[0] = fraction
            on_progress(fraction)
        return True

    callback = llama_cpp.llama_progress_callback(progress)

    class _PatchedModel(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            params = kwargs["params"]
            params.use_extra_bufts = extra_buffers
            if on_progress is not None:
                params.progress_callback = callback
            super().__init__(*args, **kwargs)
            params.progress_callback = llama_cpp.llama_progress_callback()  # no dangling pointer

    internals.LlamaModel = _PatchedModel
    try:
        yield
    finally:
        internals.LlamaModel = original


class _StopTextFilter:
    """Holds back text that might be the start of a stop string, and cuts the reply at one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        if not self._stops:
            return text, False
        buffer = self._held + text
        cuts = [buffer.find(s) for s in self._stops if s in buffer]
        if cuts:
            self._held = ""
            return buffer[: min(cuts)], True
        keep = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(buffer)), 0, -1):
                if buffer.endswith(stop[:n]):
                    keep = max(keep, n)
                    break
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep], False

    def flush(self, text: str) -> str:
        out, self._held = self._held + text, ""
        return out
