"""The pull use case against the local Hub: plan (pick, named quant, fit refusal, resume, installed), then
execute under the plan's lock, with the same end state whichever front end calls it."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from kaihe_desktop.core.downloads.fetch import Downloader
from kaihe_desktop.core.downloads.pull import (
    PullPaused,
    VariantDoesNotFitError,
    execute_pull,
    plan_pull,
    remove,
)
from kaihe_desktop.core.downloads.queue import DiscardResult, DownloadQueue, QueueState
from kaihe_desktop.core.errors import ChecksumMismatchError, DownloadInProgressError
from kaihe_desktop.core.library import DeleteResult, Library
from kaihe_desktop.core.machine.profiles import resolve_profile
from kaihe_desktop.core.machine.spec import Machine
from tests.helpers.hub_server import HubServer
from tests.helpers.tiny_gguf import spec_for_size, write_tiny_model

MiB = 1024 * 1024
REPO = "kaihe-plan/tiny-GGUF"


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("plan-models")
    return {
        "tiny-Q8_0.gguf": write_tiny_model(folder / "tiny-Q8_0.gguf", tensor_type="Q8_0"),
        "tiny-F16.gguf": write_tiny_model(folder / "tiny-F16.gguf", spec_for_size("llama", 8 * MiB)),
    }


@pytest.fixture
def repo(hub: HubServer, tiny_pair: dict[str, Path]) -> str:
    hub.add_repo(REPO, {**tiny_pair, "README.md": b"# tiny\n"})
    return REPO


class Deps:
    def __init__(self, home: Path) -> None:
        self.queue = DownloadQueue(path=home / "downloads.json")
        self.library = Library(root=home)
        self.downloader = Downloader(models_dir=home / "models")

    def plan(self, quant: str | None = None, *, machine: Machine | None = None):  # noqa: ANN201
        return plan_pull(
            REPO,
            quant,
            machine=machine or resolve_profile("laptop-8gb"),
            queue=self.queue,
            library=self.library,
            downloader=self.downloader,
        )

    def execute(self, plan, **kwargs):  # noqa: ANN001, ANN003, ANN201
        return execute_pull(
            plan, queue=self.queue, downloader=self.downloader, library=self.library, **kwargs
        )


@pytest.fixture
def deps(tmp_path: Path) -> Deps:
    return Deps(tmp_path / "home")


def _tiny_machine() -> Machine:
    """4 MiB of free RAM, no swap, no GPU: not even the tiny Q8_0 fits with the margin."""
    data = resolve_profile("netbook-4gb").to_dict()
    data["ram"].update(total_bytes=64 * MiB, available_bytes=4 * MiB, swap_total_bytes=0, swap_free_bytes=0)
    return Machine.from_dict(data)


def test_the_picker_chooses_and_the_pull_ends_done_in_the_library(deps: Deps, repo: str) -> None:
    with deps.plan() as plan:
        assert plan.variant is not None and plan.variant.quant == "F16"
        assert plan.pick is not None and plan.reason == plan.pick.reason and plan.reason
        assert plan.fits is True and not plan.resume and plan.already_installed is None
        assert plan.memory is not None and plan.lock is not None and plan.lock.held
        started: list[str] = []
        outcome = deps.execute(plan, on_start=lambda p: started.append(p.key))
    assert not plan.lock.held  # released with the plan
    assert started == [f"{repo}:F16"]
    assert outcome.entry is not None and outcome.result is not None
    assert outcome.entry.quant == "F16" and outcome.fetched_bytes == plan.total_bytes
    assert [e.name for e in deps.library.entries()] == [outcome.entry.name]
    [item] = deps.queue.items()
    assert item.state is QueueState.DONE and outcome.item == item
    assert json.loads(deps.queue.path.read_text())["items"][0]["state"] == "done"  # saved as it always was


def test_a_named_quant_is_judged_not_picked(deps: Deps, repo: str, hub: HubServer) -> None:
    with deps.plan("q8_0") as plan:
        assert plan.variant is not None and plan.variant.quant == "Q8_0" and plan.key == f"{repo}:Q8_0"
        assert plan.pick is None and plan.reason is None and plan.fits is True and plan.memory is not None
    assert hub.requests(repo, "tiny-F16.gguf") == []  # only the named variant's header was read
    assert deps.queue.items() == ()  # planning queues nothing


def test_what_does_not_fit_is_refused_with_its_numbers_before_anything_is_queued(
    deps: Deps, repo: str, hub: HubServer
) -> None:
    with deps.plan("Q8_0", machine=_tiny_machine()) as plan:
        assert plan.fits is False
        assert plan.warnings and plan.warnings[0].code == "does_not_fit"
        header_bytes = hub.bytes_sent(repo, "tiny-Q8_0.gguf")
        with pytest.raises(VariantDoesNotFitError) as refused:
            deps.execute(plan)
        assert refused.value.plan is plan
        assert refused.value.shortfall_bytes == plan.warnings[0].numbers["shortfall_bytes"] > 0
        assert str(refused.value).startswith(f"{repo}:Q8_0 does not fit this machine: needs ")
        assert "--yes" not in str(refused.value)  # the CLI's words are the CLI's
        assert deps.queue.items() == () and deps.library.entries() == ()
        assert hub.bytes_sent(repo, "tiny-Q8_0.gguf") == header_bytes  # not a byte more
        outcome = deps.execute(plan, allow_unfit=True)
    assert outcome.entry is not None and outcome.entry.quant == "Q8_0"


def test_a_paused_pull_resumes_as_queued_without_asking_for_the_fit_again(
    deps: Deps, repo: str, hub: HubServer
) -> None:
    size = hub.repo(repo).files["tiny-F16.gguf"].size  # type: ignore[union-attr]
    hub.inject(repo, "tiny-F16.gguf", bandwidth=size / 4, methods=("GET",))
    cancel = threading.Event()

    def pause_at_a_quarter(p) -> None:  # noqa: ANN001
        if p.done_bytes >= size // 4:
            cancel.set()

    with deps.plan("F16") as plan, pytest.raises(PullPaused) as paused:
        deps.execute(plan, progress=pause_at_a_quarter, cancel=cancel)
    kept = paused.value.pause.kept_bytes
    assert 0 < kept < size and paused.value.pause.total_bytes == size
    [item] = deps.queue.items()
    assert item.state is QueueState.PAUSED and item.partial_keys
    hub.clear_faults()
    seen = len(hub.requests(repo, "tiny-F16.gguf"))
    with deps.plan("F16", machine=_tiny_machine()) as resumed:  # would not fit: not asked again
        assert resumed.resume and resumed.fits is None and resumed.have_bytes == kept
        assert resumed.memory is None and resumed.warnings == ()
        outcome = deps.execute(resumed)
    assert outcome.entry is not None and outcome.fetched_bytes == size - kept
    asked = hub.requests(repo, "tiny-F16.gguf")[seen:]  # no header read, just the rest
    assert [(r.method, r.range) for r in asked if r.method == "GET"] == [("GET", f"bytes={kept}-")]
    assert deps.queue.items()[0].state is QueueState.DONE


def test_an_installed_model_is_planned_without_asking_the_hub(deps: Deps, repo: str, hub: HubServer) -> None:
    with deps.plan("Q8_0") as plan:
        installed = deps.execute(plan).entry
    hub.reset_counters()
    seen = len(hub.requests(repo))
    for quant in ("Q8_0", None):
        with deps.plan(quant) as again:
            assert again.already_installed == installed and again.lock is None and again.variant is None
            outcome = deps.execute(again)
        assert outcome.already_installed and outcome.entry == installed and outcome.item is None
    assert len(hub.requests(repo)) == seen and hub.bytes_sent() == 0


def test_a_second_pull_of_a_running_download_is_refused_before_any_request(
    deps: Deps, repo: str, hub: HubServer
) -> None:
    size = hub.repo(repo).files["tiny-F16.gguf"].size  # type: ignore[union-attr]
    hub.inject(repo, "tiny-F16.gguf", bandwidth=size / 16, methods=("GET",))  # paused long before the end
    cancel = threading.Event()
    running = threading.Event()
    box: dict[str, BaseException] = {}

    def first() -> None:
        with deps.plan("F16") as plan:
            try:
                deps.execute(plan, cancel=cancel, progress=lambda p: running.set() if p.done_bytes else None)
            except BaseException as exc:  # noqa: BLE001 - looked at below
                box["error"] = exc

    worker = threading.Thread(target=first)
    worker.start()
    try:
        assert running.wait(120), "the first download did not start"
        asked = len(hub.requests(repo))
        for quant in ("F16", None):  # the queued item names its files: refused at once
            with pytest.raises(DownloadInProgressError) as refused:
                deps.plan(quant)
            assert str(refused.value) == (
                f"{repo}:F16 is already being downloaded by process {refused.value.pid}; "
                "wait for it to finish or stop it first"
            )
        assert len(hub.requests(repo)) == asked  # not a listing, not a HEAD, not a byte
        # with no queued item to name the files (another queue), the lock is taken after the listing,
        # before the header read: refused there, with no request for the file itself
        other = Deps(deps.queue.path.parent)
        other.queue = DownloadQueue(path=deps.queue.path.parent / "elsewhere.json")
        file_requests = len(hub.requests(repo, "tiny-F16.gguf"))
        with pytest.raises(DownloadInProgressError, match="is already being downloaded by process"):
            other.plan("F16")
        assert len(hub.requests(repo, "tiny-F16.gguf")) == file_requests
    finally:
        cancel.set()
        worker.join()
    assert isinstance(box.get("error"), PullPaused)
    assert deps.queue.items()[0].state is QueueState.PAUSED


def test_a_failed_download_is_recorded_and_raised(deps: Deps, repo: str, hub: HubServer) -> None:
    hub.inject(repo, "tiny-Q8_0.gguf", corrupt=True)
    with deps.plan("Q8_0") as plan, pytest.raises(ChecksumMismatchError):
        deps.execute(plan)
    [item] = deps.queue.items()
    assert item.state is QueueState.FAILED and item.error and "is corrupt" in item.error
    assert deps.library.entries() == ()


def test_remove_takes_a_model_or_else_an_interrupted_download(deps: Deps, repo: str, hub: HubServer) -> None:
    with deps.plan("Q8_0") as plan:
        entry = deps.execute(plan).entry
    assert entry is not None
    size = hub.repo(repo).files["tiny-F16.gguf"].size  # type: ignore[union-attr]
    cancel = threading.Event()
    cancel.set()
    with deps.plan("F16") as plan, pytest.raises(PullPaused):
        deps.execute(plan, cancel=cancel)
    part = deps.downloader.partial_path(repo, "main", plan.files[0])
    part.write_bytes(b"x" * 1000)
    removed = remove(entry.name, library=deps.library, queue=deps.queue, downloader=deps.downloader)
    assert isinstance(removed, DeleteResult) and removed.freed_bytes == entry.size_bytes
    discarded = remove(f"{repo}:F16", library=deps.library, queue=deps.queue, downloader=deps.downloader)
    assert isinstance(discarded, DiscardResult) and discarded.freed_bytes == 1000 < size
    assert not part.exists() and [i.state for i in deps.queue.items()] == [QueueState.DONE]


def test_queue_states_load_from_old_files_and_unknown_ones_resume(tmp_path: Path) -> None:
    path = tmp_path / "downloads.json"
    items = [
        {"repo_id": "o/a-GGUF", "quant": "Q8_0", "state": "paused"},
        {"repo_id": "o/b-GGUF", "quant": "Q8_0", "state": "done"},
        {"repo_id": "o/c-GGUF", "quant": "Q8_0", "state": "verifying"},  # a newer version's state
        {"repo_id": "o/d-GGUF", "quant": "Q8_0"},
    ]
    path.write_text(json.dumps({"version": 1, "items": items}))
    queue = DownloadQueue(path=path)
    assert [i.state for i in queue.items()] == [
        QueueState.PAUSED,
        QueueState.DONE,
        QueueState.QUEUED,
        QueueState.QUEUED,
    ]
    assert [i.key for i in queue.pending()] == ["o/a-GGUF:Q8_0", "o/c-GGUF:Q8_0", "o/d-GGUF:Q8_0"]
    queue.set_state("o/a-GGUF:Q8_0", "running")  # a plain string still names a state
    assert json.loads(path.read_text())["items"][0]["state"] == "running"
    with pytest.raises(ValueError, match="unknown queue state 'nope'"):
        queue.set_state("o/a-GGUF:Q8_0", "nope")
    queue.prune_done()
    assert "o/b-GGUF:Q8_0" not in [i.key for i in queue.items()]
    assert replace(queue.items()[0], state=QueueState.PAUSED).to_dict()["state"] == "paused"
