"""Recommendations: the shipped curated file, estimates per machine profile, and checks against the Hub."""

from __future__ import annotations

import json
import re
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kaihe_desktop.core.fit.quants import pick, quality_rank, quant_type
from kaihe_desktop.core.hub.catalog import Catalog
from kaihe_desktop.core.hub.listing_cache import ListingCache
from kaihe_desktop.core.hub.recommend import QUALITY_FLOOR, recommend
from kaihe_desktop.core.hub.recommend_data import estimated_meta, estimated_options, load_recommendations
from kaihe_desktop.core.machine.profiles import resolve_profile, shipped_profiles
from tests.helpers.hub_server import HubServer
from tests.helpers.tiny_gguf import TinySpec, write_tiny_model

USE_CASES = ["general-chat", "coding", "multilingual", "reasoning", "efficiency", "edge"]


def test_shipped_file_is_complete_and_versioned() -> None:
    recs = load_recommendations()
    assert recs.version >= 1
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", recs.updated)
    assert "market-brief" in recs.source and "config.json" in recs.source
    assert [c.id for c in recs.use_cases] == USE_CASES
    for case in recs.use_cases:
        sizes = {r.params_b for r in case.repos}
        assert len(sizes) >= 3, f"{case.id} needs several sizes"
        for repo in case.repos:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+-(GGUF|gguf)", repo.repo_id), repo.repo_id
            assert repo.quants and all(quant_type(q) is not None for q in repo.quants), repo.repo_id
            assert repo.shape.n_layer > 0 and repo.shape.n_ctx_train >= 16384


@pytest.mark.parametrize("profile", sorted(shipped_profiles()))
def test_every_profile_gets_fitting_estimates(profile: str) -> None:
    result = recommend(resolve_profile(profile))
    assert [r.use_case for r in result.items] == USE_CASES
    assert result.notice is not None and "not checked against the Hub" in result.notice
    for item in result.items:
        assert item.checked_on_hub is False
        if item.repo_id is None:
            assert item.placement == "none" and "nothing curated" in item.reason
            continue
        assert item.placement in ("gpu", "partial", "cpu")
        assert item.headroom_pct is not None and item.headroom_pct > 0
        assert item.quant is not None and item.quant in item.reason


def test_more_memory_never_recommends_a_smaller_chat_model() -> None:
    order = ["netbook-4gb", "laptop-8gb", "m2-16gb", "rtx4090-32gb", "m3max-64gb"]
    sizes: list[float] = []
    for name in order:
        chat = recommend(resolve_profile(name), use_case="general-chat").items[0]
        assert chat.repo_id is not None and chat.params_b is not None, name
        sizes.append(chat.params_b)
    assert sizes == sorted(sizes)
    assert sizes[-1] > sizes[0]


def test_quality_floor_prefers_a_smaller_model_at_4_bits() -> None:
    result = recommend(resolve_profile("laptop-8gb"))
    for item in result.items:
        if item.repo_id is not None and item.use_case != "edge":
            assert item.quant is not None
            assert quality_rank(item.quant) <= quality_rank(QUALITY_FLOOR), item


def test_first_run_pick_is_not_gated_and_leaves_room() -> None:
    recs = load_recommendations()
    result = recommend(resolve_profile("m2-16gb"))
    first = result.first_run
    assert first is not None and first.repo_id is not None
    assert not first.gated
    assert first.use_case == recs.first_run_use_case
    assert first.headroom_pct is not None and first.headroom_pct >= recs.first_run_min_headroom_pct
    assert first.size_bytes is not None and first.size_bytes <= recs.first_run_max_download_gb * 1e9


# --- against the Hub -----------------------------------------------------------------------------------

TINY_SHAPE = {
    "arch": "llama", "n_layer": 2, "n_embd": 128, "n_ff": 256, "n_head": 4, "n_head_kv": 2, "head_dim": 32,
    "n_vocab": 512, "n_ctx_train": 2048,
}  # fmt: skip
BIG_SHAPE = {
    "arch": "llama", "n_layer": 80, "n_embd": 8192, "n_ff": 28672, "n_head": 64, "n_head_kv": 8,
    "head_dim": 128, "n_vocab": 128256, "n_ctx_train": 131072,
}  # fmt: skip


def _data_file(tmp_path: Path, repos: list[dict[str, Any]]) -> Path:
    data = {
        "version": 7,
        "updated": "2026-01-01",
        "source": "test",
        "shapes": {"tiny": TINY_SHAPE, "big": BIG_SHAPE},
        "use_cases": [
            {"id": "general-chat", "title": "General chat", "description": "d", "keywords": ["chat"],
             "repos": repos},
        ],
        "first_run": {"use_case": "general-chat", "min_headroom_pct": 10.0, "max_download_gb": 1.0},
    }  # fmt: skip
    path = tmp_path / "recs.json"
    path.write_text(json.dumps(data))
    return path


def _repo(repo_id: str, shape: str, params_b: float, **extra: Any) -> dict[str, Any]:
    return {"repo_id": repo_id, "family": "T", "shape": shape, "params_b": params_b, "license": "mit",
            "quants": ["Q8_0", "Q4_0"], **extra}  # fmt: skip


@pytest.fixture
def tiny_files(tmp_path: Path) -> dict[str, Path]:
    spec = TinySpec(arch="llama", n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256)
    return {
        f"T-{q}.gguf": write_tiny_model(tmp_path / f"T-{q}.gguf", spec, tensor_type=q)
        for q in ("Q8_0", "Q4_0")
    }


def test_checked_on_hub_skips_what_the_hub_cannot_serve(
    hub: HubServer, tmp_path: Path, tiny_files: dict[str, Path]
) -> None:
    hub.add_repo("kaiheR/Gated-GGUF", dict(tiny_files), gated=True, license="mit")
    hub.add_repo("kaiheR/Small-GGUF", dict(tiny_files), license="apache-2.0")  # the card wins over "mit"
    data = load_recommendations(
        _data_file(
            tmp_path,
            [
                _repo("kaiheR/Huge-GGUF", "big", 70.0),  # the estimate already says it does not fit
                _repo("kaiheR/Missing-GGUF", "tiny", 0.0005),  # not on the Hub
                _repo("kaiheR/Gated-GGUF", "tiny", 0.0005),
                _repo("kaiheR/Small-GGUF", "tiny", 0.0005),
            ],
        )
    )
    machine = resolve_profile("netbook-4gb")
    catalog = Catalog(machine=machine, cache=ListingCache(tmp_path / "cache"))
    result = recommend(machine, catalog=catalog, data=data)
    (chat,) = result.items
    assert chat.repo_id == "kaiheR/Small-GGUF"
    assert chat.checked_on_hub is True
    assert chat.license == "apache-2.0" and chat.commercial_use == "yes"
    assert chat.quant == "Q8_0"
    assert chat.size_bytes == tiny_files["T-Q8_0.gguf"].stat().st_size  # the Hub's size, not the estimate
    assert result.notice is None and not result.offline
    assert result.data_version == 7
    assert not hub.requests("kaiheR/Huge-GGUF")
    assert result.first_run is not None and result.first_run.repo_id == "kaiheR/Small-GGUF"


def test_unreachable_hub_still_lists_estimates(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    machine = resolve_profile("laptop-8gb")
    catalog = Catalog(machine=machine, cache=ListingCache(tmp_path), endpoint=f"http://127.0.0.1:{port}")
    result = recommend(machine, catalog=catalog)
    assert result.offline
    assert result.notice is not None and "cannot reach the Hub" in result.notice
    assert [r.use_case for r in result.items] == USE_CASES
    assert all(not r.checked_on_hub for r in result.items)
    assert all(r.repo_id is not None for r in result.items)


def test_offline_mode_asks_nothing(hub: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    machine = resolve_profile("m2-16gb")
    hub.reset_counters()
    result = recommend(machine, catalog=Catalog(machine=machine, cache=ListingCache(tmp_path)))
    assert hub.requests() == []
    assert result.offline and result.notice is not None and "HF_HUB_OFFLINE" in result.notice
    assert all(not r.checked_on_hub for r in result.items)


def test_unknown_use_case_names_the_known_ones() -> None:
    from kaihe_desktop.core.errors import KaiheError

    with pytest.raises(KaiheError, match="coding"):
        recommend(resolve_profile("laptop-8gb"), use_case="poetry")


def test_damaged_data_file_is_a_clear_error(tmp_path: Path) -> None:
    from kaihe_desktop.core.errors import KaiheError

    bad = tmp_path / "recs.json"
    bad.write_text('{"version": 1}')
    with pytest.raises(KaiheError, match="recs.json"):
        load_recommendations(bad)


@pytest.mark.parametrize("n_ctx", [2048, 8192, 32768])
def test_curated_shape_estimate_matches_the_real_starter_header(starter_model_path: Path, n_ctx: int) -> None:
    """The offline estimate (curated shape + bits per weight) against the fit of the real file's header."""
    from kaihe_desktop.core.fit.plan import plan
    from kaihe_desktop.core.fit.quants import QuantOption, weights_scale
    from kaihe_desktop.core.gguf.meta import read_local
    from kaihe_desktop.core.hub.recommend_data import estimated_meta, estimated_size

    real = read_local(starter_model_path)  # gemma-3-270m Q4_K_M
    curated = next(
        r
        for c in load_recommendations().use_cases
        for r in c.repos
        if r.repo_id == "unsloth/gemma-3-270m-it-GGUF"
    )
    est = estimated_meta(curated)
    assert (est.block_count, est.embedding_length, est.vocab_size, est.context_length) == (
        real.block_count, real.embedding_length, real.vocab_size, real.context_length,
    )  # fmt: skip
    assert est.head_count_kv == real.head_count_kv and est.key_length == real.key_length
    assert est.sliding_window == real.sliding_window
    assert est.sliding_window_pattern == real.sliding_window_pattern
    size = estimated_size(curated, "Q4_K_M")
    assert abs(size - real.file_size_bytes) / real.file_size_bytes < 0.25
    machine = resolve_profile("laptop-8gb")
    estimated = plan(est, machine, n_ctx=n_ctx, weights_scale=weights_scale(QuantOption("Q4_K_M", size), est))
    actual = plan(real, machine, n_ctx=n_ctx)
    assert abs(estimated.estimate.ram_bytes - actual.estimate.ram_bytes) / actual.estimate.ram_bytes < 0.10


# --- placement: a model fully on the GPU beats a larger one split with the CPU ---------------------------

GPU_PROFILES = ["rtx4060-16gb", "rtx4090-32gb", "m2-16gb", "m3max-64gb"]
CPU_PROFILES = ["netbook-4gb", "laptop-8gb"]
_LAYERS_RE = re.compile(r"(\S+) (\S+) would need partial offload \((\d+) of (\d+) layers on the GPU\)")


@pytest.mark.parametrize("profile", GPU_PROFILES)
def test_with_a_gpu_every_use_case_runs_fully_on_it(profile: str) -> None:
    result = recommend(resolve_profile(profile))
    for item in [*result.items, result.first_run]:
        assert item is not None and item.repo_id is not None, (profile, item)
        assert item.placement == "gpu", (profile, item.use_case, item.placement, item.reason)
        assert item.quant is not None and quality_rank(item.quant) <= quality_rank(QUALITY_FLOOR), item


@pytest.mark.parametrize(
    ("profile", "min_params_b"),
    [("rtx4060-16gb", 7.0), ("rtx4090-32gb", 14.0), ("m2-16gb", 7.0), ("m3max-64gb", 60.0)],
)
def test_gpu_chat_pick_is_as_large_as_the_gpu_allows(profile: str, min_params_b: float) -> None:
    """8 GB of VRAM holds an 8B at 5-6 bits; 24 GB a 32B at 4 bits; Apple's Metal budget counts as VRAM."""
    chat = recommend(resolve_profile(profile), use_case="general-chat").items[0]
    assert chat.placement == "gpu" and chat.params_b is not None
    assert chat.params_b >= min_params_b, chat


def test_partial_offload_of_a_larger_model_is_named_in_the_reason() -> None:
    chat = recommend(resolve_profile("rtx4060-16gb"), use_case="general-chat").items[0]
    assert "runs fully on the GPU" in chat.reason
    found = _LAYERS_RE.search(chat.reason)
    assert found is not None, chat.reason
    name, _quant, on_gpu, total = found.groups()
    assert 0 < int(on_gpu) < int(total)
    case = load_recommendations().use_case("general-chat")
    passed = next(r for r in case.repos if r.repo_id.endswith("/" + name))
    assert chat.params_b is not None and passed.params_b > chat.params_b


@pytest.mark.parametrize("profile", CPU_PROFILES)
def test_without_a_gpu_the_largest_that_fits_in_ram_wins(profile: str) -> None:
    machine = resolve_profile(profile)
    result = recommend(machine)
    for item in result.items:
        assert item.placement in ("cpu", "none"), item
        assert "GPU" not in item.reason.split("estimated:")[0], item.reason
    # Unchanged rule: the first curated chat model (largest first) whose pick fits at 4 bits or more.
    case = load_recommendations().use_case("general-chat")
    picks = [(r, pick(estimated_options(r), estimated_meta(r), machine)) for r in case.repos]
    at_floor = [(r, p) for r, p in picks if p.fits and quality_rank(p.quant) <= quality_rank(QUALITY_FLOOR)]
    expected_repo, expected = at_floor[0] if at_floor else next((r, p) for r, p in picks if p.fits)
    chat = result.items[0]
    assert (chat.repo_id, chat.quant, chat.placement) == (expected_repo.repo_id, expected.quant, "cpu")


def test_gpu_the_build_cannot_use_falls_back_to_the_largest_that_fits_in_ram() -> None:
    machine = resolve_profile("rtx4060-16gb")
    no_offload = replace(machine, gpu_offload_supported=False)
    cpu_chat = recommend(no_offload, use_case="general-chat").items[0]
    gpu_chat = recommend(machine, use_case="general-chat").items[0]
    assert cpu_chat.placement == "cpu"
    assert cpu_chat.params_b is not None and gpu_chat.params_b is not None
    assert cpu_chat.params_b > gpu_chat.params_b  # 16 GB of RAM holds more than 8 GB of VRAM


def test_too_small_a_gpu_falls_back_to_the_largest_that_fits_anywhere() -> None:
    """With 256 MiB of VRAM nothing curated for chat runs fully on the GPU: the old rule decides."""
    machine = resolve_profile("rtx4060-16gb")
    tiny = 256 * 1024 * 1024
    small_gpu = replace(
        machine, gpus=tuple(replace(g, memory_total_bytes=tiny, memory_free_bytes=tiny) for g in machine.gpus)
    )
    chat = recommend(small_gpu, use_case="general-chat").items[0]
    assert chat.repo_id is not None and chat.placement in ("partial", "cpu")
    assert "runs fully on the GPU" not in chat.reason.split("estimated:")[0]
    cpu_chat = recommend(replace(machine, gpu_offload_supported=False), use_case="general-chat").items[0]
    assert chat.params_b == cpu_chat.params_b  # the largest that fits anywhere, as without the GPU
