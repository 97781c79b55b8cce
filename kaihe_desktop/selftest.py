"""``kaihe-desktop --self-test``: is this install whole? Exit 0, or non-zero with one line saying what failed.

Steps, in order: probe the machine (or resolve ``--profile``); start the engine process (llama.cpp in a
child), load a tiny GGUF written here and generate a few tokens; open the main window over a temporary
KAIHE_HOME, let its first reads finish, close it. Nothing touches the network or the user's KAIHE_HOME.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
WINDOW_TIMEOUT_S = 60.0


class SelfTestError(Exception):
    """One step failed; the message is the one line printed."""


def _step(what: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except SelfTestError:
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure becomes the one line
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SelfTestError(f"{what} failed: {detail}") from exc


def _machine(profile: str | None) -> str:
    from kaihe_desktop.core.machine.probe import probe
    from kaihe_desktop.core.machine.profiles import resolve_profile

    machine = resolve_profile(profile) if profile else probe()
    return machine.name or "this machine"


def _engine(work: Path) -> int:
    from kaihe_desktop.core.engine import protocol as p
    from kaihe_desktop.core.engine.client import EngineClient
    from kaihe_desktop.tiny_model import write_tiny_llama

    model = write_tiny_llama(work / "self-test-Q8_0.gguf", quant="Q8_0")
    with EngineClient(log_path=work / "engine.log") as client:
        client.load(p.LoadOptions(path=str(model), n_ctx=256, n_threads=1, n_threads_batch=1))
        result = client.generate(
            "The sea is", sampling=p.SamplingSettings(temperature=0.0, seed=7, max_tokens=4)
        )
    if result.completion_tokens < 1:
        raise SelfTestError("the engine generated no token")
    return result.completion_tokens


def _window(home: Path, profile: str | None) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from kaihe_desktop.app import create_window
    from kaihe_desktop.qt import workers
    from kaihe_desktop.services import Services

    services = Services.create(home=home, profile=profile)
    window = create_window(["kaihe-desktop"], services=services)
    window.show()
    deadline = time.monotonic() + WINDOW_TIMEOUT_S
    while time.monotonic() < deadline:
        QApplication.processEvents()
        if window._machine.summary is not None and not workers.in_flight():  # noqa: SLF001
            break
        time.sleep(0.02)
    else:
        raise SelfTestError("opening the window failed: its first reads did not finish in time")
    window.close()
    window.deleteLater()
    QApplication.processEvents()
    if not workers.await_all(timeout_ms=10_000):
        raise SelfTestError("closing the window failed: a worker did not stop")


def run_self_test(profile: str | None = None) -> int:
    """0 when every step passed (one line per step on stdout), else 1 with one line on stderr."""
    with tempfile.TemporaryDirectory(prefix="kaihe-self-test-") as tmp:
        work = Path(tmp)
        os.environ["KAIHE_HOME"] = str(work / "home")  # the user's own home is left alone
        try:
            name = _step("probing the machine", lambda: _machine(profile))
            print(f"machine: {name}")
            tokens = _step("running the engine", lambda: _engine(work))
            print(f"engine: generated {tokens} token(s) with a tiny model")
            _step("opening the main window", lambda: _window(work / "home", profile))
            print("window: opened and closed")
        except SelfTestError as exc:
            print(f"self-test: {exc}", file=sys.stderr)
            return 1
    print("self-test: ok")
    return 0


__all__ = ["run_self_test"]
