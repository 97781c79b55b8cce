"""recommend_data.use_case_matches: what Discover's use case filter asks of an arbitrary Hub repo."""

from __future__ import annotations

import pytest

from kaihe_desktop.core.errors import KaiheError
from kaihe_desktop.core.hub.recommend_data import load_recommendations, use_case_matches


def test_every_curated_repo_is_of_its_own_use_case() -> None:
    for case in load_recommendations().use_cases:
        for repo in case.repos:
            assert use_case_matches(case.id, repo.repo_id.upper())  # the id, in any case


def test_a_keyword_in_the_name_or_a_tag_puts_a_repo_in_a_use_case() -> None:
    assert use_case_matches("coding", "someone/Tiny-Coder-GGUF")
    assert use_case_matches("coding", "someone/Plain-GGUF", ("gguf", "Code"))
    assert not use_case_matches("coding", "someone/Plain-GGUF", ("gguf",))
    assert use_case_matches("General chat", "someone/Tiny-Chat-GGUF")  # a title-like name works too
    assert not use_case_matches("general-chat", "someone/Tiny-Coder-GGUF")


def test_an_unknown_use_case_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(KaiheError, match="coding"):
        use_case_matches("painting", "someone/x")
