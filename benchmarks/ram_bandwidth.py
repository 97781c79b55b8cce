"""RAM bandwidth measurement: does the buffer defeat the caches, and how long does it take?

Prints, for buffer sizes from in-cache to the default, the copy bandwidth with one thread and with one
thread per physical core, and the wall time of `ram_bandwidth_gbps(refresh=True)` (the figure `kaihe
hardware` shows). A buffer that fits in cache reads much faster than the default one: the ratio column
says how far the default is from the in-cache figure (in the same run, on the same machine).

    .venv/bin/python benchmarks/ram_bandwidth.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import psutil

from kaihe_desktop.core.machine.bandwidth import (
    DEFAULT_BUFFER_BYTES,
    measure_copy_bandwidth,
    ram_bandwidth_gbps,
)
from kaihe_desktop.core.machine.cpu import cpu_brand, cpuinfo_dict

MIB = 2**20


def main() -> None:
    threads = psutil.cpu_count(logical=False) or 1
    l3 = cpuinfo_dict().get("l3_cache_size")
    print(f"CPU: {cpu_brand()}, {threads} physical cores, L3 reported: {l3 and int(l3) // MIB} MiB")
    sizes = [4 * MIB, 32 * MIB, 128 * MIB, DEFAULT_BUFFER_BYTES]
    rows = []
    for size in sizes:
        one = measure_copy_bandwidth(buffer_bytes=size, threads=1)
        many = measure_copy_bandwidth(buffer_bytes=size, threads=threads)
        rows.append((size, one, many))
    in_cache = max(rows[0][1], rows[0][2])
    print(f"{'buffer':>10}  {'1 thread':>10}  {f'{threads} threads':>10}  {'vs 4 MiB':>8}")
    for size, one, many in rows:
        print(f"{size // MIB:>6} MiB  {one:>6.1f} GB/s  {many:>5.1f} GB/s  {max(one, many) / in_cache:>8.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        gbps = ram_bandwidth_gbps(cache_dir=Path(tmp), refresh=True)
        elapsed = time.perf_counter() - started
        started = time.perf_counter()
        ram_bandwidth_gbps(cache_dir=Path(tmp))
        cached = time.perf_counter() - started
    print(
        f"ram_bandwidth_gbps: {gbps:.1f} GB/s, measured in {elapsed:.2f} s, "
        f"from cache in {cached * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
