"""`kaihe models` and `kaihe rm`: listing, imports, the HF cache offer, the starter model, space freed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download

from kaihe_desktop.cli.main import main
from kaihe_desktop.core.download_queue import DownloadQueue
from kaihe_desktop.core.downloads import Downloader
from kaihe_desktop.core.variants import Variant
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
    from kaihe_desktop.core.download_queue import resolve_variant
    from kaihe_desktop.core.downloads import partial_key

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
