"""The `kaihe-desktop` entry's automation flags, run as the user runs them: a subprocess, offscreen.

--self-test probes, runs the engine with a tiny GGUF it writes itself, opens and closes the window; exit 0.
--screenshots renders every view into DIR/*.png; with HF_ENDPOINT at the session's local Hub (the tests'
hub fixture sets it) Discover's search results too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtGui import QImage

from tests.helpers.hub_server import HubServer
from tests.helpers.tiny_gguf import TinySpec, write_tiny_model

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 240


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {**os.environ, "QT_QPA_PLATFORM": "offscreen", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "kaihe_desktop", *args],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_self_test_passes_and_says_each_step(tmp_path: Path) -> None:
    done = _run("--self-test", "--profile", "rtx4060-16gb", env={"KAIHE_HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("machine: 16 GB + RTX 4060")
    assert any(line.startswith("engine: generated") for line in lines)
    assert "window: opened and closed" in lines and lines[-1] == "self-test: ok"
    assert not (tmp_path / "home").exists()  # the user's KAIHE_HOME is left alone


def test_self_test_fails_with_one_line() -> None:
    done = _run("--self-test", "--profile", "no-such-profile")
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("self-test:")]
    assert len(errors) == 1 and "probing the machine failed" in errors[0]


def test_screenshots_render_every_view_with_the_hub_results(tmp_path: Path, hub: HubServer) -> None:
    spec = TinySpec(arch="llama", n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256)
    files = {
        f"Shot-{q}.gguf": write_tiny_model(tmp_path / "src" / f"Shot-{q}.gguf", spec, tensor_type=q)
        for q in ("Q8_0", "Q4_0")
    }
    hub.add_repo("kshots/Shot-GGUF", {**files, "README.md": b"# card\n"}, tags=("gguf",), license="mit")
    out = tmp_path / "shots"
    done = _run(
        "--screenshots", str(out), "--profile", "rtx4060-16gb",
        env={"HF_ENDPOINT": hub.url, "KAIHE_SCREENSHOTS_QUERY": "kshots"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    names = {p.name for p in out.glob("*.png")}
    expected = {"machine.png", "models.png", "discover.png", "downloads.png", "discover-results.png"}
    assert expected | {"guardrail.png"} <= names
    for name in names:
        image = QImage(str(out / name))
        assert not image.isNull() and image.width() >= 400 and image.height() >= 200, name
        # not one flat colour: something was drawn
        corner = image.pixel(0, 0)
        assert any(
            image.pixel(x, y) != corner
            for x in range(0, image.width(), 37)
            for y in range(0, image.height(), 29)
        ), name


def test_help_lists_the_automation_flags() -> None:
    done = _run("--help")
    assert done.returncode == 0, done.stderr
    assert "--self-test" in done.stdout and "--screenshots DIR" in done.stdout and "--profile" in done.stdout
