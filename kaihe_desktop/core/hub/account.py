"""Signing in to the Hugging Face Hub through huggingface_hub (login validates the token with whoami and saves
it where huggingface_hub keeps it: KAIHE never stores the token itself)."""

from __future__ import annotations

import huggingface_hub

from kaihe_desktop.core.hub.http_errors import translate


def hub_user() -> str | None:
    """Who huggingface_hub is signed in as (None when no token is saved or set)."""
    token = huggingface_hub.get_token()
    if not token:
        return None
    try:
        return str(huggingface_hub.whoami(token=token)["name"])
    except Exception as exc:  # noqa: BLE001 - typed for the window
        raise translate(exc, what="asking the Hub who is signed in", token=token) from exc


def hub_sign_in(token: str) -> str:
    """huggingface_hub.login (it checks the token with whoami, then saves it); the user's name."""
    try:
        huggingface_hub.login(token=token.strip(), skip_if_logged_in=False)
        return str(huggingface_hub.whoami(token=token.strip())["name"])
    except Exception as exc:  # noqa: BLE001 - typed for the window
        raise translate(exc, what="signing in to Hugging Face", token=token.strip()) from exc


def hub_sign_out() -> None:
    """huggingface_hub.logout: the saved token goes (an HF_TOKEN in the environment stays; OSError)."""
    if huggingface_hub.get_token() is not None:
        huggingface_hub.logout()
