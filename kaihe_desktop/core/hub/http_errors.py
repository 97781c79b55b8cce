"""The Hub's refusals about credentials, said the same way wherever the Hub is called.

The Hub answers 401 to every request that carries an invalid token (public repos included), 403 to a valid
token without access to a gated repo, and 401 with ``X-Error-Code: GatedRepo`` to a gated repo without a
token. huggingface_hub raises different exception types for these depending on the URL, and our Range reader
sees bare statuses, so every caller hands over the status and error code it got and asks :func:`auth_error`.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import constants
from huggingface_hub.errors import LocalTokenNotFoundError
from huggingface_hub.utils import get_token_to_send

from kaihe_desktop.core.errors import GatedRepoError, HubError, InvalidTokenError

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


def auth_error_from(
    exc: BaseException,
    *,
    what: str,
    repo_id: str | None,
    token: str | bool | None = None,
    endpoint: str | None = None,
) -> HubError | None:
    """:func:`auth_error` for a huggingface_hub exception carrying the Hub's response (and for gated or
    missing repos, the repo id parsed from the URL, used when the caller gives none).
    """
    response = getattr(exc, "response", None)
    if response is None:
        return None
    if repo_id is None and isinstance(getattr(exc, "repo_id", None), str):
        repo_id = exc.repo_id  # type: ignore[attr-defined]
    return auth_error(
        response.status_code,
        response.headers.get("X-Error-Code"),
        what=what,
        repo_id=repo_id,
        token=token,
        endpoint=endpoint,
    )
