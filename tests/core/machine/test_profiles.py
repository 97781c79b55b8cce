"""Shipped machine profiles: package data, round-trip, realistic, resolvable by name or path."""

from __future__ import annotations

import fnmatch
import shutil
import tomllib
from pathlib import Path

import pytest

import kaihe_desktop
from kaihe_desktop.core.machine.profiles import profiles_dir, resolve_profile, shipped_profiles
from kaihe_desktop.core.machine.spec import GpuVendor, Machine, ProfileError

REPO = Path(__file__).resolve().parents[3]
SHIPPED = ("netbook-4gb", "laptop-8gb", "rtx4060-16gb", "rtx4090-32gb", "m2-16gb", "m3max-64gb")


def test_the_six_profiles_are_shipped() -> None:
    assert set(SHIPPED) <= set(shipped_profiles())
    assert list(shipped_profiles()) == sorted(shipped_profiles())


def test_profiles_are_package_data() -> None:
    package = Path(kaihe_desktop.__file__).parent
    assert profiles_dir().resolve().is_relative_to(package.resolve())
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for path in shipped_profiles().values():
        relative = path.resolve().relative_to(package.resolve()).as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns["kaihe_desktop"]), relative


@pytest.mark.parametrize("name", SHIPPED)
def test_profile_round_trips_byte_for_byte(name: str, tmp_path: Path) -> None:
    path = shipped_profiles()[name]
    machine = Machine.load(path)
    machine.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == path.read_text()


@pytest.mark.parametrize("name", SHIPPED)
def test_profile_numbers_are_realistic(name: str) -> None:
    machine = resolve_profile(name)
    ram = machine.ram
    assert 0 < ram.available_bytes < ram.total_bytes
    assert ram.bandwidth_gbps is not None and 10 <= ram.bandwidth_gbps <= 800
    assert machine.name and machine.os and machine.cpu.cores_physical <= machine.cpu.cores_logical
    assert machine.disk is not None and 0 < machine.disk.free_bytes < machine.disk.total_bytes
    assert machine.gpu_offload_supported == bool(machine.gpus)
    for gpu in machine.gpus:
        assert 0 < gpu.memory_free_bytes < gpu.memory_total_bytes
        assert gpu.bandwidth_gbps and gpu.source
        if gpu.vendor == GpuVendor.APPLE:
            assert gpu.unified and gpu.memory_total_bytes < ram.total_bytes
            assert "apple" in machine.cpu.features and "neon" in machine.cpu.features
        else:
            assert not gpu.unified and gpu.compute_capability and gpu.driver


def test_gpu_bandwidths_match_the_data_sheets() -> None:
    sheets = {"rtx4060-16gb": 272.0, "rtx4090-32gb": 1008.0, "m2-16gb": 100.0, "m3max-64gb": 400.0}
    for name, gbps in sheets.items():
        (gpu,) = resolve_profile(name).gpus
        assert gpu.bandwidth_gbps == gbps


def test_resolve_by_path(tmp_path: Path) -> None:
    copy = tmp_path / "mine.json"
    shutil.copy(shipped_profiles()["laptop-8gb"], copy)
    assert resolve_profile(str(copy)) == resolve_profile("laptop-8gb")


def test_unknown_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ProfileError) as caught:
        resolve_profile("cray-1")
    message = str(caught.value)
    assert "'cray-1'" in message
    assert all(name in message for name in SHIPPED)


def test_a_bad_profile_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"ram": {"total_bytes": 1}}')
    with pytest.raises(ProfileError, match="bad.json"):
        resolve_profile(str(bad))
