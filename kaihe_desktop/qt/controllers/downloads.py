"""Downloads as an app service: start, pause, resume, cancel, restart recovery, a stall watchdog.

Owned by the window (not by a view), so downloads go on while the user chats or switches pages. Each
download is one core pull on the LONG pool: ``plan_pull`` then ``execute_pull`` with a threading.Event
``cancel``. The core calls back with progress on the pool thread; the callback only stores the latest
snapshot, and a QTimer on the GUI thread coalesces: the model and `progressed` see at most one update per
``progress_interval_ms`` (250 ms: 4 times a second) however fast the bytes come. The same tick is the stall
watchdog: a download that receives nothing for ``stall_after_s`` has its attempt cancelled and is resumed at
once; the core resumes from the partial file with a Range request.

A pause is the core's: the cancel makes ``execute_pull`` raise PullPaused (item "paused", partial files
kept). A cancel is a pause, then the core discards the item and its partial files. A download stopped by
quitting (``workers.await_all`` sets every cancel) is put back "queued", so the next start resumes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TypeVar

from PySide6.QtCore import QObject, QTimer, Signal

from kaihe_desktop.core.downloads.fetch import Downloader
from kaihe_desktop.core.downloads.part_io import DownloadProgress
from kaihe_desktop.core.downloads.pull import (
    PullOutcome,
    PullPaused,
    PullPlan,
    VariantDoesNotFitError,
    execute_pull,
    plan_pull,
)
from kaihe_desktop.core.downloads.queue import DiscardResult, DownloadQueue, QueueItem, QueueState
from kaihe_desktop.core.errors import (
    DiskFullError,
    DownloadCancelled,
    DownloadError,
    DownloadInProgressError,
    HubRequestCancelled,
)
from kaihe_desktop.core.library import Library
from kaihe_desktop.core.machine.spec import Machine
from kaihe_desktop.qt import format as fmt
from kaihe_desktop.qt.errors import ErrorPresenter, Presentation, present
from kaihe_desktop.qt.models.downloads import DownloadRow, DownloadsModel, DownloadState
from kaihe_desktop.qt.workers import Pool, run_query, run_stream

STALL_AFTER_S = 15.0  # nothing received for this long: cancel the attempt, resume with a Range request
PROGRESS_INTERVAL_MS = 250  # progress reaches the GUI at most 4 times a second

T = TypeVar("T")


class _Intent(Enum):
    RUN = "run"  # nobody asked it to stop: a cancel comes from quitting (workers.await_all)
    PAUSE = "pause"
    CANCEL = "cancel"
    STALL = "stall"  # the watchdog stopped it, to resume at once


@dataclass(eq=False)
class _Attempt:
    """One try of one download. The worker writes `latest`/`planned`/`last_activity` under `lock`; the GUI
    thread reads them on its tick and owns everything else."""

    key: str
    repo_id: str
    quant: str | None
    allow_unfit: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)
    intent: _Intent = _Intent.RUN
    lock: threading.Lock = field(default_factory=threading.Lock)
    latest: DownloadProgress | None = None
    seq: int = 0
    seen_seq: int = 0
    planned: tuple[str, str, int, int] | None = None  # key, quant, total bytes, bytes already on disk
    planned_seen: bool = False
    watching: bool = False  # bytes are expected: the watchdog looks at it
    last_activity: float = field(default_factory=time.monotonic)
    shortfall_bytes: int | None = None  # what to free, when the disk is full
    after_stall: bool = False  # the watchdog started it: stopped again only once it has received bytes

    def on_progress(self, progress: DownloadProgress) -> None:  # pool thread
        with self.lock:
            last = self.latest
            if last is None or progress.done_bytes != last.done_bytes or progress.phase != last.phase:
                self.last_activity = time.monotonic()
            self.latest = progress
            self.seq += 1

    def on_start(self, plan: PullPlan) -> None:  # pool thread, the item is "running"
        quant = plan.variant.quant if plan.variant is not None else (self.quant or "")
        with self.lock:
            self.planned = (plan.key, quant, plan.total_bytes, plan.have_bytes)
            self.last_activity = time.monotonic()
            self.watching = True


@dataclass(frozen=True)
class RestoredItem:
    item: QueueItem
    have_bytes: int  # in its partial files


class DownloadsController(QObject):
    progressed = Signal(object)  # tuple[DownloadRow, ...]: one coalesced progress update (≤ 4 Hz)
    changed = Signal(object)  # DownloadRow: a state change (started, paused, failed, done, …)
    removed = Signal(str)  # key: cancelled or cleared from the list
    installed = Signal(object)  # LibraryEntry: verified and in the library
    already_running = Signal(str)  # key: a start asked for a download that is running
    does_not_fit = Signal(object)  # VariantDoesNotFitError: the guardrail's to offer "load anyway"
    restored = Signal()  # the queue of a previous run is listed

    def __init__(
        self,
        *,
        queue: DownloadQueue,
        library: Library,
        downloader: Downloader,
        machine: Callable[[], Machine],
        errors: ErrorPresenter | None = None,
        stall_after_s: float = STALL_AFTER_S,
        progress_interval_ms: int = PROGRESS_INTERVAL_MS,
        resume_queued: bool = True,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._queue = queue
        self._library = library
        self._downloader = downloader
        self._machine = machine  # called on the pool thread, only when a fit is judged
        self._errors = errors
        self.stall_after_s = stall_after_s
        self.resume_queued = resume_queued
        self.model = DownloadsModel(self)
        self._attempts: dict[str, _Attempt] = {}  # by lower-cased key
        self.timer = QTimer(self)
        self.timer.setInterval(progress_interval_ms)
        self.timer.timeout.connect(self._tick)

    # --- what views call -----------------------------------------------------------------------------

    def row(self, key: str) -> DownloadRow | None:
        return self.model.get(key)

    def start(self, repo_id: str, quant: str | None = None, *, allow_unfit: bool = False) -> str:
        """Download ``repo_id`` (``quant``, or the picker's choice); the key of its row."""
        existing = self._existing(repo_id, quant)
        if existing is not None:
            if existing.state.active or existing.state is DownloadState.ELSEWHERE:
                self.already_running.emit(existing.key)
                return existing.key
            if existing.state.resumable:
                self.resume(existing.key, allow_unfit=allow_unfit)
                return existing.key
        key = f"{repo_id}:{quant}" if quant else repo_id
        row = DownloadRow(key=key, repo_id=repo_id, quant=quant, state=DownloadState.PLANNING)
        self._set(row)
        self._launch(_Attempt(key=key, repo_id=repo_id, quant=quant, allow_unfit=allow_unfit))
        return key

    def pause(self, key: str) -> None:
        row = self.model.get(key)
        if row is None:
            return
        attempt = self._attempts.get(row.key.lower())
        if attempt is not None:
            if attempt.intent is not _Intent.CANCEL:
                attempt.intent = _Intent.PAUSE
                self._set(replace(row, state=DownloadState.PAUSING, speed_bps=0.0, eta_s=None))
            attempt.cancel.set()
        elif row.state is DownloadState.QUEUED:  # restored, not started: the next start must not resume it
            self._set(replace(row, state=DownloadState.PAUSED))
            run_query(
                lambda: self._queue.set_state(row.key, QueueState.PAUSED),
                lambda _: None,
                self._on_background_error,
                name="download pause queued",
            )

    def resume(self, key: str, *, allow_unfit: bool = False) -> None:
        row = self.model.get(key)
        if row is None or not row.state.resumable or row.key.lower() in self._attempts:
            return
        self._set(replace(row, state=DownloadState.PLANNING, error=None, speed_bps=0.0, eta_s=None))
        self._launch(
            _Attempt(key=row.key, repo_id=row.repo_id, quant=row.quant, allow_unfit=allow_unfit),
        )

    def cancel(self, key: str) -> None:
        """Stop it and delete its partial files (a finished one only leaves the list)."""
        row = self.model.get(key)
        if row is None or row.state is DownloadState.ELSEWHERE:
            return
        if row.state is DownloadState.DONE:
            self._drop(row.key)
            return
        attempt = self._attempts.get(row.key.lower())
        if attempt is not None:
            attempt.intent = _Intent.CANCEL
            self._set(replace(row, state=DownloadState.CANCELLING, speed_bps=0.0, eta_s=None))
            attempt.cancel.set()
            return
        self._set(replace(row, state=DownloadState.CANCELLING))
        self._discard(row.key)

    def clear_finished(self) -> None:
        """Take the finished downloads off the list (and out of the queue file)."""
        done = [r.key for r in self.model.rows if r.state is DownloadState.DONE]
        for key in done:
            self._drop(key)
        if done:
            run_query(self._queue.prune_done, lambda _: None, self._on_background_error, name="prune done")

    def restore(self) -> None:
        """List the queue a previous run left (after a quit, a restart or a crash); resume what was
        downloading when it stopped ("queued"), keep paused and failed ones for the user."""
        run_query(self._read_queue, self._on_restored, self._on_restore_failed, name="download queue")

    def hub_page_url(self, repo_id: str) -> str:
        """The model's page on the Hub (where its licence is accepted)."""
        return f"{self._downloader.endpoint_url}/{repo_id}"

    def sign_in_url(self) -> str:
        return f"{self._downloader.endpoint_url}/settings/tokens"

    @property
    def active_keys(self) -> tuple[str, ...]:
        return tuple(a.key for a in self._attempts.values())

    # --- running ---------------------------------------------------------------------------------------

    def _launch(self, attempt: _Attempt) -> None:
        self._attempts[attempt.key.lower()] = attempt
        run_stream(
            _as_stream(lambda: self._pull(attempt)),
            lambda _: None,
            lambda outcome: self._on_done(attempt, outcome),
            lambda exc: self._on_error(attempt, exc),
            cancel=attempt.cancel,
            name=f"download {attempt.key}",
            which=Pool.LONG,
        )
        if not self.timer.isActive():
            self.timer.start()

    def _pull(self, attempt: _Attempt) -> PullOutcome:  # pool thread
        plan = plan_pull(
            attempt.repo_id,
            attempt.quant,
            machine=self._machine,
            queue=self._queue,
            library=self._library,
            downloader=self._downloader,
            cancel=attempt.cancel,
        )
        with plan:
            if attempt.cancel.is_set() and plan.already_installed is None:
                raise DownloadCancelled(f"{plan.key}: paused before it started")
            try:
                return execute_pull(
                    plan,
                    queue=self._queue,
                    downloader=self._downloader,
                    library=self._library,
                    progress=attempt.on_progress,
                    cancel=attempt.cancel,
                    allow_unfit=attempt.allow_unfit,
                    on_start=attempt.on_start,
                )
            except PullPaused:
                if attempt.intent is _Intent.RUN:  # the app is quitting: resume it at the next start
                    self._queue.set_state_after_error(plan.key, QueueState.QUEUED)
                raise
            except DiskFullError:
                attempt.shortfall_bytes = self._shortfall(plan)
                raise

    def _shortfall(self, plan: PullPlan) -> int | None:  # pool thread
        """Bytes to free before the download fits (the core's check: what is missing plus its reserve)."""
        if plan.variant is None:
            return None
        try:
            short = self._downloader.shortfall_bytes(
                plan.repo_id, plan.variant.all_files, revision=plan.revision
            )
        except OSError:
            return None
        return short or None

    def _tick(self) -> None:
        """Coalesced progress (one `progressed` per tick at most) and the stall watchdog."""
        now = time.monotonic()
        updates: list[DownloadRow] = []
        for attempt in list(self._attempts.values()):
            with attempt.lock:
                latest, seq, planned = attempt.latest, attempt.seq, attempt.planned
                watching, quiet_s = attempt.watching, now - attempt.last_activity
            row = self.model.get(attempt.key)
            if row is None:
                continue
            new = row
            if planned is not None and not attempt.planned_seen:
                attempt.planned_seen = True
                key, quant, total, have = planned
                if key != attempt.key:
                    self._rekey(attempt, key)
                    self.model.upsert(replace(new, key=key, quant=quant), old_key=row.key)
                    new = replace(new, key=key, quant=quant)
                new = replace(new, total_bytes=total, done_bytes=max(have, new.done_bytes))
                if new.state is DownloadState.PLANNING:
                    new = replace(new, state=DownloadState.RUNNING)
            if latest is not None and seq != attempt.seen_seq:
                attempt.seen_seq = seq
                new = replace(
                    new,
                    done_bytes=latest.done_bytes,
                    total_bytes=latest.total_bytes,
                    speed_bps=latest.speed_bps,
                    eta_s=latest.eta_s,
                    file=latest.file,
                    file_index=latest.file_index,
                    file_count=latest.file_count,
                )
                if new.state in (DownloadState.PLANNING, DownloadState.RUNNING, DownloadState.VERIFYING):
                    phase = DownloadState.VERIFYING if latest.phase == "verify" else DownloadState.RUNNING
                    new = replace(new, state=phase)
                elif new.state is DownloadState.RETRYING and latest.fetched_bytes > 0:
                    new = replace(new, state=DownloadState.RUNNING)
            downloading = latest is None or latest.phase == "download"
            # a resumed attempt that receives nothing is left to the core's own read timeout and retries,
            # so a dead network ends in its error (retry) instead of resuming forever
            moved = not attempt.after_stall or (latest is not None and latest.fetched_bytes > 0)
            stalled = watching and downloading and moved and quiet_s >= self.stall_after_s
            if stalled and attempt.intent is _Intent.RUN:
                attempt.intent = _Intent.STALL
                new = replace(new, state=DownloadState.RETRYING, speed_bps=0.0, eta_s=None)
                attempt.cancel.set()
            if new != row:
                updates.append(new)
        if updates:
            self.model.update_many(updates)
            self.progressed.emit(tuple(updates))
        if not self._attempts:
            self.timer.stop()

    def _rekey(self, attempt: _Attempt, key: str) -> None:
        self._attempts.pop(attempt.key.lower(), None)
        attempt.key = key
        self._attempts[key.lower()] = attempt

    def _finish(self, attempt: _Attempt) -> DownloadRow | None:
        """The attempt is over: its last progress applied, its row as it stands."""
        self._tick()
        if self._attempts.get(attempt.key.lower()) is attempt:
            del self._attempts[attempt.key.lower()]
        if not self._attempts:
            self.timer.stop()
        return self.model.get(attempt.key)

    def _on_done(self, attempt: _Attempt, outcome: PullOutcome | None) -> None:
        row = self._finish(attempt)
        if row is None:
            return
        if outcome is None:  # cancelled before it began
            self._stopped(attempt, row, kept=None)
            return
        total = row.total_bytes or outcome.fetched_bytes
        done = replace(
            row,
            key=outcome.key,
            state=DownloadState.DONE,
            done_bytes=total,
            total_bytes=total,
            speed_bps=0.0,
            eta_s=None,
            error=None,
        )
        self._set(done, old_key=row.key)
        if outcome.entry is not None:
            self.installed.emit(outcome.entry)

    def _on_error(self, attempt: _Attempt, exc: BaseException) -> None:
        row = self._finish(attempt)
        if row is None:
            return
        if isinstance(exc, DownloadCancelled | HubRequestCancelled) and not isinstance(
            exc, DownloadInProgressError
        ):
            kept = exc.pause.kept_bytes if isinstance(exc, PullPaused) else None
            self._stopped(attempt, row, kept=kept)
            return
        if attempt.intent is _Intent.CANCEL:
            self._discard(row.key)
            return
        shown = present(exc)
        if isinstance(exc, DownloadInProgressError):
            self._set(replace(row, state=DownloadState.ELSEWHERE, error=shown, speed_bps=0.0, eta_s=None))
            return
        if isinstance(exc, DiskFullError) and attempt.shortfall_bytes:
            shown = replace(
                shown,
                hint=f"Free at least {fmt.bytes_text(attempt.shortfall_bytes)} on this disk "
                "(delete models you no longer use), then retry: what was downloaded is kept.",
            )
        self._set(replace(row, state=DownloadState.FAILED, error=shown, speed_bps=0.0, eta_s=None))
        if isinstance(exc, VariantDoesNotFitError):
            self.does_not_fit.emit(exc)

    def _stopped(self, attempt: _Attempt, row: DownloadRow, *, kept: int | None) -> None:
        if attempt.intent is _Intent.STALL:
            retry = _Attempt(
                key=row.key,
                repo_id=row.repo_id,
                quant=row.quant,
                allow_unfit=attempt.allow_unfit,
                after_stall=True,
            )
            self._set(replace(row, state=DownloadState.RETRYING, stalls=row.stalls + 1))
            self._launch(retry)
            return
        if attempt.intent is _Intent.CANCEL:
            self._discard(row.key)
            return
        done = kept if kept is not None else row.done_bytes
        self._set(replace(row, state=DownloadState.PAUSED, done_bytes=done, speed_bps=0.0, eta_s=None))

    def _discard(self, key: str) -> None:
        """Forget the interrupted download and delete its partial files (the core's discard: only the
        queue's item, never a model the library has)."""

        def done(_result: DiscardResult | None) -> None:
            self._drop(key)

        def failed(exc: BaseException) -> None:
            row = self.model.get(key)
            if row is not None:
                self._set(replace(row, state=DownloadState.FAILED, error=present(exc)))

        run_query(
            lambda: self._queue.discard(key, downloader=self._downloader),
            done,
            failed,
            name=f"discard {key}",
        )

    def _drop(self, key: str) -> None:
        row = self.model.get(key)
        if row is None:
            return
        self.model.remove(key)
        self.removed.emit(row.key)

    def _set(self, row: DownloadRow, *, old_key: str | None = None) -> None:
        self.model.upsert(row, old_key=old_key)
        self.changed.emit(row)

    def _existing(self, repo_id: str, quant: str | None) -> DownloadRow | None:
        if quant:
            return self.model.get(f"{repo_id}:{quant}")
        rows = [
            r
            for r in self.model.rows
            if r.repo_id.lower() == repo_id.lower() and r.state is not DownloadState.DONE
        ]
        return rows[0] if rows else None

    def _on_background_error(self, exc: BaseException) -> None:
        if self._errors is not None:
            self._errors.show(exc)

    # --- restart recovery -----------------------------------------------------------------------------

    def _read_queue(self) -> tuple[RestoredItem, ...]:  # pool thread
        self._queue.recover(locks_dir=self._downloader.locks_dir)
        restored = []
        for item in self._queue.pending():
            have = 0
            for name in item.partial_keys:
                part = self._downloader.partial_dir / f"{name}.part"
                if part.is_file():
                    have += part.stat().st_size
            restored.append(RestoredItem(item, have))
        return tuple(restored)

    def _on_restored(self, items: tuple[RestoredItem, ...]) -> None:
        for restored in items:
            item = restored.item
            existing = self.model.get(item.key)
            if existing is not None and existing.state is not DownloadState.DONE:
                continue
            state, error = _restored_state(item)
            self._set(
                DownloadRow(
                    key=item.key,
                    repo_id=item.repo_id,
                    quant=item.quant,
                    state=state,
                    done_bytes=restored.have_bytes,
                    total_bytes=item.total_bytes,
                    file_count=len(item.files),
                    error=error,
                )
            )
            if state is DownloadState.QUEUED and self.resume_queued:
                self.resume(item.key)
        self.restored.emit()

    def _on_restore_failed(self, exc: BaseException) -> None:
        if self._errors is not None:
            self._errors.show(exc, retry=self.restore)
        self.restored.emit()


def _restored_state(item: QueueItem) -> tuple[DownloadState, Presentation | None]:
    if item.state is QueueState.PAUSED:
        return DownloadState.PAUSED, None
    if item.state is QueueState.FAILED:
        return DownloadState.FAILED, present(DownloadError(item.error or "the download stopped"))
    if item.state is QueueState.RUNNING:  # its owner is alive: another KAIHE process downloads it
        owner = f"process {item.owner_pid}" if item.owner_pid else "another process"
        return DownloadState.ELSEWHERE, present(
            DownloadInProgressError(f"{item.key} is being downloaded by {owner}", pid=item.owner_pid)
        )
    return DownloadState.QUEUED, None


def _as_stream(fn: Callable[[], T]) -> Callable[[], Generator[None, None, T]]:
    """A call as a stream with no items: run_stream then hands its cancel Event to workers.await_all."""

    def stream() -> Generator[None, None, T]:
        return fn()
        yield  # a generator: run_stream's loop calls it once and takes the return value

    return stream
