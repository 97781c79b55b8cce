"""The hardware probe: real on this machine; fake sysfs trees and sysctl answers for absent hardware."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import llama_cpp
import pytest

from kaihe_desktop.core.machine.cpu import cpuinfo_dict
from kaihe_desktop.core.machine.gpus import apple_gpus, apple_metal_budget, nvidia_gpus, sysfs_gpus
from kaihe_desktop.core.machine.probe import (
    X86_FEATURES,
    llama_cpu_features,
    llama_gpu_offload,
    normalize_arch,
    probe,
)
from kaihe_desktop.core.machine.spec import GpuVendor, Machine, ProbeNote

GIB = 2**30
MIB = 2**20
KNOWN_FEATURES = set(X86_FEATURES) | {"neon", "dotprod", "i8mm", "sve", "apple"}


# --- the real probe on this machine ----------------------------------------------------------------


@pytest.fixture(scope="module")
def this_machine(tmp_path_factory: pytest.TempPathFactory) -> Machine:
    models = tmp_path_factory.mktemp("probe") / "not" / "yet" / "models"
    return probe(models_dir=models, measure_bandwidth=False)


def test_probe_reads_ram_and_cpu_of_this_machine(this_machine: Machine) -> None:
    ram, cpu = this_machine.ram, this_machine.cpu
    assert ram.total_bytes > 512 * MIB
    assert 0 < ram.available_bytes <= ram.total_bytes
    assert 0 <= ram.swap_free_bytes <= ram.swap_total_bytes
    assert ram.bandwidth_gbps is None  # measure_bandwidth=False
    assert cpu.brand and cpu.brand != "unknown CPU"
    assert cpu.arch in ("x86_64", "arm64")
    assert 1 <= cpu.cores_physical <= cpu.cores_logical
    assert set(cpu.features) <= KNOWN_FEATURES
    flags = set(cpuinfo_dict().get("flags", ()))
    if cpu.arch == "x86_64":
        assert set(cpu.features) == {f for f in X86_FEATURES if f in flags}


def test_probe_reports_gpus_or_says_why_none(this_machine: Machine) -> None:
    components = {note.component for note in this_machine.notes}
    nvidia = [g for g in this_machine.gpus if g.vendor == GpuVendor.NVIDIA]
    if nvidia:  # a lent GPU machine
        assert all(g.memory_total_bytes > 0 and g.source == "nvml" for g in nvidia)
    else:
        assert "nvidia" in components
    if not this_machine.gpus:
        assert any(n.component == "gpu" and "no GPU detected" in n.message for n in this_machine.notes)
    assert this_machine.gpu_offload_supported == bool(llama_cpp.llama_supports_gpu_offload())
    if not this_machine.gpu_offload_supported:
        assert "llama.cpp" in components


def test_probe_measures_free_disk_at_the_nearest_existing_parent(this_machine: Machine) -> None:
    disk = this_machine.disk
    assert disk is not None
    assert disk.path.endswith(str(Path("not") / "yet" / "models"))
    existing = Path(disk.path).parent.parent.parent
    assert disk.total_bytes == shutil.disk_usage(existing).total
    assert 0 < disk.free_bytes <= disk.total_bytes


def test_probe_defaults_to_the_models_folder_under_kaihe_home(kaihe_home: Path) -> None:
    machine = probe(measure_bandwidth=False)
    assert machine.disk is not None and machine.disk.path == str((kaihe_home / "models").absolute())


def test_probe_result_round_trips_as_a_profile(this_machine: Machine, tmp_path: Path) -> None:
    this_machine.save(tmp_path / "me.json")
    assert Machine.load(tmp_path / "me.json") == this_machine


def test_probe_fills_ram_bandwidth_and_caches_it(kaihe_home: Path) -> None:
    machine = probe(measure_bandwidth=True)
    assert machine.ram.bandwidth_gbps is not None and machine.ram.bandwidth_gbps > 0
    cache = kaihe_home / "cache" / "ram_bandwidth.json"
    assert cache.is_file()
    data = json.loads(cache.read_text())
    for entry in data["entries"].values():
        entry["gbps"] = 4242.0
    cache.write_text(json.dumps(data))
    assert probe(measure_bandwidth=True).ram.bandwidth_gbps == 4242.0
    assert probe(measure_bandwidth=True, refresh_bandwidth=True).ram.bandwidth_gbps != 4242.0


def test_probe_without_sysfs_says_so_and_does_not_raise(tmp_path: Path) -> None:
    machine = probe(sysfs_root=tmp_path / "no-sys", models_dir=tmp_path, measure_bandwidth=False)
    assert machine.ram.total_bytes > 0
    sysfs_notes = [n.message for n in machine.notes if n.component == "sysfs"]
    assert sysfs_notes and str(tmp_path / "no-sys") in sysfs_notes[0]


def test_cpuinfo_is_asked_once_per_process() -> None:
    assert cpuinfo_dict() is cpuinfo_dict()


# --- CPU features -----------------------------------------------------------------------------------


def test_x86_features_keep_only_what_llama_cpp_uses() -> None:
    flags = ["sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "aes"]
    assert llama_cpu_features(flags, arch="x86_64", system="Linux") == (
        "avx",
        "avx2",
        "avx512f",
        "fma",
        "f16c",
    )
    assert llama_cpu_features(["sse4_2"], arch="x86_64", system="Linux") == ()


def test_arm_features_on_linux_and_on_apple_silicon() -> None:
    linux = llama_cpu_features(["fp", "asimd", "asimddp", "i8mm", "sve"], arch="arm64", system="Linux")
    assert linux == ("neon", "dotprod", "i8mm", "sve")
    assert llama_cpu_features([], arch="arm64", system="Darwin") == ("neon", "apple")


def test_arch_names_are_normalized() -> None:
    assert [normalize_arch(a) for a in ("AMD64", "x86_64", "aarch64", "arm64")] == [
        "x86_64",
        "x86_64",
        "arm64",
        "arm64",
    ]


# --- NVIDIA and llama.cpp -------------------------------------------------------------------------------


def test_nvidia_probe_reads_nvml_or_notes_why_not() -> None:
    notes: list[ProbeNote] = []
    gpus = nvidia_gpus(notes)
    try:
        import pynvml

        pynvml.nvmlInit()
        expected = int(pynvml.nvmlDeviceGetCount())
        pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        expected = 0
    assert len(gpus) == expected
    for gpu in gpus:
        assert gpu.vendor == GpuVendor.NVIDIA and not gpu.unified
        assert 0 < gpu.memory_free_bytes <= gpu.memory_total_bytes
        assert gpu.compute_capability and re.fullmatch(r"\d+\.\d+", gpu.compute_capability)
        assert gpu.bandwidth_gbps is None or gpu.bandwidth_gbps > 100
    if expected == 0:
        assert notes and notes[0].component == "nvidia" and "not detected" in notes[0].message


def test_gpu_offload_support_comes_from_the_installed_llama_cpp() -> None:
    notes: list[ProbeNote] = []
    assert llama_gpu_offload(notes=notes) == bool(llama_cpp.llama_supports_gpu_offload())
    assert bool(notes) != llama_gpu_offload(notes=[])


# --- Apple Silicon ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ram_gib", "wired_limit_mb", "budget"),
    [
        (8, None, 8 * GIB * 2 // 3),
        (16, None, 16 * GIB * 2 // 3),
        (16, 0, 16 * GIB * 2 // 3),  # 0 = not set
        (36, None, 24 * GIB),  # up to 36 GB: 2/3
        (48, None, 36 * GIB),  # above: 3/4
        (64, None, 48 * GIB),
        (128, None, 96 * GIB),
        (64, 57344, 56 * GIB),  # raised by the user
        (16, 12288, 12 * GIB),
        (16, 65536, 16 * GIB),  # never more than the RAM
    ],
)
def test_apple_metal_budget(ram_gib: int, wired_limit_mb: int | None, budget: int) -> None:
    assert apple_metal_budget(ram_gib * GIB, wired_limit_mb) == budget


def test_apple_gpu_uses_the_wired_limit_sysctl_when_set() -> None:
    notes: list[ProbeNote] = []
    answers = {"iogpu.wired_limit_mb": "57344"}
    (gpu,) = apple_gpus(
        chip="Apple M3 Max",
        total_ram_bytes=64 * GIB,
        available_ram_bytes=40 * GIB,
        notes=notes,
        sysctl=answers.get,
    )
    assert gpu.vendor == GpuVendor.APPLE and gpu.unified
    assert gpu.memory_total_bytes == 56 * GIB and gpu.memory_free_bytes == 40 * GIB
    assert gpu.name == "Apple M3 Max GPU" and "iogpu.wired_limit_mb = 57344" in gpu.source
    assert notes == []


@pytest.mark.parametrize(("answer", "note_part"), [(None, "not available"), ("lots", "'lots'")])
def test_apple_gpu_falls_back_to_the_default_budget(answer: str | None, note_part: str) -> None:
    notes: list[ProbeNote] = []
    (gpu,) = apple_gpus(
        chip="Apple M2",
        total_ram_bytes=16 * GIB,
        available_ram_bytes=12 * GIB,
        notes=notes,
        sysctl=lambda _name: answer,
    )
    assert gpu.memory_total_bytes == 16 * GIB * 2 // 3
    assert gpu.memory_free_bytes == 16 * GIB * 2 // 3  # capped at the budget
    assert "default" in gpu.source
    assert len(notes) == 1 and note_part in notes[0].message


# --- AMD and Intel through a fake sysfs tree ----------------------------------------------------------------


def make_card(root: Path, name: str, files: dict[str, str]) -> Path:
    device = root / "class" / "drm" / name / "device"
    device.mkdir(parents=True)
    for file_name, text in files.items():
        (device / file_name).write_text(text + "\n")
    return device


def sysfs_probe(root: Path, *, nvidia_found: bool = False) -> tuple[list, list[ProbeNote]]:  # type: ignore[type-arg]
    notes: list[ProbeNote] = []
    gpus = sysfs_gpus(
        root, total_ram_bytes=32 * GIB, available_ram_bytes=20 * GIB, nvidia_found=nvidia_found, notes=notes
    )
    return gpus, notes


def test_amd_discrete_gpu_vram_from_sysfs(tmp_path: Path) -> None:
    make_card(
        tmp_path,
        "card1",
        {
            "vendor": "0x1002",
            "device": "0x747e",
            "product_name": "AMD Radeon RX 7800 XT",
            "mem_info_vram_total": str(16 * GIB),
            "mem_info_vram_used": str(1 * GIB),
            "mem_info_vram_vendor": "samsung",
            "mem_info_gtt_total": str(16 * GIB),
            "mem_info_gtt_used": str(100 * MIB),
        },
    )
    (tmp_path / "class" / "drm" / "card1-DP-1").mkdir()  # connectors are not GPUs
    (tmp_path / "class" / "drm" / "renderD128").mkdir()
    gpus, notes = sysfs_probe(tmp_path)
    assert notes == []
    (gpu,) = gpus
    assert gpu.name == "AMD Radeon RX 7800 XT" and gpu.vendor == GpuVendor.AMD
    assert (gpu.memory_total_bytes, gpu.memory_free_bytes) == (16 * GIB, 15 * GIB)
    assert not gpu.unified and gpu.carveout_bytes == 0
    assert "card1" in gpu.source and "mem_info_vram_total" in gpu.source


def test_amd_apu_counts_its_carveout_and_gtt(tmp_path: Path) -> None:
    make_card(
        tmp_path,
        "card0",
        {
            "vendor": "0x1002",
            "device": "0x15bf",
            "mem_info_vram_total": str(512 * MIB),
            "mem_info_vram_used": str(200 * MIB),
            "mem_info_gtt_total": str(15 * GIB),
            "mem_info_gtt_used": str(1 * GIB),
        },
    )
    (gpu,) = sysfs_probe(tmp_path)[0]
    assert gpu.unified and gpu.carveout_bytes == 512 * MIB
    assert gpu.memory_total_bytes == 512 * MIB + 15 * GIB
    assert gpu.memory_free_bytes == 312 * MIB + 14 * GIB
    assert gpu.name == "AMD GPU (PCI 1002:15bf)" and "GTT" in gpu.source.upper()


def test_intel_integrated_gpu_shares_half_the_ram(tmp_path: Path) -> None:
    make_card(tmp_path, "card0", {"vendor": "0x8086", "device": "0x46a6"})
    (gpu,) = sysfs_probe(tmp_path)[0]
    assert gpu.vendor == GpuVendor.INTEL and gpu.unified
    assert gpu.memory_total_bytes == 16 * GIB and gpu.memory_free_bytes == 16 * GIB
    assert gpu.name == "Intel GPU (PCI 8086:46a6)"


def test_garbled_or_missing_sysfs_files_become_notes(tmp_path: Path) -> None:
    make_card(
        tmp_path, "card0", {"vendor": "0x1002", "mem_info_vram_total": "garbage", "mem_info_vram_used": "0"}
    )
    make_card(tmp_path, "card1", {"vendor": "0x1002"})  # no memory files at all
    make_card(tmp_path, "card2", {"vendor": "0x1af4"})  # virtio display of a VM
    make_card(tmp_path, "card3", {"vendor": "0x10de"})  # NVIDIA without a working NVML
    gpus, notes = sysfs_probe(tmp_path)
    assert gpus == []
    messages = [f"{n.component}: {n.message}" for n in notes]
    assert any("card0" in m and "garbage" in m and "mem_info_vram_total" in m for m in messages)
    assert any("card1" in m and "mem_info_vram_total" in m for m in messages)
    assert any("card2" in m and "0x1af4" in m for m in messages)
    assert any(m.startswith("nvidia: card3") for m in messages)
    assert not any("card3" in n.message for n in sysfs_probe(tmp_path, nvidia_found=True)[1])


def test_probe_picks_up_gpus_from_the_given_sysfs_root(tmp_path: Path) -> None:
    make_card(
        tmp_path / "sys",
        "card0",
        {"vendor": "0x1002", "mem_info_vram_total": str(8 * GIB), "mem_info_vram_used": "0",
         "mem_info_vram_vendor": "hynix"},
    )  # fmt: skip
    machine = probe(sysfs_root=tmp_path / "sys", models_dir=tmp_path, measure_bandwidth=False)
    amd = [g for g in machine.gpus if g.vendor == GpuVendor.AMD]
    assert [g.memory_total_bytes for g in amd] == [8 * GIB]


def test_cards_are_listed_in_numeric_order(tmp_path: Path) -> None:
    for n in (10, 2):
        make_card(tmp_path, f"card{n}", {"vendor": "0x8086", "device": f"0x{n:04x}"})
    gpus, _ = sysfs_probe(tmp_path)
    assert [g.source.split()[1] for g in gpus] == ["card2:", "card10:"]
