"""Why the core refused something, as data: a code and its numbers, no words for any one front end.

An error that a front end may want to word its own way (naming a CLI flag, a settings page, a button)
carries one of these as ``exc.reason``; ``str(exc)`` stays a plain sentence that names no flag or command.
Each front end turns the code and numbers into its own words (``kaihe_desktop/cli/format.py`` for the CLI).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class ReasonCode(StrEnum):
    CONTEXT_OVERFLOW = "context_overflow"  # a chat message too long for the loaded context
    LOAD_DOES_NOT_FIT = "load_does_not_fit"  # a load refused: the model does not fit this machine
    COPY_NEEDS_SPACE = "copy_needs_space"  # an import's copy refused: not enough free disk


@dataclass(frozen=True, kw_only=True)
class ContextOverflow:
    """A new message that cannot fit the context even with every older turn dropped."""

    prompt_tokens: int  # the message with the system prompt, as the model's tokenizer counts it
    reply_reserve_tokens: int  # kept free for the reply
    context_tokens: int  # the loaded context (n_ctx)
    trained_context_tokens: int  # the most the model was trained for (0 when unknown)

    @property
    def code(self) -> ReasonCode:
        return ReasonCode.CONTEXT_OVERFLOW

    @property
    def needed_tokens(self) -> int:
        """The context this message would need: the prompt and the reply's reserve."""
        return self.prompt_tokens + self.reply_reserve_tokens


@dataclass(frozen=True, kw_only=True)
class DoesNotFit:
    """A model refused because it does not fit the machine with the safety margin."""

    model: str  # the file name (or label) of the model refused
    shortfall_bytes: int  # how much more memory it needs than is free, the margin included
    margin_bytes: int  # the safety margin kept free on every device
    headroom_bytes: int  # free memory left on the tightest device after loading (negative: over)
    context_tokens: int  # the context it was planned with
    max_fitting_context_tokens: int  # the largest context that fits this placement; 0 when none does

    @property
    def code(self) -> ReasonCode:
        return ReasonCode.LOAD_DOES_NOT_FIT


@dataclass(frozen=True, kw_only=True)
class CopyNeedsSpace:
    """An import that copies its files refused: the disk lacks the room (with a reserve kept free)."""

    file_name: str  # the (first) file being copied
    dest_dir: Path  # where the copy would go
    needed_bytes: int  # the bytes the copy writes
    reserve_bytes: int  # kept free on top, so a copy never fills the disk
    free_bytes: int  # free there now

    @property
    def code(self) -> ReasonCode:
        return ReasonCode.COPY_NEEDS_SPACE

    @property
    def shortfall_bytes(self) -> int:
        """What must be freed there before the copy can go ahead."""
        return max(self.needed_bytes + self.reserve_bytes - self.free_bytes, 0)


Reason = ContextOverflow | DoesNotFit | CopyNeedsSpace

__all__ = ["ContextOverflow", "CopyNeedsSpace", "DoesNotFit", "Reason", "ReasonCode"]
