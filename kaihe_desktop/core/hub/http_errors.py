"""The one place where the Hub's failures become KAIHE errors, said the same way by every caller.

Listings (``HfApi``), header reads (``gguf.remote``, HTTP Range) and downloads (``downloads.fetch``) all
hand what huggingface_hub raised (its typed ``hf_raise_for_status`` errors, httpx2 transport errors,
``OfflineModeIsEnabled``) to :func:`translate`; a retry loop that gives up asks :func:`gave_up`; offline mode
is :func:`is_offline`. So a missing repo, a gated one, an invalid token or a Hub that stays busy reads the
same from ``kaihe search``, ``kaihe fit`` and ``kaihe pull``.

About tokens: the Hub answers 401 to every request that carries an invalid token (public repos included),
403 to a valid token without access to a gated repo, and 401 with ``X-Error-Code: GatedRepo`` to a gated
repo without a token; :func:`auth_error` says which, naming where the token came from.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
from huggingface_hub import constants
from huggingface_hub import errors as hf_errors
from huggingface_hub.errors import LocalTokenNotFoundError
from huggingface_hub.utils import get_token_to_send

from kaihe_desktop.core.errors import (
    GatedRepoError,
    HubBusyError,
    HubError,
    HubUnreachableError,
    InvalidTokenError,
    KaiheError,
    RepoNotFoundError,
)
from kaihe_desktop.core.hub.retry import RETRY_STATUS, Failure, Retrier

ENV_TOKENS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")  # huggingface_hub's order of precedence


def _clean(token: str | None) -> str | None:
    return (token or "").replace("\r", "").replace("\n", "").strip() or None


def token_source(token: str | bool | None = None) -> str | None:
    """Where the token a request carries comes from: an environment variable's name, "login" (the file
    `hf auth login` writes), "given" (passed in by the caller), or None when no token is sent.
    """
    try:
        sent = _clean(get_token_to_send(token))
    except LocalTokenNotFoundError:
        return None
    if sent is None:
        return None
    for name in ENV_TOKENS:
        if _clean(os.environ.get(name)) is not None:
            return name if _clean(os.environ.get(name)) == sent else "given"
    try:
        saved = _clean(Path(constants.HF_TOKEN_PATH).read_text())
    except OSError:
        saved = None
    return "login" if saved == sent else "given"


def _holder(source: str) -> str:
    if source == "login":
        return "the account logged in with `hf auth login`"
    if source == "given":
        return "the Hugging Face token in use"
    return f"the token in {source}"


def _invalid(source: str) -> str:
    if source == "login":
        return "the token saved by `hf auth login` is invalid: the Hub rejects it (HTTP 401); log in again"
    if source == "given":
        return "the Hugging Face token in use is invalid: the Hub rejects it (HTTP 401)"
    return f"{source} is invalid: the Hub rejects it (HTTP 401); set it to a valid token or unset it"


def auth_error(
    status: int | None,
    error_code: str | None,
    *,
    what: str,
    repo_id: str | None,
    token: str | bool | None = None,
    endpoint: str | None = None,
) -> HubError | None:
    """The error for a refusal of the token sent (invalid, or without access to a gated repo), or None when
    the refusal is not about a token that was sent (the caller says "log in", "not found", ...).
    """
    if status not in (401, 403):
        return None
    source = token_source(token)
    if source is None:
        return None
    if status == 401:
        return InvalidTokenError(f"{what}: {_invalid(source)}")
    if repo_id is None:
        return GatedRepoError(f"{what}: {_holder(source)} has no access to it (HTTP 403)")
    url = f"{(endpoint or constants.ENDPOINT).rstrip('/')}/{repo_id}"
    return GatedRepoError(
        f"{what}: the repo is gated and {_holder(source)} has no access to it; "
        f"request access at {url} (HTTP 403)"
    )


# --- offline mode -------------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}


def is_offline() -> bool:
    """Offline mode as huggingface_hub sees it, or ``HF_HUB_OFFLINE`` set after it was imported."""
    return constants.is_offline_mode() or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def offline_error(what: str) -> HubUnreachableError:
    return HubUnreachableError(f"{what}: offline mode is on (HF_HUB_OFFLINE)")


# --- every other failure --------------------------------------------------------------------------------


def _not_found(what: str, thing: str, detail: str, status: int | str) -> RepoNotFoundError:
    """``thing`` was not found; the lead ``what`` is left out where it already names it (or a file in it)."""
    if what == thing or what.startswith(f"{thing}/"):
        return RepoNotFoundError(f"{what} was not found on the Hub: {detail} (HTTP {status})")
    return RepoNotFoundError(f"{what}: {thing} was not found on the Hub: {detail} (HTTP {status})")


def _gated(what: str, repo_id: str | None, endpoint: str | None, status: int | str) -> GatedRepoError:
    where = f"at {(endpoint or constants.ENDPOINT).rstrip('/')}/{repo_id}" if repo_id else "on the Hub"
    return GatedRepoError(
        f"{what}: the repo is gated; accept the licence {where} and log in "
        f"(`hf auth login`, or set HF_TOKEN) (HTTP {status})"
    )


def translate(
    exc: BaseException,
    *,
    what: str,
    repo_id: str | None = None,
    filename: str | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
    timeout_s: float | None = None,
) -> KaiheError:
    """The KAIHE error for ``exc``, raised by huggingface_hub or httpx2 while doing ``what``.

    ``what`` leads the message (an operation, "listing the files of X", or an object, "X/file.gguf");
    ``repo_id``, ``filename`` and ``revision`` name what was asked for; ``token`` and ``endpoint`` as given
    to huggingface_hub (they say which token a refusal is about and where to ask for access).
    A KaiheError comes back as it is.
    """
    if isinstance(exc, KaiheError):
        return exc
    if isinstance(exc, hf_errors.OfflineModeIsEnabled):
        return offline_error(what)
    response = getattr(exc, "response", None)
    if isinstance(response, httpx2.Response):
        return _from_response(
            exc,
            response,
            what=what,
            repo_id=repo_id,
            filename=filename,
            revision=revision,
            token=token,
            endpoint=endpoint,
        )
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        within = f" within {timeout_s:g} s" if timeout_s is not None else " in time"
        return HubUnreachableError(f"{what}: the Hub did not answer{within}")
    if isinstance(exc, httpx2.TransportError | ConnectionError):
        at = (endpoint or constants.ENDPOINT).rstrip("/")
        return HubUnreachableError(f"{what}: cannot reach the Hub at {at} ({type(exc).__name__})")
    return HubError(f"{what}: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}")


def _from_response(
    exc: BaseException,
    response: httpx2.Response,
    *,
    what: str,
    repo_id: str | None,
    filename: str | None,
    revision: str | None,
    token: str | bool | None,
    endpoint: str | None,
) -> KaiheError:
    status = response.status_code
    code = response.headers.get("X-Error-Code")
    if repo_id is None and isinstance(getattr(exc, "repo_id", None), str):
        repo_id = exc.repo_id  # type: ignore[attr-defined]
    refused = auth_error(status, code, what=what, repo_id=repo_id, token=token, endpoint=endpoint)
    if refused is not None:  # the token sent is invalid, or has no access to the gated repo
        return refused
    repo = repo_id or "the repo"
    if isinstance(exc, hf_errors.GatedRepoError) or code == "GatedRepo":
        return _gated(what, repo_id, endpoint, status)
    if isinstance(exc, hf_errors.RevisionNotFoundError) or code == "RevisionNotFound":
        return _not_found(what, repo, f"the revision {revision or '?'} does not exist", status)
    file_missing = isinstance(exc, hf_errors.EntryNotFoundError) or code == "EntryNotFound"
    if file_missing or (status == 404 and filename is not None and code != "RepoNotFound"):
        thing = f"{repo_id}/{filename}" if repo_id and filename else repo
        at = f" at revision {revision}" if revision else ""
        return _not_found(what, thing, f"the file does not exist{at}", status)
    if isinstance(exc, hf_errors.RepositoryNotFoundError) or status in (401, 404):
        return _not_found(what, repo, "the repo does not exist, or it is private", status)
    if status == 403:
        return GatedRepoError(f"{what}: the Hub refuses access to {repo} (HTTP 403)")
    if status == 416:
        return HubError(f"{what}: the Hub refused the byte range (HTTP 416)")
    if status in RETRY_STATUS:
        return HubBusyError(f"{what}: the Hub answered HTTP {status}; try again later")
    return HubError(f"{what}: the Hub answered HTTP {status}")


def gave_up(
    what: str,
    retrier: Retrier,
    failure: Failure,
    exc: BaseException,
    *,
    endpoint: str | None = None,
    timeout_s: float | None = None,
    kept: str = "",
) -> KaiheError:
    """The one line a retry loop ends with (downloads, header reads): what failed, how often, how long.

    ``kept`` is added at the end ("; the partial file is kept"). A failure that is not worth retrying (a
    404, a refusal) is :func:`translate`'s to word.
    """
    tries, took = retrier.attempts, f"{retrier.elapsed_s:.0f} s"
    cause = exc.__cause__ if isinstance(exc.__cause__, httpx2.TransportError | OSError) else exc
    if failure.unreachable:
        at = (endpoint or constants.ENDPOINT).rstrip("/")
        return HubUnreachableError(f"{what}: cannot reach the Hub at {at} ({tries} attempts in {took}){kept}")
    if not failure.retryable:
        return translate(cause, what=what, endpoint=endpoint, timeout_s=timeout_s)
    if failure.status is not None:
        reason = f"HTTP {failure.status}"
    elif isinstance(cause, httpx2.TimeoutException | TimeoutError):
        error = translate(cause, what=what, endpoint=endpoint, timeout_s=timeout_s)
        return HubUnreachableError(f"{error} ({tries} attempts in {took}){kept}")
    else:
        reason = f"connection lost ({(str(cause).splitlines() or ['?'])[0]})"
    return HubBusyError(
        f"{what}: failed after {tries} attempts: {reason} (for {took}); try again later{kept}"
    )


@contextmanager
def hub_errors(
    what: str,
    *,
    repo_id: str | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
) -> Iterator[None]:
    """:func:`translate` whatever huggingface_hub raises in the block (KAIHE errors pass through)."""
    try:
        yield
    except KaiheError:
        raise
    except (hf_errors.HfHubHTTPError, httpx2.TransportError, OSError, TimeoutError) as exc:
        raise translate(
            exc, what=what, repo_id=repo_id, revision=revision, token=token, endpoint=endpoint
        ) from exc
