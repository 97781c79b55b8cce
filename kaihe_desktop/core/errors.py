"""One error hierarchy, so the CLI and the GUI can show any failure as one clear line.

Every message names what went wrong and, where there is one, the file or repo it concerns.
"""

from __future__ import annotations

from kaihe_desktop.core.reasons import ContextOverflow, CopyNeedsSpace, DoesNotFit, Reason


class KaiheError(Exception):
    """Base of every error the core raises on purpose.

    ``reason``, where set, is the refusal as data (a code and its numbers) for a front end to word its own
    way; ``str(exc)`` is then a plain sentence that names no front end's flags or commands.
    """

    reason: Reason | None = None


# --- model files -------------------------------------------------------------------------------


class ModelFileError(KaiheError):
    """A model file cannot be used."""


class NotGGUFError(ModelFileError):
    """The file does not start with the GGUF magic."""


class TruncatedGGUFError(ModelFileError):
    """The file ends before its header (or its tensor data) does."""


class CorruptGGUFError(ModelFileError):
    """The header is readable but makes no sense (absurd sizes, unknown types)."""


class UnloadableModelError(ModelFileError):
    """The header parses, but llama.cpp would refuse the model: a hyperparameter it needs is missing or 0,
    or the architecture is one it does not know. Caught here so no plan is made for a model that cannot run.
    Its message always holds UNLOADABLE, so that a cached error text still says which kind it was.
    """


UNLOADABLE = "llama.cpp cannot load it"


class ModelNotFoundError(KaiheError):
    """A local path, library name, repo or file that does not exist."""


# --- hub and network -----------------------------------------------------------------------------


class HubError(KaiheError):
    """Talking to the Hugging Face Hub failed."""


class HubUnreachableError(HubError):
    """No network, offline mode, or the Hub timed out."""


class RepoNotFoundError(HubError, ModelNotFoundError):
    """The repo or file does not exist on the Hub (or is private)."""


class GatedRepoError(HubError):
    """The repo needs its licence accepted and a login."""


class InvalidTokenError(HubError):
    """The Hub rejects the token sent (HTTP 401 on every request), wherever it came from."""


class HubRequestCancelled(KaiheError):
    """The caller cancelled (pause, Ctrl-C, a closed window) while a Hub request waited to retry."""


# --- fit ------------------------------------------------------------------------------------------


class DoesNotFitError(KaiheError):
    """A model does not fit this machine with the safety margin."""

    def __init__(self, message: str, *, reason: DoesNotFit | None = None) -> None:
        super().__init__(message)
        self.reason: DoesNotFit | None = reason


class UnknownKVCacheTypeError(KaiheError, ValueError):
    """A KV cache type llama.cpp does not take (core/fit/kv_types.py lists those it does)."""

    def __init__(self, message: str, *, name: str, choices: tuple[str, ...]) -> None:
        super().__init__(message)
        self.name = name
        self.choices = choices


# --- downloads and library ------------------------------------------------------------------------


class DownloadError(KaiheError):
    """A download failed after its retries."""


class HubBusyError(HubError, DownloadError):
    """The Hub kept answering 429/5xx, or kept dropping the connection, through every retry: the same
    error whether a listing, a header read or a download gave up (a DownloadError too, for the queue)."""


class DownloadCancelled(DownloadError):
    """The user paused or cancelled; the partial file is kept for resume."""


class DownloadInProgressError(DownloadError):
    """Another process (pid, when known) is downloading the same files: one writer per partial file."""

    def __init__(self, message: str, *, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


class ChecksumMismatchError(DownloadError):
    """The sha256 of a finished file differs from the Hub's LFS hash."""


class DiskFullError(DownloadError):
    """Not enough free disk space for the download."""

    def __init__(self, message: str, *, reason: CopyNeedsSpace | None = None) -> None:
        super().__init__(message)
        self.reason: CopyNeedsSpace | None = reason


class UnsafeFilenameError(KaiheError):
    """A remote file name that is absolute or climbs out of its folder."""


class LibraryError(KaiheError):
    """The local model library cannot do what was asked."""


class StateFileError(KaiheError):
    """A state file (library index, download queue) cannot be written or is from a newer version."""


class InvalidNameError(KaiheError):
    """A name the user typed (repo id, path, display name) that cannot be used as it is."""


# --- engine and chat ------------------------------------------------------------------------------


class EngineError(KaiheError):
    """The llama.cpp engine process failed."""


class EngineCrashedError(EngineError):
    """The engine process died (crash, out-of-memory kill, SIGKILL).

    partial_text keeps what the reply had streamed before the engine died.
    """

    def __init__(self, message: str, *, partial_text: str = "", exitcode: int | None = None) -> None:
        super().__init__(message)
        self.partial_text = partial_text
        self.exitcode = exitcode


class ModelLoadError(EngineError):
    """llama.cpp refused to load a model."""


class TemplateError(KaiheError):
    """A chat template failed to render, or tried to escape its sandbox."""


class HistoryError(KaiheError):
    """The chat history store failed."""


class ContextOverflowError(EngineError):
    """A new message cannot fit the context window, even after dropping every older turn."""

    def __init__(self, message: str, *, reason: ContextOverflow) -> None:
        super().__init__(message)
        self.reason: ContextOverflow = reason
