"""A file on the Hub as a read-only stream backed by HTTP Range requests (for reading GGUF headers).

Goes through huggingface_hub's own HTTP session (`get_session()`: its proxy/TLS config, offline-mode hook,
redirect following to the LFS CDN) and headers (`build_hf_headers`: HF_TOKEN, user agent). The endpoint is
`huggingface_hub.constants.ENDPOINT` (HF_ENDPOINT) read at call time unless one is given.

Bytes are fetched in growing chunks (1 MiB, then doubling up to 4 MiB) only when the parser asks for them,
so a header of H bytes costs at most H + 4 MiB of transfer, whatever the file size.

Each range is one request (no retries hidden in huggingface_hub); 429, 5xx, cut and refused connections are
retried by the same cancellable loop as downloads (`hub_retry.Retrier`), so fit, pull and the catalog retry
alike; the catalog passes a policy bounded by its own deadline. Other answers go through huggingface_hub's
`hf_raise_for_status` and `hub.http_errors.translate`, like listings and downloads.
"""

from __future__ import annotations

import re
import threading
from types import TracebackType

import httpx2
from huggingface_hub import constants, hf_hub_url
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from kaihe_desktop.core.errors import HubError, HubRequestCancelled, KaiheError
from kaihe_desktop.core.hub.http_errors import gave_up, is_offline, offline_error, translate
from kaihe_desktop.core.hub.retry import (
    RETRY_STATUS,
    Failure,
    Retrier,
    RetryPolicy,
    failure_of,
    retry_after_s,
    wait_or_cancel,
)

MiB = 1024 * 1024
FIRST_CHUNK = 1 * MiB
MAX_CHUNK = 4 * MiB
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class _RetryableStatus(HubError):
    """A 429/5xx answer to one range request: retried by RangeReader's loop, never seen by callers."""

    def __init__(self, message: str, failure: Failure) -> None:
        super().__init__(message)
        self.failure = failure


def _sent_token(headers: dict[str, str]) -> str | bool:
    """The token a request carried (False for none), so that translate can say where it came from."""
    auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else False


class RangeReader:
    """`read(n)` over a remote file; each read beyond the buffered bytes fetches one more Range chunk."""

    def __init__(
        self,
        url: str,
        *,
        what: str,
        headers: dict[str, str],
        timeout: float,
        client: httpx2.Client | None = None,
        retry: RetryPolicy | None = None,
        cancel: threading.Event | None = None,
        repo_id: str | None = None,
        filename: str | None = None,
        revision: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        self._url = url
        self._repo_id, self._filename, self._revision, self._endpoint = repo_id, filename, revision, endpoint
        self._retry = retry or RetryPolicy()
        self._cancel = cancel
        self._what = what
        self._headers = headers
        self._timeout = timeout
        self._client = client  # None: huggingface_hub's shared session, fetched per request
        self._pos = 0  # next byte the caller will get
        self._chunk = FIRST_CHUNK
        self.size: int | None = None
        self.bytes_fetched = 0
        self.requests = 0

    def __enter__(self) -> RangeReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def read(self, n: int = -1) -> bytes:
        if self.size is not None and self._pos >= self.size:
            return b""
        want = max(n, self._chunk) if n >= 0 else MAX_CHUNK
        self._chunk = min(self._chunk * 2, MAX_CHUNK)
        data = self._fetch(self._pos, self._pos + want - 1)
        self._pos += len(data)
        return data

    def _fetch(self, start: int, end: int) -> bytes:
        """One range, retried on 429/5xx/lost connections by the shared loop; typed errors otherwise."""
        retrier = Retrier(self._retry)
        while True:
            error: Exception
            try:
                return self._fetch_once(start, end)
            except _RetryableStatus as exc:
                failure, error = exc.failure, exc
            except _Transient as exc:
                failure, error = failure_of(exc.__cause__ or exc), exc
            wait = retrier.next_wait(failure)
            if wait is None:
                raise gave_up(
                    self._what,
                    retrier,
                    failure,
                    error,
                    endpoint=self._endpoint,
                    timeout_s=self._timeout,
                ) from error
            if wait_or_cancel(wait, self._cancel):
                raise HubRequestCancelled(f"{self._what}: cancelled while waiting to retry") from error

    def _fetch_once(self, start: int, end: int) -> bytes:
        headers = {**self._headers, "Range": f"bytes={start}-{end}"}
        self.requests += 1
        # huggingface_hub closes its shared client after a refused connection (close_session), possibly in
        # another thread: take the current one for each request, and retry if it was closed under us
        client = self._client or get_session()
        try:
            with client.stream(
                "GET", self._url, headers=headers, timeout=self._timeout, follow_redirects=True
            ) as response:
                if response.status_code == 416 and self.size is not None:
                    return b""
                if response.status_code in RETRY_STATUS:
                    failure = Failure(
                        response.status_code, retry_after_s(response.headers), unreachable=False
                    )
                    raise _RetryableStatus(
                        f"{self._what}: the Hub answered HTTP {response.status_code}", failure
                    )
                if response.status_code not in (200, 206):
                    try:
                        hf_raise_for_status(response)  # huggingface_hub's typed error for this answer
                    except HfHubHTTPError as exc:
                        raise self._translate(exc) from exc
                    raise HubError(f"{self._what}: the Hub answered HTTP {response.status_code}")
                limit = end - start + 1
                if response.status_code == 200:
                    # A server that ignores Range: take the first bytes of the body and hang up.
                    if start != 0:
                        raise HubError(f"{self._what}: the server does not support HTTP Range requests")
                    length = response.headers.get("Content-Length")
                    self.size = int(length) if length and length.isdigit() else None
                else:
                    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                    if match is None or int(match[1]) != start:
                        raise HubError(f"{self._what}: the Hub answered a byte range it was not asked for")
                    if match[3] != "*":
                        self.size = int(match[3])
                chunks: list[bytes] = []
                received = 0
                for chunk in response.iter_bytes():
                    chunks.append(chunk[: limit - received])
                    received += len(chunks[-1])
                    if received >= limit:
                        break
        except OfflineModeIsEnabled as exc:
            raise self._translate(exc) from exc
        except httpx2.TimeoutException as exc:
            raise _Transient(f"{self._what}: the Hub did not answer within {self._timeout:g} s") from exc
        except httpx2.TransportError as exc:
            raise _Transient(f"{self._what}: cannot reach the Hub ({exc})") from exc
        except RuntimeError as exc:
            if not client.is_closed:
                raise
            raise _Transient(f"{self._what}: the HTTP session was closed, retrying") from exc
        data = b"".join(chunks)
        self.bytes_fetched += len(data)
        return data

    def _translate(self, exc: BaseException) -> KaiheError:
        return translate(
            exc,
            what=self._what,
            repo_id=self._repo_id,
            filename=self._filename,
            revision=self._revision,
            token=_sent_token(self._headers),
            endpoint=self._endpoint,
            timeout_s=self._timeout,
        )


class _Transient(Exception):
    """A timeout or lost connection during one range request (its cause says which)."""


def open_remote(
    repo_id: str,
    filename: str,
    *,
    revision: str = "main",
    token: str | bool | None = None,
    endpoint: str | None = None,
    timeout: float = 10.0,
    client: httpx2.Client | None = None,
    retry: RetryPolicy | None = None,
    cancel: threading.Event | None = None,
) -> RangeReader:
    """A RangeReader for one Hub file. Offline mode (HF_HUB_OFFLINE) fails here, before any request."""
    what = f"{repo_id}/{filename}"
    if is_offline():
        raise offline_error(what)
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint or constants.ENDPOINT)
    headers = build_hf_headers(token=token)
    headers["Accept-Encoding"] = "identity"  # byte ranges of the file itself, not of a compressed body
    return RangeReader(
        url,
        what=what,
        headers=headers,
        timeout=timeout,
        client=client,
        retry=retry,
        cancel=cancel,
        repo_id=repo_id,
        filename=filename,
        revision=revision,
        endpoint=endpoint,
    )
