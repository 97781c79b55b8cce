"""Catalog latency: search + fit verdicts for 50 GGUF repos, 50 ms added to every HTTP request.

Serves 50 repos (each: a Q8_0 and a Q4_0 tiny GGUF, a README) from the test Hub server, with every request
(listing, tree, resolve redirect, CDN byte range) delayed by LATENCY_S. Measures, in the same run and from a
cold cache each time:
  - concurrent: the catalog as shipped (bounded pool of DEFAULT_WORKERS per-repo fetches),
  - sequential: the same catalog with one worker (per-repo calls one after another): the baseline.
Prints a table with the medians and the speed-up ratio. Target: concurrent median under 2 s.

Run: .venv/bin/python benchmarks/catalog_latency.py [--repos 50] [--latency 0.05] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tests.helpers.hub_server as hub_server_module  # noqa: E402
from tests.helpers.hub_server import HubServer  # noqa: E402
from tests.helpers.tiny_gguf import TinySpec, write_tiny_model  # noqa: E402


def slow_server(latency_s: float) -> HubServer:
    """The test Hub with ``latency_s`` slept before every request it answers (both origins)."""
    make = hub_server_module._make_handler

    def make_slow(hub: HubServer) -> Any:
        base = make(hub)

        class Slow(base):  # type: ignore[misc, valid-type]
            def _dispatch(self, method: str) -> None:
                time.sleep(latency_s)
                super()._dispatch(method)

        return Slow

    hub_server_module._make_handler = make_slow  # type: ignore[assignment]
    try:
        return HubServer().start()
    finally:
        hub_server_module._make_handler = make


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every request")
    parser.add_argument("--runs", type=int, default=5, help="runs of the concurrent catalog")
    parser.add_argument("--baseline-runs", type=int, default=3, help="runs of the sequential baseline")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="kaihe-catalog-bench-"))
    server = slow_server(args.latency)
    os.environ["HF_ENDPOINT"] = server.url  # before huggingface_hub is imported
    os.environ["KAIHE_HOME"] = str(work / "home")
    os.environ["HF_HOME"] = str(work / "hf")
    os.environ.pop("HF_HUB_OFFLINE", None)

    from kaihe_desktop.core.hub.catalog import DEFAULT_WORKERS, Catalog
    from kaihe_desktop.core.hub.listing_cache import ListingCache
    from kaihe_desktop.core.machine.profiles import resolve_profile

    spec = TinySpec(arch="llama", n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256)
    files = {
        quant: write_tiny_model(work / f"bench-{quant}.gguf", spec, tensor_type=quant)
        for quant in ("Q8_0", "Q4_0")
    }
    for n in range(args.repos):
        server.add_repo(
            f"bench/Model{n:02d}-GGUF",
            {f"Model{n:02d}-{q}.gguf": path for q, path in files.items()} | {"README.md": b"# bench\n"},
            license="apache-2.0",
            downloads=1000 - n,
        )
    machine = resolve_profile("laptop-8gb")

    def run(workers: int, index: int) -> tuple[float, int, int]:
        cache = ListingCache(work / f"cache-{workers}-{index}")  # cold every run
        catalog = Catalog(machine=machine, cache=cache, max_workers=workers, timeout_s=120)
        server.reset_counters()
        began = time.perf_counter()
        result = catalog.search("bench", limit=args.repos)
        elapsed = time.perf_counter() - began
        judged = sum(
            1
            for r in result.repos
            if r.pick is not None and all(v.placement != "unknown" for v in r.variants)
        )
        return elapsed, len(server.requests()), judged

    rows: list[tuple[str, int, list[float], int, int]] = []
    for label, workers, runs in (
        ("sequential (baseline)", 1, args.baseline_runs),
        (f"concurrent ({DEFAULT_WORKERS} workers)", DEFAULT_WORKERS, args.runs),
    ):
        times, requests, judged = [], 0, 0
        for index in range(runs):
            elapsed, requests, judged = run(workers, index)
            times.append(elapsed)
        rows.append((label, runs, times, requests, judged))
    server.stop()

    print(f"catalog search + fit for {args.repos} repos, {args.latency * 1000:.0f} ms added per request")
    from kaihe_desktop.cli.common import render_table

    table = [
        [
            label,
            runs,
            f"{statistics.median(times):.2f}",
            f"{min(times):.2f}",
            f"{max(times):.2f}",
            requests,
            judged,
        ]
        for label, runs, times, requests, judged in rows
    ]
    print(render_table(["mode", "runs", "median s", "min s", "max s", "requests", "repos judged"], table))
    sequential = statistics.median(rows[0][2])
    concurrent = statistics.median(rows[1][2])
    print(f"speed-up (sequential median / concurrent median): {sequential / concurrent:.1f}x")
    verdict = "PASS" if concurrent < 2.0 else "FAIL"
    print(f"target: concurrent median < 2.00 s -> {concurrent:.2f} s {verdict}")
    return 0 if concurrent < 2.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
