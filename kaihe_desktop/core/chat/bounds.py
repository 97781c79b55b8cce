"""What one chat-template render may cost, and how the sandbox measures it.

A trace hook cannot interrupt one C-level operation (a big-integer power, a 4-GB ``str.join``), so the
sandbox bounds every such operation *before* it runs, by the size of what it is given:

* ``weight`` is the size a value would have written out (characters of its strings, one per item, shared
  references counted every time): comparing, hashing, sorting or printing a value costs about its weight;
* ``str_bound`` is how long ``str(value)`` can be (a list's repr escapes characters, up to 12 per char).

What the operations build together is bounded by memory: the meter samples the process's resident size
(after every big result, and every few dozen operations), so a template that keeps many distinct
multi-megabyte strings is stopped at ``max_memory_bytes`` however it built them. (tracemalloc would count
exactly, but it makes every allocation of the render several times slower.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
from jinja2.utils import Namespace


@dataclass(frozen=True)
class RenderLimits:
    """How much one render may produce, hold and compute, and how long it may take."""

    max_chars: int = 4_000_000  # ~1M tokens of prompt: more than any context window we can load
    timeout_s: float = 2.0
    max_memory_bytes: int = 160 * 2**20  # how much one render may grow the process's resident memory
    max_int_bits: int = 16_384  # ints Python can still print (4,300 digits) and divide in microseconds
    max_items: int = 100_000  # objects one operation may make out of a string (its chars, split pieces)


class TemplateRaised(Exception):
    """The template called raise_exception(): it refuses this conversation (not an attack)."""


class SandboxViolation(Exception):
    """The template tried something the sandbox forbids (internals, huge numbers)."""


class RenderTimeout(BaseException):
    """Raised from the trace hook; a BaseException so no ``except Exception`` inside Jinja swallows it."""


class OutputTooLarge(Exception):
    """The rendered prompt, or a value built on the way, grew past its limit."""


class RenderMemoryExceeded(OutputTooLarge):
    """The render grew the process's memory past RenderLimits.max_memory_bytes."""


_MAX_DEPTH = 64
_REPR_FACTOR = 12  # '\U000e0001' -> "'\\U000e0001'"; json's "\ud83d\ude00" is 12 per char
_CONTAINERS = (list, tuple, dict, set, frozenset)


def _statm_reader() -> Callable[[], int] | None:
    """Linux: resident set size from /proc/self/statm, a few microseconds a read."""
    if not os.path.exists("/proc/self/statm"):
        return None
    page = os.sysconf("SC_PAGE_SIZE")
    opened: list[tuple[int, int]] = []  # (pid, fd): reopened in a forked child, whose /proc/self differs

    def read() -> int:
        if not opened or opened[0][0] != os.getpid():
            opened[:] = [(os.getpid(), os.open("/proc/self/statm", os.O_RDONLY))]
        return int(os.pread(opened[0][1], 128, 0).split()[1]) * page

    return read


def _psutil_reader() -> int:
    return int(psutil.Process().memory_info().rss)


_rss: Callable[[], int] = _statm_reader() or _psutil_reader


class RenderMeter:
    """The deadline and the memory count of one render.

    Memory is the process's resident set size, read when an operation returns something big and every
    few dozen operations otherwise; it bounds growth since the render began, however it was allocated.
    """

    _SAMPLE_EVERY = 32  # operations between two reads when their results are small
    _BIG_RESULT = 64 * 1024  # a result at least this large (chars, or list slots) is followed by a read

    def __init__(self, limits: RenderLimits, *, measure: bool = True) -> None:
        self.limits = limits
        self.measure = measure
        self.deadline = time.monotonic() + limits.timeout_s if measure else float("inf")
        self.weights: dict[int, tuple[Any, int]] = {}  # id -> (pinned value, weight) for immutable values
        self.base = _rss() if measure else 0
        self._ops = 0

    @classmethod
    def detached(cls, limits: RenderLimits) -> RenderMeter:
        """A meter for weighing values outside a render (compile time): no deadline, no memory count."""
        return cls(limits, measure=False)

    def close(self) -> None:
        self.weights.clear()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderTimeout

    def check(self, value: Any = None) -> None:
        """Raise when the render ran out of time, or (sampled) holds more memory than allowed."""
        if not self.measure:
            return
        if time.monotonic() > self.deadline:
            raise RenderTimeout
        self._ops += 1
        big = isinstance(value, (str, bytes, bytearray, list, tuple, dict)) and len(value) >= self._BIG_RESULT
        if big or self._ops % self._SAMPLE_EVERY == 0:
            self.check_memory()

    def check_memory(self) -> None:
        if not self.measure:
            return
        grown = _rss() - self.base
        if grown > self.limits.max_memory_bytes:
            raise RenderMemoryExceeded(
                f"the render grew the app's memory by more than {self.limits.max_memory_bytes // 2**20} MiB"
            )

    # --- weights -------------------------------------------------------------------------------

    def weight(self, value: Any) -> int:
        """The size of ``value`` written out; cached for containers (the sandbox forbids mutating them)."""
        if isinstance(value, (str, bytes, bytearray)):
            return len(value)
        if isinstance(value, int):
            return value.bit_length() // 3 + 1
        if not isinstance(value, (*_CONTAINERS, Namespace)):
            return 1
        return self._weigh(value, 0, self.limits.max_chars + 1)[0]  # saturates just past the limit

    def _weigh(self, value: Any, depth: int, cap: int) -> tuple[int, bool]:
        """(weight saturated at cap, whether it can change: a Namespace inside can be reassigned)."""
        if isinstance(value, (str, bytes, bytearray)):
            return len(value), False
        if isinstance(value, int):
            return value.bit_length() // 3 + 1, False
        volatile = isinstance(value, Namespace)
        if volatile:
            items: Any = value._Namespace__attrs.values()
        elif isinstance(value, _CONTAINERS):
            hit = self.weights.get(id(value))
            if hit is not None:
                return hit[1], False
            items = value.items() if isinstance(value, dict) else value
        else:
            return 1, False
        if depth > _MAX_DEPTH:
            raise SandboxViolation(f"values nested more than {_MAX_DEPTH} deep")
        total = 2
        is_dict = isinstance(value, dict)
        for n, item in enumerate(items):
            kind = type(item)
            if kind is str:  # the common cases inline: a 100k-item list is weighed in milliseconds
                total += len(item) + 2
            elif kind is int:
                total += item.bit_length() // 3 + 3
            elif item is None or kind is float or kind is bool:
                total += 3
            else:
                if n % 1024 == 1023:
                    self.check_time()
                if is_dict:  # (key, value) of a dict
                    w1, v1 = self._weigh(item[0], depth + 1, cap)
                    w2, v2 = self._weigh(item[1], depth + 1, cap)
                    w, v = w1 + w2, v1 or v2
                else:
                    w, v = self._weigh(item, depth + 1, cap)
                total += w + 2
                volatile = volatile or v
            if total > cap:
                total = cap
                break
        if not volatile and self.measure:  # a detached meter lives on: it must not pin values
            self.weights[id(value)] = (value, total)
        return total, volatile

    def join_bound(self, items: Any) -> int:
        """How long ``''.join(map(str, items))`` can be."""
        total = 0
        for item in items:
            kind = type(item)
            total += len(item) if kind is str else self.str_bound(item)
        return total

    def str_bound(self, value: Any) -> int:
        """How many characters ``str(value)`` can have."""
        if isinstance(value, str):
            return len(value)
        if isinstance(value, (bytes, bytearray)):
            return 4 * len(value) + 3
        if isinstance(value, int):
            return value.bit_length() // 3 + 2
        if isinstance(value, float):
            return 24
        if isinstance(value, (*_CONTAINERS, Namespace)):
            return _REPR_FACTOR * self.weight(value) + 16
        return 256  # objects with a fixed repr (macros, cyclers, Undefined)


def int_bits(value: Any) -> int:
    """Bit length of an int operand (0 for anything else)."""
    return value.bit_length() if isinstance(value, int) else 0
