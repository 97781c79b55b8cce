"""What this machine is: RAM, CPU, GPUs, the llama.cpp build (GPU offload, extra buffers), free disk.

`probe()` never raises. Each part that finds nothing (no NVIDIA driver, no sysfs, no llama.cpp GPU build)
leaves a `ProbeNote` saying what was not detected and why, so the user sees an honest "not detected"
instead of a traceback. GPU probing lives in `gpu_probe`; the RAM bandwidth measurement in `bandwidth`.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psutil

from kaihe_desktop.core import paths
from kaihe_desktop.core.machine import gpus as gpu_probe
from kaihe_desktop.core.machine.bandwidth import ram_bandwidth_gbps
from kaihe_desktop.core.machine.cpu import cpu_brand, cpuinfo_dict
from kaihe_desktop.core.machine.llama_build import extra_buffers_usable
from kaihe_desktop.core.machine.spec import CpuInfo, DiskInfo, GpuInfo, Machine, ProbeNote, RamInfo

T = TypeVar("T")

# The x86 instruction sets llama.cpp's CPU backend picks kernels by (ggml/src/ggml-cpu): AVX/AVX2 with FMA
# and F16C for the common path, AVX-512 for the wide one.
X86_FEATURES: tuple[str, ...] = ("avx", "avx2", "avx512f", "fma", "f16c")
# On ARM: NEON (every arm64 CPU), dot-product and int8 matrix multiply (faster quantized kernels), SVE.
ARM_FEATURE_ALIASES: dict[str, tuple[str, ...]] = {
    "neon": ("neon", "asimd"),
    "dotprod": ("dotprod", "asimddp"),
    "i8mm": ("i8mm",),
    "sve": ("sve",),
}


def probe(
    *,
    models_dir: Path | None = None,
    sysfs_root: Path = Path("/sys"),
    measure_bandwidth: bool = True,
    refresh_bandwidth: bool = False,
) -> Machine:
    """Probe this machine. Never raises; what was not detected is in `Machine.notes`.

    The RAM bandwidth comes from its cache unless `refresh_bandwidth` (then it is measured again).
    """
    notes: list[ProbeNote] = []
    system = platform.system()
    ram = _soft(notes, "ram", lambda: probe_ram(notes=notes), RamInfo(total_bytes=0, available_bytes=0))
    if measure_bandwidth:
        ram = _soft(notes, "ram bandwidth", lambda: _with_bandwidth(ram, refresh=refresh_bandwidth), ram)
    cpu = _soft(
        notes, "cpu", lambda: probe_cpu(notes=notes), CpuInfo("unknown CPU", platform.machine(), 1, 1)
    )
    no_gpus: list[GpuInfo] = []
    gpus = _soft(notes, "gpu", lambda: _probe_gpus(system, cpu, ram, sysfs_root, notes), no_gpus)
    if not gpus:
        notes.append(ProbeNote("gpu", "no GPU detected: models run on the CPU from system RAM"))
    offload = _soft(notes, "llama.cpp", lambda: llama_gpu_offload(notes=notes), False)
    extra_buffers = llama_extra_buffers(notes=notes)
    disk = _soft(notes, "disk", lambda: probe_disk(models_dir or paths.models_dir(), notes=notes), None)
    return Machine(
        ram=ram,
        cpu=cpu,
        gpus=tuple(gpus),
        gpu_offload_supported=offload,
        llama_extra_buffers=extra_buffers,
        disk=disk,
        os=_os_name(system),
        notes=tuple(notes),
    )


# --- RAM ---------------------------------------------------------------------------------------------


def probe_ram(*, notes: list[ProbeNote]) -> RamInfo:
    memory = psutil.virtual_memory()
    swap_total = swap_free = 0
    try:
        swap = psutil.swap_memory()
        swap_total, swap_free = int(swap.total), int(swap.free)
    except Exception as exc:
        notes.append(ProbeNote("swap", f"not detected: {exc}"))
    return RamInfo(
        total_bytes=int(memory.total),
        available_bytes=int(memory.available),
        swap_total_bytes=swap_total,
        swap_free_bytes=swap_free,
    )


def _with_bandwidth(ram: RamInfo, *, refresh: bool) -> RamInfo:
    return dataclasses.replace(ram, bandwidth_gbps=round(ram_bandwidth_gbps(refresh=refresh), 1))


# --- CPU ---------------------------------------------------------------------------------------------


def probe_cpu(*, notes: list[ProbeNote]) -> CpuInfo:
    info = cpuinfo_dict()
    if not info:
        notes.append(ProbeNote("cpu", "py-cpuinfo gave no answer: instruction sets not detected"))
    arch = normalize_arch(platform.machine() or str(info.get("arch_string_raw", "")))
    logical = psutil.cpu_count(logical=True) or os.cpu_count() or int(info.get("count") or 1)
    physical = psutil.cpu_count(logical=False)
    if not physical:
        notes.append(ProbeNote("cpu", "physical core count not reported; using the logical count"))
        physical = logical
    flags = [str(f) for f in info.get("flags", ())]
    return CpuInfo(
        brand=cpu_brand(),
        arch=arch,
        cores_physical=int(physical),
        cores_logical=int(logical),
        features=llama_cpu_features(flags, arch=arch, system=platform.system()),
    )


def normalize_arch(machine: str) -> str:
    lowered = machine.lower()
    if lowered in ("x86_64", "amd64", "x64"):
        return "x86_64"
    if lowered in ("arm64", "aarch64", "armv8", "armv8l"):
        return "arm64"
    return lowered or "unknown"


def llama_cpu_features(flags: list[str], *, arch: str, system: str) -> tuple[str, ...]:
    """The instruction sets llama.cpp cares about, from py-cpuinfo's flags, in a fixed order."""
    present = {f.lower() for f in flags}
    if arch == "x86_64":
        return tuple(f for f in X86_FEATURES if f in present)
    if arch == "arm64":
        found = [name for name, aliases in ARM_FEATURE_ALIASES.items() if present & set(aliases)]
        if system == "Darwin":  # every Apple Silicon chip has NEON; py-cpuinfo lists no flags there
            found = ["neon", *[f for f in found if f != "neon"], "apple"]
        return tuple(found)
    return ()


# --- GPUs and llama.cpp --------------------------------------------------------------------------------


def _probe_gpus(
    system: str, cpu: CpuInfo, ram: RamInfo, sysfs_root: Path, notes: list[ProbeNote]
) -> list[GpuInfo]:
    if system == "Darwin":
        if cpu.arch == "arm64":
            return gpu_probe.apple_gpus(
                chip=cpu.brand,
                total_ram_bytes=ram.total_bytes,
                available_ram_bytes=ram.available_bytes,
                notes=notes,
            )
        notes.append(ProbeNote("gpu", "GPUs of Intel Macs are not probed: llama.cpp runs on their CPU"))
        return []
    gpus = gpu_probe.nvidia_gpus(notes)
    if system == "Linux":
        gpus += gpu_probe.sysfs_gpus(
            sysfs_root,
            total_ram_bytes=ram.total_bytes,
            available_ram_bytes=ram.available_bytes,
            nvidia_found=bool(gpus),
            notes=notes,
        )
    else:
        notes.append(ProbeNote("gpu", f"AMD/Intel GPUs are read from Linux sysfs; not detected on {system}"))
    return gpus


def llama_gpu_offload(*, notes: list[ProbeNote]) -> bool:
    """Whether the installed llama.cpp build can offload layers to a GPU (CUDA, Metal, Vulkan, ROCm...)."""
    try:
        import llama_cpp  # here: loads the native library, and a broken build must only cost a note
    except Exception as exc:
        notes.append(ProbeNote("llama.cpp", f"not importable, GPU offload unknown: {exc}"))
        return False
    supported = bool(llama_cpp.llama_supports_gpu_offload())
    if not supported:
        notes.append(ProbeNote("llama.cpp", "this llama.cpp build is CPU-only: no GPU offload"))
    return supported


def llama_extra_buffers(*, notes: list[ProbeNote]) -> bool:
    """Whether the installed llama.cpp build loads with extra CPU buffers (repacked weights); see llama_build.

    If llama.cpp cannot be loaded, True (the default build's behaviour), with a note.
    """
    try:
        return extra_buffers_usable()
    except Exception as exc:
        notes.append(ProbeNote("llama.cpp", f"build not readable, repacked weights assumed: {exc}"))
        return True


# --- disk ----------------------------------------------------------------------------------------------


def probe_disk(models_dir: Path, *, notes: list[ProbeNote]) -> DiskInfo | None:
    """Free space where models will be stored; the folder may not exist yet, so measure its nearest parent."""
    target = models_dir.expanduser().absolute()
    for candidate in (target, *target.parents):
        if candidate.exists():
            usage = shutil.disk_usage(candidate)
            return DiskInfo(path=str(target), free_bytes=int(usage.free), total_bytes=int(usage.total))
    notes.append(ProbeNote("disk", f"not detected: no existing folder on the way to {target}"))
    return None


# --- helpers -------------------------------------------------------------------------------------------


def _soft(notes: list[ProbeNote], component: str, fn: Callable[[], T], fallback: T) -> T:
    """Run one probe; an unexpected failure becomes a note and the fallback, never an exception."""
    try:
        return fn()
    except Exception as exc:
        notes.append(ProbeNote(component, f"not detected: {type(exc).__name__}: {exc}"))
        return fallback


def _os_name(system: str) -> str:
    if system == "Darwin":
        version = platform.mac_ver()[0]
        return f"macOS {version}".strip()
    if system == "Windows":
        return f"Windows {platform.release()}".strip()
    return f"{system} {platform.release()}".strip() or "unknown"
