"""Reasoning/answer separation, streamed in every possible chunking."""

from __future__ import annotations

import random

import pytest

from kaihe_desktop.core.chat.reasoning import (
    ReasoningSplitter,
    prompt_opens_reasoning,
    split_reasoning,
)


def _stream(text: str, cuts: list[int], **kwargs: bool) -> tuple[str, str]:
    splitter = ReasoningSplitter(**kwargs)
    pieces = []
    previous = 0
    for cut in [*cuts, len(text)]:
        pieces += splitter.feed(text[previous:cut])
        previous = cut
    pieces += splitter.finish()
    reasoning = "".join(t for kind, t in pieces if kind == "reasoning")
    answer = "".join(t for kind, t in pieces if kind == "answer")
    return reasoning, answer


QWEN = "<think>\nThe user greets me. I greet back.\n</think>\n\nHello! How can I help?"
GPT_OSS = (
    "<|channel|>analysis<|message|>Simple arithmetic: 2+2=4.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>It is 4."
)
CLAUDE_STYLE = "<thinking>Check units first.</thinking>\nThe answer is 3 m."


@pytest.mark.parametrize(
    ("text", "reasoning", "answer"),
    [
        (QWEN, "The user greets me. I greet back.\n", "Hello! How can I help?"),
        (GPT_OSS, "Simple arithmetic: 2+2=4.", "It is 4."),
        (CLAUDE_STYLE, "Check units first.", "The answer is 3 m."),
        (
            "No thinking at all, just <b>html</b> and a < sign.",
            "",
            "No thinking at all, just <b>html</b> and a < sign.",
        ),
        ("<think>\n\n</think>\n\nDirect answer.", "", "Direct answer."),
    ],
)
def test_every_split_point_gives_the_same_result(text: str, reasoning: str, answer: str) -> None:
    whole = _stream(text, [])
    assert whole == (reasoning, answer)
    for cut in range(1, len(text)):  # every single split point, markers included
        assert _stream(text, [cut]) == whole, cut
    assert _stream(text, list(range(1, len(text)))) == whole  # one character at a time
    rng = random.Random(7)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(1, 8))))
        assert _stream(text, cuts) == whole


def test_reply_that_starts_inside_thinking() -> None:
    text = "The template opened the block.\n</think>\n\nAnswer."
    assert _stream(text, [5, 40], start_in_reasoning=True) == ("The template opened the block.\n", "Answer.")
    assert split_reasoning(text) == ("The template opened the block.", "Answer.")


def test_prompt_that_opens_a_think_block_is_detected() -> None:
    assert prompt_opens_reasoning("<｜User｜>Hi<｜Assistant｜><think>\n")
    assert not prompt_opens_reasoning("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert not prompt_opens_reasoning("<|im_start|>assistant\n")


def test_pieces_come_out_as_soon_as_they_are_unambiguous() -> None:
    splitter = ReasoningSplitter()
    assert splitter.feed("<thi") == []  # could still become <think>
    assert splitter.feed("nk>Let me") == [("reasoning", "Let me")]
    assert splitter.state == "reasoning"
    assert splitter.feed(" see</th") == [("reasoning", " see")]
    assert splitter.feed("ink>\n\nYes") == [("answer", "Yes")]
    assert splitter.feed("<") == []
    assert splitter.finish() == [("answer", "<")]


def test_completion_mode_keeps_leading_spaces() -> None:
    splitter = ReasoningSplitter(strip=False)
    assert splitter.feed(" blue and") + splitter.feed(" deep") == [
        ("answer", " blue and"),
        ("answer", " deep"),
    ]


def test_split_reasoning_of_an_unfinished_think_block() -> None:
    assert split_reasoning("<think>Still thinking when stopped") == ("Still thinking when stopped", "")
