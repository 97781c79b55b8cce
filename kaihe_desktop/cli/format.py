"""The CLI's words for the core's reasons (a code and its numbers), naming the CLI's own flags.

The core never names a flag: an error it wants each front end to word carries ``exc.reason``; this module
words it for a terminal. Errors without a reason are shown as the core's own sentence.
"""

from __future__ import annotations

from typing import assert_never

from kaihe_desktop.core.errors import KaiheError
from kaihe_desktop.core.reasons import ContextOverflow, CopyNeedsSpace, DoesNotFit, Reason
from kaihe_desktop.core.units import format_bytes


def error_text(exc: KaiheError) -> str:
    """What `kaihe` prints after "kaihe: error: " for a core error."""
    return str(exc) if exc.reason is None else reason_text(exc.reason)


def reason_text(reason: Reason) -> str:
    """One reason in the CLI's words, with the flag that gets past it."""
    match reason:
        case ContextOverflow():
            return (
                "the message does not fit the context: with the system prompt it is "
                f"{reason.prompt_tokens} tokens, and {reason.reply_reserve_tokens} more are kept for the "
                f"reply, but the context holds {reason.context_tokens} tokens; "
                "shorten the message or load the model with a larger context (--ctx)"
            )
        case DoesNotFit():
            return (
                f"{reason.model} does not fit: needs {format_bytes(reason.shortfall_bytes)} more than is "
                f"free (the {format_bytes(reason.margin_bytes)} safety margin included); "
                "load it anyway with --force"
            )
        case CopyNeedsSpace():
            return (
                f"not enough disk space to copy {reason.file_name} into {reason.dest_dir}: "
                f"needs {format_bytes(reason.needed_bytes)} (+{format_bytes(reason.reserve_bytes)} reserve), "
                f"{format_bytes(reason.free_bytes)} free; "
                f"free at least {format_bytes(reason.shortfall_bytes)} there, or import without --copy"
            )
        case _:
            assert_never(reason)
