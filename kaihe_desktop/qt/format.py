"""Numbers → words for the window: the only place in kaihe_desktop.qt that formats a value for display."""

from __future__ import annotations

from datetime import UTC, datetime

from kaihe_desktop.core.fit.guardrails import Action, Change, FitOption, Growth, Guardrail, Trigger
from kaihe_desktop.core.fit.hardware_table import describe_holders
from kaihe_desktop.core.machine.spec import CpuInfo, DiskInfo, GpuInfo, Machine, RamInfo
from kaihe_desktop.core.units import format_bytes, format_pct

__all__ = [
    "bytes_text",
    "count_short",
    "count_text",
    "cpu_text",
    "disk_text",
    "gpu_text",
    "no_gpu_text",
    "offload_text",
    "bandwidth_text",
    "instruction_sets",
    "instruction_sets_text",
    "ram_text",
    "swap_text",
    "duration",
    "fit_badge",
    "fit_option_detail",
    "fit_option_title",
    "guardrail_notes",
    "guardrail_numbers",
    "guardrail_proceed_label",
    "guardrail_summary",
    "guardrail_title",
    "guardrail_upgrade",
    "fit_words",
    "speed_range",
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


PLACEMENT_WORDS = {"gpu": "GPU", "partial": "GPU + CPU", "cpu": "CPU"}


def fit_badge(placement: str, headroom_bytes: int) -> str:
    """A fit report's placement and headroom (free memory left on the tightest device) as a badge:
    "fits: CPU, 3.1 GiB spare"; "does not fit: 1.2 GiB over", or "... 300 MiB spare, under the margin"."""
    where = PLACEMENT_WORDS.get(str(placement))
    if where is not None:
        return f"fits: {where}, {format_bytes(max(0, headroom_bytes))} spare"
    if headroom_bytes < 0:
        return f"does not fit: {format_bytes(-headroom_bytes)} over"
    return f"does not fit: {format_bytes(headroom_bytes)} spare, under the margin"


FIT_WORDS = {"gpu": "full GPU", "cpu": "CPU only"}


def fit_words(
    placement: str, headroom_bytes: int, *, margin_bytes: int = 0, gpu_layers: int = 0, n_layers: int = 0
) -> str:
    """A plan's placement and headroom in Discover's words: "full GPU, 3.1 GiB spare", "partial GPU (20/33
    layers), 1.2 GiB spare", "CPU only, 6.2 GiB spare"; a plan that does not fit: "over by 7.4 GiB", what
    it lacks counting the safety margin (the planner's "short with the margin"); "fit unknown" / "cannot
    load" without a plan."""
    kind = str(placement)
    if kind == "unknown":
        return "fit unknown"
    if kind == "unusable":
        return "cannot load"
    spare = f"{format_bytes(max(0, headroom_bytes))} spare"
    if kind in FIT_WORDS:
        return f"{FIT_WORDS[kind]}, {spare}"
    if kind == "partial":
        return f"partial GPU ({gpu_layers}/{n_layers} layers), {spare}"
    return f"over by {format_bytes(max(0, margin_bytes - headroom_bytes))}"


def count_short(n: int) -> str:
    """A count for a narrow column: 950 -> "950", 4200 -> "4.2k", 120000 -> "120k", 3400000 -> "3.4M"."""
    for size, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
        if n >= size:
            value = n / size
            return f"{value:.1f}{suffix}" if value < 10 else f"{value:.0f}{suffix}"
    return str(n)


def speed_range(low: float, high: float, *, unit: bool = True) -> str:
    """A predicted generation speed: "12.0–18.3 tokens/s" (one number when both round alike); without
    the unit for a column whose header says it."""
    lo, hi = (f"{v:.1f}" if v < 100 else f"{v:.0f}" for v in (low, high))
    text = lo if lo == hi else f"{lo}–{hi}"
    return f"{text} tokens/s" if unit else text


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


# The instruction sets llama.cpp's CPU backend picks its kernels by, as the probe names them.
X86_SETS = (("avx", "AVX"), ("avx2", "AVX2"), ("avx512f", "AVX-512"), ("fma", "FMA"), ("f16c", "F16C"))
ARM_SETS = (("neon", "NEON"), ("dotprod", "DotProd"), ("i8mm", "I8MM"), ("sve", "SVE"))


def instruction_sets(cpu: CpuInfo) -> tuple[tuple[str, bool], ...]:
    """Each instruction set llama.cpp can use on this CPU's architecture, and whether the CPU has it."""
    arm = cpu.arch.lower() in ("arm64", "aarch64") or cpu.arch.lower().startswith("arm")
    have = set(cpu.features)
    return tuple((label, key in have) for key, label in (ARM_SETS if arm else X86_SETS))


def instruction_sets_text(cpu: CpuInfo) -> str:
    """ "AVX ✓  AVX2 ✓  AVX-512 ✗  FMA ✓  F16C ✓" (the marks say has / lacks)."""
    return "   ".join(f"{label} {'✓' if has else '✗'}" for label, has in instruction_sets(cpu))


def bandwidth_text(gbps: float | None, *, measured: bool = True) -> str:
    """RAM bandwidth: "33.5 GB/s (measured)" / "(from the profile)"; "not measured" when unknown."""
    if not gbps:
        return "not measured"
    return f"{gbps:.1f} GB/s ({'measured on this computer' if measured else 'from the profile'})"


# --- guardrails (qt/dialogs/guardrail.py) ---------------------------------------------------------------


def _room_words(device: str) -> str:
    return "RAM" if device == "RAM" else f"{device} memory"


def _verb(g: Guardrail) -> str:
    return "Download" if g.action == Action.DOWNLOAD else "Load"


def _model_words(g: Guardrail) -> str:
    name = g.plan.meta.name or "This model"
    return f"{name} {g.quant}" if g.quant else name


def guardrail_title(g: Guardrail) -> str:
    """The dialog's title: "Load: less than the safety margin would stay free"."""
    if g.trigger == Trigger.BELOW_MARGIN:
        return f"{_verb(g)}: less than the safety margin would stay free"
    return f"{_verb(g)}: a step up from what runs now"


def _grew_words(g: Guardrail) -> str:
    cur = g.current
    parts = []
    for growth in g.grew:
        if growth == Growth.MODEL_SIZE:
            then = f" over {cur.parameter_count / 1e9:.1f}B" if cur else ""
            parts.append(f"a bigger model ({g.plan.meta.parameter_count / 1e9:.1f}B{then})")
        elif growth == Growth.QUANT:
            then = f" over {cur.quant}" if cur and cur.quant else ""
            parts.append(f"a higher quant ({g.quant}{then})")
        else:
            then = f" over {cur.n_ctx}" if cur else ""
            parts.append(f"a longer context ({g.plan.n_ctx} tokens{then})")
    return ", ".join(parts)


def guardrail_summary(g: Guardrail) -> str:
    """One sentence with the numbers: what it needs where, what is free, and what that leaves."""
    what = f"{_model_words(g)} at {g.plan.n_ctx} tokens of context"
    room = _room_words(g.device)
    margin = format_bytes(g.margin_bytes)
    if g.trigger == Trigger.STEP_UP:
        pct = percent(g.left_bytes, g.available_bytes)
        cur = g.current
        shrinks = (
            f" To fit, the context would shrink from {cur.n_ctx} to {g.plan.n_ctx} tokens."
            if cur is not None and g.plan.n_ctx < cur.n_ctx
            else ""
        )
        return (
            f"{what} is a step up from what runs now: {_grew_words(g)}. It fits, but leaves only "
            f"{format_bytes(g.left_bytes)} ({pct}) of the {format_bytes(g.available_bytes)} of {room} "
            f"that is free now.{shrinks}"
        )
    needs = f"needs {format_bytes(g.needed_bytes)} of {room}, and {format_bytes(g.available_bytes)} is free"
    if g.left_bytes < 0:
        return (
            f"{what} {needs}: it is {format_bytes(-g.left_bytes)} over, and {format_bytes(g.short_bytes)} "
            f"short of keeping the {margin} safety margin free."
        )
    return (
        f"{what} {needs}: it would leave only {format_bytes(g.left_bytes)}, "
        f"{format_bytes(g.short_bytes)} short of the {margin} safety margin."
    )


def guardrail_numbers(g: Guardrail) -> tuple[str, str, str]:
    """Needs, has, leaves: ("9.5 GiB of RAM", "4.6 GiB free", "-4.9 GiB (margin 1.0 GiB)")."""
    return (
        f"{format_bytes(g.needed_bytes)} of {_room_words(g.device)}",
        f"{format_bytes(g.available_bytes)} free",
        f"{format_bytes(g.left_bytes)} (the margin is {format_bytes(g.margin_bytes)})",
    )


def guardrail_proceed_label(g: Guardrail) -> str:
    """ "Download anyway (needs 9.4 GiB, has 7.4 GiB)": the button says what it risks."""
    return f"{_verb(g)} anyway (needs {format_bytes(g.needed_bytes)}, has {format_bytes(g.available_bytes)})"


def guardrail_upgrade(g: Guardrail) -> str:
    """The upgrade advice: what it takes to run this as asked, with the margin (never "exactly enough")."""
    u = g.upgrade
    margin = format_bytes(g.margin_bytes)
    tier = u.tier.capitalize()
    head = f"To run it as asked it needs {format_bytes(u.needed_bytes)} in all: {tier} tier hardware"
    where = describe_holders(u.holders)
    if not where:
        return f"{head}; no single GPU or Mac in our table holds it with the {margin} margin."
    return f"{head}; it runs fully on {where}, keeping the {margin} margin free."


_NOTE_CODES = ("swap", "other_programs")


def guardrail_notes(g: Guardrail) -> tuple[str, ...]:
    """The plan's warnings worth reading before going ahead anyway (swap, other programs)."""
    return tuple(a.message[:1].upper() + a.message[1:] for a in g.advice if a.code in _NOTE_CODES)


def fit_option_title(o: FitOption) -> str:
    """ "Fewer GPU layers: 20 of 33", "A q8_0 KV cache", "A shorter context: 4096 tokens", "Q2_K instead"."""
    if o.change == Change.FEWER_GPU_LAYERS:
        return f"Fewer GPU layers: {o.gpu_layers} of {o.plan.n_layers}"
    if o.change == Change.KV_Q8_0:
        return "A q8_0 KV cache"
    if o.change == Change.SHORTER_CONTEXT:
        return f"A shorter context: {o.n_ctx} tokens"
    size = f" ({format_bytes(o.size_bytes)} download)" if o.size_bytes else ""
    return f"The next quant down: {o.quant}{size}"


def fit_option_detail(o: FitOption) -> str:
    """Its own numbers: "needs 3.5 GiB · CPU only, 1.1 GiB spare · 2048 tokens · 2.9–4.7 tokens/s"."""
    where = fit_words(str(o.placement), o.headroom_bytes, gpu_layers=o.gpu_layers, n_layers=o.plan.n_layers)
    speed = speed_range(o.tokens_per_s.low, o.tokens_per_s.high) if o.tokens_per_s else "speed not known"
    kv = f" ({o.kv_type} KV)" if o.kv_type.quantized else ""
    parts = (f"needs {format_bytes(o.total_bytes)}", where, f"{o.n_ctx} tokens{kv}", speed)
    return " · ".join(p.replace(" ", "\u00a0") for p in parts)  # lines break between the parts only
