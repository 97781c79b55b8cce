"""Common GPUs and Macs (kaihe_desktop/data/hardware_table.json), and which of them would hold a model.

Upgrade advice names real hardware ("a 24 GB GPU or a 36 GB Mac"). Whether a GPU or a Mac holds a model is
not guessed from a byte count: the real planner (fit.plan) runs on a hypothetical machine built from the table
row and this machine, with the same safety margin, so the advice never says "buy exactly enough".
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from kaihe_desktop.core.fit.known_hardware import Hardware, load_table
from kaihe_desktop.core.fit.plan import Placement, Plan, plan
from kaihe_desktop.core.machine.spec import CpuInfo, GpuInfo, GpuVendor, Machine, RamInfo

if TYPE_CHECKING:
    from kaihe_desktop.core.gguf.model_meta import ModelMeta


def hypothetical_machine(hardware: Hardware, base: Machine) -> Machine:
    """This machine with ``hardware`` in it: a GPU added to its RAM and CPU, or a Mac of that size.

    Other programs are assumed to hold as much RAM as they hold here now (total - available), so the advice
    answers "with what I run today". A new GPU is assumed empty; the planner's margin covers the display.
    """
    in_use = max(base.ram.total_bytes - base.ram.available_bytes, 0)
    if hardware.kind == "gpu":
        gpu = GpuInfo(
            name=hardware.name,
            vendor=hardware.vendor,
            memory_total_bytes=hardware.memory_bytes,
            memory_free_bytes=hardware.memory_bytes,
            bandwidth_gbps=hardware.bandwidth_gbps,
            source="hardware table",
        )
        return replace(base, gpus=(gpu,), gpu_offload_supported=True, name=hardware.name, notes=())
    budget = hardware.budget_bytes
    ram = RamInfo(
        total_bytes=hardware.memory_bytes,
        available_bytes=max(hardware.memory_bytes - in_use, 0),
        bandwidth_gbps=hardware.bandwidth_gbps,
    )
    cpu = CpuInfo(brand=hardware.chip or "Apple Silicon", arch="arm64", cores_physical=10, cores_logical=10)
    gpu = GpuInfo(
        name=hardware.chip or "Apple Silicon",
        vendor=GpuVendor.APPLE,
        memory_total_bytes=budget,
        memory_free_bytes=budget,
        unified=True,
        bandwidth_gbps=hardware.bandwidth_gbps,
        source="hardware table (Metal budget rule)",
    )
    return Machine(ram=ram, cpu=cpu, gpus=(gpu,), gpu_offload_supported=True, os="macOS", name=hardware.name)


def holds(plan_on_it: Plan) -> bool:
    """Whether a plan runs entirely on the GPU with the margin (what buying a GPU or a Mac is for)."""
    return plan_on_it.placement == Placement.GPU


def smallest_holders(
    meta: ModelMeta,
    base: Machine,
    *,
    n_ctx: int,
    weights_scale: float = 1.0,
    kv_type: str = "f16",
    flash_attn: bool | None = None,
    margin_bytes: int | None = None,
    table: tuple[Hardware, ...] | None = None,
) -> tuple[Hardware, ...]:
    """The smallest GPU size and the smallest Mac that run the model fully on the GPU with the margin.

    Every GPU of that smallest size is returned (e.g. both 24 GB cards), then the Mac; empty when nothing in
    the table holds it.
    """
    rows = table if table is not None else load_table()
    found: list[Hardware] = []
    for kind in ("gpu", "mac"):
        size: int | None = None
        for hardware in (h for h in rows if h.kind == kind):
            if size is not None and hardware.memory_bytes > size:
                break
            result = plan(
                meta,
                hypothetical_machine(hardware, base),
                n_ctx=n_ctx,
                kv_type=kv_type,
                flash_attn=flash_attn,
                margin_bytes=margin_bytes,
                weights_scale=weights_scale,
            )
            if holds(result):
                size = hardware.memory_bytes
                found.append(hardware)
    return tuple(found)


def describe_holders(holders: tuple[Hardware, ...]) -> str:
    """ "a 24 GB GPU (RTX 4090, RX 7900 XTX) or a 36 GB Mac"; "" when there are none."""
    parts = []
    gpus = [h for h in holders if h.kind == "gpu"]
    if gpus:
        parts.append(f"{_article(gpus[0].short)} {gpus[0].short} ({', '.join(h.name for h in gpus)})")
    macs = [h for h in holders if h.kind == "mac"]
    if macs:
        parts.append(f"{_article(macs[0].short)} {macs[0].short}")
    return " or ".join(parts)


def _article(words: str) -> str:
    """ "an 8 GB", "an 18 GB", "a 24 GB": by how the number is spoken (eight..., eleven, eighteen)."""
    number = words.split()[0]
    return "an" if number.startswith("8") or number in {"11", "18"} else "a"
