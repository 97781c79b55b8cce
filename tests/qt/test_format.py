"""Numbers → words: the window's only formatter."""

from __future__ import annotations

from datetime import UTC, datetime

from kaihe_desktop.core.machine.profiles import resolve_profile
from kaihe_desktop.qt import format as fmt


def test_bytes_percent_and_memory_use() -> None:
    assert fmt.bytes_text(1536 * 2**20) == "1.5 GiB"
    assert fmt.percent(1, 3) == "33%"
    assert fmt.percent(1, 0) == "–"
    assert fmt.memory_use(5 * 2**30, 16 * 2**30) == "5.0 of 16.0 GiB (31%)"
    assert fmt.memory_use(512 * 2**20, 16 * 2**30) == "512.0 MiB of 16.0 GiB (3%)"


def test_durations_and_rates() -> None:
    assert fmt.duration(0.42) == "0.4 s"
    assert fmt.duration(42) == "42 s"
    assert fmt.duration(75) == "1 min 15 s"
    assert fmt.duration(120) == "2 min"
    assert fmt.duration(3720) == "1 h 2 min"
    assert fmt.tokens_per_s(12.345) == "12.3 tokens/s"
    assert fmt.tokens_per_s(250.4) == "250 tokens/s"
    assert fmt.count_text(1, "download") == "1 download"
    assert fmt.count_text(3, "download") == "3 downloads"


def test_timestamps() -> None:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert fmt.timestamp(None) == "never"
    assert fmt.timestamp(now.isoformat(), now=now).startswith("today ")
    assert fmt.timestamp("2026-11-30T09:12:00+00:00", now=now).startswith("2026-11-")
    assert fmt.timestamp("not a time") == "not a time"


def test_machine_lines_from_a_profile() -> None:
    machine = resolve_profile("rtx4060-16gb")
    assert "RTX 4060" in fmt.gpu_text(machine.gpus[0])
    assert fmt.offload_text(machine).startswith("on")
    assert "cores" in fmt.cpu_text(machine.cpu)
    assert "available" in fmt.ram_text(machine.ram)
