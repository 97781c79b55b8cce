"""cli/main's safety net: library errors that escaped a command's own checks still end as one line."""

from __future__ import annotations

import argparse
import errno
from pathlib import Path

import pytest
from huggingface_hub.errors import HFValidationError

from kaihe_desktop.cli import models_cmd
from kaihe_desktop.cli.main import main


@pytest.mark.parametrize(
    ("exc", "says"),
    [
        (OSError(errno.ENAMETOOLONG, "File name too long", "x" * 600), "a name is too long"),
        (
            OSError(errno.ENOSPC, "No space left on device", "/data/kaihe/f.json"),
            "/data/kaihe: No space left",
        ),
        (HFValidationError("Repo id must use alphanumeric chars:\n 'x/.'."), "Repo id must use"),
    ],
)
def test_stray_library_errors_are_one_line(
    kaihe_home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    exc: Exception,
    says: str,
) -> None:
    def handler(args: argparse.Namespace) -> int:
        raise exc

    monkeypatch.setattr(models_cmd, "run_models", handler)
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kaihe: error: ") and err.count("\n") == 1 and says in err and len(err) < 400


def test_other_bugs_still_trace_back(kaihe_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def handler(args: argparse.Namespace) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(models_cmd, "run_models", handler)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["models"])
