"""The library: read, fit, import, verify, adopt from the Hugging Face cache and delete, off the GUI thread.

Every core call runs through `workers`; results come back as signals, failures go to the ErrorPresenter.
Deleting is the core's plan-then-execute: `plan_delete` emits `delete_planned(plan)` (the view confirms),
and only `execute_delete(plan)` removes anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from PySide6.QtCore import QObject, QUrl, Signal
from PySide6.QtGui import QDesktopServices

from kaihe_desktop.core.downloads.part_io import sha256_file
from kaihe_desktop.core.fit.plan import DEFAULT_CONTEXT, DEFAULT_MARGIN_BYTES, plan
from kaihe_desktop.core.fit.report import report_for
from kaihe_desktop.core.gguf.meta import read_local
from kaihe_desktop.core.library import (
    AdoptResult,
    CachedGGUF,
    DeletePlan,
    DeleteResult,
    Library,
    LibraryEntry,
)
from kaihe_desktop.core.machine.spec import Machine
from kaihe_desktop.qt.errors import ErrorPresenter
from kaihe_desktop.qt.models.library import Fit, LibraryModel
from kaihe_desktop.qt.workers import Pool, run_query
from kaihe_desktop.services import Preferences


@dataclass(frozen=True)
class FileCheck:
    path: Path
    expected: str | None  # the sha256 recorded when the file was added; None when none was recorded
    actual: str | None  # None when the file is missing


@dataclass(frozen=True)
class VerifyResult:
    """An entry's files re-hashed against the sha256 the library recorded."""

    name: str
    files: tuple[FileCheck, ...]

    @property
    def missing(self) -> tuple[Path, ...]:
        return tuple(f.path for f in self.files if f.actual is None)

    @property
    def mismatched(self) -> tuple[FileCheck, ...]:
        return tuple(f for f in self.files if f.actual and f.expected and f.actual != f.expected)

    @property
    def checked(self) -> int:
        return sum(1 for f in self.files if f.actual and f.expected)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.mismatched and self.checked > 0


def verify_entry(entry: LibraryEntry) -> VerifyResult:
    """sha256 of every file of ``entry`` (slow: reads them whole) against what was recorded."""
    recorded: list[str | None] = list(entry.file_sha256) or [entry.sha256]
    checks = []
    for i, path in enumerate(entry.files):
        expected = recorded[i] if i < len(recorded) else None
        actual = sha256_file(path) if path.is_file() else None
        checks.append(FileCheck(path, expected, actual))
    return VerifyResult(entry.name, tuple(checks))


def fit_of(entry: LibraryEntry, machine: Machine, prefs: Preferences) -> Fit:
    """The core fit report for ``entry``'s header on ``machine`` with the saved preferences, as a Fit."""
    try:
        meta = read_local(entry.path)
    except Exception as exc:  # noqa: BLE001 - a missing or broken file is a badge, not a failure
        return Fit(None, reason=str(exc) or type(exc).__name__)
    n_ctx = None
    if prefs.n_ctx != DEFAULT_CONTEXT:
        n_ctx = min(prefs.n_ctx, meta.context_length) if meta.context_length > 0 else prefs.n_ctx
    if prefs.margin_bytes == DEFAULT_MARGIN_BYTES:
        p = report_for(
            meta, machine, source=str(entry.path), n_ctx=n_ctx, gpu_layers=prefs.gpu_layers,
            kv_type=prefs.kv_type,
        ).plan  # fmt: skip
    else:  # report_for takes no margin: the same plan it makes, with the user's margin
        p = plan(
            meta, machine, n_ctx=n_ctx, gpu_layers=prefs.gpu_layers, kv_type=prefs.kv_type,
            margin_bytes=prefs.margin_bytes,
        )  # fmt: skip
    return Fit(str(p.placement), p.headroom_bytes, p.n_ctx, p.reason)


def _open_url(url: QUrl) -> bool:
    return bool(QDesktopServices.openUrl(url))


class LibraryController(QObject):
    loaded = Signal()
    failed = Signal(object)
    fits_ready = Signal()
    delete_planned = Signal(object)  # DeletePlan
    deleted = Signal(object)  # DeleteResult
    imported = Signal(object)  # LibraryEntry
    verified = Signal(object)  # VerifyResult
    verify_started = Signal(str)
    cache_found = Signal(object)  # tuple[CachedGGUF, ...]
    adopted = Signal(object)  # tuple[LibraryEntry, ...]
    revealed = Signal(object)  # the QUrl handed to the opener

    def __init__(
        self,
        library: Library,
        errors: ErrorPresenter,
        parent: QObject | None = None,
        *,
        preferences: Callable[[], Preferences] = Preferences,
        opener: Callable[[QUrl], bool] = _open_url,
    ) -> None:
        """``preferences``: the saved settings the fit column is planned with (read on the GUI thread: the
        store keeps them in memory); ``opener``: what "Show in folder" hands the folder's URL to."""
        super().__init__(parent)
        self._library = library
        self._errors = errors
        self._preferences = preferences
        self.machine: Machine | None = None
        self.opener = opener
        self.model = LibraryModel(self)
        self.loading = False
        self._load_again = False
        self.fitting = False
        self._fit_again = False

    def set_machine(self, machine: Machine) -> None:
        """The active machine (MachineController.active_machine_changed): the fit column is computed again."""
        self.machine = machine
        self.refresh_fits()

    @property
    def library(self) -> Library:
        return self._library

    # --- reading ---------------------------------------------------------------------------------------

    def refresh(self) -> None:
        if self.loading:
            self._load_again = True  # a change landed while reading: read once more after this one
            return
        self.loading = True
        run_query(self._library.entries, self._on_loaded, self._on_failed, name="library entries")

    def _on_loaded(self, entries: tuple[LibraryEntry, ...]) -> None:
        self.loading = False
        if self._load_again:
            self._load_again = False
            self.refresh()
            return
        self.model.set_entries(entries)
        self.loaded.emit()
        self.refresh_fits()

    def _on_failed(self, exc: BaseException) -> None:
        self.loading = False
        self._load_again = False
        self._errors.show(exc, retry=self.refresh)
        self.failed.emit(exc)

    def refresh_fits(self) -> None:
        """The fit column from each entry's header and core's fit report, off the GUI thread."""
        machine = self.machine
        if machine is None or not self.model.entries:
            return
        if self.fitting:
            self._fit_again = True
            return
        self.fitting = True
        entries = self.model.entries
        prefs = self._preferences()

        def compute() -> dict[str, Fit]:
            return {e.name: fit_of(e, machine, prefs) for e in entries}

        run_query(compute, self._on_fits, self._on_fits_failed, name="library fits")

    def _on_fits(self, fits: dict[str, Fit]) -> None:
        self.fitting = False
        self.model.set_fits(fits)
        self.fits_ready.emit()
        if self._fit_again:
            self._fit_again = False
            self.refresh_fits()

    def _on_fits_failed(self, exc: BaseException) -> None:
        self.fitting = False
        self._fit_again = False
        self._errors.show(exc, retry=self.refresh_fits)

    # --- importing -------------------------------------------------------------------------------------

    def import_files(self, paths: Sequence[Path], *, copy: bool = False) -> None:
        """Each .gguf validated and listed (referenced in place, or copied into the models folder)."""
        library = self._library
        for path in paths:
            run_query(
                partial(library.import_file, Path(path), copy=copy),
                self._on_imported,
                self._errors.show,
                name=f"import {Path(path).name}",
                which=Pool.LONG,
            )

    def _on_imported(self, entry: LibraryEntry) -> None:
        self.imported.emit(entry)
        self.refresh()

    # --- the Hugging Face cache ------------------------------------------------------------------------

    def discover_cache(self) -> None:
        run_query(self._library.discover_hf_cache, self.cache_found.emit, self._errors.show, name="hf cache")

    def adopt(self, cached: Sequence[CachedGGUF]) -> None:
        items = tuple(cached)

        run_query(
            lambda: self._library.adopt_hf_cache(items), self._on_adopted, self._errors.show,
            name="adopt from hf cache", which=Pool.LONG,
        )  # fmt: skip

    def _on_adopted(self, result: AdoptResult) -> None:
        for _offer, error in result.skipped:  # one unreadable file does not stop the others
            self._errors.show(error)
        self.adopted.emit(result.added)
        self.refresh()

    # --- verifying, revealing --------------------------------------------------------------------------

    def verify(self, entry: LibraryEntry) -> None:
        self.verify_started.emit(entry.name)
        run_query(
            lambda: verify_entry(entry), self.verified.emit, self._errors.show,
            name=f"verify {entry.name}", which=Pool.LONG,
        )  # fmt: skip

    def reveal(self, entry: LibraryEntry) -> QUrl:
        """Open the folder holding the model's file in the file manager (through the injectable opener)."""
        url = QUrl.fromLocalFile(str(entry.path.parent))
        self.opener(url)
        self.revealed.emit(url)
        return url

    # --- deleting --------------------------------------------------------------------------------------

    def plan_delete(self, entry: LibraryEntry) -> None:
        run_query(
            lambda: self._library.plan_delete(entry.name), self.delete_planned.emit, self._errors.show,
            name=f"plan delete {entry.name}",
        )  # fmt: skip

    def execute_delete(self, plan: DeletePlan) -> None:
        run_query(
            lambda: self._library.execute(plan), self._on_deleted, self._errors.show,
            name=f"delete {plan.entry.name}", which=Pool.LONG,
        )  # fmt: skip

    def _on_deleted(self, result: DeleteResult) -> None:
        self.deleted.emit(result)
        self.refresh()
