"""The one place a failure becomes words in the window: each KaiheError kind → a title, a severity, an action.

The core's message (one line naming the file or repo) is kept as the detail; the title says what happened in
plain words and the action says what the user can do about it. `ErrorPresenter` is the single sink every
view and controller sends exceptions to; the main window shows what it presents in a banner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, IntEnum

from PySide6.QtCore import QObject, Signal

from kaihe_desktop.core import errors as e
from kaihe_desktop.core.machine.spec import ProfileError


class Severity(IntEnum):
    INFO = 0  # the user asked for it (a cancel, a pause)
    WARNING = 1  # it can be fixed or retried
    ERROR = 2  # something is broken


class Action(Enum):
    NONE = ""
    RETRY = "Retry"
    SIGN_IN = "Sign in"
    ACCEPT_LICENSE = "Open the model page"
    FREE_DISK = "Free disk space"
    CHOOSE_SMALLER = "Choose a smaller model"
    WAIT = "Wait for the other download"
    UPDATE_KAIHE = "Update KAIHE"
    RELOAD = "Reload the model"
    CHECK_FILE = "Check the file"


@dataclass(frozen=True)
class Presentation:
    title: str
    detail: str  # the core's one-line message
    severity: Severity
    action: Action
    hint: str = ""  # what the action means, for kinds the window cannot do itself yet

    @property
    def text(self) -> str:
        return f"{self.title}: {self.detail}" if self.detail else self.title


@dataclass(frozen=True)
class _Kind:
    error: type[BaseException]
    title: str
    severity: Severity
    action: Action
    hint: str = ""


# Most specific first: the first kind the exception is an instance of wins.
KINDS: tuple[_Kind, ...] = (
    _Kind(e.DiskFullError, "The disk is full", Severity.ERROR, Action.FREE_DISK,
          "Delete models you no longer use, or free space on the disk, then try again."),
    _Kind(e.DownloadInProgressError, "Already downloading", Severity.INFO, Action.WAIT,
          "Another KAIHE window or command is downloading these files; it will finish them."),
    _Kind(e.DownloadCancelled, "Download paused", Severity.INFO, Action.RETRY,
          "What was downloaded is kept; resuming fetches only the rest."),
    _Kind(e.ChecksumMismatchError, "The download is damaged", Severity.ERROR, Action.RETRY,
          "The file did not match the Hub's checksum and was not added; downloading again fixes it."),
    _Kind(getattr(e, "HubBusyError", e.HubError), "The Hub is busy", Severity.WARNING, Action.RETRY,
          "It asked us to slow down; try again in a minute."),
    _Kind(e.DownloadError, "The download failed", Severity.WARNING, Action.RETRY,
          "Resuming fetches only the missing bytes."),
    _Kind(e.InvalidTokenError, "The Hugging Face token was refused", Severity.ERROR, Action.SIGN_IN,
          "Sign in again with a valid token (hf auth login, or HF_TOKEN)."),
    _Kind(e.GatedRepoError, "This model needs its licence accepted", Severity.WARNING, Action.ACCEPT_LICENSE,
          "Accept the licence on the model's Hub page and sign in, then try again."),
    _Kind(e.HubUnreachableError, "The Hugging Face Hub cannot be reached", Severity.WARNING, Action.RETRY,
          "Check the network; what was browsed before is still shown from the cache."),
    _Kind(e.RepoNotFoundError, "Not found on the Hub", Severity.WARNING, Action.NONE),
    _Kind(e.HubRequestCancelled, "Cancelled", Severity.INFO, Action.NONE),
    _Kind(e.HubError, "The Hub request failed", Severity.WARNING, Action.RETRY),
    _Kind(e.DoesNotFitError, "This model does not fit this machine", Severity.WARNING, Action.CHOOSE_SMALLER,
          "Pick a smaller quant or model, or a shorter context."),
    _Kind(e.EngineCrashedError, "The model stopped", Severity.ERROR, Action.RELOAD,
          "The engine process ended (often out of memory); the chat is kept. Load the model again."),
    _Kind(e.ModelLoadError, "llama.cpp could not load the model", Severity.ERROR, Action.CHOOSE_SMALLER),
    _Kind(e.ContextOverflowError, "The message does not fit the context", Severity.WARNING, Action.NONE,
          "Shorten the message or load the model with a longer context."),
    _Kind(e.EngineError, "The engine failed", Severity.ERROR, Action.RELOAD),
    _Kind(e.TemplateError, "The chat template failed", Severity.ERROR, Action.NONE),
    _Kind(e.HistoryError, "The chat history failed", Severity.ERROR, Action.NONE),
    _Kind(e.ModelFileError, "This model file cannot be used", Severity.ERROR, Action.CHECK_FILE),
    _Kind(e.ModelNotFoundError, "Not found", Severity.WARNING, Action.NONE),
    _Kind(e.StateFileError, "A KAIHE file cannot be used", Severity.ERROR, Action.UPDATE_KAIHE),
    _Kind(e.UnsafeFilenameError, "Refused an unsafe file name", Severity.ERROR, Action.NONE),
    _Kind(e.InvalidNameError, "That name cannot be used", Severity.WARNING, Action.NONE),
    _Kind(e.LibraryError, "The library cannot do that", Severity.WARNING, Action.NONE),
    _Kind(ProfileError, "The machine profile cannot be read", Severity.ERROR, Action.NONE),
    _Kind(getattr(e, "UnknownKVCacheTypeError", e.InvalidNameError), "That setting is not known",
          Severity.WARNING, Action.NONE),
    _Kind(e.KaiheError, "Something went wrong", Severity.ERROR, Action.NONE),
)  # fmt: skip


def kind_for(error: type[BaseException]) -> _Kind | None:
    """The first kind ``error`` is a subclass of (most specific first), or None for a non-KAIHE error."""
    return next((kind for kind in KINDS if issubclass(error, kind.error)), None)


def present(exc: BaseException) -> Presentation:
    """The words, severity and action for ``exc``; an unexpected exception is an error that says its type."""
    detail = str(exc).strip()
    kind = kind_for(type(exc))
    if kind is not None:
        return Presentation(kind.title, detail, kind.severity, kind.action, kind.hint)
    if isinstance(exc, OSError):
        return Presentation(
            "A file or device failed", detail or type(exc).__name__, Severity.ERROR, Action.RETRY
        )
    return Presentation(
        "Unexpected error", f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__,
        Severity.ERROR, Action.NONE,
    )  # fmt: skip


class ErrorPresenter(QObject):
    """The one sink for failures: `show(exc, retry=...)` emits `presented` for the window's banner."""

    presented = Signal(object)  # Presentation
    cleared = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.last: Presentation | None = None
        self.retry: Callable[[], None] | None = None

    def show(self, exc: BaseException, *, retry: Callable[[], None] | None = None) -> Presentation:
        shown = present(exc)
        self.last = shown
        self.retry = retry if shown.action is Action.RETRY else None
        self.presented.emit(shown)
        return shown

    def clear(self) -> None:
        self.last = None
        self.retry = None
        self.cleared.emit()
