"""Where a plan puts a model: one enum for the planner, the quant picker, the advice and the front ends.

A StrEnum, so JSON keeps writing "gpu", "partial", "cpu" and "none". Its own module (standard library only),
so the quant ladder can use it without loading the planner.
"""

from __future__ import annotations

from enum import StrEnum


class Placement(StrEnum):
    GPU = "gpu"  # every layer (and the output layer) on the GPU
    PARTIAL = "partial"  # some layers on the GPU, the rest on the CPU
    CPU = "cpu"  # CPU only
    NONE = "none"  # does not fit with the safety margin


__all__ = ["Placement"]
