"""Download throughput: the app's resumable, verified download vs a plain HTTP GET of the same file.

The test Hub server runs in its own process (so it does not share the client's interpreter) and serves the
real starter model (253 MB). In one run, alternating, each measured --runs times from a cold destination:
  - plain GET:        httpx2 (huggingface_hub's HTTP library) streams the CDN URL to a file, 1 MiB writes.
  - plain GET + sha:  the same, then sha256 of the file (what "verified" costs when done afterwards).
  - app download:     Downloader.download_variant: metadata HEAD, partial file, http_get, sha256 computed
                      while the bytes arrive, checked against the LFS hash, moved into the models folder.
Prints a table of medians and the ratio app / plain GET (throughput). Target: ratio >= 0.9.

Run: .venv/bin/python benchmarks/download_throughput.py [--runs 5]
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


def start_server(model: Path, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    url_file = workdir / "hub-url"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.helpers.hub_server",
            "--repo",
            f"{REPO_ID}={model}",
            "--url-file",
            str(url_file),
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from kaihe_desktop.core.starter import starter_model_path

    cache = Path(os.environ.get("KAIHE_TEST_CACHE", Path.home() / ".cache" / "kaihe-tests"))
    model = starter_model_path(cache)
    size = model.stat().st_size
    workdir = Path(tempfile.mkdtemp(prefix="kaihe-bench-dl-"))
    server, endpoint = start_server(model, workdir)
    os.environ["HF_ENDPOINT"] = endpoint  # before huggingface_hub is imported
    os.environ["HF_HOME"] = str(workdir / "hf-home")
    try:
        import httpx2
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        from kaihe_desktop.core.download_queue import resolve_variant
        from kaihe_desktop.core.downloads import Downloader

        variant = resolve_variant(REPO_ID, "Q4_K_M")
        cdn_url = get_hf_file_metadata(hf_hub_url(REPO_ID, model.name)).location
        expected = variant.files[0].sha256

        def plain_get(dest: Path) -> None:
            with httpx2.stream("GET", cdn_url) as response, dest.open("wb") as fh:
                response.raise_for_status()
                for chunk in response.iter_bytes(1024 * 1024):
                    fh.write(chunk)

        def plain_get_sha(dest: Path) -> None:
            plain_get(dest)
            digest = hashlib.sha256()
            with dest.open("rb") as fh:
                for block in iter(lambda: fh.read(8 * 1024 * 1024), b""):
                    digest.update(block)
            if digest.hexdigest() != expected:
                raise SystemExit("plain GET fetched different bytes")

        def app_download(dest: Path) -> None:
            result = Downloader(models_dir=dest).download_variant(REPO_ID, variant)
            if result.files[0].sha256 != expected or result.fetched_bytes != size:
                raise SystemExit("the app download is wrong")

        methods: dict[str, Callable[[Path], None]] = {
            "plain GET": plain_get,
            "plain GET + sha256": plain_get_sha,
            "app download (verified)": app_download,
        }
        times: dict[str, list[float]] = {name: [] for name in methods}
        for run in range(args.runs):
            for name, fn in methods.items():
                dest = workdir / f"run{run}-{len(times[name])}"
                target = dest / model.name if name.startswith("plain") else dest
                target.parent.mkdir(parents=True, exist_ok=True)
                started = time.perf_counter()
                fn(target)
                times[name].append(time.perf_counter() - started)
                shutil.rmtree(dest)
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)

    plain = statistics.median(times["plain GET"])
    print(f"file: {model.name}, {size / 1e6:.1f} MB, {args.runs} runs each, server in its own process")
    print(f"{'method':26} {'median s':>9} {'min s':>7} {'MB/s':>8} {'ratio':>6}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:26} {median:9.3f} {min(values):7.3f} {size / 1e6 / median:8.1f} {plain / median:6.2f}")
    ratio = plain / statistics.median(times["app download (verified)"])
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    print(f"app / plain GET throughput ratio: {ratio:.2f} (target >= {TARGET_RATIO}) {verdict}")
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
