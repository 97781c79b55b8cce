"""The catalog against the local Hub server, through the real huggingface_hub client.

Repos are built from tiny GGUFs written with `gguf` (one file per quant, a split variant, a projector) and
the real starter model. Every test uses its own repo-name prefix, so the session's other repos never match.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kaihe_desktop.core.hub.catalog import Catalog, SearchFilter
from kaihe_desktop.core.hub.listing_cache import ListingCache
from kaihe_desktop.core.machine.profiles import resolve_profile
from kaihe_desktop.core.machine.spec import Machine
from tests.helpers.hub_server import HubServer
from tests.helpers.tiny_gguf import TinySpec, write_corrupt_gguf, write_tiny_model

SPEC = TinySpec(arch="llama", n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256)


@pytest.fixture(scope="module")
def variant_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A repo's worth of files: F16, Q8_0 and Q4_0 singles, an F32 split in 3 shards, a projector."""
    root = tmp_path_factory.mktemp("catalog-variants")
    files: dict[str, Path] = {}
    for quant in ("F16", "Q8_0", "Q4_0"):
        files[f"Tiny-{quant}.gguf"] = write_tiny_model(root / f"Tiny-{quant}.gguf", SPEC, tensor_type=quant)
    first = write_tiny_model(root / "Tiny-F32.gguf", SPEC, tensor_type="F32", split_max_tensors=8)
    for shard in sorted(first.parent.glob("Tiny-F32-*-of-*.gguf")):
        files[shard.name] = shard
    files["mmproj-Tiny-F16.gguf"] = write_tiny_model(root / "mmproj.gguf", SPEC, n_layer=1)
    return files


@pytest.fixture
def machine() -> Machine:
    return resolve_profile("laptop-8gb")


@pytest.fixture
def catalog(machine: Machine, tmp_path: Path) -> Catalog:
    return Catalog(machine=machine, cache=ListingCache(tmp_path / "cache"), timeout_s=10)


def _add(hub: HubServer, repo_id: str, files: dict[str, Path | bytes], **kw: object) -> None:
    hub.add_repo(repo_id, {**files, "README.md": b"# card\n"}, tags=("gguf",), **kw)  # type: ignore[arg-type]


def test_search_groups_variants_with_hashes_sizes_and_fit(
    hub: HubServer, catalog: Catalog, variant_files: dict[str, Path]
) -> None:
    _add(hub, "kaiheA/Tiny-Chat-GGUF", dict(variant_files), license="apache-2.0", downloads=42, likes=7,
         base_model="kaiheA/Tiny-Chat")  # fmt: skip
    result = catalog.search("kaihea")
    assert not result.offline
    assert [r.repo_id for r in result.repos] == ["kaiheA/Tiny-Chat-GGUF"]
    repo = result.repos[0]
    data = repo.to_dict()
    assert data["license"] == "apache-2.0"
    assert data["commercial_use"] == "yes"
    assert data["gated"] is False
    assert data["downloads"] == 42 and data["likes"] == 7
    assert data["base_model"] == "kaiheA/Tiny-Chat"
    assert data["architecture"] == "llama"
    assert data["kind"] == "instruct"  # the tiny models carry a ChatML template
    assert [v["quant"] for v in data["variants"]] == ["F32", "F16", "Q8_0", "Q4_0"]
    f32 = data["variants"][0]
    shards = sorted(n for n in variant_files if n.startswith("Tiny-F32-"))
    assert len(shards) >= 2
    assert f32["files"] == shards
    assert f32["size_bytes"] == sum(variant_files[n].stat().st_size for n in shards)
    assert f32["sha256"] == [hashlib.sha256(variant_files[n].read_bytes()).hexdigest() for n in shards]
    assert all(v["mmproj"] == "mmproj-Tiny-F16.gguf" for v in data["variants"])
    for variant in data["variants"]:
        assert variant["fit"]["placement"] == "cpu"  # an 8 GB laptop without a GPU
        assert 0 < variant["fit"]["headroom_pct"] < 100
    # Best quality that fits wins: everything fits, so the top of the ladder.
    assert data["picked_quant"] == "F32"
    assert data["pick_reason"].startswith("F32")


def test_one_tree_call_per_repo_and_no_info_calls(
    hub: HubServer, catalog: Catalog, variant_files: dict[str, Path]
) -> None:
    for n in range(3):
        _add(hub, f"kaiheB/Model{n}-GGUF", {"M-Q4_0.gguf": variant_files["Tiny-Q4_0.gguf"]}, downloads=n)
    hub.reset_counters()
    result = catalog.search("kaiheb")
    assert len(result.repos) == 3
    for n in range(3):
        paths = [r.path for r in hub.requests(f"kaiheB/Model{n}-GGUF")]
        assert sum("/tree/" in p for p in paths) == 1
        assert not any(p.rstrip("/").endswith(f"/api/models/kaiheB/Model{n}-GGUF") for p in paths)


def test_sort_and_cursor_paging(hub: HubServer, catalog: Catalog, variant_files: dict[str, Path]) -> None:
    for n, (downloads, likes) in enumerate([(10, 3), (30, 1), (20, 2), (5, 9), (1, 4)]):
        _add(hub, f"kaiheC/M{n}-GGUF", {"M-Q4_0.gguf": variant_files["Tiny-Q4_0.gguf"]},
             downloads=downloads, likes=likes, last_modified=f"2025-0{n + 1}-01T00:00:00.000Z")  # fmt: skip
    old_page = hub.page_size
    hub.page_size = 2  # force the Link-header cursor pages huggingface_hub follows
    try:
        by_downloads = catalog.search("kaihec", sort="downloads", limit=5).repos
        by_likes = catalog.search("kaihec", sort="likes", limit=5).repos
        by_recent = catalog.search("kaihec", sort="recent", limit=5).repos
        page2 = catalog.search("kaihec", sort="downloads", limit=2, page=2).repos
    finally:
        hub.page_size = old_page
    assert [r.hub.downloads for r in by_downloads] == [30, 20, 10, 5, 1]
    assert [r.hub.likes for r in by_likes] == [9, 4, 3, 2, 1]
    assert [r.repo_id for r in by_recent] == [f"kaiheC/M{n}-GGUF" for n in (4, 3, 2, 1, 0)]
    assert [r.hub.downloads for r in page2] == [10, 5]


def test_second_search_within_ttl_needs_no_network(
    hub: HubServer, catalog: Catalog, variant_files: dict[str, Path]
) -> None:
    _add(hub, "kaiheD/Cached-GGUF", {"C-Q8_0.gguf": variant_files["Tiny-Q8_0.gguf"]})
    first = catalog.search("kaihed")
    hub.reset_counters()
    second = catalog.search("kaihed")
    assert hub.requests() == []
    assert second.from_cache
    assert [r.to_dict() for r in second.repos] == [r.to_dict() for r in first.repos]


def test_offline_mode_shows_the_cached_listing(
    hub: HubServer, catalog: Catalog, variant_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _add(hub, "kaiheE/Offline-GGUF", {"O-Q4_0.gguf": variant_files["Tiny-Q4_0.gguf"]}, license="mit")
    catalog.search("kaihee")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.reset_counters()
    result = catalog.search("kaihee")
    assert result.offline
    assert result.notice is not None and result.notice.startswith("offline")
    assert "HF_HUB_OFFLINE" in result.notice
    assert [r.repo_id for r in result.repos] == ["kaiheE/Offline-GGUF"]
    assert result.repos[0].variants[0].placement == "cpu"  # fit is still judged from the cached header
    # A query never searched online still finds cached repos by name.
    other = catalog.search("offline-gguf")
    assert [r.repo_id for r in other.repos] == ["kaiheE/Offline-GGUF"]
    assert hub.requests() == []


def test_offline_with_nothing_cached_says_so(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = catalog.search("never-searched-zz")
    assert result.offline and result.repos == ()
    assert result.notice is not None and "no cached listing" in result.notice


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: a Hub that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_a_hanging_hub_gives_the_offline_listing_after_the_timeout(
    machine: Machine, tmp_path: Path, silent_server: str
) -> None:
    catalog = Catalog(machine=machine, cache=ListingCache(tmp_path), endpoint=silent_server, timeout_s=1.0)
    result = catalog.search("anything")
    assert result.offline
    assert result.notice is not None and "within 1 s" in result.notice


def test_unreachable_hub_gives_the_offline_listing(machine: Machine, tmp_path: Path) -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there now
    catalog = Catalog(machine=machine, cache=ListingCache(tmp_path), endpoint=f"http://127.0.0.1:{port}")
    result = catalog.search("anything")
    assert result.offline
    assert result.notice is not None and "cannot reach the Hub" in result.notice


def test_gated_and_corrupt_repos_are_listed_with_a_reason(
    hub: HubServer, catalog: Catalog, variant_files: dict[str, Path], tmp_path: Path
) -> None:
    _add(hub, "kaiheF/Gated-GGUF", {"G-Q4_0.gguf": variant_files["Tiny-Q4_0.gguf"]}, gated=True,
         license="llama3.1")  # fmt: skip
    corrupt = write_corrupt_gguf(tmp_path / "Broken-Q4_K_M.gguf")
    _add(hub, "kaiheF/Broken-GGUF", {"Broken-Q4_K_M.gguf": corrupt}, license="cc-by-nc-4.0")
    repos = {r.repo_id: r for r in catalog.search("kaihef").repos}
    gated = repos["kaiheF/Gated-GGUF"].to_dict()
    assert gated["gated"] is True
    assert gated["commercial_use"] == "conditions"
    assert "licence" in gated["error"]
    broken = repos["kaiheF/Broken-GGUF"].to_dict()
    assert broken["commercial_use"] == "no"
    assert [v["quant"] for v in broken["variants"]] == ["Q4_K_M"]
    assert broken["variants"][0]["fit"]["placement"] == "unknown"
    assert "Broken-Q4_K_M.gguf" in broken["error"]
    assert broken["picked_quant"] is None


def test_a_model_llama_cpp_cannot_load_is_listed_as_unusable(
    hub: HubServer, catalog: Catalog, variant_files: dict[str, Path], tmp_path: Path
) -> None:
    zero = write_tiny_model(tmp_path / "Zero-Q4_0.gguf", SPEC, extra_kv={"llama.attention.head_count": 0})
    _add(hub, "kaiheU/Zero-Heads-GGUF", {"Zero-Q4_0.gguf": zero}, license="apache-2.0")
    _add(hub, "kaiheU/Fine-GGUF", {"Fine-Q4_0.gguf": variant_files["Tiny-Q4_0.gguf"]}, license="apache-2.0")
    repos = {r.repo_id: r for r in catalog.search("kaiheu").repos}
    assert repos["kaiheU/Fine-GGUF"].fits  # the rest of the search is unaffected
    zero_heads = repos["kaiheU/Zero-Heads-GGUF"]
    assert not zero_heads.fits and zero_heads.pick is None
    data = zero_heads.to_dict()
    assert data["placement"] == "unusable" and data["variants"][0]["fit"]["placement"] == "unusable"
    assert data["error"] == (
        "kaiheU/Zero-Heads-GGUF/Zero-Q4_0.gguf: llama.cpp cannot load it: llama.attention.head_count is 0"
    )
    again = catalog.cached_repo("kaiheU/Zero-Heads-GGUF")  # judged again from the cache: still unusable
    assert again is not None and again.variants[0].placement == "unusable"


def test_filters_fit_licence_use_case_and_size(
    hub: HubServer, machine: Machine, tmp_path: Path, variant_files: dict[str, Path], hub_starter_repo: str
) -> None:
    q4 = {"M-Q4_0.gguf": variant_files["Tiny-Q4_0.gguf"]}
    _add(hub, "kaiheG/Tiny-Coder-GGUF", q4, license="apache-2.0")
    _add(hub, "kaiheG/Tiny-Chat-GGUF", q4, license="cc-by-nc-4.0")
    # 1.4 GiB free: a tiny model plus the 1 GiB safety margin fits; the starter model (253 MB of weights and
    # ~514 MiB of compute buffer at its 262k vocabulary) plus the margin does not.
    small = dataclasses.replace(
        machine, ram=dataclasses.replace(machine.ram, total_bytes=2 << 30, available_bytes=1434 << 20)
    )
    catalog = Catalog(machine=small, cache=ListingCache(tmp_path))
    starter = catalog.search(hub_starter_repo.split("/")[1]).repos
    assert [r.repo_id for r in starter] == [hub_starter_repo]
    assert not starter[0].fits
    assert catalog.search(hub_starter_repo.split("/")[1], filters=SearchFilter(fits_only=True)).repos == ()

    def ids(filters: SearchFilter) -> list[str]:
        return sorted(r.repo_id for r in catalog.search("kaiheg", filters=filters).repos)

    assert ids(SearchFilter()) == ["kaiheG/Tiny-Chat-GGUF", "kaiheG/Tiny-Coder-GGUF"]
    assert ids(SearchFilter(fits_only=True)) == ["kaiheG/Tiny-Chat-GGUF", "kaiheG/Tiny-Coder-GGUF"]
    assert ids(SearchFilter(commercial_only=True)) == ["kaiheG/Tiny-Coder-GGUF"]
    assert ids(SearchFilter(use_case="coding")) == ["kaiheG/Tiny-Coder-GGUF"]
    assert ids(SearchFilter(max_params_b=0.001)) == ["kaiheG/Tiny-Chat-GGUF", "kaiheG/Tiny-Coder-GGUF"]
    assert ids(SearchFilter(min_params_b=1.0)) == []


def test_cache_expires_after_its_ttl_and_survives_damage(
    hub: HubServer, machine: Machine, tmp_path: Path, variant_files: dict[str, Path]
) -> None:
    _add(hub, "kaiheH/Ttl-GGUF", {"T-Q4_0.gguf": variant_files["Tiny-Q4_0.gguf"]})
    now = [1_000_000.0]
    cache = ListingCache(tmp_path, ttl_s=60, clock=lambda: now[0])
    catalog = Catalog(machine=machine, cache=cache)
    catalog.search("kaiheh")
    now[0] += 59
    hub.reset_counters()
    assert catalog.search("kaiheh").from_cache
    assert hub.requests() == []
    now[0] += 2  # past the TTL: the Hub is asked again
    fresh = catalog.search("kaiheh")
    assert not fresh.from_cache
    assert any("/tree/" in r.path for r in hub.requests("kaiheH/Ttl-GGUF"))
    for file in tmp_path.rglob("*.json"):
        file.write_text("{ not json")
    assert cache.get_repo("kaiheH/Ttl-GGUF") is None
    assert [r.repo_id for r in catalog.search("kaiheh").repos] == ["kaiheH/Ttl-GGUF"]


def test_cached_model_metadata_round_trips(variant_files: dict[str, Path]) -> None:
    from kaihe_desktop.core.gguf.meta import read_local
    from kaihe_desktop.core.hub.listing_cache import meta_from_dict, meta_to_dict

    meta = read_local(variant_files["Tiny-Q8_0.gguf"])
    assert meta_from_dict(json.loads(json.dumps(meta_to_dict(meta)))) == dataclasses.replace(
        meta, chat_template=None
    )


def test_bounded_map_keeps_order_errors_and_the_deadline() -> None:
    from kaihe_desktop.core.errors import HubUnreachableError
    from kaihe_desktop.core.hub.listing import bounded_map

    release = threading.Event()
    running: list[int] = []
    lock = threading.Lock()

    def work(n: int) -> int:
        with lock:
            running.append(n)
        if n == 3:
            raise ValueError("three")
        if n == 5:
            release.wait()  # never set: this item outlives the deadline
        return n * 10

    results = bounded_map(work, list(range(7)), max_workers=3, timeout_s=0.5)
    release.set()
    assert results[:3] == [0, 10, 20]
    assert isinstance(results[3], ValueError)
    assert isinstance(results[5], HubUnreachableError)
    assert results[6] == 60
    assert sorted(running) == list(range(7))
