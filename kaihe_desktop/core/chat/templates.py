"""How a conversation becomes a prompt: the model's own chat template, a known format, or plain completion.

Order of choice (resolve_chat_format):
1. the Jinja template embedded in the GGUF, rendered in a hardened sandbox (chat/sandbox.py);
2. no template, but the model looks like a chat/instruct model: the known turn format of its family;
3. otherwise (a base model, like the starter Gemma 3 270M): plain completion, and ``why`` says so to the user.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import jinja2
from jinja2.sandbox import SecurityError

from kaihe_desktop.core.chat.sandbox import (
    ChatTemplateEnvironment,
    OutputTooLarge,
    RenderLimits,
    RenderMemoryExceeded,
    RenderTimeout,
    SandboxViolation,
    TemplateRaised,
)
from kaihe_desktop.core.errors import TemplateError
from kaihe_desktop.core.gguf.model_meta import ModelMeta

Mode = Literal["chat", "completion"]

__all__ = [
    "ChatFormat",
    "ChatMessage",
    "RenderLimits",
    "looks_instruct",
    "resolve_chat_format",
]


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


# Turn-end markers worth stopping on if the engine ever sees them as text.
_TURN_END_MARKERS = (
    "<|im_end|>",
    "<end_of_turn>",
    "<|eot_id|>",
    "<|end|>",
    "<|return|>",
    "<|endoftext|>",
    "<｜end▁of▁sentence｜>",
)

# family -> end-of-turn token that only instruct-tuned conversions use as their EOS
_INSTRUCT_EOS = {
    "gemma": "<end_of_turn>",
    "llama3": "<|eot_id|>",
    "chatml": "<|im_end|>",
    "phi": "<|end|>",
}
_INSTRUCT_WORDS = {"it", "instruct", "chat", "sft", "dpo", "rlhf", "orpo", "assistant", "thinking"}
_BASE_WORDS = {"base", "pt", "pretrained", "pretrain"}


@dataclass(frozen=True)
class ChatFormat:
    """How to turn messages into a prompt for one model. ``why`` is a sentence meant for the user."""

    mode: Mode
    name: str  # "gguf", "gemma", "llama3", "chatml", "mistral", "phi", "deepseek", "completion"
    why: str
    stop: tuple[str, ...] = ()
    model_name: str = "the model"
    bos_token: str = ""
    eos_token: str = ""
    supports_thinking: bool = False  # the format reacts to enable_thinking
    template_source: str | None = field(default=None, repr=False)
    limits: RenderLimits = field(default_factory=RenderLimits, repr=False)
    _env: ChatTemplateEnvironment | None = field(default=None, repr=False, compare=False)
    _template: jinja2.Template | None = field(default=None, repr=False, compare=False)

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        add_generation_prompt: bool = True,
        enable_thinking: bool | None = None,
    ) -> str:
        """The prompt text. It may start with the BOS token text: see ``needs_bos``."""
        if self.mode == "completion":
            return _render_completion(messages)
        if self._template is not None and self._env is not None:
            return self._render_template(messages, add_generation_prompt, enable_thinking)
        renderer = _BUILTIN_RENDERERS[self.name]
        prompt = renderer(messages, self.bos_token, add_generation_prompt)
        if self.supports_thinking and add_generation_prompt and enable_thinking is False:
            prompt += "<think>\n\n</think>\n\n"  # Qwen3's convention for "answer without thinking"
        return prompt

    def needs_bos(self, prompt: str) -> bool:
        """Whether the tokenizer should add BOS itself (False when the template already wrote it)."""
        return not (self.bos_token and prompt.startswith(self.bos_token))

    def _render_template(
        self, messages: Sequence[ChatMessage], add_generation_prompt: bool, enable_thinking: bool | None
    ) -> str:
        assert self._env is not None and self._template is not None
        context: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "add_generation_prompt": add_generation_prompt,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
        }
        if enable_thinking is not None:
            context["enable_thinking"] = enable_thinking
        try:
            return self._env.render_bounded(self._template, context)
        except Exception as exc:  # every failure of untrusted code becomes one clear TemplateError
            raise _template_error(self.model_name, exc) from None
        except RenderTimeout:
            raise TemplateError(
                f"the chat template of {self.model_name} ran longer than {self.limits.timeout_s:g} s "
                "and was stopped"
            ) from None


def resolve_chat_format(meta: ModelMeta, *, limits: RenderLimits | None = None) -> ChatFormat:
    """Choose the chat format for a model from its GGUF metadata.

    An embedded template is compiled and test-rendered once here, so a broken or malicious template is
    reported before the model is loaded. Raises TemplateError naming the model and the reason.
    """
    limits = limits or RenderLimits()
    model = _display_name(meta)
    bos, eos = meta.bos_token or "", meta.eos_token or ""
    if meta.has_chat_template and meta.chat_template:
        fmt = _from_template(meta.chat_template, model=model, bos=bos, eos=eos, limits=limits)
        fmt.render([ChatMessage("user", "Hello")], add_generation_prompt=True)  # probe: fail early
        return fmt
    family = family_for(meta)
    if family is not None and looks_instruct(meta, family=family):
        thinking = family == "chatml" and meta.architecture.startswith("qwen3")
        return ChatFormat(
            mode="chat",
            name=family,
            why=(
                f"{model} has no chat template in its file; it looks like a chat-tuned "
                f"{meta.architecture} model, so the standard {_FAMILY_LABELS[family]} turn format is used"
            ),
            stop=_BUILTIN_STOPS[family],
            model_name=model,
            bos_token=bos,
            eos_token=eos,
            supports_thinking=thinking,
            limits=limits,
        )
    reason = (
        "a base model" if family is not None else f"a {meta.architecture} model with no known chat format"
    )
    return ChatFormat(
        mode="completion",
        name="completion",
        why=(
            f"{model} is {reason} with no chat template: plain completion mode "
            "(it continues your text rather than answering it)"
        ),
        stop=(),
        model_name=model,
        bos_token=bos,
        eos_token=eos,
        limits=limits,
    )


def family_for(meta: ModelMeta) -> str | None:
    """The known turn format for a model's architecture, or None."""
    arch = meta.architecture.lower()
    if arch.startswith("gemma"):
        return "gemma"
    if arch.startswith(("qwen2", "qwen3")):
        return "chatml"
    if arch.startswith("phi3"):
        return "phi"
    if arch.startswith("deepseek"):
        return "deepseek"
    if arch.startswith("mistral"):
        return "mistral"
    if arch == "llama":
        if (meta.bos_token or "") == "<|begin_of_text|>" or (meta.eos_token or "") in {
            "<|eot_id|>",
            "<|end_of_text|>",
        }:
            return "llama3"
        if (meta.bos_token or "") == "<s>":
            return "mistral"  # Mistral 7B and Llama 2 chat conversions both use [INST]
    return None


def looks_instruct(meta: ModelMeta, *, family: str | None = None) -> bool:
    """Whether a template-less model was chat-tuned.

    The vocabulary is no signal: base Gemma and Llama 3 ship the turn tokens too. Two signals are: the
    model's name (conversions keep "-it", "-Instruct", "-Chat"), and an EOS that is the family's end-of-turn
    token (instruct conversions stop on it, base ones on the plain end-of-text).
    """
    words = set(re.split(r"[^a-z0-9]+", (meta.name or "").lower()))
    words |= set(re.split(r"[^a-z0-9]+", _source_stem(meta.source).lower()))
    if words & _BASE_WORDS:
        return False
    if words & _INSTRUCT_WORDS:
        return True
    family = family or family_for(meta)
    return family is not None and bool(meta.eos_token) and meta.eos_token == _INSTRUCT_EOS.get(family)


# --- embedded templates ----------------------------------------------------------------------------


def _from_template(source: str, *, model: str, bos: str, eos: str, limits: RenderLimits) -> ChatFormat:
    env = ChatTemplateEnvironment(limits=limits)
    if len(source) > 1_000_000:
        raise TemplateError(f"the chat template of {model} is {len(source):,} characters long: refusing it")
    try:
        template = env.compile_template(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"the chat template of {model} is not valid Jinja (line {exc.lineno}): {exc.message}"
        ) from None
    except Exception as exc:
        raise _template_error(model, exc) from None
    stops = [eos] if eos else []
    stops += [m for m in _TURN_END_MARKERS if m in source and m not in stops]
    return ChatFormat(
        mode="chat",
        name="gguf",
        why=f"{model} carries its own chat template: using it (in a sandbox)",
        stop=tuple(stops),
        model_name=model,
        bos_token=bos,
        eos_token=eos,
        supports_thinking="enable_thinking" in source,
        template_source=source,
        limits=limits,
        _env=env,
        _template=template,
    )


def _template_error(model: str, exc: BaseException) -> TemplateError:
    prefix = f"the chat template of {model}"
    if isinstance(exc, SecurityError):
        return TemplateError(f"{prefix} tried to reach Python internals ({exc}); it was stopped, nothing ran")
    if isinstance(exc, SandboxViolation):
        return TemplateError(f"{prefix} did something the sandbox forbids ({exc}); it was stopped")
    if isinstance(exc, RenderMemoryExceeded):
        return TemplateError(f"{prefix} used too much memory ({exc}); it was stopped")
    if isinstance(exc, OutputTooLarge):
        return TemplateError(f"{prefix} tried to build a huge prompt ({exc}); it was stopped")
    if isinstance(exc, OverflowError):
        return TemplateError(f"{prefix} asked for too much ({exc}); it was stopped")
    if isinstance(exc, TemplateRaised):
        return TemplateError(f"{prefix} refused this conversation: {exc}")
    if isinstance(exc, RecursionError):
        return TemplateError(f"{prefix} recursed without end and was stopped")
    if isinstance(exc, MemoryError):
        return TemplateError(f"{prefix} ran out of memory and was stopped")
    if isinstance(exc, jinja2.TemplateError):
        return TemplateError(f"{prefix} failed: {exc}")
    return TemplateError(f"{prefix} failed: {type(exc).__name__}: {exc}")


def _display_name(meta: ModelMeta) -> str:
    return f"'{meta.name}'" if meta.name else f"'{_source_stem(meta.source)}'"


def _source_stem(source: str) -> str:
    tail = source.replace("\\", "/").rsplit("/", 1)[-1]
    return tail[:-5] if tail.lower().endswith(".gguf") else tail


# --- known formats for template-less chat models ---------------------------------------------------

_FAMILY_LABELS = {
    "gemma": "Gemma",
    "llama3": "Llama 3",
    "chatml": "ChatML (Qwen)",
    "mistral": "Mistral [INST]",
    "phi": "Phi-3",
    "deepseek": "DeepSeek",
}
_BUILTIN_STOPS: dict[str, tuple[str, ...]] = {
    "gemma": ("<end_of_turn>",),
    "llama3": ("<|eot_id|>",),
    "chatml": ("<|im_end|>",),
    "mistral": ("</s>",),
    "phi": ("<|end|>",),
    "deepseek": ("<｜end▁of▁sentence｜>",),
}


def _system_and_rest(messages: Sequence[ChatMessage]) -> tuple[str, list[ChatMessage]]:
    if messages and messages[0].role == "system":
        return messages[0].content, list(messages[1:])
    return "", list(messages)


def _render_gemma(messages: Sequence[ChatMessage], bos: str, gen: bool) -> str:
    system, rest = _system_and_rest(messages)
    out = [bos]
    for i, m in enumerate(rest):
        role = "model" if m.role == "assistant" else m.role
        prefix = system + "\n\n" if i == 0 and system else ""
        out.append(f"<start_of_turn>{role}\n{prefix}{m.content.strip()}<end_of_turn>\n")
    if gen:
        out.append("<start_of_turn>model\n")
    return "".join(out)


def _render_llama3(messages: Sequence[ChatMessage], bos: str, gen: bool) -> str:
    out = [bos]
    for m in messages:
        out.append(f"<|start_header_id|>{m.role}<|end_header_id|>\n\n{m.content.strip()}<|eot_id|>")
    if gen:
        out.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(out)


def _render_chatml(messages: Sequence[ChatMessage], bos: str, gen: bool) -> str:
    out = [f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages]
    if gen:
        out.append("<|im_start|>assistant\n")
    return "".join(out)


def _render_mistral(messages: Sequence[ChatMessage], bos: str, gen: bool) -> str:
    system, rest = _system_and_rest(messages)
    out = [bos]
    first_user = True
    for m in rest:
        if m.role == "assistant":
            out.append(f"{m.content}</s>")
        else:
            text = f"{system}\n\n{m.content}" if first_user and system else m.content
            first_user = False
            out.append(f"[INST] {text} [/INST]")
    return "".join(out)


def _render_phi(messages: Sequence[ChatMessage], bos: str, gen: bool) -> str:
    out = [f"<|{m.role}|>\n{m.content}<|end|>\n" for m in messages]
    if gen:
        out.append("<|assistant|>\n")
    return "".join(out)


def _render_deepseek(messages: Sequence[ChatMessage], bos: str, gen: bool) -> str:
    system, rest = _system_and_rest(messages)
    out = [bos, system]
    for m in rest:
        if m.role == "assistant":
            out.append(f"<｜Assistant｜>{m.content}<｜end▁of▁sentence｜>")
        else:
            out.append(f"<｜User｜>{m.content}")
    if gen:
        out.append("<｜Assistant｜>")
    return "".join(out)


_BUILTIN_RENDERERS: dict[str, Callable[[Sequence[ChatMessage], str, bool], str]] = {
    "gemma": _render_gemma,
    "llama3": _render_llama3,
    "chatml": _render_chatml,
    "mistral": _render_mistral,
    "phi": _render_phi,
    "deepseek": _render_deepseek,
}


def _render_completion(messages: Sequence[ChatMessage]) -> str:
    """A base model continues text: the system prompt, then the user's text, each reply continuing it."""
    text = ""
    for m in messages:
        if m.role == "assistant":
            text += m.content
        elif m.content:
            text += ("\n\n" if text else "") + m.content
    return text
