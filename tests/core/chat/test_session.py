"""ChatSession on the real engine: completion mode on the starter model, context overflow, stop, crash,
history saved as the reply streams, and the per-conversation thinking switch."""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kaihe_desktop.core.chat.history import HistoryStore
from kaihe_desktop.core.chat.session import ChatSession, SamplingSettings
from kaihe_desktop.core.chat.templates import ChatFormat, ChatMessage, resolve_chat_format
from kaihe_desktop.core.engine import protocol as p
from kaihe_desktop.core.engine.client import EngineClient
from kaihe_desktop.core.errors import ContextOverflowError, EngineCrashedError
from kaihe_desktop.core.gguf.meta import read_local
from kaihe_desktop.core.reasons import ReasonCode

N_CTX = 256


@pytest.fixture(scope="module")
def engine(starter_model_path: Path) -> Iterator[EngineClient]:
    client = EngineClient()
    client.load(p.LoadOptions(path=str(starter_model_path), n_ctx=N_CTX, n_threads=2, n_threads_batch=2))
    yield client
    client.close()


@pytest.fixture(scope="module")
def starter_format(starter_model_path: Path) -> ChatFormat:
    return resolve_chat_format(read_local(starter_model_path))


@pytest.fixture
def history(tmp_path: Path) -> Iterator[HistoryStore]:
    store = HistoryStore(tmp_path / "history.sqlite3")
    yield store
    store.close()


def test_starter_model_chats_in_completion_mode_and_the_reply_is_saved(
    engine: EngineClient, starter_format: ChatFormat, history: HistoryStore
) -> None:
    assert starter_format.mode == "completion"
    assert "completion" in starter_format.why
    session = ChatSession(
        engine,
        starter_format,
        sampling=SamplingSettings(max_tokens=12, seed=2, temperature=0.0),
        history=history,
        model_label="gemma-3-270m Q4_K_M",
    )
    pieces: list[tuple[str, str]] = []
    reply = session.send("The sea is", on_piece=lambda kind, text: pieces.append((kind, text)))
    assert reply.content.strip() and reply.reasoning == ""
    assert "".join(t for _, t in pieces) == reply.content
    assert {k for k, _ in pieces} == {"answer"}
    assert not reply.partial and reply.notices == ()
    assert reply.stats.prompt_tokens == 4
    assert reply.stats.stop_reason in (p.StopReason.LENGTH, p.StopReason.EOS)
    assert reply.stats.ttft_s > 0 and reply.stats.tokens_per_s > 0

    assert reply.conversation_id is not None
    conversation = history.get_conversation(reply.conversation_id)
    assert conversation.model == "gemma-3-270m Q4_K_M"
    assert [m.role for m in conversation.messages] == ["user", "assistant"]
    saved = conversation.messages[1]
    assert saved.content == reply.content and not saved.partial
    assert saved.stats["completion_tokens"] == reply.stats.completion_tokens
    assert saved.stats["stop_reason"] == reply.stats.stop_reason

    # the second turn continues the same conversation, with the first one in its prompt
    second = session.send("The sky is")
    assert second.conversation_id == reply.conversation_id
    assert second.stats.prompt_tokens > reply.stats.prompt_tokens + reply.stats.completion_tokens
    assert len(history.get_conversation(reply.conversation_id).messages) == 4


def test_oldest_turns_are_dropped_before_the_context_overflows(
    engine: EngineClient, starter_format: ChatFormat, history: HistoryStore
) -> None:
    system = "Notes from the harbour master."
    session = ChatSession(
        engine,
        starter_format,
        system_prompt=system,
        sampling=SamplingSettings(max_tokens=8, seed=1),
        history=history,
        reply_reserve=32,
    )
    notices: list[str] = []
    messages = [f"Entry {i}: " + "the boats came in with the tide and left at dusk " * 5 for i in range(6)]
    for text in messages:
        reply = session.send(text)
        notices.extend(reply.notices)
        # the new message is whole, the system prompt first, and the reply had room
        prompt = session.prepare("probe").text
        assert prompt.startswith(system)
        assert reply.stats.prompt_tokens + 32 <= N_CTX
        assert session.messages[-2].content == text
    assert notices and "oldest message" in notices[0] and f"{N_CTX}-token context" in notices[0]
    assert session.messages[0].content != messages[0]
    # history keeps every turn, dropped or not
    assert session.conversation_id is not None
    saved = history.get_conversation(session.conversation_id).messages
    assert [m.content for m in saved if m.role == "user"] == messages


def test_a_message_too_long_for_the_context_is_refused_whole(
    engine: EngineClient, starter_format: ChatFormat, history: HistoryStore
) -> None:
    session = ChatSession(engine, starter_format, history=history, sampling=SamplingSettings(max_tokens=8))
    session.send("The sea is")
    before = session.messages
    with pytest.raises(ContextOverflowError, match=f"the context holds {N_CTX} tokens") as caught:
        session.send("tide " * 400)
    reason = caught.value.reason  # the numbers, for each front end to word (no flag in the core's sentence)
    prompt = starter_format.render([ChatMessage("user", "tide " * 400)])
    assert reason.code == ReasonCode.CONTEXT_OVERFLOW
    assert (reason.prompt_tokens, reason.reply_reserve_tokens, reason.context_tokens) == (
        engine.count_tokens(prompt),
        8,
        N_CTX,
    )
    assert reason.needed_tokens == reason.prompt_tokens + 8 > N_CTX
    assert engine.loaded is not None and reason.trained_context_tokens == engine.loaded.n_ctx_train > 0
    assert "--" not in str(caught.value)
    assert session.messages == before  # nothing dropped for nothing, nothing cut
    assert session.conversation_id is not None
    assert len(history.get_conversation(session.conversation_id).messages) == 2


def test_stop_keeps_a_partial_reply_marked_partial(
    engine: EngineClient, starter_format: ChatFormat, history: HistoryStore
) -> None:
    session = ChatSession(
        engine, starter_format, history=history, sampling=SamplingSettings(max_tokens=150, seed=4)
    )
    count = [0]

    def on_piece(kind: str, text: str) -> None:
        count[0] += 1
        if count[0] == 3:
            session.stop()

    reply = session.send("Once upon a time", on_piece=on_piece)
    assert reply.partial and reply.stats.stop_reason == p.StopReason.STOPPED
    assert reply.stats.completion_tokens < 40
    assert session.conversation_id is not None
    saved = history.get_conversation(session.conversation_id).messages[-1]
    assert saved.partial and saved.content == reply.content and saved.content


def test_engine_killed_mid_reply_leaves_the_partial_in_history(
    starter_model_path: Path, starter_format: ChatFormat, history: HistoryStore
) -> None:
    with EngineClient() as client:
        client.load(p.LoadOptions(path=str(starter_model_path), n_ctx=N_CTX, n_threads=2, n_threads_batch=2))
        session = ChatSession(
            client, starter_format, history=history, sampling=SamplingSettings(max_tokens=150, seed=6)
        )
        pid = client.pid
        assert pid is not None
        seen: list[str] = []

        def on_piece(kind: str, text: str) -> None:
            seen.append(text)
            if len(seen) == 5:
                os.kill(pid, signal.SIGKILL)

        with pytest.raises(EngineCrashedError, match=r"killed \(signal 9"):
            session.send("The sea is", on_piece=on_piece)
        assert session.conversation_id is not None
        saved = history.get_conversation(session.conversation_id).messages[-1]
        assert saved.role == "assistant" and saved.partial
        assert saved.content == "".join(seen) and len(seen) >= 5
        assert saved.stats["stop_reason"] == p.StopReason.CRASHED

        client.load(p.LoadOptions(path=str(starter_model_path), n_ctx=N_CTX, n_threads=2, n_threads_batch=2))
        session.sampling = SamplingSettings(max_tokens=4, seed=6)
        assert session.send("The sky is").content


def test_reply_rows_are_written_while_streaming(
    engine: EngineClient, starter_format: ChatFormat, history: HistoryStore
) -> None:
    """Another connection sees the reply grow before it ends: at most a flush interval is ever lost."""
    session = ChatSession(
        engine,
        starter_format,
        history=history,
        sampling=SamplingSettings(max_tokens=40, seed=8, temperature=0.0),
        flush_interval_s=0.0,
    )
    observed: list[str] = []
    reader = sqlite3.connect(history.path)

    def on_piece(kind: str, text: str) -> None:
        row = reader.execute("SELECT content, partial FROM messages WHERE role='assistant'").fetchone()
        if row is not None:
            observed.append(row[0])
            assert row[1] == 1  # partial while streaming

    reply = session.send("The sea is", on_piece=on_piece)
    reader.close()
    growing = [o for o in observed if o]
    assert growing and growing[-1] == reply.content
    assert len(set(growing)) > 3


def test_thinking_switch_reaches_the_prompt(write_tiny_model: Callable[..., Path], tmp_path: Path) -> None:
    path = write_tiny_model(tmp_path, arch="qwen3", filename="tiny-qwen3-instruct.gguf", chat_template=None)
    fmt = resolve_chat_format(read_local(path))
    assert fmt.mode == "chat" and fmt.supports_thinking
    with EngineClient() as client:
        client.load(p.LoadOptions(path=str(path), n_ctx=256))
        session = ChatSession(client, fmt, enable_thinking=False)
        assert session.prepare("hi").text.endswith("<think>\n\n</think>\n\n")
        session.set_thinking(True)
        assert "<think>" not in session.prepare("hi").text
        expected = session.prepare("hi").tokens
        reply = session.send("hi")
        assert reply.stats.prompt_tokens == expected
        assert session.messages[0].content == "hi" and session.messages[1].role == "assistant"
