"""`kaihe models` and `kaihe rm`: listing, imports, the HF cache offer, the starter model, space freed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download

from kaihe_desktop.cli.main import main
from kaihe_desktop.core.downloads.fetch import Downloader
from kaihe_desktop.core.downloads.queue import DownloadQueue
from kaihe_desktop.core.hub.variants import Variant
from tests.helpers.full_disk import fill_the_disk, stray_temp_files
from tests.helpers.hub_server import HubServer
from tests.helpers.tiny_gguf import write_corrupt_gguf, write_tiny_model

REQUIRED_KEYS = {"name", "repo_id", "quant", "path", "size_bytes", "sha256"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("models-cmd") / "tiny-Q8_0.gguf", tensor_type="Q8_0")


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_empty_library(kaihe_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    assert "the library is empty" in capsys.readouterr().out
    assert _json(capsys, "models", "--json") == []


def test_import_copy_list_and_remove(
    kaihe_home: Path, tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "--import", str(tiny), "--copy", "--name", "mine"]) == 0
    out = capsys.readouterr().out
    assert "added mine" in out and "NAME" in out and "mine" in out
    [model] = _json(capsys, "models", "--json")  # type: ignore[misc]
    assert set(model) >= REQUIRED_KEYS and model["quant"] == "Q8_0"
    copied = Path(model["path"])
    assert copied.is_relative_to(kaihe_home) and copied.read_bytes() == tiny.read_bytes()
    removed = _json(capsys, "rm", "mine", "--json")
    assert removed == {
        "name": "mine",
        "freed_bytes": tiny.stat().st_size,
        "deleted_files": [str(copied)],
        "kept_files": [],
    }
    assert not copied.exists() and tiny.exists()
    assert main(["rm", "mine"]) == 1
    assert capsys.readouterr().err.startswith("kaihe: error: no model named 'mine'")


def test_bad_import_is_one_clear_line(
    kaihe_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write_corrupt_gguf(tmp_path / "bad.gguf")
    assert main(["models", "--import", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kaihe: error:") and "bad.gguf" in err[0]
    assert _json(capsys, "models", "--json") == []


def test_a_model_llama_cpp_cannot_load_is_not_imported(
    kaihe_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zero = write_tiny_model(tmp_path / "zero-heads.gguf", extra_kv={"llama.attention.head_count": 0})
    line = _one_error_line(capsys, ["models", "--import", str(zero)])
    assert line == "kaihe: error: zero-heads.gguf: llama.cpp cannot load it: llama.attention.head_count is 0"
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    line = _one_error_line(capsys, ["models", "--import", str(fifo)])
    assert line == f"kaihe: error: {fifo} is not a regular file (a named pipe)"
    assert _json(capsys, "models", "--json") == []


def test_hf_cache_offer_and_starter(
    kaihe_home: Path, hub: HubServer, tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.add_repo("kaihe-models/cached-GGUF", {tiny.name: tiny})
    cached = Path(hf_hub_download("kaihe-models/cached-GGUF", tiny.name))  # the session's HF_HOME cache
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "in the Hugging Face cache" in out and "kaihe-models/cached-GGUF" in out
    assert main(["models", "--add-cached", "--add-starter"]) == 0
    listed = {m["name"]: m for m in _json(capsys, "models", "--json")}  # type: ignore[union-attr]
    assert listed["cached-GGUF:Q8_0"]["path"] == str(cached)
    assert listed["starter"]["repo_id"] == "google/gemma-3-270m-GGUF"
    assert main(["rm", "cached-GGUF:Q8_0"]) == 0
    out = capsys.readouterr().out
    assert "freed 0 B" in out and "not owned by the library" in out and cached.exists()
    assert main(["rm", "starter"]) == 0
    assert "freed 241.4 MiB" in capsys.readouterr().out


@pytest.mark.parametrize("keys_in_queue", [True, False])
def test_rm_discards_an_interrupted_download(
    kaihe_home: Path, hub: HubServer, tiny: Path, capsys: pytest.CaptureFixture[str], keys_in_queue: bool
) -> None:
    hub.add_repo("kaihe-models/paused-GGUF", {tiny.name: tiny})
    from kaihe_desktop.core.downloads.fetch import partial_key
    from kaihe_desktop.core.downloads.queue import resolve_variant

    variant: Variant = resolve_variant("kaihe-models/paused-GGUF", "Q8_0")
    downloader = Downloader()
    part = downloader.partial_path("kaihe-models/paused-GGUF", "main", variant.files[0])
    part.parent.mkdir(parents=True)
    part.write_bytes(tiny.read_bytes()[:5000])
    keys = [partial_key("kaihe-models/paused-GGUF", "main", f) for f in variant.all_files]
    DownloadQueue().add("kaihe-models/paused-GGUF", "Q8_0", partial_keys=keys if keys_in_queue else ())
    assert main(["models"]) == 0
    assert "kaihe-models/paused-GGUF:Q8_0" in capsys.readouterr().out
    if keys_in_queue:
        hub.remove_repo("kaihe-models/paused-GGUF")  # cleanup needs no Hub when the queue knows the files
    assert main(["rm", "kaihe-models/paused-GGUF:Q8_0"]) == 0
    assert "discarded the interrupted download of kaihe-models/paused-GGUF:Q8_0: freed 4.9 KiB" in (
        capsys.readouterr().out
    )
    assert not part.exists() and DownloadQueue().items() == ()


# --- a damaged index, a full disk, bad names: one line each, nothing lost ---------------------------------


def _one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err + captured.out
    assert len(lines) == 1 and lines[0].startswith("kaihe: error: "), captured.err
    return lines[0]


@pytest.mark.parametrize("content", ['{"version": 1, "models": [{"name": "x"}]}', "[]", '{"models": '])
def test_a_damaged_index_is_moved_aside_named_and_the_app_works(
    kaihe_home: Path, tiny: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    kaihe_home.mkdir(parents=True)
    (kaihe_home / "library.json").write_text(content)
    assert main(["models"]) == 0
    captured = capsys.readouterr()
    [warning] = captured.err.strip().splitlines()
    [moved] = kaihe_home.glob("library.json.corrupt-*")
    assert warning.startswith("kaihe: warning: the library index") and str(moved) in warning
    assert moved.read_text() == content and "the library is empty" in captured.out
    assert main(["models", "--import", str(tiny)]) == 0
    assert [m["name"] for m in _json(capsys, "models", "--json")] == ["tiny-Q8_0"]  # type: ignore[index]
    assert capsys.readouterr().err == ""  # said once


def test_full_disk_on_import_is_one_line_and_the_library_is_unchanged(
    kaihe_home: Path,
    tiny: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert main(["models", "--import", str(tiny), "--name", "first"]) == 0
    index = kaihe_home / "library.json"
    before = index.read_bytes()
    second = tmp_path / "second-Q8_0.gguf"
    second.write_bytes(tiny.read_bytes())
    capsys.readouterr()
    free_space = fill_the_disk(monkeypatch)
    for argv in (["models", "--import", str(second)], ["models", "--import", str(second), "--copy"]):
        line = _one_error_line(capsys, argv)
        assert "cannot save the library index: the disk is full in" in line and "free at least" in line
        assert index.read_bytes() == before and stray_temp_files(kaihe_home) == []
        assert not (kaihe_home / "models" / "imported" / second.name).exists()
    free_space()
    assert main(["models", "--import", str(second), "--copy"]) == 0  # space freed: it just works


def test_copy_import_without_the_space_is_one_line_and_leaves_nothing(
    kaihe_home: Path, tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    huge = tmp_path / "huge-Q8_0.gguf"
    huge.write_bytes(tiny.read_bytes())
    os.truncate(huge, shutil.disk_usage(tmp_path).free + 2**30)  # sparse, larger than the free space
    line = _one_error_line(capsys, ["models", "--import", str(huge), "--copy"])
    assert "not enough disk space to copy huge-Q8_0.gguf" in line and "free at least" in line
    assert list((kaihe_home / "models" / "imported").iterdir()) == []
    assert main(["models", "--import", str(tiny), "--copy"]) == 0


@pytest.mark.parametrize(
    ("argv_tail", "says"),
    [
        (["--name", "two\nlines"], "control characters (\\n)"),
        (["--name", "x" * 250], "at most 200 characters"),
    ],
)
def test_bad_display_names_are_refused(
    kaihe_home: Path, tiny: Path, capsys: pytest.CaptureFixture[str], argv_tail: list[str], says: str
) -> None:
    line = _one_error_line(capsys, ["models", "--import", str(tiny), *argv_tail])
    assert says in line
    assert _json(capsys, "models", "--json") == []


@pytest.mark.parametrize("name", ["c" * 601, "a" * 300 + "/" + "b" * 300])
def test_names_too_long_for_the_file_system_are_one_line(
    kaihe_home: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    assert "255-byte limit" in _one_error_line(capsys, ["models", "--import", f"/tmp/{name}.gguf"])
    assert "255-byte limit" in _one_error_line(capsys, ["rm", name])


# --- rm while a download of the model runs: refused, nothing deleted --------------------------------------


def test_rm_refuses_to_discard_a_running_download(
    kaihe_home: Path, hub: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kaihe_desktop.core.library import Library
    from tests.cli.test_pull_cmd import _partial_size, _pull_process, _wait_for
    from tests.helpers.tiny_gguf import spec_for_size

    model = write_tiny_model(tmp_path / "busy-F16.gguf", spec_for_size("llama", 8 * 1024 * 1024))
    repo = "kaihe-models/busy-GGUF"
    hub.add_repo(repo, {model.name: model})
    size = model.stat().st_size
    hub.inject(repo, model.name, bandwidth=size / 4, methods=("GET",))  # about 4 s
    pull = _pull_process(f"{repo}:F16", kaihe_home)
    _wait_for(kaihe_home, size // 8, pull)
    assert main(["rm", f"{repo}:F16"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"kaihe: error: {repo}:F16 is being downloaded by process {pull.pid}; stop it first"]
    assert _partial_size(kaihe_home) > 0 and DownloadQueue().get(f"{repo}:F16") is not None
    out, err_text = pull.communicate(timeout=120)
    assert pull.returncode == 0 and "verified sha256" in out, err_text
    assert hub.bytes_sent(repo, model.name) < 2 * size  # it did not start over
    [entry] = Library().entries()
    assert main(["rm", entry.name]) == 0 and not entry.path.exists()


def test_rm_of_a_listed_model_refuses_while_its_files_download(
    kaihe_home: Path, hub: HubServer, tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kaihe_desktop.core.downloads.queue import resolve_variant
    from kaihe_desktop.core.library import Library

    repo = "kaihe-models/relisted-GGUF"
    hub.add_repo(repo, {tiny.name: tiny})
    variant = resolve_variant(repo, "Q8_0")
    downloader = Downloader()
    entry = Library().add_download(downloader.download_variant(repo, variant))
    with downloader.lock(repo, variant):  # a download of its files runs (here, in this process)
        assert main(["rm", entry.name]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            f"kaihe: error: {entry.name} is being downloaded by process {os.getpid()}; stop it first"
        ]
        assert entry.path.exists() and [e.name for e in Library().entries()] == [entry.name]
    assert main(["rm", entry.name]) == 0 and not entry.path.exists()


def test_a_name_saved_with_a_newline_before_still_lists_on_one_line(
    kaihe_home: Path, tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "--import", str(tiny), "--name", "old"]) == 0
    index = kaihe_home / "library.json"
    data = json.loads(index.read_text())
    data["models"][0]["name"] = "two\nlines"  # written by an older version, which did not refuse it
    index.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "two\\nlines" in out and "two\nlines" not in out
