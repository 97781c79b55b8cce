"""`kaihe hardware`: this machine (or a profile), its tier, what the tier unlocks and what the next adds."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kaihe_desktop.cli.common import (
    add_json_arg,
    add_profile_arg,
    emit_json,
    human_bytes,
    machine_from_args,
    render_table,
)
from kaihe_desktop.core.machine.spec import Machine, ProfileError
from kaihe_desktop.core.machine.tiers import TierInfo, tier_for

REPACK_OFF = (
    "off: this llama.cpp build has AMX, which crashes on decoding (llama.cpp #20824), so the weights "
    "are used as the file stores them, without CPU-friendly repacked copies"
)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "hardware",
        help="show this machine, its tier and what it unlocks",
        description="Probe this machine (RAM, CPU, GPUs, disk) and name its tier.",
    )
    add_json_arg(parser)
    add_profile_arg(parser)
    parser.add_argument(
        "--save-profile",
        type=Path,
        metavar="FILE",
        help="also save the machine as a profile JSON file (to use later with --profile FILE)",
    )
    parser.add_argument(
        "--remeasure",
        action="store_true",
        help="measure the RAM bandwidth again instead of using the cached value (e.g. after a busy moment)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.remeasure and args.profile is None:
        from kaihe_desktop.core.machine.probe import probe

        machine = probe(refresh_bandwidth=True)
    else:
        machine = machine_from_args(args)
    info = tier_for(machine)
    if args.save_profile is not None:
        try:
            machine.save(args.save_profile)
        except OSError as exc:
            raise ProfileError(f"cannot write profile {args.save_profile}: {exc.strerror or exc}") from exc
    if args.json:
        emit_json(hardware_json(machine, info))
    else:
        print(render_hardware(machine, info))
        if args.save_profile is not None:
            print(f"\nSaved this machine as {args.save_profile}")
    return 0


def hardware_json(machine: Machine, info: TierInfo) -> dict[str, Any]:
    data = machine.to_dict()
    data["tier"] = info.tier.value
    data["tier_info"] = info.to_dict()
    return data


def render_hardware(machine: Machine, info: TierInfo) -> str:
    ram, cpu = machine.ram, machine.cpu
    title = f"Machine: {machine.name}" if machine.name else "This machine"
    rows: list[tuple[str, str]] = [
        ("RAM", f"{human_bytes(ram.total_bytes)} total, {human_bytes(ram.available_bytes)} available"),
        ("Swap", f"{human_bytes(ram.swap_total_bytes)} total, {human_bytes(ram.swap_free_bytes)} free"),
        ("RAM bandwidth", f"{ram.bandwidth_gbps:.1f} GB/s" if ram.bandwidth_gbps else "not measured"),
        ("CPU", f"{cpu.brand} ({cpu.arch}, {cpu.cores_physical} cores / {cpu.cores_logical} threads)"),
        ("CPU features", ", ".join(cpu.features) or "none of AVX/AVX2/AVX-512/FMA/F16C/NEON"),
    ]
    for n, gpu in enumerate(machine.gpus, start=1):
        kind = "unified" if gpu.unified else "dedicated"
        details = [f"{human_bytes(gpu.memory_total_bytes)} {kind}, {human_bytes(gpu.memory_free_bytes)} free"]
        if gpu.compute_capability:
            details.append(f"compute {gpu.compute_capability}")
        if gpu.driver:
            details.append(f"driver {gpu.driver}")
        if gpu.bandwidth_gbps:
            details.append(f"{gpu.bandwidth_gbps:.0f} GB/s")
        rows.append((f"GPU {n}", f"{gpu.name} ({gpu.vendor.value})"))
        rows.append(("", "; ".join(details)))
        if gpu.source:
            rows.append(("", f"source: {gpu.source}"))
    if not machine.gpus:
        rows.append(("GPU", "none detected"))
    rows.append(("GPU offload", "yes (llama.cpp can use the GPU)" if machine.gpu_offload_supported else "no"))
    if not machine.llama_extra_buffers:
        rows.append(("Repacked weights", REPACK_OFF))
    if machine.disk is not None:
        rows.append(("Disk free", f"{human_bytes(machine.disk.free_bytes)} at {machine.disk.path}"))
    if machine.os:
        rows.append(("OS", machine.os))
    lines = [title, "", render_table(("", ""), rows).split("\n", 2)[2]]
    lines += [
        "",
        f"Tier: {info.tier.label}",
        f"  memory a model can use: {info.rule}",
        f"  unlocks: {info.unlocks}",
        f"  next tier: {info.next_tier_adds}" if info.next_tier_adds else "  next tier: none (top tier)",
    ]
    if machine.notes:
        lines += ["", "Not detected:"]
        lines += [f"  - {note.component}: {note.message}" for note in machine.notes]
    return "\n".join(lines)
