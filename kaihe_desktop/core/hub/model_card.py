"""A repo's model card: its README.md as Markdown, with the YAML front matter (the card data) stripped.

Read through huggingface_hub's own HTTP session and headers (HF_ENDPOINT, HF_TOKEN, proxies), like the
GGUF header reads; at most ``max_bytes`` of it (a card is text, a huge one is cut and says so). Offline
mode (HF_HUB_OFFLINE) gives None without a request. Failures are KAIHE errors: a repo without a README is
:class:`ModelCardMissingError`, the rest what :func:`http_errors.translate` says (unreachable, gated, …).
"""

from __future__ import annotations

import httpx2
from huggingface_hub import constants, hf_hub_url
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from kaihe_desktop.core.errors import HubError, HubUnreachableError, KaiheError
from kaihe_desktop.core.hub.http_errors import is_offline, translate

CARD_FILE = "README.md"
MAX_CARD_BYTES = 512 * 1024
TRUNCATED_NOTE = "\n\n*…the model card is longer; the rest is on the Hub.*\n"

__all__ = ["CARD_FILE", "MAX_CARD_BYTES", "ModelCardMissingError", "fetch_model_card", "strip_front_matter"]


class ModelCardMissingError(HubError):
    """The repo has no README.md."""


def strip_front_matter(text: str) -> str:
    """``text`` without a leading ``---`` … ``---`` YAML block (the Hub's card data), and a BOM."""
    text = text.removeprefix("\ufeff")
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip() != "---":
        return text
    for end in range(1, len(lines)):
        if lines[end].rstrip() in ("---", "..."):
            return "".join(lines[end + 1 :]).lstrip("\r\n")
    return text  # an unclosed block: not front matter, keep it all


def fetch_model_card(
    repo_id: str,
    *,
    endpoint: str | None = None,
    token: str | bool | None = None,
    revision: str = "main",
    timeout_s: float = 10.0,
    max_bytes: int = MAX_CARD_BYTES,
) -> str | None:
    """The Markdown of ``repo_id``'s card (front matter stripped); None when offline mode is on."""
    if is_offline():
        return None
    what = f"reading the model card of {repo_id}"
    url = hf_hub_url(repo_id, CARD_FILE, revision=revision, endpoint=endpoint or constants.ENDPOINT)
    headers = build_hf_headers(token=token)
    chunks: list[bytes] = []
    received = 0
    truncated = False
    try:
        with get_session().stream(
            "GET", url, headers=headers, timeout=timeout_s, follow_redirects=True
        ) as response:
            if response.status_code == 404 and response.headers.get("X-Error-Code") != "RepoNotFound":
                raise ModelCardMissingError(f"{repo_id} has no model card ({CARD_FILE})")
            if response.status_code != 200:
                try:
                    hf_raise_for_status(response)
                except HfHubHTTPError as exc:
                    raise translate(
                        exc, what=what, repo_id=repo_id, filename=CARD_FILE, revision=revision,
                        token=token, endpoint=endpoint, timeout_s=timeout_s,
                    ) from exc  # fmt: skip
                raise HubError(f"{what}: the Hub answered HTTP {response.status_code}")
            for chunk in response.iter_bytes():
                chunks.append(chunk[: max_bytes - received])
                received += len(chunks[-1])
                if received >= max_bytes:
                    truncated = True
                    break
    except KaiheError:
        raise
    except OfflineModeIsEnabled:
        return None
    except httpx2.TimeoutException as exc:
        raise HubUnreachableError(f"{what}: the Hub did not answer within {timeout_s:g} s") from exc
    except (httpx2.TransportError, OSError) as exc:
        raise translate(exc, what=what, repo_id=repo_id, endpoint=endpoint, timeout_s=timeout_s) from exc
    text = strip_front_matter(b"".join(chunks).decode("utf-8", errors="replace"))
    return text + TRUNCATED_NOTE if truncated else text
