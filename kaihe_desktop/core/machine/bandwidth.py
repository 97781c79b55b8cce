"""This machine's RAM bandwidth, measured once and cached: generation speed on a CPU is bound by it.

Generating a token reads every active weight once, so tokens/s on the CPU is roughly bandwidth divided by
the bytes read per token. Data sheets give the theoretical peak (dual-channel DDR5-5600 = 89.6 GB/s); what
a program actually gets is lower and depends on the machine, so we measure it.

Method: copy a buffer far larger than the CPU caches with numpy (`np.copyto` releases the GIL), split
across one thread per physical core as llama.cpp does, and keep the best of a few passes. The figure is
STREAM "copy" style: bytes read plus bytes written, divided by the time. The whole measurement takes a few
tenths of a second; the result is cached as JSON under `paths.cache_dir()`, keyed by CPU brand and RAM
size, so it is redone only when the machine changes (or on `refresh=True`).
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from kaihe_desktop.core import json_store, paths
from kaihe_desktop.core.machine.cpu import cpu_brand

CACHE_FILE_NAME = "ram_bandwidth.json"

# 256 MiB per buffer is several times the last-level cache of laptops and desktops (up to ~96 MiB on
# X3D parts), so the copy runs from RAM; a small machine gets less so the test never pushes it into swap.
DEFAULT_BUFFER_BYTES = 256 * 2**20
MIN_BUFFER_BYTES = 32 * 2**20
MAX_THREADS = 16
PASSES = 5
TIME_BUDGET_S = 0.35  # stop early once this much time went into copying


def ram_bandwidth_gbps(*, cache_dir: Path | None = None, refresh: bool = False) -> float:
    """This machine's RAM bandwidth in GB/s (10^9 bytes per second), from the cache or measured now."""
    directory = cache_dir if cache_dir is not None else paths.cache_dir()
    cache_file = directory / CACHE_FILE_NAME
    key = machine_key()
    entries = _read_entries(cache_file)
    if not refresh:
        cached = entries.get(key)
        if isinstance(cached, dict):
            value = cached.get("gbps")
            if isinstance(value, int | float) and math.isfinite(value) and value > 0:
                return float(value)
    buffer_bytes = buffer_size_for(available_bytes=psutil.virtual_memory().available)
    threads = _thread_count()
    gbps = measure_copy_bandwidth(buffer_bytes=buffer_bytes, threads=threads)
    entries[key] = {
        "gbps": gbps,
        "buffer_bytes": buffer_bytes,
        "threads": threads,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write_entries(cache_file, entries)
    return gbps


def machine_key() -> str:
    """What identifies 'this machine' for the cache: the CPU brand and the RAM size."""
    return f"{cpu_brand()}|{psutil.virtual_memory().total}"


def buffer_size_for(*, available_bytes: int) -> int:
    """Bytes per buffer (two are allocated): the default, or an eighth of available RAM if that is less."""
    return max(MIN_BUFFER_BYTES, min(DEFAULT_BUFFER_BYTES, available_bytes // 8))


def measure_copy_bandwidth(
    *, buffer_bytes: int = DEFAULT_BUFFER_BYTES, threads: int = 1, passes: int = PASSES
) -> float:
    """Copy `buffer_bytes` from one array to another, whole and in `threads` slices; best pass in GB/s.

    GB/s counts bytes read plus bytes written (STREAM "copy"), 10^9 bytes per GB.
    """
    if buffer_bytes <= 0 or threads <= 0 or passes <= 0:
        raise ValueError("buffer_bytes, threads and passes must be positive")
    src = np.ones(buffer_bytes, dtype=np.uint8)
    dst = np.zeros(buffer_bytes, dtype=np.uint8)
    dst[::4096] = 1  # touch every page so the first timed pass does not pay for page faults
    bounds = [(i * buffer_bytes // threads, (i + 1) * buffer_bytes // threads) for i in range(threads)]

    def copy_slice(bound: tuple[int, int]) -> None:
        start, stop = bound
        np.copyto(dst[start:stop], src[start:stop])

    def copy_all(pool: ThreadPoolExecutor | None) -> None:
        if pool is None:
            np.copyto(dst, src)
        else:
            list(pool.map(copy_slice, bounds))

    best = math.inf
    spent = 0.0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        # Alternate one thread and all threads: on a busy machine the threads fight other programs for the
        # cores, and one thread may then move more; the best pass of either is the machine's bandwidth.
        modes = [pool, None] if threads > 1 else [None]
        for n in range(passes * len(modes)):
            started = time.perf_counter()
            copy_all(modes[n % len(modes)])
            elapsed = time.perf_counter() - started
            best = min(best, elapsed)
            spent += elapsed
            if n >= 2 * len(modes) and spent > TIME_BUDGET_S:
                break
    return 2 * buffer_bytes / max(best, 1e-9) / 1e9


def _thread_count() -> int:
    physical = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    return max(1, min(MAX_THREADS, physical))


def _read_entries(cache_file: Path) -> dict[str, Any]:
    """The cache's entries; a missing or damaged cache is simply empty (it is re-measured)."""
    data = json_store.read_cache(cache_file)
    entries = data.get("entries") if data is not None else None
    return dict(entries) if isinstance(entries, dict) else {}


def _write_entries(cache_file: Path, entries: dict[str, Any]) -> None:
    """Write atomically (no temp file survives a failure); not writing only costs a re-measure next time."""
    json_store.write_cache(cache_file, {"entries": entries}, what="the RAM bandwidth measurement", indent=2)
