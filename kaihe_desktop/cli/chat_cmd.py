"""`kaihe chat MODEL`: chat offline with a model, streaming; `--prompt TEXT [--json]` for one shot.

Ctrl-C stops the reply being written; a second Ctrl-C (or Ctrl-C / Ctrl-D at the prompt) quits.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from kaihe_desktop.cli.common import add_json_arg, add_profile_arg, emit_json, machine_from_args
from kaihe_desktop.core import paths
from kaihe_desktop.core.chat.history import HistoryStore
from kaihe_desktop.core.chat.session import ChatReply, ChatSession, SamplingSettings
from kaihe_desktop.core.chat.templates import resolve_chat_format
from kaihe_desktop.core.engine import protocol as p
from kaihe_desktop.core.engine.client import EngineClient, describe_exit
from kaihe_desktop.core.engine.loading import LoadOverrides, load_model, read_meta
from kaihe_desktop.core.errors import EngineCrashedError, ModelNotFoundError
from kaihe_desktop.core.fit.kv_types import KV_TYPE_NAMES
from kaihe_desktop.core.names import check_path_text

_DEFAULTS = SamplingSettings()


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "chat",
        help="chat offline with a model (streaming)",
        description="Chat offline with a model. Ctrl-C stops a reply; a second Ctrl-C quits.",
    )
    parser.add_argument(
        "model", metavar="MODEL", help="a .gguf path, a library name, REPO:QUANT, or 'starter'"
    )
    parser.add_argument("--prompt", metavar="TEXT", help="send one message, print the reply and exit")
    add_json_arg(parser)
    parser.add_argument("--system", metavar="TEXT", default="", help="system prompt for the conversation")
    parser.add_argument("--ctx", type=int, metavar="N", help="context length (default: the planner's choice)")
    parser.add_argument("--max-tokens", type=int, default=_DEFAULTS.max_tokens, metavar="N")
    parser.add_argument("--temperature", type=float, default=_DEFAULTS.temperature)
    parser.add_argument("--top-p", type=float, default=_DEFAULTS.top_p)
    parser.add_argument("--top-k", type=int, default=_DEFAULTS.top_k)
    parser.add_argument("--min-p", type=float, default=_DEFAULTS.min_p)
    parser.add_argument("--repeat-penalty", type=float, default=_DEFAULTS.repeat_penalty)
    parser.add_argument("--seed", type=int, help="fixed sampling seed (default: random)")
    parser.add_argument(
        "--think",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="switch Qwen3-style thinking on or off (default: the model's own)",
    )
    parser.add_argument("--gpu-layers", type=int, metavar="N", help="layers to offload (default: planned)")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: physical cores)")
    parser.add_argument("--flash-attn", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--kv-type", choices=KV_TYPE_NAMES, help="KV cache type (default: planned)")
    parser.add_argument(
        "--no-mmap", action="store_true", help="read the model into memory instead of mapping it"
    )
    parser.add_argument("--force", action="store_true", help="load even when the model does not fit")
    add_profile_arg(parser)
    parser.set_defaults(handler=run)


def resolve_model(spec: str) -> tuple[Path, str]:
    """MODEL as the user typed it → (file to load, label for history): a path, 'starter', or the library."""
    candidate = check_path_text(spec, what="model path or name").expanduser()
    if candidate.is_file() or (candidate.exists() and not candidate.is_dir()):
        return candidate, candidate.name  # a device or pipe too: reading it says it is not a regular file
    from kaihe_desktop.core.library import Library

    library = Library()
    try:
        entry = library.get(spec)
    except ModelNotFoundError:
        if spec != "starter":
            raise
        entry = library.import_starter()
    library.touch(entry.name)
    return entry.path, entry.name


def run(args: argparse.Namespace) -> int:
    path, label = resolve_model(args.model)
    meta = read_meta(path)
    chat_format = resolve_chat_format(meta)  # a malicious template fails here, before any load
    machine = machine_from_args(args)
    threads = args.threads or (psutil.cpu_count(logical=False) or 1 if args.profile else None)
    overrides = LoadOverrides(
        n_ctx=args.ctx,
        gpu_layers=args.gpu_layers,
        n_threads=threads,
        flash_attn=args.flash_attn,
        kv_type=args.kv_type,
        use_mmap=not args.no_mmap,
    )
    quiet = bool(args.json)
    engine = EngineClient(log_path=paths.ensure(paths.cache_dir()) / "engine.log")
    history = HistoryStore()
    try:
        loaded, decision = load_model(
            engine,
            path,
            machine=machine,
            meta=meta,
            overrides=overrides,
            force=args.force,
            on_progress=None if quiet else _show_progress,
        )
        if not quiet:
            _err(
                f"\rloaded {label} ({decision.placement}): {loaded.n_ctx} tokens of context, "
                f"{decision.options.n_threads} threads"
            )
            if decision.forced:
                _err("warning: " + "; ".join(decision.warnings))
            if chat_format.mode == "completion":
                _err(f"note: {chat_format.why}")
        session = ChatSession(
            engine,
            chat_format,
            system_prompt=args.system,
            sampling=SamplingSettings(
                temperature=args.temperature,
                top_p=args.top_p,
                top_k=args.top_k,
                min_p=args.min_p,
                repeat_penalty=args.repeat_penalty,
                max_tokens=args.max_tokens,
                seed=args.seed,
            ),
            enable_thinking=args.think,
            history=history,
            model_label=label,
        )
        if args.prompt is not None:
            return _one_shot(session, args.prompt, as_json=quiet)
        return _interactive(session)
    finally:
        engine.close()
        history.close()


def _one_shot(session: ChatSession, text: str, *, as_json: bool) -> int:
    with _ctrl_c_stops(session) as guard:
        reply = _send(session, text, stream=not as_json)
    if guard.quit:
        return 130
    if as_json:
        emit_json(_reply_json(session, reply))
    else:
        _report(reply)
    return 0


def _interactive(session: ChatSession) -> int:
    _err("type a message; Ctrl-C stops a reply, a second Ctrl-C (or Ctrl-D) quits")
    while True:
        try:
            text = input("> ")
        except (EOFError, KeyboardInterrupt):
            sys.stdout.write("\n")
            return 0
        if not text.strip():
            continue
        with _ctrl_c_stops(session) as guard:
            reply = _send(session, text, stream=True)
        if guard.quit:
            return 0
        _report(reply)


def _send(session: ChatSession, text: str, *, stream: bool) -> ChatReply:
    def show(kind: str, piece: str) -> None:
        target = sys.stderr if kind == "reasoning" else sys.stdout
        target.write(piece)
        target.flush()

    try:
        return session.send(text, on_piece=show if stream else None)
    except EngineCrashedError as exc:
        if stream:
            sys.stdout.write("\n")
            sys.stdout.flush()
        where = f"conversation {session.conversation_id}" if session.conversation_id else "history"
        raise EngineCrashedError(
            f"the engine process {describe_exit(exc.exitcode)} while generating a reply; the partial reply "
            f"({len(exc.partial_text)} characters) is saved in history ({where}); run kaihe chat again",
            partial_text=exc.partial_text,
            exitcode=exc.exitcode,
        ) from exc


def _report(reply: ChatReply) -> None:
    sys.stdout.write("\n")
    sys.stdout.flush()
    s = reply.stats
    stopped = " (stopped)" if reply.partial else ""
    _err(
        f"[{s.completion_tokens} tokens, {s.tokens_per_s:.1f} tok/s, first token {s.ttft_s:.2f} s, "
        f"prompt {s.prompt_tokens} tokens, stop: {s.stop_reason}{stopped}]"
    )
    for notice in reply.notices:
        _err(f"note: {notice}")


def _reply_json(session: ChatSession, reply: ChatReply) -> dict[str, Any]:
    s = reply.stats
    return {
        "reply": reply.content,
        "reasoning": reply.reasoning,
        "mode": session.mode,
        "mode_reason": session.chat_format.why,
        "stats": {
            "prompt_tokens": s.prompt_tokens,
            "completion_tokens": s.completion_tokens,
            "ttft_s": s.ttft_s,
            "tokens_per_s": s.tokens_per_s,
            "stop_reason": s.stop_reason,
        },
        "partial": reply.partial,
        "notices": list(reply.notices),
        "conversation_id": reply.conversation_id,
        "message_id": reply.message_id,
        "model": session.model_label,
        "context": session.engine.loaded.n_ctx if session.engine.loaded else None,
    }


@dataclass
class _Guard:
    presses: int = 0

    @property
    def quit(self) -> bool:
        return self.presses >= 2


@contextlib.contextmanager
def _ctrl_c_stops(session: ChatSession) -> Iterator[_Guard]:
    """While a reply streams: the first Ctrl-C stops it, the second asks to quit once it has ended."""
    guard = _Guard()

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        guard.presses += 1
        session.stop()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield guard
    finally:
        signal.signal(signal.SIGINT, previous)


def _show_progress(event: p.Progress) -> None:
    """A live percentage on a terminal; one line otherwise (logs, pipes)."""
    if sys.stderr.isatty():
        sys.stderr.write(f"\rloading… {event.fraction * 100:3.0f}%")
        sys.stderr.flush()
    elif event.fraction == 0.0 and event.stage == "reading":
        _err("loading…")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
