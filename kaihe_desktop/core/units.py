"""Byte counts as people read them, for messages built in the core (advice, pick reasons)."""

from __future__ import annotations

GIB = 2**30
MIB = 2**20


def format_bytes(n: float) -> str:
    """1536 MiB -> "1.5 GiB"; binary units, one decimal, like the CLI's tables."""
    sign = "-" if n < 0 else ""
    value = abs(float(n))
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{sign}{value:.0f} {unit}" if unit == "B" else f"{sign}{value:.1f} {unit}"
        value /= 1024
    return f"{sign}{value:.1f} TiB"


def format_pct(pct: float) -> str:
    """12.34 -> "12%"; under 1% keeps one decimal so 0.4% does not read as 0%."""
    return f"{pct:.1f}%" if abs(pct) < 1 else f"{pct:.0f}%"
