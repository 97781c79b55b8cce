"""The rows of the packaged table of common GPUs and Macs (kaihe_desktop/data/hardware_table.json).

Two users: `speed` looks a GPU's memory bandwidth up by name, and `hardware_table` runs the planner on each
row to say which would hold a model. The rows live here, below both, so the planner (`plan` -> `speed`)
never imports the module that calls it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from kaihe_desktop.core.machine.gpus import apple_metal_budget
from kaihe_desktop.core.machine.spec import GpuVendor
from kaihe_desktop.core.units import GIB

TABLE_FILE = "hardware_table.json"


@dataclass(frozen=True)
class Hardware:
    """One row: a discrete GPU (its VRAM) or a Mac (its unified memory)."""

    name: str
    kind: str  # "gpu" | "mac"
    memory_bytes: int
    bandwidth_gbps: float
    vendor: GpuVendor
    chip: str = ""

    @property
    def memory_gb(self) -> int:
        return round(self.memory_bytes / GIB)

    @property
    def budget_bytes(self) -> int:
        """What a model may use: all the VRAM, or a Mac's Metal budget."""
        if self.kind == "mac":
            return apple_metal_budget(self.memory_bytes, None)
        return self.memory_bytes

    @property
    def short(self) -> str:
        """ "24 GB GPU", "36 GB Mac": the words advice uses."""
        return f"{self.memory_gb} GB {'Mac' if self.kind == 'mac' else 'GPU'}"


@cache
def load_table() -> tuple[Hardware, ...]:
    """Every row of the packaged table, GPUs then Macs, each smallest memory first."""
    text = resources.files("kaihe_desktop.data").joinpath(TABLE_FILE).read_text(encoding="utf-8")
    data = json.loads(text)
    rows = [
        Hardware(
            name=str(g["name"]),
            kind="gpu",
            memory_bytes=int(float(g["memory_gb"]) * GIB),
            bandwidth_gbps=float(g["bandwidth_gbps"]),
            vendor=GpuVendor(g["vendor"]),
        )
        for g in data["gpus"]
    ]
    rows += [
        Hardware(
            name=str(m["name"]),
            kind="mac",
            memory_bytes=int(float(m["memory_gb"]) * GIB),
            bandwidth_gbps=float(m["bandwidth_gbps"]),
            vendor=GpuVendor.APPLE,
            chip=str(m.get("chip", "")),
        )
        for m in data["macs"]
    ]
    rows.sort(key=lambda h: (h.kind, h.memory_bytes, h.name))
    return tuple(rows)
