"""Grouping a repo's file list into variants, on file lists shaped like real GGUF repos."""

from __future__ import annotations

import pytest

from kaihe_desktop.core.errors import KaiheError
from kaihe_desktop.core.hub.variants import RepoFile, find_variant, group_variants


def _f(path: str, size: int = 100) -> RepoFile:
    return RepoFile(path=path, size_bytes=size, sha256=f"{abs(hash(path)):064x}"[:64])


# Shaped like unsloth/bartowski repos: single files, a split quant, a quant in a folder, projectors, extras.
REPO = [
    _f(".gitattributes", 1),
    _f("README.md", 5),
    _f("Qwen3-8B-Q4_K_M.gguf", 5_000),
    _f("Qwen3-8B-Q8_0.gguf", 8_700),
    _f("Qwen3-8B-Q2_K.gguf", 3_300),
    _f("Qwen3-8B-BF16-00002-of-00002.gguf", 6_000),
    _f("Qwen3-8B-BF16-00001-of-00002.gguf", 10_000),
    _f("Qwen3-8B.imatrix", 7),
    _f("mmproj-F32.gguf", 900),
    _f("mmproj-F16.gguf", 450),
    _f("Q6_K/Qwen3-8B-00001-of-00002.gguf", 4_000),
    _f("Q6_K/Qwen3-8B-00002-of-00002.gguf", 2_700),
    _f("config.json", 3),
]


def test_one_variant_per_quant_non_model_files_ignored() -> None:
    variants = group_variants(REPO)
    assert {v.quant for v in variants} == {"Q2_K", "Q4_K_M", "Q6_K", "Q8_0", "BF16"}
    every_path = {f.path for v in variants for f in v.all_files}
    assert not any(p.endswith((".md", ".json", ".imatrix", ".gitattributes")) for p in every_path)


def test_shards_are_joined_in_order_and_sized_without_projector() -> None:
    bf16 = find_variant(group_variants(REPO), "bf16")
    assert bf16.is_split
    assert [f.path for f in bf16.files] == [
        "Qwen3-8B-BF16-00001-of-00002.gguf",
        "Qwen3-8B-BF16-00002-of-00002.gguf",
    ]
    assert bf16.first_file == "Qwen3-8B-BF16-00001-of-00002.gguf"
    assert bf16.size_bytes == 16_000
    assert bf16.total_bytes == 16_000 + 450


def test_quant_named_by_folder_is_found() -> None:
    q6 = find_variant(group_variants(REPO), "Q6_K")
    assert q6.size_bytes == 6_700
    assert q6.first_file == "Q6_K/Qwen3-8B-00001-of-00002.gguf"


def test_projector_attached_f16_preferred() -> None:
    variants = group_variants(REPO)
    assert all(v.mmproj is not None and v.mmproj.path == "mmproj-F16.gguf" for v in variants)
    single = find_variant(variants, "Q4_K_M")
    assert not single.is_split
    assert [f.path for f in single.all_files] == ["Qwen3-8B-Q4_K_M.gguf", "mmproj-F16.gguf"]


def test_text_only_repo_has_no_projector() -> None:
    variants = group_variants([_f("tiny-Q4_0.gguf"), _f("tiny-F16.gguf")])
    assert [v.mmproj for v in variants] == [None, None]


def test_sorted_best_quality_first() -> None:
    quants = [v.quant for v in group_variants(REPO)]
    assert quants == ["BF16", "Q8_0", "Q6_K", "Q4_K_M", "Q2_K"]


def test_incomplete_split_is_dropped() -> None:
    files = [_f("m-Q4_K_M-00001-of-00003.gguf"), _f("m-Q4_K_M-00003-of-00003.gguf"), _f("m-Q8_0.gguf")]
    assert [v.quant for v in group_variants(files)] == ["Q8_0"]


def test_find_variant_is_case_insensitive_and_names_available_quants() -> None:
    variants = group_variants(REPO)
    assert find_variant(variants, "q4_k_m").quant == "Q4_K_M"
    with pytest.raises(KaiheError) as err:
        find_variant(variants, "Q3_K_S")
    message = str(err.value)
    assert "Q3_K_S" in message
    for quant in ("BF16", "Q8_0", "Q6_K", "Q4_K_M", "Q2_K"):
        assert quant in message


def test_empty_or_modelless_repo_gives_no_variants() -> None:
    assert group_variants([]) == ()
    assert group_variants([_f("README.md"), _f("mmproj-F16.gguf")]) == ()
