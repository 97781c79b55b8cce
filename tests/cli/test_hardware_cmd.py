"""`kaihe hardware`: the real command, on this machine and as each shipped profile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kaihe_desktop.cli.main import main
from kaihe_desktop.core.machine.llama_build import extra_buffers_usable
from kaihe_desktop.core.machine.profiles import shipped_profiles
from kaihe_desktop.core.machine.spec import Machine
from kaihe_desktop.core.machine.tiers import Tier

EXPECTED_TIERS = {
    "netbook-4gb": "minimal",
    "laptop-8gb": "entry",
    "rtx4060-16gb": "intermediate",
    "rtx4090-32gb": "professional",
    "m2-16gb": "entry",
    "m3max-64gb": "professional",
}


def kaihe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kaihe_desktop.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:  # type: ignore[type-arg]
    assert main(["hardware", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def assert_hardware_keys(data: dict) -> None:  # type: ignore[type-arg]
    assert isinstance(data["ram"]["total_bytes"], int) and data["ram"]["total_bytes"] > 0
    assert 0 < data["ram"]["available_bytes"] <= data["ram"]["total_bytes"]
    assert isinstance(data["cpu"]["brand"], str) and data["cpu"]["brand"]
    assert data["cpu"]["cores_physical"] >= 1
    assert isinstance(data["gpus"], list)
    for gpu in data["gpus"]:
        assert {"name", "vendor", "memory_total_bytes", "memory_free_bytes"} <= set(gpu)
    assert data["tier"] in [t.value for t in Tier]
    assert data["tier_info"]["tier"] == data["tier"]
    assert {"usable_bytes", "rule", "unlocks", "next_tier", "next_tier_adds"} <= set(data["tier_info"])


def test_hardware_json_on_this_machine() -> None:
    result = kaihe("hardware", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert_hardware_keys(data)
    assert data["ram"]["bandwidth_gbps"] > 0
    assert data["name"] == ""
    # The tier follows from the machine's own numbers by the documented rule.
    from kaihe_desktop.core.machine.tiers import tier_for

    assert data["tier"] == tier_for(Machine.from_dict(data)).tier.value


def test_hardware_human_output_on_this_machine() -> None:
    result = kaihe("hardware")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for label in (
        "RAM",
        "CPU",
        "CPU features",
        "GPU offload",
        "Disk free",
        "Tier:",
        "unlocks:",
        "next tier:",
    ):
        assert label in out
    if "GPU 1" not in out:
        assert "Not detected:" in out and "no GPU detected" in out
    # said only when the installed build runs without repacked weights (an AMX build)
    assert ("Repacked weights" in out) is not extra_buffers_usable()


def test_a_build_without_repacked_weights_says_why(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    profile = tmp_path / "amx.json"
    data = Machine.load(shipped_profiles()["laptop-8gb"]).to_dict()
    profile.write_text(json.dumps({**data, "llama_extra_buffers": False}))
    assert main(["hardware", "--profile", str(profile)]) == 0
    out = capsys.readouterr().out
    assert "Repacked weights" in out and "AMX" in out and "#20824" in out
    assert main(["hardware", "--profile", "laptop-8gb"]) == 0
    assert "Repacked weights" not in capsys.readouterr().out


@pytest.mark.parametrize(("name", "tier"), EXPECTED_TIERS.items())
def test_hardware_json_for_each_shipped_profile(
    capsys: pytest.CaptureFixture[str], name: str, tier: str
) -> None:
    data = run_json(capsys, "--profile", name)
    assert_hardware_keys(data)
    assert data["tier"] == tier
    assert Machine.from_dict(data) == Machine.load(shipped_profiles()[name])


def test_every_shipped_profile_has_an_expected_tier() -> None:
    assert set(shipped_profiles()) == set(EXPECTED_TIERS)


def test_gpu_profile_lists_its_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    (gpu,) = run_json(capsys, "--profile", "rtx4090-32gb")["gpus"]
    assert gpu["name"] == "NVIDIA GeForce RTX 4090" and gpu["vendor"] == "nvidia"
    assert gpu["memory_total_bytes"] == 24564 * 2**20 > gpu["memory_free_bytes"]


def test_human_output_for_a_mac_explains_the_tier(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hardware", "--profile", "m2-16gb"]) == 0
    out = capsys.readouterr().out
    assert "Machine: Apple M2 16 GB unified" in out
    assert "Apple M2 GPU (apple)" in out and "10.7 GiB unified" in out
    assert "Tier: Entry" in out
    assert "Metal budget of 10.7 GB" in out
    assert "unlocks: 3B–7B models (8B at 4-bit)" in out
    assert "next tier: Intermediate (16 GB+): 13B–20B models" in out


def test_profile_from_a_file_and_save_profile(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    saved = tmp_path / "saved.json"
    assert main(["hardware", "--profile", "rtx4060-16gb", "--save-profile", str(saved)]) == 0
    assert f"Saved this machine as {saved}" in capsys.readouterr().out
    assert Machine.load(saved) == Machine.load(shipped_profiles()["rtx4060-16gb"])
    assert run_json(capsys, "--profile", str(saved))["tier"] == "intermediate"


def test_save_profile_of_this_machine_round_trips(tmp_path: Path) -> None:
    saved = tmp_path / "me.json"
    result = kaihe("hardware", "--json", "--save-profile", str(saved))
    assert result.returncode == 0, result.stderr
    assert Machine.load(saved) == Machine.from_dict(json.loads(result.stdout))


def assert_one_error_line(result: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kaihe: error: ")
    for part in parts:
        assert part in lines[0]


def test_a_bad_profile_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text("{ this is not json")
    assert_one_error_line(kaihe("hardware", "--profile", str(bad)), "broken.json", "bad JSON")


def test_a_profile_of_the_wrong_shape_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "shape.json"
    bad.write_text('{"ram": "lots"}')
    assert_one_error_line(
        kaihe("hardware", "--json", "--profile", str(bad)), "shape.json", "not a machine profile"
    )


def test_an_unknown_profile_name_is_one_clear_error() -> None:
    assert_one_error_line(kaihe("hardware", "--profile", "cray-1"), "cray-1", "m2-16gb", "netbook-4gb")


def test_an_unwritable_save_path_is_one_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "me.json"
    assert_one_error_line(
        kaihe("hardware", "--profile", "m2-16gb", "--save-profile", str(target)),
        "cannot write profile",
        "me.json",
    )


def test_remeasure_measures_the_ram_bandwidth_again(kaihe_home: Path) -> None:
    cache = kaihe_home / "cache" / "ram_bandwidth.json"
    cache.parent.mkdir(parents=True)
    from kaihe_desktop.core.machine.bandwidth import machine_key

    cache.write_text(json.dumps({"entries": {machine_key(): {"gbps": 4242.0}}}))
    assert json.loads(kaihe("hardware", "--json").stdout)["ram"]["bandwidth_gbps"] == 4242.0
    remeasured = json.loads(kaihe("hardware", "--json", "--remeasure").stdout)["ram"]["bandwidth_gbps"]
    assert 0 < remeasured != 4242.0
    assert json.loads(cache.read_text())["entries"][machine_key()]["gbps"] != 4242.0


def test_a_full_disk_is_one_warning_and_no_temp_file(
    kaihe_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers.full_disk import fill_the_disk, stray_temp_files

    fill_the_disk(monkeypatch)
    assert main(["hardware"]) == 0
    captured = capsys.readouterr()
    [warning] = captured.err.strip().splitlines()
    assert warning.startswith("kaihe: warning: cannot save the RAM bandwidth measurement: the disk is full")
    assert "Traceback" not in captured.err and captured.out.strip()
    assert stray_temp_files(kaihe_home) == [] and not (kaihe_home / "cache" / "ram_bandwidth.json").exists()
