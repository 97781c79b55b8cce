"""What a machine is, as data: the probe's result and the saved profiles share this one shape.

A profile is just a Machine saved as JSON, so every command can act as another machine
(`--profile FILE`) and tests can use a 4090 or an M3 Max without having one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from kaihe_desktop.core.errors import KaiheError

SCHEMA_VERSION = 1


class GpuVendor(StrEnum):
    NVIDIA = "nvidia"
    AMD = "amd"
    APPLE = "apple"
    INTEL = "intel"
    OTHER = "other"


@dataclass(frozen=True)
class ProbeNote:
    """A part of the probe that found nothing or failed, and why (never an exception)."""

    component: str
    message: str


@dataclass(frozen=True)
class RamInfo:
    total_bytes: int
    available_bytes: int
    swap_total_bytes: int = 0
    swap_free_bytes: int = 0
    bandwidth_gbps: float | None = None  # measured once (or from a profile); feeds the speed estimate


@dataclass(frozen=True)
class CpuInfo:
    brand: str
    arch: str  # "x86_64", "arm64", ...
    cores_physical: int
    cores_logical: int
    features: tuple[str, ...] = ()  # lower-case: "avx", "avx2", "avx512f", "fma", "f16c", "neon", ...


@dataclass(frozen=True)
class GpuInfo:
    name: str
    vendor: GpuVendor
    memory_total_bytes: int
    memory_free_bytes: int
    unified: bool = False  # memory shared with the CPU (Apple Silicon, APUs, iGPUs)
    driver: str | None = None
    compute_capability: str | None = None
    bandwidth_gbps: float | None = None
    source: str = ""  # where the numbers came from: "nvml", "sysctl iogpu.wired_limit_mb", ...
    # Part of memory_total_bytes reserved for this unified GPU alone at boot and therefore missing from
    # RamInfo.total_bytes (an AMD APU's VRAM carve-out). 0 for discrete GPUs and Apple Silicon.
    carveout_bytes: int = 0


@dataclass(frozen=True)
class DiskInfo:
    path: str
    free_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class Machine:
    ram: RamInfo
    cpu: CpuInfo
    gpus: tuple[GpuInfo, ...] = ()
    gpu_offload_supported: bool = False  # whether the installed llama.cpp build can use a GPU at all
    # Whether the installed llama.cpp build uses extra CPU buffer types such as CPU_REPACK (interleaved
    # copies of Q4_0/Q4_K/... weights on top of the mapped file). False for builds with the AMX backend,
    # which crashes and is loaded without them (core.llama_build). True by default so older profiles load.
    llama_extra_buffers: bool = True
    disk: DiskInfo | None = None
    os: str = ""
    name: str = ""  # a profile's label, e.g. "16 GB + RTX 4060 8 GB"; empty for a live probe
    notes: tuple[ProbeNote, ...] = field(default=())

    # --- profiles -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema_version"] = SCHEMA_VERSION
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Machine:
        try:
            return cls(
                ram=RamInfo(**data["ram"]),
                cpu=CpuInfo(**{**data["cpu"], "features": tuple(data["cpu"].get("features", ()))}),
                gpus=tuple(GpuInfo(**{**g, "vendor": GpuVendor(g["vendor"])}) for g in data.get("gpus", ())),
                gpu_offload_supported=bool(data.get("gpu_offload_supported", False)),
                llama_extra_buffers=bool(data.get("llama_extra_buffers", True)),
                disk=DiskInfo(**data["disk"]) if data.get("disk") else None,
                os=data.get("os", ""),
                name=data.get("name", ""),
                notes=tuple(ProbeNote(**n) for n in data.get("notes", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"not a machine profile: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> Machine:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProfileError(f"not a machine profile (bad JSON: {exc})") from exc
        if not isinstance(data, dict):
            raise ProfileError("not a machine profile (expected a JSON object)")
        return cls.from_dict(data)

    def save(self, path: Path) -> None:
        path.write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Machine:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProfileError(f"cannot read profile {path}: {exc.strerror or exc}") from exc
        try:
            return cls.from_json(text)
        except ProfileError as exc:
            raise ProfileError(f"{path}: {exc}") from exc


class ProfileError(KaiheError):
    """A machine profile file that cannot be read."""
