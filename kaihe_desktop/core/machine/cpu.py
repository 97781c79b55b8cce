"""Which CPU this is, as py-cpuinfo reports it: used by the probe and by the RAM bandwidth cache's key.

Its own module so that `probe` (which measures the bandwidth) and `bandwidth` (whose cache is keyed by the
CPU brand) both import it, rather than each other.
"""

from __future__ import annotations

import functools
import platform
from typing import Any


@functools.cache
def cpuinfo_dict() -> dict[str, Any]:
    """py-cpuinfo's answer, once per process (it takes about a second); {} if it fails."""
    try:
        import cpuinfo  # inside the try: a broken py-cpuinfo costs the CPU details, never the whole probe

        info = cpuinfo.get_cpu_info()
        return dict(info) if isinstance(info, dict) else {}
    except Exception:
        return {}


def cpu_brand() -> str:
    brand = cpuinfo_dict().get("brand_raw") or platform.processor() or platform.machine()
    return str(brand).strip() or "unknown CPU"
