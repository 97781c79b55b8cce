"""The catalog's disk cache on a full disk: nothing raised, no temp file left, the last good entry kept, and
the user told once; repo ids too long for a file name are still cached (under a hash)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kaihe_desktop.core import json_store
from kaihe_desktop.core.hub.licenses import LicenseInfo
from kaihe_desktop.core.hub.listing import HubRepo
from kaihe_desktop.core.hub.listing_cache import ListingCache
from kaihe_desktop.core.hub.variants import RepoFile
from tests.helpers.full_disk import fill_the_disk, stray_temp_files


def _repo(repo_id: str) -> HubRepo:
    return HubRepo(
        repo_id=repo_id,
        license=LicenseInfo(license_id="mit", commercial_use="yes", note=""),
        gated=False,
        downloads=1,
        likes=0,
        last_modified=None,
        base_model=None,
    )


def test_a_full_disk_skips_the_cache_keeps_the_old_entry_and_says_so_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = ListingCache(tmp_path / "catalog")
    cache.put_search("k", ["o/old-GGUF"], query="old")
    files = (RepoFile("m-Q4_0.gguf", 10, None),)
    cache.put_repo(_repo("o/old-GGUF"), files, meta=None)
    json_store.reset_notices()
    fill_the_disk(monkeypatch)
    cache.put_search("k", ["o/new-GGUF"], query="new")  # no exception: it is only a cache
    cache.put_repo(_repo("o/old-GGUF"), (), meta=None, meta_error="x")
    assert stray_temp_files(tmp_path) == []
    found = cache.get_search("k")
    assert found is not None and found.repo_ids == ("o/old-GGUF",)
    cached = cache.get_repo("o/old-GGUF")
    assert cached is not None and cached.files == files
    [notice] = json_store.take_notices()
    assert "the catalog cache" in notice.message and "the disk is full" in notice.message


def test_a_repo_id_too_long_for_a_file_name_is_cached_under_a_hash(tmp_path: Path) -> None:
    cache = ListingCache(tmp_path)
    long_id = "o" * 100 + "/" + "n" * 200
    cache.put_repo(_repo(long_id), (), meta=None)
    cached = cache.get_repo(long_id)
    assert cached is not None and cached.repo.repo_id == long_id
    [file] = (tmp_path / "repos").iterdir()
    assert len(file.name) < 100 and json.loads(file.read_text())["repo"]["repo_id"] == long_id
