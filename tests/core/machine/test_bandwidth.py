"""RAM bandwidth: measured for real on this machine, cached per CPU and RAM size."""

from __future__ import annotations

import json
import math
from pathlib import Path

import psutil
import pytest

from kaihe_desktop.core.machine.bandwidth import (
    CACHE_FILE_NAME,
    DEFAULT_BUFFER_BYTES,
    MIN_BUFFER_BYTES,
    buffer_size_for,
    machine_key,
    measure_copy_bandwidth,
    ram_bandwidth_gbps,
)
from kaihe_desktop.core.machine.cpu import cpu_brand

GIB = 2**30


def cache_entries(cache_dir: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((cache_dir / CACHE_FILE_NAME).read_text())["entries"]


def test_measures_once_then_answers_from_the_cache(tmp_path: Path) -> None:
    first = ram_bandwidth_gbps(cache_dir=tmp_path)
    assert math.isfinite(first) and first > 0
    entry = cache_entries(tmp_path)[machine_key()]
    assert entry["gbps"] == first
    assert entry["threads"] >= 1 and MIN_BUFFER_BYTES <= entry["buffer_bytes"] <= DEFAULT_BUFFER_BYTES
    # A second measurement would differ in its last digits; the cached value comes back exactly.
    assert ram_bandwidth_gbps(cache_dir=tmp_path) == first


def test_cache_key_is_cpu_brand_and_ram_size() -> None:
    assert machine_key() == f"{cpu_brand()}|{psutil.virtual_memory().total}"


def test_refresh_measures_again_and_keeps_other_machines(tmp_path: Path) -> None:
    (tmp_path / CACHE_FILE_NAME).write_text(
        json.dumps({"entries": {machine_key(): {"gbps": 123.0}, "Other CPU|1": {"gbps": 9.5}}})
    )
    assert ram_bandwidth_gbps(cache_dir=tmp_path) == 123.0
    fresh = ram_bandwidth_gbps(cache_dir=tmp_path, refresh=True)
    entries = cache_entries(tmp_path)
    assert entries[machine_key()]["gbps"] == fresh and "measured_at" in entries[machine_key()]
    assert entries["Other CPU|1"] == {"gbps": 9.5}


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"entries": {"x": 1}}'])
def test_a_damaged_cache_is_measured_again_and_rewritten(tmp_path: Path, content: str) -> None:
    (tmp_path / CACHE_FILE_NAME).write_text(content)
    gbps = ram_bandwidth_gbps(cache_dir=tmp_path)
    assert gbps > 0 and cache_entries(tmp_path)[machine_key()]["gbps"] == gbps


def test_a_bad_cached_value_is_not_trusted(tmp_path: Path) -> None:
    (tmp_path / CACHE_FILE_NAME).write_text(json.dumps({"entries": {machine_key(): {"gbps": -1}}}))
    assert ram_bandwidth_gbps(cache_dir=tmp_path) > 0


def test_an_unwritable_cache_still_gives_a_measurement(tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    assert ram_bandwidth_gbps(cache_dir=blocker) > 0


def test_default_cache_lives_under_kaihe_home(kaihe_home: Path) -> None:
    ram_bandwidth_gbps()
    assert machine_key() in cache_entries(kaihe_home / "cache")


def test_buffer_size_shrinks_on_small_machines() -> None:
    assert buffer_size_for(available_bytes=16 * GIB) == DEFAULT_BUFFER_BYTES
    assert buffer_size_for(available_bytes=1 * GIB) == GIB // 8
    assert buffer_size_for(available_bytes=64 * 2**20) == MIN_BUFFER_BYTES


def test_measure_copy_rejects_nonsense_arguments() -> None:
    with pytest.raises(ValueError):
        measure_copy_bandwidth(buffer_bytes=0)
    with pytest.raises(ValueError):
        measure_copy_bandwidth(buffer_bytes=MIN_BUFFER_BYTES, threads=0)
    assert measure_copy_bandwidth(buffer_bytes=MIN_BUFFER_BYTES, threads=2, passes=1) > 0


def test_a_full_disk_leaves_no_temp_file_behind(tmp_path: Path) -> None:
    """RLIMIT_FSIZE: the kernel refuses the cache write as a full disk would; `kaihe hardware` used to leave
    ram_bandwidth.json.<pid>.tmp behind each time."""
    import subprocess
    import sys

    code = """
import resource, signal, sys
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (16, 16))
from kaihe_desktop.core.machine.bandwidth import ram_bandwidth_gbps
print(ram_bandwidth_gbps(cache_dir=Path(sys.argv[1])) > 0)
"""
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "True", out.stderr
    assert list(tmp_path.iterdir()) == []  # no cache, and no temp file either
