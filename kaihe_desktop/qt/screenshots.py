"""``kaihe-desktop --screenshots DIR [--profile NAME]``: every view, with real data, offscreen, in DIR.

The data is real and local: a temporary KAIHE_HOME whose library holds the starter model (when its package
is installed) and a few tiny GGUFs written here (kaihe_desktop/tiny_model.py), and whose download queue has a
paused and a failed item. Nothing goes to the Hugging Face Hub unless the caller points HF_ENDPOINT at a
Hub-compatible server: then Discover shows the results of searching it for KAIHE_SCREENSHOTS_QUERY (default
"GGUF"); without HF_ENDPOINT the app runs offline (HF_HUB_OFFLINE=1) and Discover shows its recommendations
as estimates. The guardrail dialog is the core's check of the largest library model on the active machine
with its free RAM cut to 32 MiB below what the model needs with the safety margin (and no GPU).

Files: machine.png, models.png, discover.png, discover-results.png (with a Hub), downloads.png,
first-run.png (when the window has that page; rendered over a second, empty KAIHE_HOME, as a first start
shows it), guardrail.png.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PySide6.QtWidgets import QDialog, QWidget

    from kaihe_desktop.services import Services

ServicesFactory = Callable[[Path, str | None], "Services"]  # (home, profile) → Services
QUERY_ENV = "KAIHE_SCREENSHOTS_QUERY"
SIZE = (1100, 720)
SHORT_BY = 32 << 20  # the guardrail shot: free RAM this much short of the need plus the margin
FIRST_RUN = "first-run"  # the welcome page's key, when the window has one
TINY = (("Tiny-Chat", "F16"), ("Tiny-Chat", "Q8_0"), ("Tiny-Coder", "Q4_0"))


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    from PySide6.QtWidgets import QApplication

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        QApplication.processEvents()
        if condition():
            return True
        time.sleep(0.02)
    return False


def _settle(frames: int = 10) -> None:
    from PySide6.QtWidgets import QApplication

    for _ in range(frames):
        QApplication.processEvents()
        time.sleep(0.01)


def _fill_home(home: Path, make: ServicesFactory) -> None:
    """The library (starter model and tiny GGUFs) and a queue with a paused and a failed download."""
    from kaihe_desktop.core.downloads.queue import QueueState
    from kaihe_desktop.core.starter import starter_available
    from kaihe_desktop.tiny_model import write_tiny_llama

    services = make(home, None)
    if starter_available():
        services.library.import_starter()
    source = home / "incoming"
    for i, (name, quant) in enumerate(TINY):
        path = write_tiny_llama(source / f"{name}-{quant}.gguf", quant=quant, name=name, seed=i)
        services.library.import_file(path, copy=True)
    paused = services.queue.add("kaihe-samples/Tiny-Writer-GGUF", "Q8_0", total_bytes=48 << 20)
    services.queue.set_state(paused.key, QueueState.PAUSED)
    failed = services.queue.add("kaihe-samples/Tiny-Math-GGUF", "Q4_0", total_bytes=31 << 20)
    services.queue.set_state(failed.key, QueueState.FAILED, error="the Hub did not answer (timed out)")


def _guardrail_dialog(services: Services, parent: QWidget) -> QDialog | None:
    """The core's guardrail for the largest library model, on the active machine with its free RAM cut."""
    from kaihe_desktop.core.fit import guardrails
    from kaihe_desktop.core.fit.plan import plan
    from kaihe_desktop.core.gguf.meta import read_local
    from kaihe_desktop.qt.dialogs.guardrail import GuardrailDialog

    entries = sorted(services.library.entries(), key=lambda e: e.size_bytes, reverse=True)
    if not entries:
        return None
    meta = read_local(entries[0].path)
    machine = services.load_machine()
    n_ctx = min(meta.context_length or 4096, 8192)
    need = plan(meta, machine, n_ctx=n_ctx, gpu_layers=0).estimate.total_bytes
    margin = plan(meta, machine, n_ctx=n_ctx).margin_bytes
    cut = dataclasses.replace(
        machine,
        ram=dataclasses.replace(machine.ram, available_bytes=max(need + margin - SHORT_BY, 1)),
        gpus=(),
    )
    found = guardrails.check(
        meta, cut, options=guardrails.Requested(n_ctx=n_ctx), kind=guardrails.Action.DOWNLOAD
    )
    if found is None:
        return None
    return GuardrailDialog(found, parent)


def render_screenshots(out: Path, *, make: ServicesFactory, profile: str | None = None) -> int:
    """Write the PNGs into ``out``; 0 when every view was rendered, 1 (one line on stderr) otherwise.

    ``make(home, profile)`` builds the Services (the entry passes Services.create: the Qt layer builds
    no core object)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    hub = bool(os.environ.get("HF_ENDPOINT"))
    if not hub:
        os.environ["HF_HUB_OFFLINE"] = "1"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kaihe-screenshots-") as tmp:
        home = Path(tmp) / "home"
        os.environ["KAIHE_HOME"] = str(home)
        try:
            written = _render_first_run(out, make(Path(tmp) / "first-home", profile))
            _fill_home(home, make)
            query = os.environ.get(QUERY_ENV, "GGUF") if hub else None
            written += _render(out, make(home, profile), query=query)
        except Exception as exc:  # noqa: BLE001 - one line for the caller
            print(f"screenshots: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    for path in written:
        print(path)
    return 0


def _render_first_run(out: Path, services: Services) -> list[Path]:
    """The welcome page, as a first start (an empty library) shows it once its pick is in."""
    from kaihe_desktop.app import create_window
    from kaihe_desktop.qt import workers

    window = create_window(["kaihe-desktop"], services=services)
    written: list[Path] = []
    try:
        if FIRST_RUN not in window.pages:
            return written  # no first-run page in this build
        window.resize(*SIZE)
        window.show()
        window.show_page(FIRST_RUN)
        _wait(lambda: window._machine.summary is not None, 120)  # noqa: SLF001
        _wait(lambda: not workers.in_flight(), 60)
        _settle()
        path = out / f"{FIRST_RUN}.png"
        if not window.grab().save(str(path)):
            raise RuntimeError(f"cannot write {path}")
        written.append(path)
        return written
    finally:
        window.close()
        _settle()
        workers.await_all(timeout_ms=10_000)


def _render(out: Path, services: Services, *, query: str | None) -> list[Path]:
    from PySide6.QtWidgets import QApplication

    from kaihe_desktop.app import create_window
    from kaihe_desktop.qt import workers
    from kaihe_desktop.qt.views.discover import DiscoverView

    window = create_window(["kaihe-desktop"], services=services)
    window.resize(*SIZE)
    window.show()
    machine = window._machine  # noqa: SLF001 - a capture may look inside
    if not _wait(lambda: machine.summary is not None, 120):
        raise RuntimeError("the machine was not read in time")
    written: list[Path] = []

    def shot(widget: QWidget, name: str) -> None:
        _wait(lambda: not workers.in_flight(), 30)
        _settle()
        path = out / f"{name}.png"
        if not widget.grab().save(str(path)):
            raise RuntimeError(f"cannot write {path}")
        written.append(path)

    _wait(lambda: not workers.in_flight(), 60)  # the first reads (a first start may switch the page)
    _settle()
    for key in window.pages:
        if key == FIRST_RUN:
            continue  # a library with models is no first start: rendered over an empty home instead
        window.show_page(key)
        shot(window, key.replace("_", "-"))
    discover = window.pages["discover"].widget
    if query is not None and isinstance(discover, DiscoverView):
        window.show_page("discover")
        discover.search.setText(query)
        _wait(lambda: discover._controller.model.rowCount() > 0, 30)  # noqa: SLF001
        _wait(lambda: discover.shown is not None, 30)
        shot(window, "discover-results")
    dialog = _guardrail_dialog(services, window)
    if dialog is not None:
        dialog.show()
        _settle()
        shot(dialog, "guardrail")
        dialog.close()
    window.close()
    _settle()
    workers.await_all(timeout_ms=10_000)
    QApplication.processEvents()
    return written


__all__ = ["render_screenshots"]
