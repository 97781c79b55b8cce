"""Downloads from the local Hub server with the real huggingface_hub client: resume, faults, checks."""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import pytest

from kaihe_desktop.core.downloads.fetch import (
    DiskUsage,
    Downloader,
    DownloadProgress,
    DownloadResult,
    partial_key,
    safe_relative_path,
)
from kaihe_desktop.core.downloads.part_io import sha256_file
from kaihe_desktop.core.downloads.pull import run_queue
from kaihe_desktop.core.downloads.queue import DownloadQueue, resolve_variant
from kaihe_desktop.core.errors import (
    ChecksumMismatchError,
    DiskFullError,
    DownloadCancelled,
    DownloadError,
    DownloadInProgressError,
    GatedRepoError,
    HubUnreachableError,
    RepoNotFoundError,
    UnsafeFilenameError,
)
from kaihe_desktop.core.hub.variants import RepoFile, Variant
from kaihe_desktop.core.library import Library
from tests.helpers.hub_fixtures import HUB_TOKEN
from tests.helpers.hub_server import HubServer

MiB = 1024 * 1024


def _blob(size: int, seed: int = 0) -> bytes:
    return hashlib.shake_256(f"kaihe-{seed}".encode()).digest(size)


def _variant(files: dict[str, bytes], quant: str = "Q4_K_M", mmproj: str | None = None) -> Variant:
    def rf(name: str) -> RepoFile:
        data = files[name]
        return RepoFile(path=name, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())

    shards = tuple(rf(n) for n in files if n != mmproj)
    return Variant(quant=quant, files=shards, mmproj=rf(mmproj) if mmproj else None)


@pytest.fixture
def downloader(tmp_path: Path) -> Downloader:
    return Downloader(models_dir=tmp_path / "models", backoff_base_s=0.01, backoff_max_s=0.05)


@pytest.fixture
def one_file_repo(hub: HubServer) -> tuple[str, bytes, Variant]:
    data = _blob(3 * MiB + 12345, seed=1)
    repo_id = "kaihe-dl/one-GGUF"
    hub.add_repo(repo_id, {"one-Q4_K_M.gguf": data, "README.md": b"# one\n"})
    return repo_id, data, _variant({"one-Q4_K_M.gguf": data})


def test_downloads_and_verifies_a_variant(downloader: Downloader, one_file_repo, hub: HubServer) -> None:
    repo_id, data, variant = one_file_repo
    seen: list[DownloadProgress] = []
    result = downloader.download_variant(repo_id, variant, progress=seen.append)
    assert result.model_path.read_bytes() == data
    assert result.model_path == downloader.models_dir / "kaihe-dl__one-GGUF" / "one-Q4_K_M.gguf"
    assert result.files[0].sha256 == hashlib.sha256(data).hexdigest()
    assert result.fetched_bytes == len(data) and len(result.revision) == 40
    assert hub.bytes_sent(repo_id, "one-Q4_K_M.gguf") == len(data)
    assert seen[-1].phase == "done" and seen[-1].done_bytes == seen[-1].total_bytes == len(data)
    assert all(a.done_bytes <= b.done_bytes for a, b in zip(seen, seen[1:], strict=False))
    with pytest.raises(AttributeError):
        seen[0].done_bytes = 0  # type: ignore[misc]  # frozen
    assert not list(downloader.partial_dir.iterdir())  # the partial file became the model


def test_shards_and_projector_come_together(downloader: Downloader, hub: HubServer) -> None:
    files = {
        "big-Q8_0-00001-of-00002.gguf": _blob(MiB, 2),
        "big-Q8_0-00002-of-00002.gguf": _blob(MiB // 2, 3),
        "mmproj-big-f16.gguf": _blob(300_000, 4),
    }
    hub.add_repo("kaihe-dl/sharded-GGUF", {**files, "README.md": b"x"})
    variant = resolve_variant("kaihe-dl/sharded-GGUF", "q8_0")
    assert [f.path for f in variant.all_files] == list(files)
    result = downloader.download_variant("kaihe-dl/sharded-GGUF", variant)
    assert [f.path.read_bytes() for f in result.files] == list(files.values())
    assert result.model_path.name == "big-Q8_0-00001-of-00002.gguf"
    assert result.mmproj_path is not None and result.mmproj_path.name == "mmproj-big-f16.gguf"
    assert hub.bytes_sent("kaihe-dl/sharded-GGUF", "README.md") == 0


def test_cancel_keeps_the_partial_and_resume_fetches_only_the_rest(
    downloader: Downloader, one_file_repo, hub: HubServer
) -> None:
    repo_id, data, variant = one_file_repo
    hub.inject(repo_id, "one-Q4_K_M.gguf", bandwidth=4 * MiB)
    cancel = threading.Event()

    def stop_at_a_third(p: DownloadProgress) -> None:
        if p.done_bytes >= len(data) // 3:
            cancel.set()

    with pytest.raises(DownloadCancelled, match="partial file is kept"):
        downloader.download_variant(repo_id, variant, progress=stop_at_a_third, cancel=cancel)
    [state] = downloader.partial_state(repo_id, variant)
    assert 0 < state.have_bytes < len(data)
    assert not (downloader.models_dir / "kaihe-dl__one-GGUF" / "one-Q4_K_M.gguf").exists()
    sent_before = hub.bytes_sent(repo_id, "one-Q4_K_M.gguf")
    hub.clear_faults()
    result = downloader.download_variant(repo_id, variant)
    assert result.model_path.read_bytes() == data
    assert result.files[0].resumed_from == state.have_bytes
    resumed = [r for r in hub.requests(repo_id, "one-Q4_K_M.gguf") if r.method == "GET"][-1]
    assert resumed.range == f"bytes={state.have_bytes}-" and resumed.status == 206
    assert hub.bytes_sent(repo_id, "one-Q4_K_M.gguf") - sent_before == len(data) - state.have_bytes


def test_partial_left_by_a_crash_is_continued(downloader: Downloader, one_file_repo, hub: HubServer) -> None:
    repo_id, data, variant = one_file_repo
    part = downloader.partial_path(repo_id, "main", variant.files[0])
    part.parent.mkdir(parents=True)
    part.write_bytes(data[: 2 * MiB])  # what a killed process left on disk
    result = downloader.download_variant(repo_id, variant)
    assert result.model_path.read_bytes() == data
    assert hub.bytes_sent(repo_id, "one-Q4_K_M.gguf") == len(data) - 2 * MiB


def test_cut_connection_is_resumed(downloader: Downloader, one_file_repo, hub: HubServer) -> None:
    repo_id, data, variant = one_file_repo
    hub.inject(repo_id, "one-Q4_K_M.gguf", cut_after=1_500_000, cut_times=2)
    result = downloader.download_variant(repo_id, variant)
    assert result.model_path.read_bytes() == data
    gets = [r for r in hub.requests(repo_id, "one-Q4_K_M.gguf") if r.method == "GET"]
    assert len(gets) == 3 and all(g.range for g in gets[1:])
    # only what was lost in flight (less than one 1 MiB write per cut) is fetched twice
    assert hub.bytes_sent(repo_id, "one-Q4_K_M.gguf") < len(data) + 2 * MiB


def test_server_ignoring_range_restarts_cleanly(
    downloader: Downloader, one_file_repo, hub: HubServer
) -> None:
    repo_id, data, variant = one_file_repo
    part = downloader.partial_path(repo_id, "main", variant.files[0])
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:MiB])
    hub.inject(repo_id, "one-Q4_K_M.gguf", ignore_range=True)
    result = downloader.download_variant(repo_id, variant)
    assert result.model_path.read_bytes() == data
    assert result.files[0].sha256 == hashlib.sha256(data).hexdigest()
    assert hub.bytes_sent(repo_id, "one-Q4_K_M.gguf") == len(data)


# --- one writer per partial file; "verified" means the bytes on disk ----------------------------------------

# A second downloader that ignores the lock (an older build, another tool): it resumes the same part file with
# huggingface_hub's http_get, the server ignores Range, so http_get rewinds and truncates the file to 0; it
# writes 1 MiB and is SIGKILLed. The first downloader keeps writing at its own offset: a run of zeros.
RANGE_IGNORING_WRITER = """
import os, signal, sys
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
from huggingface_hub.file_download import http_get
constants.DOWNLOAD_CHUNK_SIZE = 64 * 1024
repo_id, name, part, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
url = get_hf_file_metadata(hf_hub_url(repo_id, name)).location

class KilledMidway:
    def __init__(self, fh):
        self.fh, self.written = fh, 0
    def write(self, data):
        self.fh.write(data)
        self.fh.flush()
        self.written += len(data)
        if self.written >= 1024 * 1024:
            os.kill(os.getpid(), signal.SIGKILL)
        return len(data)
    def __getattr__(self, attr):
        return getattr(self.fh, attr)

with open(part, "r+b") as fh:
    have = fh.seek(0, 2)
    http_get(url, KilledMidway(fh), resume_size=have, expected_size=size)
"""


def test_a_second_download_of_the_same_files_is_refused_while_the_first_runs(
    tmp_path: Path, hub: HubServer
) -> None:
    repo_id = "kaihe-dl/two-GGUF"
    files = {
        "two-Q4_K_M.gguf": _blob(4 * MiB, 20),
        "two-Q8_0.gguf": _blob(100_000, 21),
        "mmproj-two-f16.gguf": _blob(200_000, 22),
    }
    hub.add_repo(repo_id, files)
    mm = "mmproj-two-f16.gguf"
    q4 = _variant({k: files[k] for k in ("two-Q4_K_M.gguf", mm)}, mmproj=mm)
    q8 = _variant({k: files[k] for k in ("two-Q8_0.gguf", mm)}, quant="Q8_0", mmproj=mm)
    hub.inject(repo_id, "two-Q4_K_M.gguf", bandwidth=2 * MiB)  # about 2 s
    models = tmp_path / "models"
    running = threading.Event()
    box: dict[str, object] = {}

    def first() -> None:
        def progress(p: DownloadProgress) -> None:
            if p.done_bytes >= MiB:
                running.set()

        box["result"] = Downloader(models_dir=models).download_variant(repo_id, q4, progress=progress)

    worker = threading.Thread(target=first)
    worker.start()
    assert running.wait(60)
    asked = len(hub.requests(repo_id))
    second = Downloader(models_dir=models)
    for variant in (q4, q8):  # the same variant, and another that shares its projector
        with pytest.raises(DownloadInProgressError) as refused:
            second.download_variant(repo_id, variant)
        assert refused.value.pid == os.getpid()
        assert f"{repo_id}:{variant.quant} is already being downloaded by process {os.getpid()}" in str(
            refused.value
        )
    assert len(hub.requests(repo_id)) == asked  # the refused downloads asked the Hub for nothing
    worker.join(60)
    result = box["result"]
    assert isinstance(result, DownloadResult)
    assert [f.path.read_bytes() for f in result.files] == [files["two-Q4_K_M.gguf"], files[mm]]
    assert hub.bytes_sent(repo_id, "two-Q4_K_M.gguf") == len(files["two-Q4_K_M.gguf"])
    assert second.download_variant(repo_id, q8).model_path.read_bytes() == files["two-Q8_0.gguf"]


def test_bytes_changed_on_disk_after_they_arrived_are_not_verified(
    tmp_path: Path, one_file_repo, hub: HubServer
) -> None:
    """The sha256 that admits a file is the file's on disk, not that of the bytes the socket delivered."""
    repo_id, data, variant = one_file_repo
    hub.inject(repo_id, "one-Q4_K_M.gguf", bandwidth=4 * MiB)
    downloader = Downloader(models_dir=tmp_path / "home" / "models")
    part = downloader.partial_path(repo_id, "main", variant.files[0])
    spoiled: list[int] = []

    def spoil(p: DownloadProgress) -> None:
        if p.done_bytes >= 2 * MiB and not spoiled:  # 4 KiB that arrived intact go bad on disk
            with part.open("r+b") as fh:
                fh.write(b"\0" * 4096)
            spoiled.append(p.done_bytes)

    library = Library(root=tmp_path / "home")
    queue = DownloadQueue(path=tmp_path / "home" / "downloads.json")
    queue.add(repo_id, "Q4_K_M")
    [outcome] = run_queue(
        queue=queue, downloader=downloader, library=library, resolve=lambda _i: variant, progress=spoil
    )
    assert spoiled
    assert outcome.entry is None and outcome.error is not None and "is corrupt" in outcome.error
    assert library.entries() == () and not part.exists()


def test_a_range_ignoring_writer_killed_midway_cannot_get_a_corrupt_file_listed(
    tmp_path: Path, hub: HubServer
) -> None:
    repo_id, name = "kaihe-dl/shared-GGUF", "shared-Q4_K_M.gguf"
    data = _blob(8 * MiB, 30)
    hub.add_repo(repo_id, {name: data})
    variant = _variant({name: data})
    hub.inject(repo_id, name, bandwidth=2 * MiB, ignore_range=True)
    home = tmp_path / "home"
    downloader = Downloader(models_dir=home / "models")
    part = downloader.partial_path(repo_id, "main", variant.files[0])
    library = Library(root=home)
    queue = DownloadQueue(path=home / "downloads.json")
    queue.add(repo_id, "Q4_K_M")
    second_writer: list[int] = []

    def meanwhile(p: DownloadProgress) -> None:
        if p.done_bytes >= 3 * MiB and not second_writer:  # the first is at 3 MiB when the second cuts in
            proc = subprocess.run(
                [sys.executable, "-c", RANGE_IGNORING_WRITER, repo_id, name, str(part), str(len(data))],
                env={**os.environ, "HF_ENDPOINT": hub.url},
                capture_output=True,
                timeout=120,
            )
            second_writer.append(proc.returncode)

    [outcome] = run_queue(
        queue=queue, downloader=downloader, library=library, resolve=lambda _i: variant, progress=meanwhile
    )
    assert second_writer == [-9]  # SIGKILLed after its 1 MiB
    assert outcome.entry is None and outcome.error is not None and "is corrupt" in outcome.error
    assert library.entries() == () and not part.exists()
    hub.clear_faults()
    [again] = run_queue(queue=queue, downloader=downloader, library=library, resolve=lambda _i: variant)
    assert again.entry is not None
    for entry in library.entries():  # the library never holds a file whose bytes differ from its hash
        assert entry.sha256 == sha256_file(entry.path) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried(
    downloader: Downloader, one_file_repo, hub: HubServer, status: int
) -> None:
    repo_id, data, variant = one_file_repo
    hub.inject(repo_id, "one-Q4_K_M.gguf", status=status, times=2)
    result = downloader.download_variant(repo_id, variant)
    assert result.model_path.read_bytes() == data
    statuses = [r.status for r in hub.requests(repo_id, "one-Q4_K_M.gguf")]
    assert statuses[:2] == [status, status]


def test_rate_limit_honours_retry_after(downloader: Downloader, one_file_repo, hub: HubServer) -> None:
    repo_id, data, variant = one_file_repo
    hub.inject(repo_id, "one-Q4_K_M.gguf", status=429, times=1, retry_after=1, methods=("HEAD",))
    result = downloader.download_variant(repo_id, variant)
    assert result.model_path.read_bytes() == data
    assert [r.status for r in hub.requests(repo_id, "one-Q4_K_M.gguf")][:2] == [429, 302]


def test_persistent_errors_end_in_one_clear_error(tmp_path: Path, one_file_repo, hub: HubServer) -> None:
    repo_id, _, variant = one_file_repo
    downloader = Downloader(models_dir=tmp_path / "m", max_retries=2, backoff_base_s=0.01)
    hub.inject(repo_id, "one-Q4_K_M.gguf", status=503, times=100)
    with pytest.raises(DownloadError, match=r"failed after 3 attempts: HTTP 503"):
        downloader.download_variant(repo_id, variant)
    assert len(hub.requests(repo_id, "one-Q4_K_M.gguf")) == 3


def test_checksum_mismatch_deletes_the_bad_file(
    downloader: Downloader, one_file_repo, hub: HubServer
) -> None:
    repo_id, _, variant = one_file_repo
    hub.inject(repo_id, "one-Q4_K_M.gguf", corrupt=True)
    with pytest.raises(ChecksumMismatchError, match="bad file was deleted"):
        downloader.download_variant(repo_id, variant)
    assert not list(downloader.partial_dir.iterdir())
    assert not (downloader.models_dir / "kaihe-dl__one-GGUF").exists()


def test_gated_repo_needs_a_login(tmp_path: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _blob(100_000, 5)
    hub.add_repo("kaihe-dl/gated-GGUF", {"g-Q4_K_M.gguf": data}, gated=True)
    variant = _variant({"g-Q4_K_M.gguf": data})
    anonymous = Downloader(models_dir=tmp_path / "a", token=False)
    with pytest.raises(GatedRepoError) as err:
        anonymous.download_variant("kaihe-dl/gated-GGUF", variant)
    assert f"accept the licence at {hub.url}/kaihe-dl/gated-GGUF and log in" in str(err.value)
    assert hub.bytes_sent("kaihe-dl/gated-GGUF") == 0
    with_token = Downloader(models_dir=tmp_path / "b", token=HUB_TOKEN)
    assert with_token.download_variant("kaihe-dl/gated-GGUF", variant).model_path.read_bytes() == data
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)  # huggingface_hub's own login lookup
    from_env = Downloader(models_dir=tmp_path / "c")
    assert from_env.download_variant("kaihe-dl/gated-GGUF", variant).model_path.read_bytes() == data


def test_missing_repo_and_file(downloader: Downloader, one_file_repo) -> None:
    repo_id, data, variant = one_file_repo
    with pytest.raises(RepoNotFoundError, match="not found"):
        downloader.download_variant("kaihe-dl/no-such-repo", variant)
    ghost = _variant({"ghost-Q4_K_M.gguf": data})
    with pytest.raises(RepoNotFoundError, match="ghost-Q4_K_M.gguf was not found"):
        downloader.download_variant(repo_id, ghost)


@pytest.mark.parametrize("name", ["../../evil-Q4_K_M.gguf", "/etc/evil-Q4_K_M.gguf", "a/../../evil.gguf"])
def test_unsafe_names_are_refused_before_any_byte(
    downloader: Downloader, hub: HubServer, tmp_path: Path, name: str
) -> None:
    good = _blob(1000, 6)
    hub.add_repo("kaihe-dl/evil-GGUF", {"good-Q4_K_M.gguf": good, name: b"GGUF evil"})
    variant = Variant(
        quant="Q4_K_M",
        files=(RepoFile("good-Q4_K_M.gguf", len(good), hashlib.sha256(good).hexdigest()), RepoFile(name, 9)),
    )
    with pytest.raises(UnsafeFilenameError, match="climbs out"):
        downloader.download_variant("kaihe-dl/evil-GGUF", variant)
    assert hub.requests("kaihe-dl/evil-GGUF") == []
    assert not downloader.models_dir.exists()
    assert not (tmp_path / "evil-Q4_K_M.gguf").exists()


def test_safe_relative_path_accepts_subfolders() -> None:
    assert str(safe_relative_path("Q8_0/model-00001-of-00002.gguf")) == "Q8_0/model-00001-of-00002.gguf"
    for bad in ("", "..", "C:\\x.gguf", "a\\..\\..\\b.gguf", "./x.gguf", "a//b.gguf"):
        with pytest.raises(UnsafeFilenameError):
            safe_relative_path(bad)


def test_not_enough_disk_space_is_refused_up_front(tmp_path: Path, one_file_repo, hub: HubServer) -> None:
    repo_id, data, variant = one_file_repo
    tight = Downloader(
        models_dir=tmp_path / "m",
        disk_usage=lambda _p: DiskUsage(total=10 * MiB, used=9 * MiB, free=MiB),
        disk_reserve_bytes=0,
    )
    with pytest.raises(DiskFullError) as err:
        tight.download_variant(repo_id, variant)
    assert "needs 3.2 MB" in str(err.value) and "1.0 MB free" in str(err.value)
    assert hub.requests(repo_id) == []


class _SmallDisk:
    """A partial file on a disk that fills after `room` bytes (as a real full disk answers: ENOSPC)."""

    def __init__(self, room: int) -> None:
        self.room = room

    def __call__(self, path: Path, have: int) -> IO[bytes]:
        fh = open(path, "r+b" if path.exists() else "wb")  # noqa: SIM115
        fh.seek(have)
        fh.truncate()
        room = self.room
        real_write = fh.write

        def write(data: bytes) -> int:  # type: ignore[override]
            if fh.tell() + len(data) > room:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(data)

        fh.write = write  # type: ignore[method-assign]
        return fh


def test_disk_filling_up_stops_cleanly_and_library_is_unchanged(
    tmp_path: Path, one_file_repo, hub: HubServer
) -> None:
    repo_id, data, variant = one_file_repo
    library = Library(root=tmp_path / "home")
    small = Downloader(models_dir=tmp_path / "home" / "models", open_part=_SmallDisk(2 * MiB))
    queue = DownloadQueue(path=tmp_path / "home" / "downloads.json")
    queue.add(repo_id, "Q4_K_M")
    [outcome] = run_queue(queue=queue, downloader=small, library=library, resolve=lambda _item: variant)
    assert outcome.error is not None and "disk filled up" in outcome.error
    assert library.entries() == ()
    assert queue.items()[0].state == "failed"
    [state] = small.partial_state(repo_id, variant)
    assert state.have_bytes == 2 * MiB  # kept: free some space and run again
    roomy = Downloader(models_dir=tmp_path / "home" / "models")
    [done] = run_queue(queue=queue, downloader=roomy, library=library, resolve=lambda _item: variant)
    assert done.entry is not None and done.entry.path.read_bytes() == data


def test_real_file_size_limit_in_a_subprocess(tmp_path: Path, one_file_repo, hub: HubServer) -> None:
    """RLIMIT_FSIZE makes the kernel refuse writes (EFBIG) the way a full disk refuses them (ENOSPC)."""
    repo_id, _, variant = one_file_repo
    code = f"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({MiB}, {MiB}))
from pathlib import Path
from kaihe_desktop.core.downloads.fetch import Downloader
from kaihe_desktop.core.downloads.queue import resolve_variant
from kaihe_desktop.core.errors import DiskFullError
variant = resolve_variant("{repo_id}", "Q4_K_M")
try:
    Downloader(models_dir=Path(sys.argv[1])).download_variant("{repo_id}", variant)
except DiskFullError as exc:
    print("DiskFullError:", exc)
"""
    env = {**os.environ, "HF_ENDPOINT": hub.url}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "models")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert out.stdout.startswith("DiskFullError: the disk filled up while writing"), out.stderr
    part = next((tmp_path / "models" / ".partial").iterdir())
    assert part.stat().st_size == MiB
    assert variant.files[0].size_bytes > MiB


def test_already_installed_files_are_not_fetched_again(
    downloader: Downloader, one_file_repo, hub: HubServer
) -> None:
    repo_id, _, variant = one_file_repo
    downloader.download_variant(repo_id, variant)
    hub.reset_counters()
    again = downloader.download_variant(repo_id, variant)
    assert again.fetched_bytes == 0 and hub.bytes_sent() == 0


def test_queue_survives_a_restart(tmp_path: Path, one_file_repo, hub: HubServer) -> None:
    repo_id, data, variant = one_file_repo
    path = tmp_path / "downloads.json"
    first = DownloadQueue(path=path)
    keys = [partial_key(repo_id, "main", f) for f in variant.all_files]
    first.add(
        repo_id, "Q4_K_M", files=[f.path for f in variant.all_files], total_bytes=len(data), partial_keys=keys
    )
    first.set_state(f"{repo_id}:Q4_K_M", "running")  # the app died mid-download: its lock died with it
    downloader = Downloader(models_dir=tmp_path / "models")
    part = downloader.partial_path(repo_id, "main", variant.files[0])
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:MiB])

    restarted = DownloadQueue(path=path)
    assert [i.state for i in restarted.items()] == ["running"]
    assert [i.key for i in restarted.recover(locks_dir=downloader.locks_dir)] == [f"{repo_id}:Q4_K_M"]
    library = Library(root=tmp_path)
    [outcome] = run_queue(queue=restarted, downloader=downloader, library=library)
    assert outcome.entry is not None and outcome.entry.path.read_bytes() == data
    assert hub.bytes_sent(repo_id, "one-Q4_K_M.gguf") == len(data) - MiB
    assert [i.state for i in DownloadQueue(path=path).items()] == ["done"]


def test_queue_pause_and_failures(tmp_path: Path, one_file_repo, hub: HubServer) -> None:
    repo_id, data, variant = one_file_repo
    queue = DownloadQueue(path=tmp_path / "q.json")
    queue.add("kaihe-dl/no-such-repo", "Q4_K_M")
    queue.add(repo_id, "Q4_K_M")
    cancel = threading.Event()
    cancel.set()
    downloader = Downloader(models_dir=tmp_path / "models")
    library = Library(root=tmp_path)
    with pytest.raises(DownloadCancelled):
        run_queue(queue=queue, downloader=downloader, library=library, cancel=cancel)
    states = {i.repo_id: i.state for i in queue.items()}
    assert states == {"kaihe-dl/no-such-repo": "failed", repo_id: "paused"}
    assert "not found" in (queue.items()[0].error or "")
    outcomes = run_queue(
        queue=DownloadQueue(path=tmp_path / "q.json"),
        downloader=downloader,
        library=library,
        include_failed=False,
    )
    assert [o.entry.repo_id for o in outcomes if o.entry] == [repo_id]
    assert [e.repo_id for e in library.entries()] == [repo_id]


def test_offline_mode_fails_at_once_with_a_clear_error(
    downloader: Downloader, one_file_repo, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo_id, _, variant = one_file_repo
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnreachableError, match="offline mode is on"):
        downloader.download_variant(repo_id, variant)
    assert hub.requests(repo_id) == []


def test_unreachable_hub_gives_up_after_the_timeout(tmp_path: Path, one_file_repo) -> None:
    _, _, variant = one_file_repo
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    nowhere = Downloader(
        models_dir=tmp_path / "m", endpoint=f"http://127.0.0.1:{port}", timeout_s=0.3, backoff_base_s=0.05
    )
    with pytest.raises(HubUnreachableError, match=f"cannot reach the Hub at http://127.0.0.1:{port}"):
        nowhere.download_variant("kaihe-dl/one-GGUF", variant)
