"""One cancellable retry loop for talking to the Hub, instead of huggingface_hub's hidden ones.

huggingface_hub retries inside ``http_get`` (429 up to five times, sleeping Retry-After + 1 s each) and
``http_backoff`` with ``time.sleep``, where a pause or Ctrl-C is not seen, and its retries multiply with
ours. Here each download GET and header range is one request, with huggingface_hub's retries off
(``max_retries=0``; ``get_hf_file_metadata`` retries nothing by default), and a :class:`Retrier` decides
whether and how long to wait before the next try: exponential backoff, the server's Retry-After honoured
up to a cap, a total budget for persistent 429/5xx, a short one for refused connections. Every wait goes
through :func:`wait_or_cancel`, so a pause is seen within the wait. The tree listing
(``hub.listing.list_repo_files``) uses it too; ``HfApi.list_models`` and ``model_info`` still retry inside
huggingface_hub (not switchable per call): callers bound them with ``hub.listing.run_with_deadline`` and a
probe. What a failure means, and the line a loop that gives up ends with, is ``hub.http_errors``'s to say.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx2
from huggingface_hub.utils import hf_raise_for_status, http_stream_backoff

from kaihe_desktop.core.errors import DownloadCancelled, DownloadError

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
HANG_UP_AFTER_S = 0.5  # after cancel, how long a read may stay blocked before the connection is cut


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Defaults: a persistent 429/5xx ends within about a minute, a refused one in 4 s."""

    max_attempts: int = 6  # requests in all for one operation (since it last made progress)
    backoff_base_s: float = 1.0
    backoff_max_s: float = 16.0  # 1 + 2 + 4 + 8 + 16 = 31 s of waits over 6 attempts
    retry_after_cap_s: float = 60.0  # a Retry-After of an hour is not waited out
    give_up_after_s: float = 75.0  # no wait that would end later than this after the start (or progress)
    unreachable_after_s: float = 4.0  # refused connections / no route: report it quickly

    @classmethod
    def within(cls, seconds: float) -> RetryPolicy:
        """A policy that never waits past ``seconds`` (for callers with their own deadline)."""
        return cls(
            give_up_after_s=seconds,
            unreachable_after_s=min(seconds, cls.unreachable_after_s),
            retry_after_cap_s=min(seconds, cls.retry_after_cap_s),
        )

    def backoff(self, attempt: int) -> float:
        """The wait after the ``attempt``-th failure (1-based) when the server says nothing."""
        return float(min(self.backoff_max_s, self.backoff_base_s * 2 ** max(attempt - 1, 0)))

    def wait_for(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return float(min(max(retry_after, 0.0), self.retry_after_cap_s))
        return self.backoff(attempt)


@dataclass(frozen=True)
class Failure:
    """What one failed try tells the retry loop."""

    status: int | None  # the HTTP status, None for transport errors
    retry_after: float | None  # the server's Retry-After, in seconds
    unreachable: bool  # refused, no route, DNS: nobody answered at all

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in RETRY_STATUS

    @property
    def reason(self) -> str:
        if self.status is not None:
            return f"HTTP {self.status}"
        return "no connection" if self.unreachable else "connection lost"


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds (delay-seconds form; an HTTP date is ignored, as huggingface_hub does)."""
    value = (headers.get("Retry-After") or "").strip()
    return float(value) if value.isdigit() else None


def failure_of(exc: BaseException) -> Failure:
    """Classify an exception raised by huggingface_hub / httpx2 during one try."""
    response = getattr(exc, "response", None)
    if isinstance(response, httpx2.Response):
        return Failure(response.status_code, retry_after_s(response.headers), unreachable=False)
    unreachable = isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout | ConnectionRefusedError)
    return Failure(None, None, unreachable=unreachable)


class Retrier:
    """Counts one operation's failed tries and says how long to wait before the next, or None: give up.

    Create it when the operation starts: the time budget counts from then. ``progressed()`` after a try that
    moved bytes resets count and clock: a slow, flaky link that keeps making progress is not given up on.
    """

    def __init__(self, policy: RetryPolicy, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self.attempts = 0
        self._start = clock()
        self._unreachable_since: float | None = None

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._start

    def progressed(self) -> None:
        self.attempts = 0
        self._start = self._clock()
        self._unreachable_since = None

    def next_wait(self, failure: Failure) -> float | None:
        now = self._clock()
        self.attempts += 1
        if not failure.retryable or self.attempts >= self.policy.max_attempts:
            return None
        wait = self.policy.wait_for(self.attempts, failure.retry_after)
        if failure.unreachable:
            if self._unreachable_since is None:
                self._unreachable_since = now
            left = self._unreachable_since + self.policy.unreachable_after_s - now
            return min(wait, left) if left > 0 else None
        self._unreachable_since = None
        left = self._start + self.policy.give_up_after_s - now
        return wait if wait <= left else None  # rather than wait past the budget, give up now


def wait_or_cancel(seconds: float, cancel: threading.Event | None) -> bool:
    """Sleep ``seconds``; True as soon as ``cancel`` is set. Without an Event, a plain (Ctrl-C-able) sleep."""
    if cancel is None:
        time.sleep(max(seconds, 0.0))
        return False
    return cancel.wait(max(seconds, 0.0))


class Sink(Protocol):
    """Where a GET writes: a file, or download_io's PartWriter."""

    def write(self, data: bytes, /) -> int: ...
    def seek(self, offset: int, whence: int = 0, /) -> int: ...
    def truncate(self, size: int | None = None, /) -> int: ...


class IncompleteBodyError(OSError):
    """The server closed the connection before the whole body came: a transient failure, resumed next try."""


def get_once(
    url: str,
    fileobj: Sink,
    *,
    resume_size: int,
    headers: Mapping[str, str],
    expected_size: int | None,
    timeout: float,
    cancel: threading.Event | None = None,
    what: str,
    chunk_size: int = 1024 * 1024,
) -> None:
    """One GET of ``url`` from byte ``resume_size`` into ``fileobj``: no retries (the caller's loop does).

    What ``huggingface_hub.file_download.http_get`` does for one try, without its hidden retries: a Range
    request, and when the server ignores Range (200), rewind and truncate ``fileobj`` and take the whole
    body. A set ``cancel`` hangs up the connection, so a stalled read does not delay a pause.
    """
    if expected_size is not None and resume_size >= expected_size:
        return
    request_headers = dict(headers)
    if resume_size > 0:
        request_headers["Range"] = f"bytes={resume_size}-"
    with http_stream_backoff(
        "GET",
        url,
        headers=request_headers,
        timeout=timeout,
        max_retries=0,
        retry_on_exceptions=(),
        retry_on_status_codes=(),
    ) as response:
        hf_raise_for_status(response)
        received = resume_size
        if resume_size > 0 and response.status_code == 200:  # the server ignored Range: start over
            fileobj.seek(0)
            fileobj.truncate()
            received = 0
        done = threading.Event()
        watcher = _hang_up_on_cancel(response, cancel, done)
        try:
            for chunk in response.iter_bytes(chunk_size=chunk_size):  # writes as http_get made them
                if chunk:
                    fileobj.write(chunk)
                    received += len(chunk)
        except httpx2.TransportError:
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled(
                    f"{what}: download paused; the partial file is kept for resume"
                ) from None
            raise
        finally:
            done.set()
            if watcher is not None:
                watcher.join()
    if cancel is not None and cancel.is_set() and (expected_size is None or received < expected_size):
        raise DownloadCancelled(f"{what}: download paused; the partial file is kept for resume")
    if expected_size is not None and received < expected_size:
        raise IncompleteBodyError(f"{what}: the connection closed at byte {received} of {expected_size}")
    if expected_size is not None and received > expected_size:
        raise DownloadError(f"{what}: the Hub sent {received} bytes, {expected_size} were expected")


def _hang_up_on_cancel(
    response: httpx2.Response, cancel: threading.Event | None, done: threading.Event
) -> threading.Thread | None:
    """A helper that hangs up when ``cancel`` is set and the read loop has not stopped by itself (the writer
    raises at the next chunk) within HANG_UP_AFTER_S: a stalled or very slow server does not delay a pause."""
    if cancel is None:
        return None
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None

    def hang_up() -> None:
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError, ValueError):
                sock.shutdown(socket.SHUT_RD)  # wakes the blocked read; the caller then closes
        else:  # no socket to reach (another transport): closing the stream ends the read too
            with contextlib.suppress(Exception):
                response.close()

    def watch() -> None:
        while not done.is_set():
            if cancel.wait(0.1):
                if not done.wait(HANG_UP_AFTER_S):
                    hang_up()
                return

    thread = threading.Thread(target=watch, name="kaihe-cancel-watch", daemon=True)
    thread.start()
    return thread


__all__ = [
    "RETRY_STATUS",
    "Failure",
    "IncompleteBodyError",
    "Retrier",
    "RetryPolicy",
    "failure_of",
    "get_once",
    "retry_after_s",
    "wait_or_cancel",
]
