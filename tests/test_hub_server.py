"""The test Hub server speaks what the real huggingface_hub 2.4 client expects (via HF_ENDPOINT)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
)

from tests.helpers.hub_fixtures import HUB_TOKEN
from tests.helpers.hub_server import HubServer
from tests.helpers.tiny_gguf import write_tiny_model

BLOB = bytes(range(256)) * 4096  # 1 MiB, LFS by suffix


@pytest.fixture
def tiny_repo(hub: HubServer, tmp_path: Path) -> tuple[str, Path]:
    model = write_tiny_model(tmp_path / "tiny-Q8_0.gguf")
    hub.add_repo(
        "kaihe-test/tiny-GGUF",
        {"tiny-Q8_0.gguf": model, "README.md": b"# tiny\n", "sub/blob.gguf": BLOB},
        license="apache-2.0",
        tags=("text-generation",),
        downloads=42,
        likes=7,
        base_model="kaihe-test/tiny",
        card_data={"language": ["en"]},
    )
    return "kaihe-test/tiny-GGUF", model


def test_endpoint_is_the_session_server(hub: HubServer) -> None:
    assert os.environ["HF_ENDPOINT"] == hub.url
    from huggingface_hub import constants

    assert hub.url == constants.ENDPOINT


def test_model_info_with_files_metadata(tiny_repo: tuple[str, Path]) -> None:
    repo_id, model = tiny_repo
    info = HfApi().model_info(repo_id, files_metadata=True)
    assert info.id == repo_id and len(info.sha or "") == 40
    assert info.downloads == 42 and info.likes == 7 and info.gated is False
    assert "gguf" in (info.tags or []) and "license:apache-2.0" in (info.tags or [])
    assert info.card_data is not None and info.card_data.license == "apache-2.0"
    assert info.card_data.base_model == "kaihe-test/tiny"
    siblings = {s.rfilename: s for s in info.siblings or []}
    assert set(siblings) == {"tiny-Q8_0.gguf", "README.md", "sub/blob.gguf"}
    gguf_sib = siblings["tiny-Q8_0.gguf"]
    assert gguf_sib.lfs is not None
    assert gguf_sib.lfs.sha256 == hashlib.sha256(model.read_bytes()).hexdigest()
    assert gguf_sib.size == model.stat().st_size
    assert siblings["README.md"].lfs is None
    assert info.gguf is not None and info.gguf["architecture"] == "llama" and info.gguf["total"] > 0


def test_model_info_revision_and_unknown_revision(tiny_repo: tuple[str, Path]) -> None:
    repo_id, _ = tiny_repo
    api = HfApi()
    sha = api.model_info(repo_id).sha
    assert api.model_info(repo_id, revision=sha).sha == sha
    from huggingface_hub.errors import RevisionNotFoundError

    with pytest.raises(RevisionNotFoundError):
        api.model_info(repo_id, revision="no-such-branch")


def test_tree_and_paths_info(tiny_repo: tuple[str, Path]) -> None:
    repo_id, model = tiny_repo
    api = HfApi()
    top = {e.path: e for e in api.list_repo_tree(repo_id)}
    assert set(top) == {"tiny-Q8_0.gguf", "README.md", "sub"}
    deep = {e.path for e in api.list_repo_tree(repo_id, recursive=True)}
    assert "sub/blob.gguf" in deep
    infos = {e.path: e for e in api.get_paths_info(repo_id, ["tiny-Q8_0.gguf", "sub/blob.gguf", "missing"])}
    assert set(infos) == {"tiny-Q8_0.gguf", "sub/blob.gguf"}
    lfs = infos["sub/blob.gguf"].lfs  # type: ignore[union-attr]
    assert lfs is not None and lfs.sha256 == hashlib.sha256(BLOB).hexdigest() and lfs.size == len(BLOB)
    assert [e.path for e in api.list_repo_tree(repo_id, "sub")] == ["sub/blob.gguf"]


def test_tree_pages_through_cursor(hub: HubServer) -> None:
    files = {f"f{i:02d}.txt": f"{i}".encode() for i in range(7)}
    hub.add_repo("kaihe-test/many-files", files)
    hub.page_size = 3
    try:
        names = [e.path for e in HfApi().list_repo_tree("kaihe-test/many-files")]
    finally:
        hub.page_size = 1000
    assert names == sorted(files)
    assert len(hub.requests("kaihe-test/many-files")) == 3  # three pages


def test_list_models_filter_search_sort_and_paging(hub: HubServer) -> None:
    for i, downloads in enumerate((5, 50, 500)):
        hub.add_repo(f"kaihe-list/model{i}-GGUF", {"m.gguf": b"GGUF"}, downloads=downloads, likes=10 - i)
    hub.add_repo("kaihe-list/not-gguf", {"model.safetensors": b"x"}, downloads=10_000)
    api = HfApi()
    ids = [m.id for m in api.list_models(filter="gguf", search="kaihe-list", sort="downloads")]
    assert ids == ["kaihe-list/model2-GGUF", "kaihe-list/model1-GGUF", "kaihe-list/model0-GGUF"]
    by_likes = [m.id for m in api.list_models(filter="gguf", search="kaihe-list", sort="likes", limit=2)]
    assert by_likes == ["kaihe-list/model0-GGUF", "kaihe-list/model1-GGUF"]
    hub.page_size = 1
    try:
        paged = [m.id for m in api.list_models(filter="gguf", search="kaihe-list", sort="downloads")]
    finally:
        hub.page_size = 1000
    assert paged == ids
    full = next(iter(api.list_models(search="kaihe-list/model0", full=True, cardData=True)))
    assert [s.rfilename for s in full.siblings or []] == ["m.gguf"]


def test_hf_hub_download_small_and_lfs_files(tiny_repo: tuple[str, Path], hub: HubServer) -> None:
    repo_id, model = tiny_repo
    readme = hf_hub_download(repo_id, "README.md")
    assert Path(readme).read_bytes() == b"# tiny\n"
    path = hf_hub_download(repo_id, "tiny-Q8_0.gguf")
    assert Path(path).read_bytes() == model.read_bytes()
    assert hub.bytes_sent(repo_id, "tiny-Q8_0.gguf") == model.stat().st_size
    statuses = [(r.method, r.status) for r in hub.requests(repo_id, "tiny-Q8_0.gguf")]
    assert ("HEAD", 302) in statuses and ("GET", 200) in statuses  # resolve redirects to the CDN


def test_file_metadata_carries_lfs_sha_size_and_cdn_location(
    tiny_repo: tuple[str, Path], hub: HubServer
) -> None:
    repo_id, model = tiny_repo
    meta = get_hf_file_metadata(hf_hub_url(repo_id, "tiny-Q8_0.gguf"))
    assert meta.etag == hashlib.sha256(model.read_bytes()).hexdigest()
    assert meta.size == model.stat().st_size
    assert meta.location.startswith(hub.cdn_url) and meta.commit_hash is not None


def test_range_requests_answer_206(tiny_repo: tuple[str, Path], hub: HubServer) -> None:
    repo_id, _ = tiny_repo
    url = get_hf_file_metadata(hf_hub_url(repo_id, "sub/blob.gguf")).location
    response = httpx2.get(url, headers={"Range": "bytes=1000-"})
    assert response.status_code == 206
    assert response.content == BLOB[1000:]
    assert response.headers["Content-Range"] == f"bytes 1000-{len(BLOB) - 1}/{len(BLOB)}"
    hub.inject(repo_id, "sub/blob.gguf", ignore_range=True)
    assert httpx2.get(url, headers={"Range": "bytes=1000-"}).status_code == 200


def test_cut_connection_resumes_inside_one_call(tiny_repo: tuple[str, Path], hub: HubServer) -> None:
    repo_id, _ = tiny_repo
    hub.inject(repo_id, "sub/blob.gguf", cut_after=300_000)
    path = hf_hub_download(repo_id, "sub/blob.gguf")
    assert Path(path).read_bytes() == BLOB
    gets = [r for r in hub.requests(repo_id, "sub/blob.gguf") if r.method == "GET"]
    assert len(gets) == 2  # cut once, then fetched again within the same call
    # huggingface_hub writes 10 MiB chunks: nothing of this 1 MiB file was written, so it restarted from 0
    assert hub.bytes_sent(repo_id, "sub/blob.gguf") == 300_000 + len(BLOB)


def test_missing_repo_and_file(tiny_repo: tuple[str, Path]) -> None:
    repo_id, _ = tiny_repo
    with pytest.raises(RepositoryNotFoundError):
        HfApi().model_info("kaihe-test/does-not-exist")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "nope.gguf")


def test_gated_repo_needs_an_allowed_token(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("kaihe-test/gated-GGUF", {"g.gguf": b"GGUF" * 10}, gated=True)
    info = HfApi().model_info("kaihe-test/gated-GGUF")
    assert info.gated == "auto"
    with pytest.raises(GatedRepoError) as no_token:
        get_hf_file_metadata(hf_hub_url("kaihe-test/gated-GGUF", "g.gguf"), token=False)
    assert no_token.value.response is not None and no_token.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as wrong_token:
        get_hf_file_metadata(hf_hub_url("kaihe-test/gated-GGUF", "g.gguf"), token="hf_someone_else")
    assert wrong_token.value.response is not None and wrong_token.value.response.status_code == 403
    path = hf_hub_download("kaihe-test/gated-GGUF", "g.gguf", token=HUB_TOKEN, cache_dir=tmp_path)
    assert Path(path).read_bytes() == b"GGUF" * 10


def test_a_token_that_is_no_hugging_face_token_fails_every_request(hub: HubServer) -> None:
    hub.add_repo("kaihe-test/public-tok", {"m.gguf": b"GGUF"})
    for url in (f"{hub.url}/api/models/kaihe-test/public-tok", hf_hub_url("kaihe-test/public-tok", "m.gguf")):
        answer = httpx2.get(url, headers={"Authorization": "Bearer not-a-token"})
        assert answer.status_code == 401
        assert answer.headers["X-Error-Message"] == "Invalid credentials in Authorization header"
    assert HfApi(token="hf_anyone").model_info("kaihe-test/public-tok").id == "kaihe-test/public-tok"


def test_status_faults_count_down_with_retry_after(tiny_repo: tuple[str, Path], hub: HubServer) -> None:
    repo_id, _ = tiny_repo
    hub.inject(repo_id, "README.md", status=503, times=2)
    url = hf_hub_url(repo_id, "README.md")
    assert httpx2.head(url).status_code == 503
    assert httpx2.head(url).status_code == 503
    assert httpx2.head(url).status_code == 200
    hub.inject(repo_id, "README.md", status=429, times=1, retry_after=3)
    response = httpx2.get(url)
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"
    with pytest.raises(HfHubHTTPError):
        hub.inject(repo_id, None, status=500, times=1)
        HfApi().model_info(repo_id)


def test_corrupt_fault_flips_a_byte(tiny_repo: tuple[str, Path], hub: HubServer) -> None:
    repo_id, _ = tiny_repo
    url = get_hf_file_metadata(hf_hub_url(repo_id, "sub/blob.gguf")).location
    hub.inject(repo_id, "sub/blob.gguf", corrupt=True)
    body = httpx2.get(url).content
    assert len(body) == len(BLOB) and body != BLOB
    assert sum(a != b for a, b in zip(body, BLOB, strict=True)) == 1


def test_byte_counter_is_per_file_and_resettable(tiny_repo: tuple[str, Path], hub: HubServer) -> None:
    repo_id, _ = tiny_repo
    url = get_hf_file_metadata(hf_hub_url(repo_id, "sub/blob.gguf")).location
    httpx2.get(url, headers={"Range": "bytes=0-99"})
    assert hub.bytes_sent(repo_id, "sub/blob.gguf") == 100
    assert hub.bytes_sent(repo_id, "README.md") == 0
    hub.reset_counters()
    assert hub.bytes_sent() == 0


def test_separate_server_instance(tmp_path: Path) -> None:
    with HubServer(tmp_path) as server:
        server.add_repo("solo/repo", {"a.txt": b"hello"})
        response = httpx2.get(f"{server.url}/solo/repo/resolve/main/a.txt")
        assert response.content == b"hello" and "X-Repo-Commit" in response.headers
        assert server.bytes_sent("solo/repo", "a.txt") == 5
