"""downloads.json on a full disk or damaged: the download's own error is the one the user sees, recording
"failed" cannot add a second one, no temp file is left, and a damaged queue is moved aside, not fatal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kaihe_desktop.core import json_store
from kaihe_desktop.core.downloads.fetch import Downloader
from kaihe_desktop.core.downloads.pull import run_queue
from kaihe_desktop.core.downloads.queue import DownloadQueue
from kaihe_desktop.core.errors import DiskFullError
from kaihe_desktop.core.hub.variants import RepoFile, Variant
from kaihe_desktop.core.library import Library
from tests.helpers.full_disk import fill_the_disk, stray_temp_files

VARIANT = Variant("Q8_0", (RepoFile("m-Q8_0.gguf", 10, "0" * 64),))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_disk_filling_up_mid_download_is_one_error_and_the_item_is_kept(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = DownloadQueue(path=home / "downloads.json")
    queue.add("o/m-GGUF", "Q8_0", files=["m-Q8_0.gguf"], total_bytes=10, partial_keys=["k1"])
    downloader = Downloader(models_dir=home / "models")

    def fills_the_disk(*args: Any, **kwargs: Any) -> None:
        fill_the_disk(monkeypatch)  # from here on the queue cannot be written either
        raise DiskFullError("the disk filled up while writing m-Q8_0.gguf; the partial download is kept")

    monkeypatch.setattr(downloader, "download_variant", fills_the_disk)
    [outcome] = run_queue(
        queue=queue, downloader=downloader, library=Library(root=home), resolve=lambda _item: VARIANT
    )
    assert outcome.error is not None and outcome.error.startswith("the disk filled up while writing")
    [item] = queue.items()  # nothing lost: the item, its files and partial keys are all still there
    assert item.key == "o/m-GGUF:Q8_0" and item.files == ("m-Q8_0.gguf",) and item.partial_keys == ("k1",)
    assert stray_temp_files(home) == []


def test_queueing_on_a_full_disk_is_one_line(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = DownloadQueue(path=home / "downloads.json")
    queue.add("o/first-GGUF", "Q4_K_M")
    before = queue.path.read_bytes()
    fill_the_disk(monkeypatch)
    with pytest.raises(DiskFullError) as caught:
        queue.add("o/second-GGUF", "Q4_K_M")
    message = str(caught.value)
    assert message.startswith(f"cannot save the download queue: the disk is full in {home}")
    assert "\n" not in message and queue.path.read_bytes() == before and stray_temp_files(home) == []
    assert queue.set_state_after_error("o/first-GGUF:Q4_K_M", "failed", error="x") is False


@pytest.mark.parametrize("content", ['{"version": 1, "items": [{"quant": "Q8_0"}]}', '{"items": [', "7"])
def test_a_damaged_queue_is_moved_aside_and_reads_empty(home: Path, content: str) -> None:
    home.mkdir()
    (home / "downloads.json").write_text(content)
    queue = DownloadQueue(path=home / "downloads.json")
    json_store.take_notices()
    assert queue.items() == ()
    [notice] = json_store.take_notices()
    assert notice.moved_to is not None and notice.moved_to.read_text() == content
    assert "the download queue" in notice.message and str(notice.moved_to) in notice.message
    queue.add("o/m-GGUF", "Q8_0")
    assert json.loads(queue.path.read_text())["items"][0]["repo_id"] == "o/m-GGUF"
