"""Separate a model's visible reasoning from its answer, while the reply streams.

Reasoning models wrap their thinking in markers: ``<think>…</think>`` (Qwen3, DeepSeek-R1),
``<thinking>…</thinking>``, or gpt-oss's channels (``<|channel|>analysis<|message|>…<|end|>`` then
``<|start|>assistant<|channel|>final<|message|>…``). Tokens arrive in arbitrary pieces, so a marker may be
split across chunks: the splitter holds back any tail that could still become a marker.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["reasoning", "answer"]
Piece = tuple[Kind, str]

# marker -> the state it switches to (None: dropped, state unchanged)
_MARKERS: dict[str, Kind | None] = {
    "<think>": "reasoning",
    "</think>": "answer",
    "<thinking>": "reasoning",
    "</thinking>": "answer",
    "<|channel|>analysis<|message|>": "reasoning",
    "<|channel|>final<|message|>": "answer",
    "<|end|>": "answer",
    "<|start|>assistant": None,
}
_OPENERS = tuple(m for m, kind in _MARKERS.items() if kind == "reasoning")
_CLOSERS = ("</think>", "</thinking>")
_LONGEST = max(len(m) for m in _MARKERS)


def prompt_opens_reasoning(prompt: str) -> bool:
    """True when the rendered prompt ends inside an opened think block (e.g. DeepSeek-R1's ``<think>\\n``)."""
    tail = prompt.rstrip()
    return any(tail.endswith(m) for m in _OPENERS)


class ReasoningSplitter:
    """Feed streamed text, get ("reasoning" | "answer", text) pieces; call finish() at the end.

    start_in_reasoning: the prompt already opened a think block, so the reply begins inside it.
    strip: drop whitespace at the start of each section (the blank lines models put after ``</think>``);
    keep False for completion mode, where leading spaces are part of the text.
    """

    def __init__(self, *, start_in_reasoning: bool = False, strip: bool = True) -> None:
        self._state: Kind = "reasoning" if start_in_reasoning else "answer"
        self._strip = strip
        self._buffer = ""
        self._section_start = True

    @property
    def state(self) -> Kind:
        return self._state

    def feed(self, text: str) -> list[Piece]:
        self._buffer += text
        pieces: list[Piece] = []
        while True:
            index, marker = self._next_marker()
            if marker is None:
                break
            self._emit(pieces, self._buffer[:index])
            self._buffer = self._buffer[index + len(marker) :]
            target = _MARKERS[marker]
            if target is not None and target != self._state:
                self._state = target
                self._section_start = True
        keep = self._partial_marker_tail()
        ready, self._buffer = (
            self._buffer[: len(self._buffer) - keep],
            self._buffer[len(self._buffer) - keep :],
        )
        self._emit(pieces, ready)
        return pieces

    def finish(self) -> list[Piece]:
        pieces: list[Piece] = []
        self._emit(pieces, self._buffer)
        self._buffer = ""
        return pieces

    def _next_marker(self) -> tuple[int, str | None]:
        best_index, best = -1, None
        for marker in _MARKERS:
            i = self._buffer.find(marker)
            if i != -1 and (best is None or i < best_index or (i == best_index and len(marker) > len(best))):
                best_index, best = i, marker
        return best_index, best

    def _partial_marker_tail(self) -> int:
        """Length of the longest buffer suffix that is a proper prefix of some marker."""
        buf = self._buffer
        for size in range(min(len(buf), _LONGEST - 1), 0, -1):
            tail = buf[-size:]
            if any(m.startswith(tail) for m in _MARKERS):
                return size
        return 0

    def _emit(self, pieces: list[Piece], text: str) -> None:
        if self._strip and self._section_start:
            text = text.lstrip()
        if not text:
            return
        self._section_start = False
        if pieces and pieces[-1][0] == self._state:
            pieces[-1] = (self._state, pieces[-1][1] + text)
        else:
            pieces.append((self._state, text))


def split_reasoning(text: str, *, start_in_reasoning: bool = False) -> tuple[str, str]:
    """(reasoning, answer) of a whole reply, both stripped.

    A closing ``</think>`` with no opening one means the template had opened it: what precedes is reasoning.
    """
    if not start_in_reasoning:
        first_close = min((i for i in (text.find(c) for c in _CLOSERS) if i != -1), default=-1)
        first_open = min((i for i in (text.find(o) for o in _OPENERS) if i != -1), default=-1)
        start_in_reasoning = first_close != -1 and (first_open == -1 or first_close < first_open)
    splitter = ReasoningSplitter(start_in_reasoning=start_in_reasoning)
    reasoning: list[str] = []
    answer: list[str] = []
    for kind, piece in splitter.feed(text) + splitter.finish():
        (reasoning if kind == "reasoning" else answer).append(piece)
    return "".join(reasoning).strip(), "".join(answer).strip()
