"""Download throughput: the app's resumable, verified download vs a plain HTTP GET of the same file.

The test Hub server runs in its own process (so it does not share the client's interpreter) and serves the
real starter model (253 MB), once at full loopback speed and once limited to 125 MB/s (a 1 Gbit/s line).
In one run, alternating, each measured --runs times from a cold destination:
  - plain GET:        httpx2 (huggingface_hub's HTTP library) streams the CDN URL to a file, 1 MiB writes.
  - plain GET + sha:  the same, then sha256 of the file (what "verified" costs when done afterwards).
  - plain GET + fsync: the same, then fsync (what making the file durable costs, as the app does).
  - app download:     Downloader.download_variant: metadata HEAD, download lock, partial file, one GET, then
                      fsync and, overlapped with it, the sha256 of the part file read back from disk (what
                      "verified" means: the bytes on disk, not those that went through the socket), checked
                      against the LFS hash, moved into the models folder.
  - of which fsync+read-back: the app download's own verify phase (its "verify" progress event to "done"),
                      timed inside the same runs: what making the file durable and reading it back cost.
Prints a table of medians and the ratio plain GET / method (throughput; for the read-back row, plain GET
time / read-back time). Target: app ratio >= 0.9.
At loopback speed on a 2-core machine the server, the client and sha256 share two cores, so the verified
download is bounded by CPU; on a real line it is bounded by the line plus the read-back.

Run: .venv/bin/python benchmarks/download_throughput.py [--runs 5] [--bandwidth-mb 0 125]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REPO_ID = "google/gemma-3-270m-GGUF"
TARGET_RATIO = 0.9


def start_server(model: Path, workdir: Path, bandwidth: float) -> tuple[subprocess.Popen[bytes], str]:
    url_file = workdir / "hub-url"
    url_file.unlink(missing_ok=True)
    limit = ["--bandwidth", str(bandwidth)] if bandwidth > 0 else []
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.helpers.hub_server",
            "--repo",
            f"{REPO_ID}={model}",
            "--url-file",
            str(url_file),
            *limit,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not url_file.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("the test Hub server did not start")
        time.sleep(0.05)
    return proc, url_file.read_text().strip()


def measure(model: Path, workdir: Path, *, bandwidth: float, runs: int) -> dict[str, list[float]]:
    """Seconds per run of each method against one server."""
    import httpx2
    from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url

    from kaihe_desktop.core.downloads.fetch import Downloader, DownloadProgress
    from kaihe_desktop.core.downloads.queue import resolve_variant

    size = model.stat().st_size
    server, endpoint = start_server(model, workdir, bandwidth)
    try:
        variant = resolve_variant(REPO_ID, "Q4_K_M", api=HfApi(endpoint=endpoint))
        cdn_url = get_hf_file_metadata(hf_hub_url(REPO_ID, model.name, endpoint=endpoint)).location
        expected = variant.files[0].sha256

        def plain_get(dest: Path) -> None:
            with httpx2.stream("GET", cdn_url) as response, dest.open("wb") as fh:
                response.raise_for_status()
                for chunk in response.iter_bytes(1024 * 1024):
                    fh.write(chunk)

        def plain_get_fsync(dest: Path) -> None:
            plain_get(dest)
            with dest.open("rb+") as fh:
                os.fsync(fh.fileno())

        def plain_get_sha(dest: Path) -> None:
            plain_get(dest)
            digest = hashlib.sha256()
            with dest.open("rb") as fh:
                for block in iter(lambda: fh.read(8 * 1024 * 1024), b""):
                    digest.update(block)
            if digest.hexdigest() != expected:
                raise SystemExit("plain GET fetched different bytes")

        read_back: list[float] = []

        def app_download(dest: Path) -> None:
            marks: dict[str, float] = {}

            def progress(p: DownloadProgress) -> None:
                marks.setdefault(p.phase, time.perf_counter())

            downloader = Downloader(models_dir=dest, endpoint=endpoint)
            result = downloader.download_variant(REPO_ID, variant, progress=progress)
            if result.files[0].sha256 != expected or result.fetched_bytes != size:
                raise SystemExit("the app download is wrong")
            read_back.append(marks["done"] - marks["verify"])

        methods: dict[str, Callable[[Path], None]] = {
            "plain GET": plain_get,
            "plain GET + sha256": plain_get_sha,
            "plain GET + fsync": plain_get_fsync,
            "app download (verified)": app_download,
        }
        times: dict[str, list[float]] = {name: [] for name in methods}
        for run in range(runs):
            for name, fn in methods.items():
                dest = workdir / f"run{run}-{len(times[name])}"
                target = dest / model.name if name.startswith("plain") else dest
                target.parent.mkdir(parents=True, exist_ok=True)
                started = time.perf_counter()
                fn(target)
                times[name].append(time.perf_counter() - started)
                shutil.rmtree(dest)
        times["  of which fsync+read-back"] = read_back
        return times
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--bandwidth-mb", type=float, nargs="+", default=[0.0, 125.0], help="server limits, MB/s (0: none)"
    )
    args = parser.parse_args()

    from kaihe_desktop.core.starter import starter_model_path

    cache = Path(os.environ.get("KAIHE_TEST_CACHE", Path.home() / ".cache" / "kaihe-tests"))
    model = starter_model_path(cache)
    size = model.stat().st_size
    workdir = Path(tempfile.mkdtemp(prefix="kaihe-bench-dl-"))
    os.environ["HF_HOME"] = str(workdir / "hf-home")
    results: dict[float, dict[str, list[float]]] = {}
    try:
        for bandwidth in args.bandwidth_mb:
            results[bandwidth] = measure(model, workdir, bandwidth=bandwidth * 1e6, runs=args.runs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"file: {model.name}, {size / 1e6:.1f} MB, {args.runs} runs each, server in its own process")
    print(f"{'server limit':14} {'method':26} {'median s':>9} {'min s':>7} {'MB/s':>8} {'ratio':>6}")
    ratios = {}
    for bandwidth, times in results.items():
        label = f"{bandwidth:.0f} MB/s" if bandwidth else "none"
        plain = statistics.median(times["plain GET"])
        for name, values in times.items():
            median = statistics.median(values)
            print(
                f"{label:14} {name:26} {median:9.3f} {min(values):7.3f} {size / 1e6 / median:8.1f} "
                f"{plain / median:6.2f}"
            )
        ratios[label] = plain / statistics.median(times["app download (verified)"])
    for label, ratio in ratios.items():
        verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
        print(
            f"server limit {label}: app / plain GET throughput ratio {ratio:.2f} "
            f"(target >= {TARGET_RATIO}) {verdict}"
        )
    return 0 if all(r >= TARGET_RATIO for r in ratios.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
