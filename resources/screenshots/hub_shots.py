"""Render docs/screenshots/ with Discover's search results from a local Hub (no network).

    .venv/bin/python resources/screenshots/hub_shots.py [OUT_DIR]

Starts tests/helpers/hub_server.py with a few tiny GGUF repos (tests/helpers/tiny_gguf.py), points
runs ``kaihe-desktop --screenshots`` as this machine into OUT_DIR (default docs/screenshots) and as the RTX
4060 laptop profile into OUT_DIR/rtx4060-16gb: every view offline (Discover's recommendations are then
estimates: the local Hub has none of the curated repos), and discover-results.png from a second run with
HF_ENDPOINT pointing at the local Hub.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.helpers.hub_server import HubServer  # noqa: E402
from tests.helpers.tiny_gguf import TinySpec, write_tiny_model  # noqa: E402

SPEC = TinySpec(arch="llama", n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256)
QUERY = "kaihe-samples"


def serve(hub: HubServer, root: Path) -> None:
    for name, quants, licence, downloads in (
        ("Tiny-Chat-GGUF", ("F16", "Q8_0", "Q4_0"), "apache-2.0", 1520),
        ("Tiny-Coder-GGUF", ("Q8_0", "Q4_0"), "mit", 830),
        ("Tiny-Writer-GGUF", ("Q4_0",), "llama3.1", 97),
    ):
        files = {
            f"{name[:-5]}-{q}.gguf": write_tiny_model(
                root / name / f"{name[:-5]}-{q}.gguf", SPEC, tensor_type=q
            )
            for q in quants
        }
        hub.add_repo(
            f"{QUERY}/{name}", {**files, "README.md": b"# card\n"}, tags=("gguf",), license=licence,
            downloads=downloads,
        )  # fmt: skip


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "docs" / "screenshots"
    hub = HubServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="kaihe-hub-shots-") as tmp:
            serve(hub, Path(tmp))
            offline = {k: v for k, v in os.environ.items() if k != "HF_ENDPOINT"}
            offline["QT_QPA_PLATFORM"] = "offscreen"
            online = {**offline, "HF_ENDPOINT": hub.url, "KAIHE_SCREENSHOTS_QUERY": QUERY}
            for target, extra in ((out, []), (out / "rtx4060-16gb", ["--profile", "rtx4060-16gb"])):
                # every view offline (recommendations as estimates), then the search against the local Hub
                cmd = [sys.executable, "-m", "kaihe_desktop", "--screenshots", str(target), *extra]
                if subprocess.call(cmd, env=offline, cwd=ROOT):
                    return 1
                searched = Path(tmp) / "searched" / target.name
                cmd = [sys.executable, "-m", "kaihe_desktop", "--screenshots", str(searched), *extra]
                if subprocess.call(cmd, env=online, cwd=ROOT, stdout=subprocess.DEVNULL):
                    return 1
                shutil.copyfile(searched / "discover-results.png", target / "discover-results.png")
                print(target / "discover-results.png")
    finally:
        hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
