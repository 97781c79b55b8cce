"""The app's side of the engine: starts the worker process, sends requests, streams tokens back.

One EngineClient drives one worker process holding at most one model. If the process dies the
client raises EngineCrashedError (keeping the partial reply) and starts a fresh process on the next
load. stop() may be called from any thread (a GUI button, a Ctrl-C handler).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import psutil

from kaihe_desktop.core.engine import protocol as p
from kaihe_desktop.core.engine import worker
from kaihe_desktop.core.errors import EngineCrashedError, EngineError, ModelLoadError

_POLL_S = 0.1
_E = TypeVar("_E")


@dataclass(frozen=True)
class GenerationResult:
    """One finished (or stopped) reply, timed from the caller's side."""

    text: str
    stop_reason: p.StopReason
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float  # request sent → first token received
    tokens_per_s: float  # decode speed: tokens after the first / time from first to last token
    total_s: float
    stop_latency_s: float | None = None  # stop() → reply ended, when stop() was called
    engine_prompt_eval_s: float = 0.0  # inside the worker: request received → first token sampled
    engine_generation_s: float = 0.0  # inside the worker: first token → last token


@dataclass(frozen=True)
class UnloadReport:
    was_loaded: bool
    rss_before_bytes: int
    rss_after_bytes: int

    @property
    def freed_bytes(self) -> int:
        return self.rss_before_bytes - self.rss_after_bytes


def describe_exit(exitcode: int | None) -> str:
    """'killed (signal 9, SIGKILL)' / 'exited with code 3' for a dead process's exit code."""
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown signal"
        return f"was killed (signal {-exitcode}, {name})"
    return f"exited with code {exitcode}"


class EngineClient:
    """Drives one engine process. Not for concurrent use except stop(), which any thread may call."""

    def __init__(self, *, log_path: Path | None = None) -> None:
        self._log_path = log_path
        self._ctx = multiprocessing.get_context("spawn")
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._send_lock = threading.Lock()
        self._generating = False
        self._stop_sent_at: float | None = None
        self.loaded: p.Loaded | None = None
        self.gpu_offload_supported = False

    # --- process --------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def start(self) -> int:
        """Start the worker process if it is not running; return its pid."""
        if self._process is not None and self._process.is_alive():
            return int(self._process.pid or 0)
        self._discard_process()
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        log = str(self._log_path) if self._log_path is not None else None
        process = self._ctx.Process(
            target=worker.run, args=(child_conn, log), name="kaihe-engine", daemon=True
        )
        process.start()
        child_conn.close()  # so a dead child reads as EOF here
        self._process, self._conn = process, parent_conn
        ready = self._receive("starting")
        if not isinstance(ready, p.Ready):
            raise EngineError(f"the engine process sent {type(ready).__name__} instead of Ready")
        self.gpu_offload_supported = ready.gpu_offload_supported
        return ready.pid

    def close(self, *, timeout_s: float = 5.0) -> None:
        """Shut the worker down (model freed), killing it if it does not exit in time."""
        if self._process is None:
            return
        if self._process.is_alive():
            with contextlib.suppress(EngineError):
                self._send(p.Shutdown())
            self._process.join(timeout_s)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(timeout_s)
        self._discard_process()

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def rss_bytes(self) -> int:
        """Resident memory of the worker process (0 when none runs)."""
        if self._process is None or self._process.pid is None:
            return 0
        try:
            return int(psutil.Process(self._process.pid).memory_info().rss)
        except psutil.Error:
            return 0

    # --- model ----------------------------------------------------------------------------------

    def load(
        self, options: p.LoadOptions, *, on_progress: Callable[[p.Progress], None] | None = None
    ) -> p.Loaded:
        """Load a model (replacing the current one). ModelLoadError names the file on failure."""
        self.start()
        self.loaded = None
        self._send(p.LoadRequest(options))
        name = Path(options.path).name
        while True:
            try:
                event = self._receive(f"loading {name}")
            except EngineCrashedError as exc:
                raise ModelLoadError(f"cannot load {options.path}: {exc}") from exc
            if isinstance(event, p.Progress):
                if on_progress is not None:
                    on_progress(event)
            elif isinstance(event, p.Loaded):
                self.loaded = event
                return event
            elif isinstance(event, p.Error):
                raise ModelLoadError(f"llama.cpp cannot load {options.path}: {event.message}")

    def unload(self) -> UnloadReport:
        """Free the model inside the worker and measure what its RSS gave back."""
        if not self.alive:
            self.loaded = None
            return UnloadReport(was_loaded=False, rss_before_bytes=0, rss_after_bytes=0)
        before = self.rss_bytes()
        self._send(p.Unload())
        event = self._expect(p.Unloaded, "unloading")
        self.loaded = None
        return UnloadReport(
            was_loaded=event.was_loaded, rss_before_bytes=before, rss_after_bytes=self.rss_bytes()
        )

    def count_tokens(self, text: str) -> int:
        """Tokens the loaded model's tokenizer makes of text (BOS included, as for a prompt)."""
        self._require_model()
        self._send(p.Tokenize(text))
        return self._expect(p.TokenCount, "counting tokens").count

    # --- generation -----------------------------------------------------------------------------

    def stream(
        self, prompt: str, *, sampling: p.SamplingSettings, max_tokens: int | None = None
    ) -> GenerationStream:
        """Start a reply; iterate the returned stream for text pieces, then read its result."""
        self._require_model()
        if self._generating:
            raise EngineError("a reply is already being generated")
        budget = sampling.max_tokens if max_tokens is None else max_tokens
        self._stop_sent_at = None
        self._generating = True
        sent_at = time.perf_counter()
        try:
            self._send(p.Generate(prompt=prompt, sampling=sampling, max_tokens=budget))
        except BaseException:
            self._generating = False
            raise
        return GenerationStream(self, sent_at)

    def generate(
        self,
        prompt: str,
        *,
        sampling: p.SamplingSettings,
        on_token: Callable[[str], None] | None = None,
    ) -> GenerationResult:
        """stream() consumed to the end, each piece handed to on_token."""
        stream = self.stream(prompt, sampling=sampling)
        for piece in stream:
            if on_token is not None:
                on_token(piece)
        assert stream.result is not None
        return stream.result

    def stop(self) -> None:
        """Ask the running reply to end after the current token. Safe from any thread; idempotent."""
        if not self._generating or self._stop_sent_at is not None:
            return
        self._stop_sent_at = time.perf_counter()
        with contextlib.suppress(EngineError):  # a dead process: the reader reports it
            self._send(p.Stop())

    # --- plumbing -------------------------------------------------------------------------------

    def _require_model(self) -> None:
        if self.loaded is None or not self.alive:
            raise EngineError("no model is loaded")

    def _send(self, request: p.Request) -> None:
        if self._conn is None:
            raise EngineError("the engine process is not running")
        with self._send_lock:
            try:
                self._conn.send(request)
            except (OSError, ValueError) as exc:
                raise EngineError(f"cannot reach the engine process: {exc}") from exc

    def _receive(self, doing: str, *, partial_text: str = "") -> p.Event:
        """The next event; EngineCrashedError as soon as the process is gone."""
        conn, process = self._conn, self._process
        if conn is None or process is None:
            raise EngineError("the engine process is not running")
        while True:
            try:
                if conn.poll(_POLL_S):
                    event: p.Event = conn.recv()
                    return event
            except (EOFError, OSError):
                pass
            else:
                if process.is_alive():
                    continue
                if conn.poll(0):
                    continue  # the last words of a process that just exited
            self._crashed(doing, partial_text)

    def _crashed(self, doing: str, partial_text: str) -> None:
        process = self._process
        exitcode = None
        if process is not None:
            process.join(2.0)
            exitcode = process.exitcode
        self._discard_process()
        message = f"the engine process {describe_exit(exitcode)} while {doing}"
        if partial_text:
            message += f"; the partial reply ({len(partial_text)} characters) is kept"
        raise EngineCrashedError(message, partial_text=partial_text, exitcode=exitcode)

    def _expect(self, kind: type[_E], doing: str) -> _E:
        event = self._receive(doing)
        if isinstance(event, kind):
            return event
        if isinstance(event, p.Error):
            raise EngineError(f"the engine failed while {doing}: {event.message}")
        raise EngineError(f"the engine sent {type(event).__name__} while {doing}")

    def _discard_process(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._process = None
        self._generating = False
        self.loaded = None


class GenerationStream:
    """Iterate for text pieces; `result` is set once the reply has ended, `text` holds it so far."""

    def __init__(self, client: EngineClient, sent_at: float) -> None:
        self._client = client
        self._sent_at = sent_at
        self._pieces: list[str] = []
        self.result: GenerationResult | None = None

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    def __iter__(self) -> Iterator[str]:
        client = self._client
        first_at: float | None = None
        last_at = self._sent_at
        ended = False
        try:
            while self.result is None:
                event = client._receive("generating a reply", partial_text=self.text)
                if isinstance(event, p.Token):
                    last_at = time.perf_counter()
                    if first_at is None:
                        first_at = last_at
                    if event.text:
                        self._pieces.append(event.text)
                        yield event.text
                elif isinstance(event, p.Done):
                    self.result = self._finish(event, first_at, last_at)
                elif isinstance(event, p.Error):
                    ended = True  # the worker sends no Done after an Error
                    raise EngineError(f"the engine failed while generating: {event.message}")
        finally:
            if self.result is None and not ended and client.alive:
                self._drain()
            client._generating = False

    def _finish(self, done: p.Done, first_at: float | None, last_at: float) -> GenerationResult:
        ended = time.perf_counter()
        stop_sent = self._client._stop_sent_at
        ttft = (first_at if first_at is not None else ended) - self._sent_at
        decode_s = last_at - (first_at if first_at is not None else last_at)
        # n tokens arrive over ttft + decode_s; the first one costs the prompt, the rest are decode.
        rate = (done.completion_tokens - 1) / decode_s if done.completion_tokens > 1 and decode_s > 0 else 0.0
        return GenerationResult(
            text=self.text,
            stop_reason=done.stop_reason,
            prompt_tokens=done.prompt_tokens,
            completion_tokens=done.completion_tokens,
            ttft_s=ttft,
            tokens_per_s=rate,
            total_s=ended - self._sent_at,
            stop_latency_s=(ended - stop_sent) if stop_sent is not None else None,
            engine_prompt_eval_s=done.prompt_eval_s,
            engine_generation_s=done.generation_s,
        )

    def _drain(self) -> None:
        """The caller left early: stop the reply and read up to its Done, keeping the pipe in step."""
        client = self._client
        client.stop()
        try:
            while True:
                event = client._receive("stopping a reply", partial_text=self.text)
                if isinstance(event, p.Token):
                    self._pieces.append(event.text)
                elif isinstance(event, (p.Done, p.Error)):
                    return
        except EngineError:
            return
