"""A conversation with a loaded model: prompt building, context management, streaming, history.

The prompt is rendered here, in the app's process (a malicious template never reaches the engine), and
sent to the engine as plain text. Before each turn the whole prompt is counted with the model's own
tokenizer; when it would not leave room for the reply, the oldest turns are dropped (the system prompt
stays) and the reply says so in its notices. A new message is never cut: if it cannot fit on its own,
ContextOverflowError says so before anything is sent (its ``reason``, a reasons.ContextOverflow, holds the
token counts for each front end to word, with its own way to load a larger context).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from kaihe_desktop.core.chat.history import HistoryStore, ReplyWriter
from kaihe_desktop.core.chat.reasoning import Kind, ReasoningSplitter, prompt_opens_reasoning
from kaihe_desktop.core.chat.templates import ChatFormat, ChatMessage
from kaihe_desktop.core.engine import protocol as p
from kaihe_desktop.core.engine.client import EngineClient, GenerationResult
from kaihe_desktop.core.errors import ContextOverflowError, EngineCrashedError, EngineError, KaiheError
from kaihe_desktop.core.reasons import ContextOverflow

SamplingSettings = p.SamplingSettings

# (kind, text): kind is "reasoning" or "answer"
PieceCallback = Callable[[Kind, str], None]

# A reply streams into history at most this often (so a hard kill loses under a second of text).
HISTORY_FLUSH_S = 0.5


@dataclass(frozen=True)
class ReplyStats:
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float
    tokens_per_s: float
    stop_reason: str
    total_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ChatReply:
    content: str
    reasoning: str
    stats: ReplyStats
    partial: bool  # stopped by the user before the model finished
    notices: tuple[str, ...] = ()  # things the user should be told (dropped turns, …)
    dropped_messages: int = 0
    conversation_id: int | None = None
    message_id: int | None = None


@dataclass(frozen=True)
class PreparedPrompt:
    text: str
    tokens: int
    dropped_messages: int


class ChatSession:
    """One conversation on one loaded engine. Use from one thread; stop() may come from any."""

    def __init__(
        self,
        engine: EngineClient,
        chat_format: ChatFormat,
        *,
        system_prompt: str = "",
        sampling: SamplingSettings | None = None,
        enable_thinking: bool | None = None,
        history: HistoryStore | None = None,
        conversation_id: int | None = None,
        model_label: str = "",
        reply_reserve: int | None = None,
        flush_interval_s: float = HISTORY_FLUSH_S,
    ) -> None:
        self.engine = engine
        self.chat_format = chat_format
        self.system_prompt = system_prompt
        self.sampling = sampling or SamplingSettings()
        self.enable_thinking = enable_thinking
        self.history = history
        self.conversation_id = conversation_id
        self.model_label = model_label
        self._reply_reserve = reply_reserve
        self._flush_interval_s = flush_interval_s
        self._turns: list[ChatMessage] = []

    # --- state ----------------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self.chat_format.mode

    @property
    def messages(self) -> tuple[ChatMessage, ...]:
        """The turns still inside the context window (history keeps the dropped ones)."""
        return tuple(self._turns)

    def set_thinking(self, enabled: bool | None) -> None:
        """Qwen3-style thinking on (True), off (False) or the model's default (None), from the next turn."""
        self.enable_thinking = enabled

    def stop(self) -> None:
        """End the reply being generated after its current token (any thread)."""
        self.engine.stop()

    def reply_reserve(self, n_ctx: int) -> int:
        """Tokens kept free for the reply when deciding what fits: max_tokens, at most a quarter of n_ctx."""
        if self._reply_reserve is not None:
            return self._reply_reserve
        return max(1, min(self.sampling.max_tokens, n_ctx // 4))

    # --- context --------------------------------------------------------------------------------

    def _render(self, turns: list[ChatMessage]) -> str:
        messages = [ChatMessage("system", self.system_prompt)] if self.system_prompt else []
        thinking = self.enable_thinking if self.chat_format.supports_thinking else None
        return self.chat_format.render(messages + turns, enable_thinking=thinking)

    def prepare(self, text: str) -> PreparedPrompt:
        """The prompt a new user message would get (the session is not changed)."""
        return self._fit(text)[0]

    def _fit(self, text: str) -> tuple[PreparedPrompt, list[ChatMessage]]:
        """Drop the oldest turns until the prompt leaves room to reply; the turns that stay."""
        loaded = self.engine.loaded
        if loaded is None:
            raise EngineError("no model is loaded")
        n_ctx = loaded.n_ctx
        reserve = self.reply_reserve(n_ctx)
        new = ChatMessage("user", text)
        turns = list(self._turns)
        dropped = 0
        while True:
            prompt = self._render(turns + [new])
            count = self.engine.count_tokens(prompt)
            if count + reserve <= n_ctx:
                return PreparedPrompt(prompt, count, dropped), turns
            if not turns:
                raise ContextOverflowError(
                    f"the message does not fit the context: with the system prompt it is {count} tokens, "
                    f"and {reserve} more are kept for the reply, but the context holds {n_ctx} tokens",
                    reason=ContextOverflow(
                        prompt_tokens=count,
                        reply_reserve_tokens=reserve,
                        context_tokens=n_ctx,
                        trained_context_tokens=loaded.n_ctx_train,
                    ),
                )
            step = 2 if len(turns) >= 2 and turns[0].role == "user" and turns[1].role == "assistant" else 1
            turns = turns[step:]
            dropped += step

    # --- a turn ---------------------------------------------------------------------------------

    def send(self, text: str, *, on_piece: PieceCallback | None = None) -> ChatReply:
        """Send a user message and stream the reply. EngineCrashedError keeps the partial reply saved."""
        prepared, kept = self._fit(text)
        self._turns = kept + [ChatMessage("user", text)]
        notices: list[str] = []
        if prepared.dropped_messages:
            notices.append(
                f"dropped the {prepared.dropped_messages} oldest message(s) to fit the "
                f"{self.engine.loaded.n_ctx if self.engine.loaded else '?'}-token context "
                "(the system prompt is kept; history still has them)"
            )
        writer = self._record_user_turn(text)
        completion = self.mode == "completion"
        splitter = ReasoningSplitter(
            start_in_reasoning=not completion and prompt_opens_reasoning(prepared.text), strip=not completion
        )
        answer: list[str] = []
        reasoning: list[str] = []

        def take(pieces: list[tuple[Kind, str]]) -> None:
            for kind, piece in pieces:
                (reasoning if kind == "reasoning" else answer).append(piece)
                if writer is not None:
                    writer.append(piece, kind=kind)
                if on_piece is not None:
                    on_piece(kind, piece)

        sampling = replace(
            self.sampling, stop=tuple(dict.fromkeys(self.sampling.stop + self.chat_format.stop))
        )
        stream = self.engine.stream(prepared.text, sampling=sampling)
        try:
            for piece in stream:
                take([("answer", piece)] if completion else splitter.feed(piece))
            take([] if completion else splitter.finish())
        except KaiheError as exc:
            take([] if completion else splitter.finish())
            partial_reply = "".join(answer)
            self._turns.append(ChatMessage("assistant", partial_reply))
            if writer is not None:
                reason = str(p.StopReason.CRASHED) if isinstance(exc, EngineCrashedError) else "error"
                writer.finish(stats={"stop_reason": reason, "error": str(exc)}, partial=True)
            if isinstance(exc, EngineCrashedError):
                raise EngineCrashedError(str(exc), partial_text=stream.text, exitcode=exc.exitcode) from exc
            raise
        result = stream.result
        assert result is not None
        stats = _stats(result)
        partial = result.stop_reason == p.StopReason.STOPPED
        content = "".join(answer)
        self._turns.append(ChatMessage("assistant", content))
        if writer is not None:
            writer.finish(stats=stats.to_dict(), partial=partial)
        return ChatReply(
            content=content,
            reasoning="".join(reasoning),
            stats=stats,
            partial=partial,
            notices=tuple(notices),
            dropped_messages=prepared.dropped_messages,
            conversation_id=self.conversation_id,
            message_id=writer.message_id if writer is not None else None,
        )

    def _record_user_turn(self, text: str) -> ReplyWriter | None:
        if self.history is None:
            return None
        if self.conversation_id is None:
            settings = {**asdict(self.sampling), "enable_thinking": self.enable_thinking, "mode": self.mode}
            self.conversation_id = self.history.create_conversation(
                title=_title(text),
                model=self.model_label,
                settings=settings,
                system_prompt=self.system_prompt,
            )
        self.history.add_message(self.conversation_id, role="user", content=text)
        writer = self.history.start_reply(self.conversation_id, flush_interval_s=self._flush_interval_s)
        return writer


def _stats(result: GenerationResult) -> ReplyStats:
    return ReplyStats(
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        ttft_s=round(result.ttft_s, 4),
        tokens_per_s=round(result.tokens_per_s, 2),
        stop_reason=result.stop_reason,
        total_s=round(result.total_s, 3),
    )


def _title(text: str, *, limit: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
