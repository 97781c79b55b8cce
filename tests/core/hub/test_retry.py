"""One cancellable retry loop for the Hub (issue 7): pause during Retry-After, bounded give-up, refused
connections, against the local Hub server with the real huggingface_hub client."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from pathlib import Path

import pytest
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
from huggingface_hub import errors as hf_errors

from kaihe_desktop.core.downloads.fetch import Downloader
from kaihe_desktop.core.errors import (
    DownloadCancelled,
    DownloadError,
    HubBusyError,
    HubRequestCancelled,
    HubUnreachableError,
)
from kaihe_desktop.core.gguf.meta import read_remote
from kaihe_desktop.core.hub.listing import list_repo_files
from kaihe_desktop.core.hub.retry import Failure, Retrier, RetryPolicy, failure_of
from kaihe_desktop.core.hub.variants import RepoFile, Variant
from tests.helpers.hub_server import HubServer

MiB = 1024 * 1024
NAME = "one-Q4_K_M.gguf"


@pytest.fixture
def repo(hub: HubServer) -> tuple[str, bytes, Variant]:
    data = hashlib.shake_256(b"kaihe-retry").digest(2 * MiB + 777)
    repo_id = "kaihe-retry/one-GGUF"
    hub.add_repo(repo_id, {NAME: data})
    file = RepoFile(path=NAME, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    return repo_id, data, Variant(quant="Q4_K_M", files=(file,), mmproj=None)


def _closed_port() -> int:
    with socket.socket() as sock:  # bound, never listened on: connections are refused
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(predicate, what: str, timeout_s: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


def test_pause_during_a_60_s_retry_after_is_immediate(
    tmp_path: Path, repo: tuple[str, bytes, Variant], hub: HubServer
) -> None:
    """Old code: huggingface_hub's http_get slept Retry-After + 1 s up to 5 times (301 s), blind to cancel."""
    repo_id, data, variant = repo
    downloader = Downloader(models_dir=tmp_path / "m")  # the real backoff and Retry-After cap
    part = downloader.partial_path(repo_id, "main", variant.files[0])
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:MiB])  # what an earlier run left
    hub.inject(repo_id, NAME, status=429, times=1000, retry_after=60, methods=("GET",))
    cancel = threading.Event()
    outcome: dict[str, BaseException | float] = {}

    def work() -> None:
        try:
            downloader.download_variant(repo_id, variant, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome["error"] = exc
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    _wait_until(lambda: any(r.status == 429 for r in hub.requests(repo_id, NAME)), "a 429 answer")
    paused_at = time.monotonic()
    cancel.set()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the pause waited out Retry-After"
    assert isinstance(outcome["error"], DownloadCancelled)
    assert float(outcome["at"]) - paused_at < 1.0  # issue 7: paused within 1 s
    assert part.read_bytes() == data[:MiB]  # the partial file is kept as it was
    assert len(hub.requests(repo_id, NAME)) == 2  # one HEAD, one GET: no hidden retry behind our back


def test_permanent_429_ends_in_one_line_after_few_requests(
    tmp_path: Path, repo: tuple[str, bytes, Variant], hub: HubServer
) -> None:
    """Old code: 6 of our attempts x 6 of http_get's own = 36 GETs and 175 s with the default backoff."""
    repo_id, _, variant = repo
    downloader = Downloader(models_dir=tmp_path / "m", max_retries=5, backoff_base_s=0.01, backoff_max_s=0.05)
    hub.inject(repo_id, NAME, status=429, times=1000, methods=("GET",))  # the HEAD passes, every GET fails
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"failed after 6 attempts: HTTP 429") as failed:
        downloader.download_variant(repo_id, variant)
    assert len(str(failed.value).splitlines()) == 1
    gets = [r for r in hub.requests(repo_id, NAME) if r.method == "GET"]
    assert len(gets) == 6 and all(r.status == 429 for r in gets)
    assert time.monotonic() - started < 10  # old code: at least 6 x (1+2+4+8+8) s of hidden sleeps


@pytest.mark.parametrize(
    ("retry_after", "expected"), [(None, [1.0, 2.0, 4.0, 8.0, 16.0]), (60.0, [60.0]), (30.0, [30.0, 30.0])]
)
def test_the_default_budget_gives_up_within_about_a_minute(
    retry_after: float | None, expected: list[float]
) -> None:
    """The waits the default policy would sleep for a Hub that never recovers (a fake clock, no sleeping)."""
    now = [0.0]
    retrier = Retrier(RetryPolicy(), clock=lambda: now[0])
    waits = []
    while (wait := retrier.next_wait(Failure(429, retry_after, unreachable=False))) is not None:
        waits.append(wait)
        now[0] += wait + 0.1  # the wait, then a quick 429
    assert waits == expected
    assert now[0] <= 75 and retrier.attempts <= 6


def test_retry_after_of_an_hour_is_capped_at_60_s(repo: tuple[str, bytes, Variant], hub: HubServer) -> None:
    repo_id, _, _ = repo
    hub.inject(repo_id, NAME, status=429, times=1, retry_after=3600)
    with pytest.raises(hf_errors.HfHubHTTPError) as answered:
        get_hf_file_metadata(hf_hub_url(repo_id, NAME))  # the real 429 with its real headers
    failure = failure_of(answered.value)
    assert (failure.status, failure.retry_after) == (429, 3600.0)
    assert Retrier(RetryPolicy()).next_wait(failure) == 60.0
    assert Retrier(RetryPolicy.within(10)).next_wait(failure) is None  # the catalog never waits past 10 s
    assert Retrier(RetryPolicy.within(10)).next_wait(Failure(429, 3.0, unreachable=False)) == 3.0


def test_refused_connection_is_reported_within_5_s(tmp_path: Path, repo: tuple[str, bytes, Variant]) -> None:
    """Old code: 10 s for the download (timeout_s), 25 s for `kaihe pull`'s listing."""
    repo_id, _, variant = repo
    port = _closed_port()
    nowhere = Downloader(models_dir=tmp_path / "m", endpoint=f"http://127.0.0.1:{port}")  # default policy
    started = time.monotonic()
    with pytest.raises(HubUnreachableError, match=f"cannot reach the Hub at http://127.0.0.1:{port}"):
        nowhere.download_variant(repo_id, variant)
    assert time.monotonic() - started < 5.0


def test_transient_503_twice_then_the_download_is_verified(
    tmp_path: Path, repo: tuple[str, bytes, Variant], hub: HubServer
) -> None:
    repo_id, data, variant = repo
    downloader = Downloader(models_dir=tmp_path / "m", backoff_base_s=0.01, backoff_max_s=0.05)
    hub.inject(repo_id, NAME, status=503, times=2, methods=("GET",))
    result = downloader.download_variant(repo_id, variant)
    assert result.model_path.read_bytes() == data
    assert result.files[0].sha256 == hashlib.sha256(data).hexdigest()
    assert [r.status for r in hub.requests(repo_id, NAME) if r.method == "GET"] == [503, 503, 200]


def test_header_reads_retry_429_and_503_like_downloads(hub: HubServer, tiny_llama_path: Path) -> None:
    """Old code: the first 429/503 of a header read was an error (only `kaihe pull` retried, in the CLI)."""
    hub.add_repo("kaihe-retry/header", {"model.gguf": tiny_llama_path})
    quick = RetryPolicy(backoff_base_s=0.01, backoff_max_s=0.05)
    hub.inject("kaihe-retry/header", "model.gguf", status=429, times=2, retry_after=0)
    assert read_remote("kaihe-retry/header", "model.gguf", retry=quick).architecture == "llama"
    hub.inject("kaihe-retry/header", "model.gguf", status=503, times=1000)
    with pytest.raises(HubBusyError, match=r"model\.gguf: failed after 6 attempts: HTTP 503"):
        read_remote("kaihe-retry/header", "model.gguf", retry=quick)
    assert [r.status for r in hub.requests("kaihe-retry/header")] == [429, 429, 302, 206] + [503] * 6


def test_tree_listings_retry_429_and_503_like_header_reads(
    hub: HubServer, repo: tuple[str, bytes, Variant]
) -> None:
    """Old code: HfApi.list_repo_tree retried inside huggingface_hub, 1+2+4+8 s in time.sleep, unpausable."""
    repo_id, _, variant = repo
    quick = RetryPolicy(backoff_base_s=0.01, backoff_max_s=0.05)
    hub.inject(repo_id, None, status=429, times=1, retry_after=0)  # every request about the repo
    assert list_repo_files(HfApi(), repo_id, retry=quick) == variant.files
    hub.inject(repo_id, None, status=503, times=2)
    assert list_repo_files(HfApi(), repo_id, retry=quick) == variant.files
    assert [r.status for r in hub.requests(repo_id) if "/tree/" in r.path] == [429, 200, 503, 503, 200]
    hub.inject(repo_id, None, status=503, times=1000)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(HubRequestCancelled, match=f"listing the files of {repo_id}: cancelled"):
        list_repo_files(HfApi(), repo_id, cancel=cancel)


def test_pause_while_the_server_went_silent_mid_file(
    tmp_path: Path, repo: tuple[str, bytes, Variant], hub: HubServer
) -> None:
    """Old code: the pause waited for the read timeout (10 s) and http_get's own reconnect."""
    repo_id, _, variant = repo
    downloader = Downloader(models_dir=tmp_path / "m")  # timeout_s=10
    part = downloader.partial_path(repo_id, "main", variant.files[0])
    hub.inject(repo_id, NAME, stall_after=MiB, stall_s=30, methods=("GET",))
    cancel = threading.Event()
    outcome: dict[str, BaseException | float] = {}

    def work() -> None:
        try:
            downloader.download_variant(repo_id, variant, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome["error"] = exc
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    _wait_until(lambda: part.exists() and part.stat().st_size >= MiB, "the first MiB on disk")
    paused_at = time.monotonic()
    cancel.set()
    thread.join(timeout=60)
    assert isinstance(outcome["error"], DownloadCancelled)
    assert float(outcome["at"]) - paused_at < 3.0  # hung up after HANG_UP_AFTER_S (0.5 s); old code: 11 s
    assert part.stat().st_size == MiB
