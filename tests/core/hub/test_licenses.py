"""Licence classification from card data and tags, as the Hub spells them."""

from __future__ import annotations

import pytest

from kaihe_desktop.core.hub.licenses import classify_license, commercial_use_of


@pytest.mark.parametrize(
    ("license_id", "expected"),
    [
        ("apache-2.0", "yes"),
        ("MIT", "yes"),
        ("bsd-3-clause", "yes"),
        ("llama3.1", "conditions"),
        ("llama3.3", "conditions"),
        ("llama5", "conditions"),  # a future Llama licence still carries conditions
        ("gemma", "conditions"),
        ("bigscience-openrail-m", "conditions"),
        ("cc-by-nc-4.0", "no"),
        ("cc-by-nc-sa-4.0", "no"),
        ("cc-by-nc-nd-3.0", "no"),
        ("mnpl", "no"),
        ("made-up-licence", "unknown"),
        (None, "unknown"),
        ("", "unknown"),
    ],
)
def test_commercial_use_of_hub_licence_ids(license_id: str | None, expected: str) -> None:
    assert commercial_use_of(license_id) == expected


def test_card_licence_wins_over_tags() -> None:
    info = classify_license("mit", tags=["gguf", "license:cc-by-nc-4.0"])
    assert info.license_id == "mit"
    assert info.commercial_use == "yes"


def test_licence_tag_used_when_card_has_none() -> None:
    info = classify_license(None, tags=["gguf", "License:CC-BY-NC-4.0", "text-generation"])
    assert info.license_id == "cc-by-nc-4.0"
    assert info.commercial_use == "no"
    assert "non-commercial" in info.note


def test_other_licence_is_decided_by_its_name() -> None:
    assert classify_license("other", license_name="qwen").commercial_use == "conditions"
    assert classify_license("other", license_name="qwen-research").commercial_use == "no"
    unnamed = classify_license("other")
    assert unnamed.license_id == "other"
    assert unnamed.commercial_use == "unknown"
    assert "check the model card" in unnamed.note


def test_to_dict_has_the_json_keys() -> None:
    assert classify_license("apache-2.0").to_dict() == {
        "license_id": "apache-2.0",
        "commercial_use": "yes",
        "note": "permissive: commercial use allowed",
    }
