"""A file on the Hub as a read-only stream backed by HTTP Range requests (for reading GGUF headers).

Goes through huggingface_hub's own HTTP session (`get_session()`: its proxy/TLS config, offline-mode hook,
redirect following to the LFS CDN) and headers (`build_hf_headers`: HF_TOKEN, user agent). The endpoint is
`huggingface_hub.constants.ENDPOINT` (HF_ENDPOINT) read at call time unless one is given.

Bytes are fetched in growing chunks (1 MiB, then doubling up to 4 MiB) only when the parser asks for them,
so a header of H bytes costs at most H + 4 MiB of transfer, whatever the file size.

Each range is one request (no retries hidden in huggingface_hub); 429, 5xx, cut and refused connections are
retried by the same cancellable loop as downloads (`hub_retry.Retrier`), so fit, pull and the catalog retry
alike; the catalog passes a policy bounded by its own deadline.
"""

from __future__ import annotations

import os
import re
import threading
from types import TracebackType

import httpx2
from huggingface_hub import constants, hf_hub_url
from huggingface_hub.errors import OfflineModeIsEnabled
from huggingface_hub.utils import build_hf_headers, get_session

from kaihe_desktop.core.errors import (
    GatedRepoError,
    HubError,
    HubRequestCancelled,
    HubUnreachableError,
    RepoNotFoundError,
)
from kaihe_desktop.core.hub.http_errors import auth_error
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


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


class _RetryableStatus(HubError):
    """A 429/5xx answer to one range request: retried by RangeReader's loop, never seen by callers."""

    def __init__(self, message: str, failure: Failure) -> None:
        super().__init__(message)
        self.failure = failure


def _sent_token(headers: dict[str, str]) -> str | bool:
    """The token a request carried (False for none), so that hub_errors can say where it came from."""
    auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else False


def _status_error(
    status: int, error_code: str | None, what: str, *, token: str | bool = False, url: str = ""
) -> HubError:
    repo_id = "/".join(what.split("/")[:2])  # what is "owner/name/path/in/repo"
    endpoint = url.split(f"/{repo_id}/resolve/", 1)[0] if f"/{repo_id}/resolve/" in url else None
    refused = auth_error(status, error_code, what=what, repo_id=repo_id, token=token, endpoint=endpoint)
    if refused is not None:  # the token sent is invalid, or has no access to the gated repo
        return refused
    if error_code == "GatedRepo" or status == 403:
        return GatedRepoError(
            f"{what} is in a gated repo: accept its licence on the Hub and log in (HTTP {status})"
        )
    if status == 401:
        return GatedRepoError(f"{what} needs a login: the repo is private or gated (HTTP 401)")
    if status == 404 or error_code in ("RepoNotFound", "EntryNotFound", "RevisionNotFound"):
        detail = {
            "RepoNotFound": "the repo does not exist",
            "RevisionNotFound": "the revision does not exist",
        }.get(error_code or "", "the file does not exist")
        return RepoNotFoundError(f"{what} was not found on the Hub: {detail} (HTTP {status})")
    if status == 416:
        return HubError(f"{what}: the Hub refused the byte range (HTTP 416)")
    return HubError(f"{what}: the Hub answered HTTP {status}")


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
    ) -> None:
        self._url = url
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
                tried = f"{retrier.attempts} attempts in {retrier.elapsed_s:.0f} s"
                if failure.unreachable:
                    raise HubUnreachableError(f"{self._what}: cannot reach the Hub ({tried})") from error
                if failure.status is None:
                    raise HubUnreachableError(f"{error} ({tried})") from error
                raise HubError(f"{self._what}: the Hub answered {failure.reason} ({tried})") from error
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
                    raise _status_error(
                        response.status_code,
                        response.headers.get("X-Error-Code"),
                        self._what,
                        token=_sent_token(self._headers),
                        url=self._url,
                    )
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
            raise HubUnreachableError(f"cannot read {self._what}: offline mode is on") from exc
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
    if constants.is_offline_mode() or _env_true("HF_HUB_OFFLINE"):
        raise HubUnreachableError(f"cannot read {what}: offline mode is on (HF_HUB_OFFLINE is set)")
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint or constants.ENDPOINT)
    headers = build_hf_headers(token=token)
    headers["Accept-Encoding"] = "identity"  # byte ranges of the file itself, not of a compressed body
    return RangeReader(
        url, what=what, headers=headers, timeout=timeout, client=client, retry=retry, cancel=cancel
    )
