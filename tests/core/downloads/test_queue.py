"""The queue and the download lock across real processes: a live owner's item is never taken over."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kaihe_desktop.core.downloads.fetch import Downloader, partial_key
from kaihe_desktop.core.downloads.lock import DownloadLock, is_downloading
from kaihe_desktop.core.downloads.pull import run_queue
from kaihe_desktop.core.downloads.queue import DownloadQueue
from kaihe_desktop.core.errors import DownloadInProgressError
from kaihe_desktop.core.hub.variants import RepoFile, Variant
from kaihe_desktop.core.library import Library
from tests.helpers.hub_server import HubServer

ROOT = Path(__file__).resolve().parents[3]
REPO = "kaihe-q/held-GGUF"
KEY = f"{REPO}:Q8_0"

# Another process that holds the lock of some partial keys and marks the queue item "running", as a
# `kaihe pull` in progress does; it prints "held" and waits to be killed.
HOLDER = """
import sys, time
from pathlib import Path
from kaihe_desktop.core.downloads.lock import DownloadLock
from kaihe_desktop.core.downloads.queue import DownloadQueue
lock = DownloadLock(Path(sys.argv[1]), sys.argv[3].split(","), what="held").acquire()
DownloadQueue(path=Path(sys.argv[2])).set_state(sys.argv[4], "running")
print("held", flush=True)
time.sleep(300)
"""


def _data() -> bytes:
    return hashlib.shake_256(b"kaihe-queue").digest(300_000)


def _variant(data: bytes) -> Variant:
    return Variant(
        quant="Q8_0", files=(RepoFile("held-Q8_0.gguf", len(data), hashlib.sha256(data).hexdigest()),)
    )


@pytest.fixture
def setup(tmp_path: Path, hub: HubServer) -> tuple[Downloader, DownloadQueue, Variant, tuple[str, ...]]:
    data = _data()
    hub.add_repo(REPO, {"held-Q8_0.gguf": data})
    variant = _variant(data)
    downloader = Downloader(models_dir=tmp_path / "models")
    queue = DownloadQueue(path=tmp_path / "downloads.json")
    keys = tuple(partial_key(REPO, "main", f) for f in variant.all_files)
    queue.add(REPO, "Q8_0", files=[f.path for f in variant.all_files], partial_keys=keys)
    return downloader, queue, variant, keys


@pytest.fixture
def holder(
    setup: tuple[Downloader, DownloadQueue, Variant, tuple[str, ...]],
) -> Iterator[subprocess.Popen[str]]:
    downloader, queue, _, keys = setup
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(downloader.locks_dir), str(queue.path), ",".join(keys), KEY],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_recover_leaves_a_live_owners_item_and_takes_a_dead_ones(setup, holder) -> None:
    downloader, queue, _, keys = setup
    [item] = queue.items()
    assert item.state == "running" and item.owner_pid == holder.pid
    assert queue.recover(locks_dir=downloader.locks_dir) == ()
    assert queue.recover() == ()  # without the locks: its owner pid is alive
    assert [i.state for i in queue.items()] == ["running"]
    holder.kill()  # SIGKILL: the OS drops its lock
    holder.wait()
    assert not is_downloading(downloader.locks_dir, keys)
    [recovered] = queue.recover(locks_dir=downloader.locks_dir)
    assert recovered.key == KEY and recovered.state == "queued" and recovered.owner_pid is None


def test_recover_without_partial_keys_goes_by_the_owner_pid(tmp_path: Path) -> None:
    queue = DownloadQueue(path=tmp_path / "q.json")
    queue.add("kaihe-q/a-GGUF", "Q8_0")
    queue.set_state("kaihe-q/a-GGUF:Q8_0", "running")  # this process: alive
    assert queue.recover(locks_dir=tmp_path / "locks") == ()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(gone.stdout)
    data = queue.path.read_text().replace(f'"owner_pid": {os.getpid()}', f'"owner_pid": {dead_pid}')
    queue.path.write_text(data)
    assert [i.key for i in queue.recover(locks_dir=tmp_path / "locks")] == ["kaihe-q/a-GGUF:Q8_0"]


def test_run_does_not_touch_an_item_another_process_downloads(
    setup, holder, hub: HubServer, tmp_path: Path
) -> None:
    downloader, queue, variant, _ = setup
    outcomes = run_queue(
        queue=queue, downloader=downloader, library=Library(root=tmp_path), resolve=lambda _i: variant
    )
    assert outcomes == []
    [item] = queue.items()
    assert item.state == "running" and item.owner_pid == holder.pid
    assert hub.requests(REPO) == []
    with pytest.raises(DownloadInProgressError) as refused:
        downloader.download_variant(REPO, variant)
    assert refused.value.pid == holder.pid
    assert f"{KEY} is already being downloaded by process {holder.pid}" in str(refused.value)
    assert hub.requests(REPO) == []


def test_discard_refuses_while_the_download_runs(setup, holder) -> None:
    downloader, queue, variant, _ = setup
    part = downloader.partial_path(REPO, "main", variant.files[0])
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(b"x" * 5000)
    with pytest.raises(
        DownloadInProgressError, match=rf"{KEY} is being downloaded by process {holder.pid}; stop it first"
    ):
        queue.discard(KEY, downloader=downloader)
    assert part.exists() and queue.get(KEY) is not None
    holder.kill()
    holder.wait()
    discarded = queue.discard(KEY, downloader=downloader)
    assert discarded is not None and discarded.freed_bytes == 5000
    assert not part.exists() and queue.items() == ()


def test_lock_is_exclusive_within_a_process_and_covers_shared_files(tmp_path: Path) -> None:
    """Threads of one process (the window runs downloads in workers) are refused too; a projector shared by
    two variants is locked by whichever downloads it first."""
    shared = RepoFile("mmproj-f16.gguf", 10, "a" * 64)
    q4 = Variant(quant="Q4_K_M", files=(RepoFile("m-Q4_K_M.gguf", 10, "b" * 64),), mmproj=shared)
    q8 = Variant(quant="Q8_0", files=(RepoFile("m-Q8_0.gguf", 10, "c" * 64),), mmproj=shared)
    downloader = Downloader(models_dir=tmp_path / "models")
    with downloader.lock("kaihe-q/m-GGUF", q4) as held:
        assert held.held and held.acquire() is held  # reentrant for the holder
        held.release()
        with pytest.raises(DownloadInProgressError) as refused:
            downloader.lock("kaihe-q/m-GGUF", q8).acquire()
        assert refused.value.pid == os.getpid()
        assert "kaihe-q/m-GGUF:Q8_0 is already being downloaded by process" in str(refused.value)
    with downloader.lock("kaihe-q/m-GGUF", q8):
        pass
    lock = DownloadLock(downloader.locks_dir, ["d" * 64], what="x")
    lock.release()  # releasing what is not held is a no-op
    assert not lock.held
