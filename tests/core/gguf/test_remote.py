"""GGUF metadata read from the (local test) Hub with HTTP Range requests: only the header travels."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import constants

from kaihe_desktop.core.errors import (
    GatedRepoError,
    HubBusyError,
    HubError,
    HubUnreachableError,
    NotGGUFError,
    RepoNotFoundError,
    TruncatedGGUFError,
)
from kaihe_desktop.core.gguf.meta import read_local, read_model, read_remote
from kaihe_desktop.core.gguf.remote import MAX_CHUNK
from kaihe_desktop.core.hub.retry import RetryPolicy
from tests.helpers.hub_server import DEFAULT_TOKEN, HubServer

MiB = 1024 * 1024


def _same_model(remote_dict: dict[str, object], local_dict: dict[str, object]) -> None:
    remote_dict = {k: v for k, v in remote_dict.items() if k != "source"}
    local_dict = {k: v for k, v in local_dict.items() if k != "source"}
    assert remote_dict == local_dict


def test_starter_header_only(hub: HubServer, hub_starter_repo: str, starter_model_path: Path) -> None:
    filename = starter_model_path.name
    meta = read_remote(hub_starter_repo, filename)
    local = read_local(starter_model_path)
    _same_model(meta.to_dict(with_tensors=True), local.to_dict(with_tensors=True))
    assert meta.source == f"{hub_starter_repo}/{filename}"
    sent = hub.bytes_sent(hub_starter_repo, filename)
    assert meta.header_size_bytes < sent <= meta.header_size_bytes + 4 * MiB
    assert sent < meta.file_size_bytes / 20  # 253 MB file, ~7 MB read
    assert 4 * MiB == MAX_CHUNK
    ranged = [r for r in hub.requests(hub_starter_repo, filename) if r.method == "GET"]
    assert ranged and all(r.range and r.range.startswith("bytes=") for r in ranged)


def test_read_model_dispatches_repo_paths(
    hub: HubServer, hub_starter_repo: str, starter_model_path: Path
) -> None:
    meta = read_model(f"{hub_starter_repo}/{starter_model_path.name}")
    assert (meta.architecture, meta.block_count, meta.vocab_size) == ("gemma3", 18, 262144)


def test_tiny_models_match_local(hub: HubServer, tiny_moe_path: Path, tiny_gemma3_path: Path) -> None:
    hub.add_repo("kaihe-test/tiny-remote", {"moe.gguf": tiny_moe_path, "sub/gemma.gguf": tiny_gemma3_path})
    for name, path in (("moe.gguf", tiny_moe_path), ("sub/gemma.gguf", tiny_gemma3_path)):
        _same_model(read_remote("kaihe-test/tiny-remote", name).to_dict(), read_local(path).to_dict())
        # the whole tiny file is smaller than the first chunk: one request, nothing beyond the file
        assert hub.bytes_sent("kaihe-test/tiny-remote", name) <= path.stat().st_size


def test_split_model_reads_every_shard_header(hub: HubServer, split_model_dir: Path) -> None:
    shards = {f"gguf/{p.name}": p for p in sorted(split_model_dir.glob("*.gguf"))}
    hub.add_repo("kaihe-test/split-remote", shards)
    meta = read_remote("kaihe-test/split-remote", "gguf/tiny-split-00002-of-00003.gguf")
    local = read_local(split_model_dir / "tiny-split-00001-of-00003.gguf")
    assert meta.n_shards == 3
    assert meta.source == "kaihe-test/split-remote/gguf/tiny-split-00001-of-00003.gguf"
    _same_model(meta.to_dict(), local.to_dict())
    assert {r.filename for r in hub.requests("kaihe-test/split-remote")} == set(shards)


def test_split_model_missing_shard(hub: HubServer, split_model_dir: Path) -> None:
    shards = {p.name: p for p in sorted(split_model_dir.glob("*.gguf")) if "00002" not in p.name}
    hub.add_repo("kaihe-test/split-missing", shards)
    with pytest.raises(RepoNotFoundError, match=r"tiny-split-00002-of-00003\.gguf was not found"):
        read_remote("kaihe-test/split-missing", "tiny-split-00001-of-00003.gguf")


def test_gated_repo(hub: HubServer, tiny_llama_path: Path) -> None:
    hub.add_repo("kaihe-test/gated", {"model.gguf": tiny_llama_path}, gated=True)
    with pytest.raises(
        GatedRepoError, match=r"kaihe-test/gated/model\.gguf: the repo is gated; accept the licence"
    ):
        read_remote("kaihe-test/gated", "model.gguf", token=False)
    with pytest.raises(GatedRepoError, match="HTTP 403"):
        read_remote("kaihe-test/gated", "model.gguf", token="hf_not_allowed")
    assert read_remote("kaihe-test/gated", "model.gguf", token=DEFAULT_TOKEN).architecture == "llama"


def test_missing_repo_file_and_revision(hub: HubServer, tiny_llama_path: Path) -> None:
    with pytest.raises(RepoNotFoundError, match=r"kaihe-test/no-such-repo/model\.gguf .*repo does not exist"):
        read_remote("kaihe-test/no-such-repo", "model.gguf")
    hub.add_repo("kaihe-test/has-one", {"model.gguf": tiny_llama_path})
    with pytest.raises(
        RepoNotFoundError, match=r"other\.gguf was not found on the Hub: the file does not exist"
    ):
        read_remote("kaihe-test/has-one", "other.gguf")
    with pytest.raises(RepoNotFoundError, match="the revision v9 does not exist"):
        read_remote("kaihe-test/has-one", "model.gguf", revision="v9")


def test_offline_mode_makes_no_request(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnreachableError, match="offline mode"):
        read_remote("kaihe-test/anything", "model.gguf")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnreachableError, match="offline mode"):
        read_remote("kaihe-test/anything", "model.gguf")
    assert hub.requests("kaihe-test/anything") == []


def test_unreachable_and_slow_hub(hub: HubServer, tiny_llama_path: Path) -> None:
    with pytest.raises(HubUnreachableError, match="cannot reach the Hub"):
        read_remote(
            "kaihe-test/x", "model.gguf", endpoint="http://127.0.0.1:9", retry=RetryPolicy.within(0.2)
        )
    hub.add_repo("kaihe-test/slow", {"model.gguf": tiny_llama_path})
    hub.inject("kaihe-test/slow", "model.gguf", latency_s=3.0)
    with pytest.raises(HubUnreachableError, match="did not answer within 0.5 s"):
        read_remote("kaihe-test/slow", "model.gguf", timeout=0.5, retry=RetryPolicy(max_attempts=2))


def test_server_errors(hub: HubServer, tiny_llama_path: Path) -> None:
    hub.add_repo("kaihe-test/flaky", {"model.gguf": tiny_llama_path})
    hub.inject("kaihe-test/flaky", "model.gguf", status=503, times=1000)  # one 503 is retried (hub_retry)
    with pytest.raises(
        HubBusyError, match=r"kaihe-test/flaky/model\.gguf: failed after 2 attempts: HTTP 503"
    ):
        read_remote("kaihe-test/flaky", "model.gguf", retry=RetryPolicy(max_attempts=2, backoff_base_s=0.01))


def test_server_ignoring_range_is_refused_not_downloaded(
    hub: HubServer, hub_starter_repo: str, starter_model_path: Path
) -> None:
    hub.inject(hub_starter_repo, starter_model_path.name, ignore_range=True)
    with pytest.raises(HubError, match="does not support HTTP Range"):
        read_remote(hub_starter_repo, starter_model_path.name)


def test_remote_bad_files(
    hub: HubServer, text_file_path: Path, truncated_gguf_path: Path, truncated_data_gguf_path: Path
) -> None:
    hub.add_repo(
        "kaihe-test/bad",
        {
            "page.gguf": text_file_path,
            "cut.gguf": truncated_gguf_path,
            "cutdata.gguf": truncated_data_gguf_path,
        },
    )
    with pytest.raises(
        NotGGUFError, match=r"^kaihe-test/bad/page\.gguf is not a GGUF file \(starts with b'<htm'\)"
    ):
        read_remote("kaihe-test/bad", "page.gguf")
    with pytest.raises(TruncatedGGUFError, match=r"kaihe-test/bad/cut\.gguf is truncated"):
        read_remote("kaihe-test/bad", "cut.gguf")
    with pytest.raises(TruncatedGGUFError, match=r"cutdata\.gguf is truncated: its tensor data ends"):
        read_remote("kaihe-test/bad", "cutdata.gguf")
