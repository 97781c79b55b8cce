"""The CLI's words for the core's reasons: the same lines `kaihe` printed when the core named the flags."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from kaihe_desktop.cli.format import error_text
from kaihe_desktop.cli.main import main
from kaihe_desktop.core.errors import ContextOverflowError, LibraryError
from kaihe_desktop.core.fit.advice import warnings as advice_warnings
from kaihe_desktop.core.fit.plan import plan
from kaihe_desktop.core.gguf.meta import read_local
from kaihe_desktop.core.machine.profiles import resolve_profile
from kaihe_desktop.core.reasons import ContextOverflow
from kaihe_desktop.core.units import format_bytes
from tests.helpers.tiny_gguf import write_tiny_model

MiB = 2**20


def test_an_error_without_a_reason_is_the_cores_sentence() -> None:
    assert error_text(LibraryError("x.gguf already exists")) == "x.gguf already exists"


def test_context_overflow_names_the_ctx_flag() -> None:
    reason = ContextOverflow(
        prompt_tokens=900, reply_reserve_tokens=128, context_tokens=512, trained_context_tokens=32768
    )
    exc = ContextOverflowError("the message does not fit the context", reason=reason)
    assert error_text(exc) == (
        "the message does not fit the context: with the system prompt it is 900 tokens, and 128 more are "
        "kept for the reply, but the context holds 512 tokens; "
        "shorten the message or load the model with a larger context (--ctx)"
    )


def test_chat_refuses_what_does_not_fit_and_names_force(
    starter_model_path: Path, kaihe_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    laptop = resolve_profile("laptop-8gb")
    tiny = replace(laptop, ram=replace(laptop.ram, total_bytes=512 * MiB, available_bytes=200 * MiB))
    profile = tmp_path / "tiny.json"
    profile.write_text(tiny.to_json())
    headroom = advice_warnings(plan(read_local(starter_model_path), tiny))[0].message  # as the core said it
    assert main(["chat", str(starter_model_path), "--profile", str(profile), "--prompt", "hi"]) == 1
    err = capsys.readouterr().err
    assert err == f"kaihe: error: {starter_model_path.name} {headroom}; load it anyway with --force\n"


def test_chat_refuses_a_message_longer_than_the_context_and_names_ctx(
    starter_model_path: Path, kaihe_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["chat", str(starter_model_path), "--ctx", "512", "--max-tokens", "8", "--prompt", "tide " * 800]
    assert main(argv) == 1
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("kaihe: error: the message does not fit the context: with the system prompt it is ")
    assert err.endswith(
        "8 more are kept for the reply, but the context holds 512 tokens; "
        "shorten the message or load the model with a larger context (--ctx)"
    )


def test_a_copy_import_without_the_space_names_the_copy_flag(
    kaihe_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    huge = write_tiny_model(tmp_path / "huge-Q8_0.gguf", tensor_type="Q8_0")
    os.truncate(huge, shutil.disk_usage(tmp_path).free + 2**30)  # sparse, larger than the free space
    assert main(["models", "--import", str(huge), "--copy"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    into = kaihe_home / "models" / "imported"
    assert line.startswith(
        f"kaihe: error: not enough disk space to copy huge-Q8_0.gguf into {into}: "
        f"needs {format_bytes(huge.stat().st_size)} (+64.0 MiB reserve), "
    )
    assert line.endswith(" there, or import without --copy") and "; free at least " in line
