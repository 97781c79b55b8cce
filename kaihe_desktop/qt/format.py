"""Numbers → words for the window: the only place in kaihe_desktop.qt that formats a value for display."""

from __future__ import annotations

from datetime import UTC, datetime

from kaihe_desktop.core.machine.spec import CpuInfo, DiskInfo, GpuInfo, Machine, RamInfo
from kaihe_desktop.core.units import format_bytes, format_pct

__all__ = [
    "bytes_text",
    "count_text",
    "cpu_text",
    "disk_text",
    "gpu_text",
    "no_gpu_text",
    "offload_text",
    "ram_text",
    "swap_text",
    "duration",
    "memory_use",
    "percent",
    "timestamp",
    "tokens_per_s",
]


def bytes_text(n: float) -> str:
    """1536 MiB -> "1.5 GiB" (the core's format, as the CLI prints it)."""
    return format_bytes(n)


def percent(part: float, whole: float) -> str:
    """Share of ``whole`` as "33%"; "–" when whole is 0."""
    return format_pct(100.0 * part / whole) if whole else "–"


def memory_use(used: int, total: int) -> str:
    """ "5.2 of 15.7 GiB (33%)" — the unit once, when both sides share it."""
    used_text, total_text = format_bytes(used), format_bytes(total)
    used_num, _, used_unit = used_text.partition(" ")
    total_unit = total_text.partition(" ")[2]
    shown = f"{used_num} of {total_text}" if used_unit == total_unit else f"{used_text} of {total_text}"
    return f"{shown} ({percent(used, total)})"


def duration(seconds: float) -> str:
    """0.4 -> "0.4 s", 75 -> "1 min 15 s", 3720 -> "1 h 2 min"."""
    if seconds < 0:
        seconds = 0
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def tokens_per_s(rate: float) -> str:
    """12.345 -> "12.3 tokens/s"; fast rates lose the decimal."""
    return f"{rate:.1f} tokens/s" if rate < 100 else f"{rate:.0f} tokens/s"


def count_text(n: int, one: str, many: str | None = None) -> str:
    """(1, "download") -> "1 download", (3, "download") -> "3 downloads"."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def timestamp(iso: str | None, *, now: datetime | None = None) -> str:
    """An ISO time from the core as local time: "today 14:05", "2026-11-30 09:12"; "never" for None."""
    if not iso:
        return "never"
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    local = when.astimezone()
    today = (now or datetime.now(UTC)).astimezone().date()
    if local.date() == today:
        return f"today {local:%H:%M}"
    return f"{local:%Y-%m-%d %H:%M}"


# --- the machine ----------------------------------------------------------------------------------------


def ram_text(ram: RamInfo) -> str:
    text = f"{format_bytes(ram.total_bytes)} total, {format_bytes(ram.available_bytes)} available"
    if ram.bandwidth_gbps:
        text += f"; {ram.bandwidth_gbps:.1f} GB/s"
    return text


def swap_text(ram: RamInfo) -> str:
    if not ram.swap_total_bytes:
        return "none"
    return f"{format_bytes(ram.swap_total_bytes)} total, {format_bytes(ram.swap_free_bytes)} free"


def cpu_text(cpu: CpuInfo) -> str:
    cores = f"{cpu.cores_physical} cores / {cpu.cores_logical} threads"
    features = f"; {', '.join(cpu.features)}" if cpu.features else ""
    return f"{cpu.brand} ({cpu.arch}, {cores}){features}"


def gpu_text(gpu: GpuInfo) -> str:
    kind = "unified memory" if gpu.unified else "dedicated"
    parts = [f"{gpu.name}: {format_bytes(gpu.memory_total_bytes)} {kind}"]
    if gpu.memory_free_bytes and not gpu.unified:
        parts.append(f"{format_bytes(gpu.memory_free_bytes)} free")
    if gpu.bandwidth_gbps:
        parts.append(f"{gpu.bandwidth_gbps:.0f} GB/s")
    return ", ".join(parts)


def no_gpu_text(machine: Machine) -> str:
    why = "; ".join(
        n.message.removeprefix("not detected: ")
        for n in machine.notes
        if n.component.startswith(("gpu", "nvidia", "amd"))
    )
    return f"none detected ({why})" if why else "none detected"


def offload_text(machine: Machine) -> str:
    return (
        "on: llama.cpp can use the GPU"
        if machine.gpu_offload_supported
        else "off: this llama.cpp runs on the CPU"
    )


def disk_text(disk: DiskInfo | None) -> str:
    if disk is None:
        return "unknown"
    return f"{format_bytes(disk.free_bytes)} free of {format_bytes(disk.total_bytes)} at {disk.path}"
