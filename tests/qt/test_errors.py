"""The error presenter: every KaiheError kind has its words, severity and action."""

from __future__ import annotations

import inspect

import pytest
from pytestqt.qtbot import QtBot

from kaihe_desktop.core import errors as e
from kaihe_desktop.core.machine.spec import ProfileError
from kaihe_desktop.qt.errors import Action, ErrorPresenter, Severity, kind_for, present

CASES = [
    (e.DiskFullError("cannot save x: the disk is full in /m; free at least 2.0 GiB"), "disk is full",
     Severity.ERROR, Action.FREE_DISK),
    (e.GatedRepoError("google/gemma-3 is gated"), "licence", Severity.WARNING, Action.ACCEPT_LICENSE),
    (e.InvalidTokenError("401 for every request"), "token was refused", Severity.ERROR, Action.SIGN_IN),
    (e.HubUnreachableError("timed out"), "cannot be reached", Severity.WARNING, Action.RETRY),
    (e.DownloadInProgressError("pid 42 is downloading it", pid=42), "Already downloading", Severity.INFO,
     Action.WAIT),
    (e.DoesNotFitError("needs 9.1 GiB, has 7.4 GiB"), "does not fit", Severity.WARNING,
     Action.CHOOSE_SMALLER),
    (e.DownloadCancelled("paused"), "paused", Severity.INFO, Action.RETRY),
    (e.ChecksumMismatchError("sha256 differs"), "damaged", Severity.ERROR, Action.RETRY),
    (e.DownloadError("gave up after 5 tries"), "download failed", Severity.WARNING, Action.RETRY),
    (e.RepoNotFoundError("no repo x/y"), "Not found on the Hub", Severity.WARNING, Action.NONE),
    (e.EngineCrashedError("killed (out of memory)", exitcode=-9), "stopped", Severity.ERROR, Action.RELOAD),
    (e.NotGGUFError("x.bin is not a GGUF"), "cannot be used", Severity.ERROR, Action.CHECK_FILE),
    (e.StateFileError("written by a newer KAIHE"), "KAIHE file", Severity.ERROR, Action.UPDATE_KAIHE),
    (ProfileError("no profile named 'x'"), "profile", Severity.ERROR, Action.NONE),
]  # fmt: skip


@pytest.mark.parametrize(("exc", "words", "severity", "action"), CASES, ids=lambda v: type(v).__name__)
def test_each_kind_has_words_severity_and_action(
    exc: BaseException, words: str, severity: Severity, action: Action
) -> None:
    shown = present(exc)
    assert words.lower() in shown.title.lower()
    assert shown.severity is severity
    assert shown.action is action
    assert shown.detail == str(exc)  # the core's one line is kept, word for word
    assert str(exc) in shown.text


def _kaihe_error_classes() -> list[type[e.KaiheError]]:
    return [
        cls
        for _, cls in inspect.getmembers(e, inspect.isclass)
        if issubclass(cls, e.KaiheError) and cls is not e.KaiheError
    ]


@pytest.mark.parametrize("cls", _kaihe_error_classes(), ids=lambda c: c.__name__)
def test_no_core_error_falls_through_to_the_generic_words(cls: type[e.KaiheError]) -> None:
    """A new error kind in core/errors.py needs its own words in qt/errors.py (or a parent's)."""
    kind = kind_for(cls)
    assert kind is not None and kind.error is not e.KaiheError


def test_unexpected_exceptions_say_their_type() -> None:
    shown = present(ValueError("bad value"))
    assert shown.severity is Severity.ERROR
    assert "ValueError: bad value" in shown.text
    assert present(PermissionError(13, "Permission denied")).action is Action.RETRY


def test_the_presenter_keeps_a_retry_only_for_retryable_kinds(qtbot: QtBot) -> None:
    presenter = ErrorPresenter()
    calls: list[int] = []
    with qtbot.waitSignal(presenter.presented) as blocker:
        presenter.show(e.HubUnreachableError("offline"), retry=lambda: calls.append(1))
    assert blocker.args is not None and blocker.args[0].action is Action.RETRY
    assert presenter.retry is not None
    presenter.show(e.DiskFullError("full"), retry=lambda: calls.append(2))
    assert presenter.retry is None
    with qtbot.waitSignal(presenter.cleared):
        presenter.clear()
    assert presenter.last is None
