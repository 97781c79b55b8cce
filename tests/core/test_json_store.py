"""json_store: atomic writes that turn a full disk into one DiskFullError and leave no temp file behind; reads
that move an unusable file aside (kept, named) and start empty instead of failing every command."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kaihe_desktop.core import json_store
from kaihe_desktop.core.errors import DiskFullError, StateFileError
from tests.helpers.full_disk import fill_the_disk, stray_temp_files


def _parse_names(data: Any) -> list[str]:
    names = data["names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise json_store.BadShapeError("'names' is not a list of text")
    return list(names)


def _read(path: Path, **kw: Any) -> json_store.Loaded[list[str]]:
    return json_store.read_json(path, parse=_parse_names, empty=list, what="the test file", version=2, **kw)


def test_write_then_read_round_trips_with_a_version(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    json_store.write_json(path, {"names": ["a", "b"]}, what="the test file", version=2)
    assert json.loads(path.read_text()) == {"version": 2, "names": ["a", "b"]}
    assert _read(path) == json_store.Loaded(["a", "b"])
    assert _read(tmp_path / "missing.json") == json_store.Loaded([])
    assert stray_temp_files(tmp_path) == []


@pytest.mark.parametrize(
    ("code", "says"),
    [(errno.ENOSPC, "the disk is full"), (errno.EDQUOT, "quota"), (errno.EFBIG, "size limit")],
)
def test_full_disk_is_one_disk_full_error_and_the_old_file_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, says: str
) -> None:
    path = tmp_path / "state.json"
    json_store.write_json(path, {"names": ["kept"]}, what="the test file", version=2)
    before = path.read_bytes()
    fill_the_disk(monkeypatch, code=code)
    with pytest.raises(DiskFullError) as caught:
        json_store.write_json(path, {"names": ["new"] * 1000}, what="the test file", version=2)
    message = str(caught.value)
    assert "\n" not in message and says in message and str(tmp_path) in message
    assert "free at least 1.0 MiB" in message and message.startswith("cannot save the test file")
    assert path.read_bytes() == before  # nothing lost
    assert stray_temp_files(tmp_path) == []  # no 0-byte temp file left


def test_other_os_errors_are_one_state_file_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(StateFileError, match="cannot save the test file to .*not-a-folder"):
        json_store.write_json(blocker / "state.json", {"names": []}, what="the test file")


def test_a_real_file_size_limit_in_a_subprocess(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes the kernel itself refuse the write (EFBIG), as a full disk refuses with ENOSPC."""
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 2, "names": ["kept"]}))
    code = """
import resource, signal, sys
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
from kaihe_desktop.core import json_store
from kaihe_desktop.core.errors import DiskFullError
try:
    json_store.write_json(Path(sys.argv[1]), {"names": ["x" * 100] * 100}, what="the test file", version=2)
except DiskFullError as exc:
    print("DiskFullError:", exc)
"""
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.startswith("DiskFullError: cannot save the test file"), out.stdout + out.stderr
    assert json.loads(path.read_text()) == {"version": 2, "names": ["kept"]}
    assert stray_temp_files(tmp_path) == []


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b'{"version": 2, "names": ["a", ', "not valid JSON"),
        (b"\xff\xfe garbage", "not UTF-8"),
        (b"[1, 2, 3]", "expected a JSON object"),
        (b'{"version": 2, "names": "abc"}', "not a list of text"),
        (b'{"version": 2}', "'names'"),
        (b'{"version": "two", "names": []}', "version"),
    ],
)
def test_unusable_file_is_moved_aside_and_reads_empty(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    json_store.take_notices()
    loaded = _read(path)
    assert loaded.value == [] and loaded.notice is not None
    moved = loaded.notice.moved_to
    assert moved is not None and moved.name.startswith("state.json.corrupt-")
    assert moved.read_bytes() == content  # kept, byte for byte
    assert not path.exists()
    message = loaded.notice.message
    assert "\n" not in message and str(path) in message and str(moved) in message and why in message
    assert json_store.take_notices() == (loaded.notice,)
    json_store.write_json(path, {"names": ["fresh"]}, what="the test file", version=2)
    assert _read(path).value == ["fresh"] and moved.exists()


def test_an_unreadable_path_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.mkdir()  # read_bytes fails with IsADirectoryError, whoever runs the test
    (path / "inside").write_text("kept")
    loaded = _read(path)
    assert loaded.value == [] and loaded.notice is not None and "cannot be read" in loaded.notice.message
    assert loaded.notice.moved_to is not None and (loaded.notice.moved_to / "inside").read_text() == "kept"


def test_two_bad_files_in_one_second_keep_both(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("first")
    first = _read(path).notice
    path.write_text("second")
    second = _read(path).notice
    assert first is not None and second is not None and first.moved_to != second.moved_to
    assert first.moved_to is not None and first.moved_to.read_text() == "first"
    assert second.moved_to is not None and second.moved_to.read_text() == "second"


def test_a_newer_format_is_refused_not_moved(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 3, "names": []}))
    with pytest.raises(StateFileError, match="newer KAIHE"):
        _read(path)
    assert path.exists()


def test_a_file_rewritten_while_it_is_judged_is_not_moved_aside(tmp_path: Path) -> None:
    """Another process replaced the bad file with a good one between our read and the move: keep it."""
    path = tmp_path / "state.json"
    path.write_text("damaged")
    calls = []

    class Lock:
        def __enter__(self) -> None:
            calls.append("lock")
            if len(calls) == 1:  # the other writer got in first
                json_store.write_json(path, {"names": ["theirs"]}, what="the test file", version=2)

        def __exit__(self, *exc: object) -> None:
            return None

    loaded = _read(path, lock=Lock())
    assert loaded == json_store.Loaded(["theirs"])
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_notices_go_to_the_listener_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    heard: list[json_store.StoreNotice] = []
    json_store.set_notice_listener(heard.append)
    try:
        fill_the_disk(monkeypatch)
        cache = tmp_path / "cache" / "c.json"
        assert json_store.write_cache(cache, {"a": 1}, what="the test cache") is False
        assert json_store.write_cache(cache, {"a": 2}, what="the test cache") is False
    finally:
        json_store.set_notice_listener(None)
    assert len(heard) == 1 and "only a cache" in heard[0].message and "the disk is full" in heard[0].message
    assert not cache.exists() and stray_temp_files(tmp_path) == []


def test_cache_reads_never_fail(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    assert json_store.read_cache(path) is None
    path.write_text("[1]")
    assert json_store.read_cache(path) is None
    path.write_text('{"version": 1, "x": 2}')
    assert json_store.read_cache(path, version=2) is None
    assert json_store.read_cache(path, version=1) == {"version": 1, "x": 2}
    assert os.listdir(tmp_path) == ["c.json"]  # caches are refetched, not moved aside
