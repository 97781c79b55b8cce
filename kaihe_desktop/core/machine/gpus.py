"""Finding the GPUs a model could use, and how much memory each has; every probe fails soft.

Three sources, one per kind of machine:
- NVIDIA (any OS): NVML through nvidia-ml-py, the library nvidia-smi uses. Memory bandwidth follows from the
  memory bus width and the maximum memory clock NVML reports (x2 for double data rate): an RTX 4090 gives
  384 bit / 8 x 10501 MHz x 2 = 1008 GB/s, an H100 SXM 5120 / 8 x 2619 x 2 = 3352 GB/s, as on the data sheets.
- Apple Silicon (macOS arm64): unified memory; the GPU may use up to the Metal working-set budget,
  see `apple_metal_budget`.
- AMD and Intel on Linux: the kernel's DRM sysfs tree (`/sys/class/drm/cardN/device`).

Each function returns what it found and appends a `ProbeNote` for what it could not find, and why.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaihe_desktop.core.machine.spec import GpuInfo, GpuVendor, ProbeNote

GIB = 2**30
MIB = 2**20

PCI_VENDOR_AMD = "0x1002"
PCI_VENDOR_INTEL = "0x8086"
PCI_VENDOR_NVIDIA = "0x10de"

# An AMD GPU whose VRAM is this small and whose VRAM chip vendor the driver does not know is an APU: its
# "VRAM" is a carve-out of system RAM (512 MiB-2 GiB by default), and it reaches the rest of RAM through
# GTT. A big carve-out (Strix Halo can reserve 96 GB) is then treated as dedicated memory, which it is.
APU_MAX_CARVEOUT_BYTES = 2 * GIB

# Intel integrated graphics may map up to half of system RAM (the Windows "shared GPU memory" default, and
# what the i915/xe drivers let one process allocate in practice).
INTEL_SHARED_FRACTION = 0.5

# --- NVIDIA ----------------------------------------------------------------------------------------


def nvidia_gpus(notes: list[ProbeNote]) -> list[GpuInfo]:
    """Every NVIDIA GPU NVML sees; none (and a note) when the library or the driver is missing."""
    try:
        import pynvml
    except Exception as exc:  # the package is a dependency, but fail soft all the same
        notes.append(ProbeNote("nvidia", f"not detected: nvidia-ml-py is not importable ({exc})"))
        return []
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        notes.append(ProbeNote("nvidia", f"not detected: {_nvml_reason(exc)}"))
        return []
    try:
        driver = _text(_optional(pynvml.nvmlSystemGetDriverVersion))
        count = int(pynvml.nvmlDeviceGetCount())
        if count == 0:
            notes.append(ProbeNote("nvidia", "not detected: the NVIDIA driver reports no GPU"))
        return [_nvidia_gpu(pynvml, index, driver, notes) for index in range(count)]
    except Exception as exc:
        notes.append(ProbeNote("nvidia", f"NVML failed while listing GPUs: {_nvml_reason(exc)}"))
        return []
    finally:
        _optional(pynvml.nvmlShutdown)


def _nvidia_gpu(pynvml: Any, index: int, driver: str | None, notes: list[ProbeNote]) -> GpuInfo:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    name = _text(pynvml.nvmlDeviceGetName(handle)) or f"NVIDIA GPU {index}"
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    capability = _optional(pynvml.nvmlDeviceGetCudaComputeCapability, handle)
    bus_bits = _optional(pynvml.nvmlDeviceGetMemoryBusWidth, handle)
    mem_clock_mhz = _optional(pynvml.nvmlDeviceGetMaxClockInfo, handle, pynvml.NVML_CLOCK_MEM)
    bandwidth = None
    if bus_bits and mem_clock_mhz:
        bandwidth = round(int(bus_bits) / 8 * int(mem_clock_mhz) * 1e6 * 2 / 1e9, 1)
    else:
        notes.append(ProbeNote("nvidia", f"{name}: memory bandwidth not reported by NVML"))
    return GpuInfo(
        name=name,
        vendor=GpuVendor.NVIDIA,
        memory_total_bytes=int(memory.total),
        memory_free_bytes=int(memory.free),
        driver=driver,
        compute_capability=f"{capability[0]}.{capability[1]}" if capability else None,
        bandwidth_gbps=bandwidth,
        source="nvml",
    )


def _nvml_reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "Library Not Found" in text or "LibraryNotFound" in type(exc).__name__:
        return "NVML library not found (no NVIDIA driver installed)"
    if "Driver Not Loaded" in text:
        return "the NVIDIA driver is installed but not loaded"
    return f"NVML error: {text}"


def _optional(fn: Callable[..., Any], *args: Any) -> Any:
    """A call whose failure only means 'unknown' (older drivers lack some NVML calls)."""
    try:
        return fn(*args)
    except Exception:
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


# --- Apple Silicon -------------------------------------------------------------------------------------

APPLE_SMALL_MACHINE_BYTES = 36 * GIB


def apple_metal_budget(total_ram_bytes: int, wired_limit_mb: int | None) -> int:
    """Bytes of unified memory the GPU may use on Apple Silicon (Metal's working-set budget).

    Metal reports the budget as `MTLDevice.recommendedMaxWorkingSetSize`; llama.cpp's Metal backend uses
    that value as the GPU's memory. Since macOS 14 the sysctl `iogpu.wired_limit_mb` sets it (it is 0 unless
    the user raised it, e.g. `sudo sysctl iogpu.wired_limit_mb=57344`). When it is not set, macOS allows
    about 2/3 of RAM on machines with up to 36 GB and about 3/4 above (measured values of
    recommendedMaxWorkingSetSize reported in llama.cpp discussion #2182 and its Metal issues: 10.7 GB on
    16 GB, 21.3 GB on 32 GB, 48 GB on 64 GB, 96 GB on 128 GB).
    """
    if wired_limit_mb is not None and wired_limit_mb > 0:
        return min(int(wired_limit_mb) * MIB, total_ram_bytes)
    if total_ram_bytes <= APPLE_SMALL_MACHINE_BYTES:
        return total_ram_bytes * 2 // 3
    return total_ram_bytes * 3 // 4


def read_sysctl(name: str) -> str | None:
    """`sysctl -n NAME` on macOS; None when the key does not exist or sysctl cannot run."""
    try:
        result = subprocess.run(
            ["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    value = result.stdout.strip()
    return value if result.returncode == 0 and value else None


def apple_gpus(
    *,
    chip: str,
    total_ram_bytes: int,
    available_ram_bytes: int,
    notes: list[ProbeNote],
    sysctl: Callable[[str], str | None] = read_sysctl,
) -> list[GpuInfo]:
    """The Apple Silicon GPU as unified memory: the Metal budget in total, what RAM has free as free."""
    raw = sysctl("iogpu.wired_limit_mb")
    wired_limit_mb: int | None = None
    if raw is None:
        notes.append(ProbeNote("apple", "sysctl iogpu.wired_limit_mb not available; using macOS's default"))
    else:
        try:
            wired_limit_mb = int(raw)
        except ValueError:
            notes.append(ProbeNote("apple", f"sysctl iogpu.wired_limit_mb gave {raw!r}; using the default"))
    budget = apple_metal_budget(total_ram_bytes, wired_limit_mb)
    if wired_limit_mb:
        source = f"sysctl iogpu.wired_limit_mb = {wired_limit_mb}"
    else:
        source = "macOS default Metal budget (2/3 of RAM up to 36 GB, 3/4 above)"
    return [
        GpuInfo(
            name=f"{chip} GPU" if chip else "Apple Silicon GPU",
            vendor=GpuVendor.APPLE,
            memory_total_bytes=budget,
            memory_free_bytes=max(0, min(budget, available_ram_bytes)),
            unified=True,
            driver="Metal",
            source=source,
        )
    ]


# --- Linux sysfs (AMD, Intel) ------------------------------------------------------------------------

_CARD_NAME = re.compile(r"^card(\d+)$")


def sysfs_gpus(
    sysfs_root: Path,
    *,
    total_ram_bytes: int,
    available_ram_bytes: int,
    nvidia_found: bool,
    notes: list[ProbeNote],
) -> list[GpuInfo]:
    """AMD GPUs (VRAM, and GTT for APUs) and Intel integrated GPUs from `<sysfs_root>/class/drm`."""
    drm = sysfs_root / "class" / "drm"
    try:
        cards = sorted(
            (p for p in drm.iterdir() if _CARD_NAME.match(p.name)), key=lambda p: int(p.name[len("card") :])
        )
    except OSError as exc:
        notes.append(ProbeNote("sysfs", f"AMD/Intel GPUs not detected: cannot list {drm} ({_why(exc)})"))
        return []
    gpus: list[GpuInfo] = []
    for card in cards:
        device = card / "device"
        vendor = _read(device / "vendor")
        if vendor is None:
            continue
        vendor = vendor.lower()
        try:
            if vendor == PCI_VENDOR_AMD:
                gpus.append(_amd_gpu(card.name, device))
            elif vendor == PCI_VENDOR_INTEL:
                gpus.append(_intel_gpu(card.name, device, total_ram_bytes, available_ram_bytes))
            elif vendor == PCI_VENDOR_NVIDIA:
                if not nvidia_found:
                    notes.append(ProbeNote("nvidia", f"{card.name} is an NVIDIA GPU but NVML cannot read it"))
            else:
                notes.append(
                    ProbeNote("sysfs", f"{card.name}: display device of PCI vendor {vendor} ignored")
                )
        except (OSError, ValueError) as exc:
            notes.append(ProbeNote("sysfs", f"{card.name}: GPU memory not detected ({_why(exc)})"))
    if not cards:
        notes.append(ProbeNote("sysfs", f"AMD/Intel GPUs not detected: no cardN entry in {drm}"))
    return gpus


def _amd_gpu(card: str, device: Path) -> GpuInfo:
    vram_total = _read_int(device / "mem_info_vram_total")
    vram_used = _read_int(device / "mem_info_vram_used")
    name = _read(device / "product_name") or f"AMD GPU (PCI 1002:{_pci_device(device)})"
    knows_vram_chip = (device / "mem_info_vram_vendor").exists()
    gtt_total = _read_optional_int(device / "mem_info_gtt_total")
    if gtt_total is None or knows_vram_chip or vram_total > APU_MAX_CARVEOUT_BYTES:
        return GpuInfo(
            name=name,
            vendor=GpuVendor.AMD,
            memory_total_bytes=vram_total,
            memory_free_bytes=max(0, vram_total - vram_used),
            source=f"sysfs {card} mem_info_vram_total/used",
        )
    gtt_used = _read_optional_int(device / "mem_info_gtt_used") or 0
    return GpuInfo(
        name=name,
        vendor=GpuVendor.AMD,
        memory_total_bytes=vram_total + gtt_total,
        memory_free_bytes=max(0, vram_total - vram_used) + max(0, gtt_total - gtt_used),
        unified=True,
        carveout_bytes=vram_total,
        source=f"sysfs {card} APU: mem_info_vram_total (carve-out) + mem_info_gtt_total (shared RAM)",
    )


def _intel_gpu(card: str, device: Path, total_ram_bytes: int, available_ram_bytes: int) -> GpuInfo:
    shared = int(total_ram_bytes * INTEL_SHARED_FRACTION)
    return GpuInfo(
        name=_read(device / "product_name") or f"Intel GPU (PCI 8086:{_pci_device(device)})",
        vendor=GpuVendor.INTEL,
        memory_total_bytes=shared,
        memory_free_bytes=max(0, min(shared, available_ram_bytes)),
        unified=True,
        source=f"sysfs {card}: integrated, shares system RAM (up to half)",
    )


def _pci_device(device: Path) -> str:
    raw = _read(device / "device") or "0x????"
    return raw.lower().removeprefix("0x")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip() or None
    except OSError:
        return None


def _read_int(path: Path) -> int:
    """An integer sysfs attribute; a missing or garbled one raises with the file named."""
    try:
        raw = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError as exc:
        raise OSError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{path.name} holds {raw[:40]!r}, not a number of bytes") from None
    if value < 0:
        raise ValueError(f"{path.name} holds a negative size ({value})")
    return value


def _read_optional_int(path: Path) -> int | None:
    if not path.exists():
        return None
    try:
        return _read_int(path)
    except (OSError, ValueError):
        return None


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
