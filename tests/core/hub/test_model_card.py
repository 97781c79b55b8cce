"""The model card: README.md off the local Hub, front matter stripped, capped, typed failures, offline."""

from __future__ import annotations

import pytest

from kaihe_desktop.core.hub.model_card import (
    TRUNCATED_NOTE,
    ModelCardMissingError,
    fetch_model_card,
    strip_front_matter,
)
from tests.helpers.hub_server import HubServer

CARD = (
    "---\nlicense: apache-2.0\ntags:\n- gguf\n---\n\n# Tiny model\n\nA **small** card. [Hub](https://hf.co)\n"
)


def test_front_matter_is_stripped_and_only_a_closed_block_counts() -> None:
    assert strip_front_matter(CARD) == "# Tiny model\n\nA **small** card. [Hub](https://hf.co)\n"
    assert strip_front_matter("\ufeff---\na: 1\n---\nbody") == "body"
    assert strip_front_matter("# no front matter\n---\n") == "# no front matter\n---\n"
    assert strip_front_matter("---\nnever closed\n") == "---\nnever closed\n"
    assert strip_front_matter("") == ""


def test_the_card_is_read_from_the_hub(hub: HubServer) -> None:
    hub.add_repo("kcard/Tiny-GGUF", {"README.md": CARD.encode(), "x.gguf": b"GGUF"})
    text = fetch_model_card("kcard/Tiny-GGUF", endpoint=hub.url)
    assert text == "# Tiny model\n\nA **small** card. [Hub](https://hf.co)\n"


def test_a_long_card_is_cut_at_the_cap(hub: HubServer) -> None:
    hub.add_repo("kcard/Long-GGUF", {"README.md": b"# Long\n" + b"x" * 10_000})
    text = fetch_model_card("kcard/Long-GGUF", endpoint=hub.url, max_bytes=1000)
    assert text is not None and text.endswith(TRUNCATED_NOTE)
    assert len(text) == 1000 + len(TRUNCATED_NOTE)


def test_a_repo_without_a_readme_is_a_typed_error(hub: HubServer) -> None:
    hub.add_repo("kcard/NoCard-GGUF", {"x.gguf": b"GGUF"})
    with pytest.raises(ModelCardMissingError, match="no model card"):
        fetch_model_card("kcard/NoCard-GGUF", endpoint=hub.url)


def test_offline_mode_gives_none_without_asking(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.add_repo("kcard/Off-GGUF", {"README.md": CARD.encode()})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(hub.requests("kcard/Off-GGUF"))
    assert fetch_model_card("kcard/Off-GGUF", endpoint=hub.url) is None
    assert len(hub.requests("kcard/Off-GGUF")) == before
