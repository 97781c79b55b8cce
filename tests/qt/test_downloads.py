"""The downloads service against the local Hub: start to the library, pause/resume keeping bytes, a gated
repo's error and action, the queue of a previous run, the stall watchdog, progress at most 4 times a
second."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from kaihe_desktop.core.downloads.fetch import DiskUsage, Downloader
from kaihe_desktop.core.downloads.queue import QueueState
from kaihe_desktop.qt import format as fmt
from kaihe_desktop.qt import workers
from kaihe_desktop.qt.controllers import downloads as downloads_module
from kaihe_desktop.qt.controllers.downloads import DownloadsController
from kaihe_desktop.qt.errors import Action
from kaihe_desktop.qt.models.downloads import DownloadRow, DownloadState
from kaihe_desktop.services import Services
from tests.helpers.hub_server import HubServer
from tests.helpers.tiny_gguf import spec_for_size, write_tiny_model
from tests.qt.conftest import PROFILE

MiB = 1024 * 1024
WAIT_MS = 60_000
MakeController = Callable[..., DownloadsController]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("download-models")
    return {
        "small": write_tiny_model(folder / "tiny-Q8_0.gguf", tensor_type="Q8_0"),
        "medium": write_tiny_model(  # 4.2 MiB
            folder / "tiny-F16.gguf",
            n_layer=2,
            n_embd=256,
            n_ff=512,
            n_head=8,
            n_head_kv=2,
            n_vocab=2048,
            tensor_type="F16",
        ),  # fmt: skip
    }


@pytest.fixture
def make_controller(qtbot: QtBot) -> Iterator[MakeController]:
    """DownloadsController over a Services; whatever is still downloading at the end is paused first."""
    made: list[DownloadsController] = []

    def make(services: Services, **kwargs: object) -> DownloadsController:
        controller = DownloadsController(
            queue=services.queue,
            library=services.library,
            downloader=services.downloader(),
            machine=services.load_machine,
            **kwargs,  # type: ignore[arg-type]
        )
        made.append(controller)
        return controller

    yield make
    for controller in made:
        for key in controller.active_keys:
            controller.pause(key)
        qtbot.waitUntil(lambda c=controller: not c.active_keys, timeout=WAIT_MS)


def _state(controller: DownloadsController, key: str) -> DownloadState | None:
    row = controller.row(key)
    return row.state if row is not None else None


def _row(controller: DownloadsController, key: str) -> DownloadRow:
    row = controller.row(key)
    assert row is not None
    return row


def _ranges(hub: HubServer, repo: str, name: str) -> list[str | None]:
    return [r.range for r in hub.requests(repo, name) if r.method == "GET" and r.status in (200, 206)]


def test_a_download_ends_verified_in_the_library(
    qtbot: QtBot, qtmodeltester, services: Services, hub: HubServer, models: dict[str, Path],  # noqa: ANN001
    make_controller: MakeController,
) -> None:  # fmt: skip
    repo = "kaihe-dl/start-GGUF"
    hub.add_repo(repo, {"tiny-Q8_0.gguf": models["small"]})
    controller = make_controller(services)
    progressed: list[tuple[DownloadRow, ...]] = []
    controller.progressed.connect(progressed.append)
    with qtbot.waitSignal(controller.installed, timeout=WAIT_MS) as got:
        key = controller.start(repo, "Q8_0")
    entry = got.args[0]
    assert key == f"{repo}:Q8_0" and entry.quant == "Q8_0" and entry.repo_id == repo
    assert [e.name for e in services.library.entries()] == [entry.name]
    size = models["small"].stat().st_size
    row = _row(controller, key)
    assert row.state is DownloadState.DONE and row.done_bytes == row.total_bytes == size
    assert row.error is None and row.fraction == 1.0
    assert progressed and any(r.key == key and r.total_bytes == size for rows in progressed for r in rows)
    assert [i.state for i in services.queue.items()] == [QueueState.DONE]
    qtmodeltester.check(controller.model)
    # a second start of an installed model plans nothing to fetch and says it is there
    hub.reset_counters()
    with qtbot.waitSignal(controller.installed, timeout=WAIT_MS):
        controller.start(repo, "Q8_0")
    assert hub.bytes_sent() == 0
    controller.clear_finished()
    assert controller.model.rowCount() == 0
    qtbot.waitUntil(lambda: not workers.in_flight(), timeout=WAIT_MS)
    assert services.queue.items() == ()


def test_the_picker_chooses_when_no_quant_is_named(
    qtbot: QtBot, services: Services, hub: HubServer, models: dict[str, Path], make_controller: MakeController
) -> None:
    repo = "kaihe-dl/pick-GGUF"
    hub.add_repo(repo, {"tiny-Q8_0.gguf": models["small"]})
    controller = make_controller(services)
    with qtbot.waitSignal(controller.installed, timeout=WAIT_MS):
        key = controller.start(repo)
    assert key == repo
    [row] = controller.model.rows
    assert row.key == f"{repo}:Q8_0" and row.quant == "Q8_0" and row.state is DownloadState.DONE


def _pause_at(qtbot: QtBot, controller: DownloadsController, key: str, at_least: int) -> DownloadRow:
    qtbot.waitUntil(lambda: _row(controller, key).done_bytes >= at_least, timeout=WAIT_MS)
    with qtbot.waitSignal(
        controller.changed, timeout=WAIT_MS, check_params_cb=lambda r: r.state is DownloadState.PAUSED
    ):
        controller.pause(key)
    return _row(controller, key)


def test_pause_keeps_the_bytes_and_resume_fetches_only_the_rest(
    qtbot: QtBot, services: Services, hub: HubServer, models: dict[str, Path], make_controller: MakeController
) -> None:
    repo, name = "kaihe-dl/pause-GGUF", "tiny-F16.gguf"
    hub.add_repo(repo, {name: models["medium"]})
    size = models["medium"].stat().st_size
    hub.inject(repo, name, bandwidth=size / 6, methods=("GET",))
    controller = make_controller(services)
    key = controller.start(repo, "F16")
    paused = _pause_at(qtbot, controller, key, MiB)
    kept = paused.done_bytes
    assert MiB <= kept < size and paused.speed_bps == 0.0 and paused.eta_s is None
    [item] = services.queue.items()
    assert item.state is QueueState.PAUSED
    assert sum(p.stat().st_size for p in (services.home / "models" / ".partial").glob("*.part")) == kept
    hub.clear_faults()
    with qtbot.waitSignal(controller.installed, timeout=WAIT_MS):
        controller.resume(key)
    assert _ranges(hub, repo, name)[-1] == f"bytes={kept}-"
    assert _row(controller, key).state is DownloadState.DONE
    assert services.queue.items()[0].state is QueueState.DONE


def test_cancel_deletes_the_partial_files_and_the_item(
    qtbot: QtBot, services: Services, hub: HubServer, models: dict[str, Path], make_controller: MakeController
) -> None:
    repo, name = "kaihe-dl/cancel-GGUF", "tiny-F16.gguf"
    hub.add_repo(repo, {name: models["medium"]})
    hub.inject(repo, name, bandwidth=models["medium"].stat().st_size / 6, methods=("GET",))
    controller = make_controller(services)
    key = controller.start(repo, "F16")
    qtbot.waitUntil(lambda: _row(controller, key).done_bytes >= MiB, timeout=WAIT_MS)
    with qtbot.waitSignal(controller.removed, timeout=WAIT_MS):
        controller.cancel(key)
    assert controller.model.rowCount() == 0 and services.queue.items() == ()
    assert list((services.home / "models" / ".partial").glob("*.part")) == []


def test_a_second_start_of_a_running_download_shows_the_running_one(
    qtbot: QtBot, services: Services, hub: HubServer, models: dict[str, Path], make_controller: MakeController
) -> None:
    repo, name = "kaihe-dl/twice-GGUF", "tiny-F16.gguf"
    hub.add_repo(repo, {name: models["medium"]})
    hub.inject(repo, name, bandwidth=models["medium"].stat().st_size / 8, methods=("GET",))
    controller = make_controller(services)
    key = controller.start(repo, "F16")
    with qtbot.waitSignal(controller.already_running, timeout=5_000) as shown:
        assert controller.start(repo, "F16") == key
    assert shown.args == [key] and controller.model.rowCount() == 1


def test_a_gated_repo_says_accept_the_licence_and_sign_in(
    qtbot: QtBot, services: Services, hub: HubServer, models: dict[str, Path], make_controller: MakeController
) -> None:
    repo = "kaihe-dl/gated-GGUF"
    hub.add_repo(repo, {"tiny-Q8_0.gguf": models["small"]}, gated=True)
    controller = make_controller(services)
    with qtbot.waitSignal(
        controller.changed, timeout=WAIT_MS, check_params_cb=lambda r: r.state is DownloadState.FAILED
    ):
        key = controller.start(repo, "Q8_0")
    row = _row(controller, key)
    assert row.error is not None
    assert row.error.action in (Action.ACCEPT_LICENSE, Action.SIGN_IN)
    assert "licence" in row.error.title.lower() and "sign in" in row.error.hint.lower()
    assert controller.hub_page_url(repo) == f"{hub.url}/{repo}"
    assert services.library.entries() == ()


def _start_and_pause(
    qtbot: QtBot, controller: DownloadsController, hub: HubServer, repo: str, path: Path
) -> tuple[str, int]:
    name = path.name
    hub.add_repo(repo, {name: path})
    hub.inject(repo, name, bandwidth=path.stat().st_size / 6, methods=("GET",))
    key = controller.start(repo, "F16")
    kept = _pause_at(qtbot, controller, key, MiB).done_bytes
    hub.clear_faults()
    return key, kept


def test_a_paused_download_of_a_previous_run_comes_back_and_resumes(
    qtbot: QtBot, kaihe_home: Path, hub: HubServer, models: dict[str, Path], make_controller: MakeController
) -> None:
    repo = "kaihe-dl/restart-GGUF"
    first = make_controller(Services.create(home=kaihe_home, profile=PROFILE))
    key, kept = _start_and_pause(qtbot, first, hub, repo, models["medium"])
    again = Services.create(home=kaihe_home, profile=PROFILE)  # the next run of the app
    controller = make_controller(again)
    with qtbot.waitSignal(controller.restored, timeout=WAIT_MS):
        controller.restore()
    row = _row(controller, key)
    assert row.state is DownloadState.PAUSED and row.done_bytes == kept
    assert row.total_bytes == models["medium"].stat().st_size and not controller.active_keys
    with qtbot.waitSignal(controller.installed, timeout=WAIT_MS):
        controller.resume(key)
    assert _ranges(hub, repo, models["medium"].name)[-1] == f"bytes={kept}-"
    assert [e.repo_id for e in again.library.entries()] == [repo]


def test_a_download_a_crash_left_running_resumes_by_itself(
    qtbot: QtBot, kaihe_home: Path, hub: HubServer, models: dict[str, Path], make_controller: MakeController
) -> None:
    repo = "kaihe-dl/crash-GGUF"
    first = Services.create(home=kaihe_home, profile=PROFILE)
    key, kept = _start_and_pause(qtbot, make_controller(first), hub, repo, models["medium"])
    first.queue.set_state(key, QueueState.RUNNING)  # as a killed process leaves it: "running", no lock held
    again = Services.create(home=kaihe_home, profile=PROFILE)
    controller = make_controller(again)
    with qtbot.waitSignal(controller.installed, timeout=WAIT_MS):
        controller.restore()
    assert _ranges(hub, repo, models["medium"].name)[-1] == f"bytes={kept}-"
    assert _row(controller, key).state is DownloadState.DONE


def test_a_stalled_download_is_resumed_with_a_range_request(
    qtbot: QtBot, services: Services, hub: HubServer, models: dict[str, Path], make_controller: MakeController
) -> None:
    repo, name = "kaihe-dl/stall-GGUF", "tiny-F16.gguf"
    hub.add_repo(repo, {name: models["medium"]})
    size = models["medium"].stat().st_size
    # every GET goes silent (connection open) after 2.5 MiB, for longer than the core's read timeout; the
    # client has written 2 MiB of it (1 MiB writes), so the resumed GET asks for the last 2.2 MiB and ends
    hub.inject(repo, name, stall_after=5 * MiB // 2, stall_s=30.0, methods=("GET",))
    controller = make_controller(services, stall_after_s=1.0)
    states: list[DownloadState] = []
    controller.changed.connect(lambda r: states.append(r.state))
    with qtbot.waitSignal(controller.installed, timeout=WAIT_MS):
        key = controller.start(repo, "F16")
    row = _row(controller, key)
    assert row.state is DownloadState.DONE and row.stalls >= 1 and DownloadState.RETRYING in states
    ranges = _ranges(hub, repo, name)
    resumed = [r for r in ranges if r and r.startswith("bytes=") and not r.startswith("bytes=0-")]
    assert len(resumed) >= 1
    assert hub.bytes_sent(repo, name) < 2 * size  # resumed, never started over


def test_progress_reaches_the_gui_at_most_4_times_a_second(
    qtbot: QtBot, services: Services, hub: HubServer, tmp_path: Path, make_controller: MakeController,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repo, name = "kaihe-dl/rate-GGUF", "tiny-F16.gguf"
    path = write_tiny_model(tmp_path / name, spec_for_size("llama", 12 * MiB))
    hub.add_repo(repo, {name: path})
    hub.inject(repo, name, bandwidth=8 * MiB, methods=("GET",))
    calls = {"core": 0}
    original = downloads_module._Attempt.on_progress  # noqa: SLF001

    def counted(self: downloads_module._Attempt, progress: object) -> None:  # noqa: SLF001
        calls["core"] += 1
        original(self, progress)  # type: ignore[arg-type]

    monkeypatch.setattr(downloads_module._Attempt, "on_progress", counted)  # noqa: SLF001
    controller = make_controller(services)
    emitted: list[object] = []
    controller.progressed.connect(emitted.append)
    began = time.monotonic()
    with qtbot.waitSignal(controller.installed, timeout=WAIT_MS):
        controller.start(repo, "F16")
    elapsed = time.monotonic() - began
    # one coalesced update per 250 ms tick at most (+1 for the tick that applies the last snapshot)
    assert len(emitted) <= math.ceil(elapsed * 4) + 1
    assert calls["core"] > len(emitted)  # the core reported more often than the GUI heard


def test_a_download_stopped_by_quitting_resumes_at_the_next_start(
    qtbot: QtBot, kaihe_home: Path, hub: HubServer, models: dict[str, Path], make_controller: MakeController
) -> None:
    repo, name = "kaihe-dl/quit-GGUF", "tiny-F16.gguf"
    hub.add_repo(repo, {name: models["medium"]})
    hub.inject(repo, name, bandwidth=models["medium"].stat().st_size / 6, methods=("GET",))
    first = Services.create(home=kaihe_home, profile=PROFILE)
    quitting = make_controller(first)
    key = quitting.start(repo, "F16")
    qtbot.waitUntil(lambda: _row(quitting, key).done_bytes >= MiB, timeout=WAIT_MS)
    assert workers.await_all()  # what the window's closeEvent does
    [item] = first.queue.items()
    assert item.state is QueueState.QUEUED  # not "paused": nobody paused it
    hub.clear_faults()
    quitting._attempts.clear()  # noqa: SLF001 - its outcome was dropped with the quit, as in a real quit
    controller = make_controller(Services.create(home=kaihe_home, profile=PROFILE))
    with qtbot.waitSignal(controller.installed, timeout=WAIT_MS):
        controller.restore()
    resumed = _ranges(hub, repo, name)[-1]
    assert resumed is not None and resumed != "bytes=0-" and resumed.startswith("bytes=")


def test_a_full_disk_says_how_much_to_free(
    qtbot: QtBot, services: Services, hub: HubServer, models: dict[str, Path]
) -> None:
    repo = "kaihe-dl/full-GGUF"
    hub.add_repo(repo, {"tiny-F16.gguf": models["medium"]})
    size = models["medium"].stat().st_size
    downloader = Downloader(
        models_dir=services.home / "models",
        disk_usage=lambda _path: DiskUsage(total=100 * MiB, used=100 * MiB - MiB, free=MiB),
    )
    controller = DownloadsController(
        queue=services.queue, library=services.library, downloader=downloader, machine=services.load_machine
    )
    with qtbot.waitSignal(
        controller.changed, timeout=WAIT_MS, check_params_cb=lambda r: r.state is DownloadState.FAILED
    ):
        key = controller.start(repo, "F16")
    error = _row(controller, key).error
    assert error is not None and error.action is Action.FREE_DISK
    short = size + downloader.disk_reserve_bytes - MiB
    assert error.hint.startswith(f"Free at least {fmt.bytes_text(short)} on this disk")


def test_a_download_another_window_runs_is_shown_as_running_there(
    qtbot: QtBot, kaihe_home: Path, hub: HubServer, models: dict[str, Path], make_controller: MakeController
) -> None:
    repo, name = "kaihe-dl/elsewhere-GGUF", "tiny-F16.gguf"
    hub.add_repo(repo, {name: models["medium"]})
    hub.inject(repo, name, bandwidth=models["medium"].stat().st_size / 8, methods=("GET",))
    owner = make_controller(Services.create(home=kaihe_home, profile=PROFILE))
    key = owner.start(repo, "F16")
    qtbot.waitUntil(lambda: _state(owner, key) is DownloadState.RUNNING, timeout=WAIT_MS)
    other = make_controller(Services.create(home=kaihe_home, profile=PROFILE))
    with qtbot.waitSignal(
        other.changed, timeout=WAIT_MS, check_params_cb=lambda r: r.state is DownloadState.ELSEWHERE
    ):
        other.start(repo, "F16")
    error = _row(other, key).error
    assert error is not None and error.action is Action.WAIT and "already being downloaded" in error.detail
    assert _state(owner, key) is DownloadState.RUNNING  # untouched
