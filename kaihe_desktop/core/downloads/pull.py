"""The pull use case, one path for the CLI, the window and the queue: plan it, then execute the plan.

``plan_pull`` decides what a pull of ``REPO[:QUANT]`` does: nothing when the library has it, resume a
queued download as it was queued (no fit check, no header read), or list the repo, read one header and let
the quant picker choose (or judge the named quant) for the machine. The plan holds the download lock of
its files from before any byte of them is read until it is executed or released (``with plan_pull(...) as
plan``), so a second pull of the same files is refused with DownloadInProgressError before it moves a byte.

``execute_pull`` queues the plan, downloads under that lock, verifies, adds the model to the library and
marks the queue item "done"; a failure marks it "failed" and is raised, a pause (``cancel``) marks it
"paused", keeps its partial files and raises PullPaused. ``run_queue`` works through the queue with it.
``remove`` is the other end: a library model, or else an interrupted download and its partial files.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from huggingface_hub import HfApi

from kaihe_desktop.core.downloads.fetch import (
    Downloader,
    DownloadResult,
    ProgressCallback,
    partial_key,
    safe_relative_path,
)
from kaihe_desktop.core.downloads.lock import ALREADY, DownloadLock, ensure_not_downloading
from kaihe_desktop.core.downloads.queue import (
    DiscardResult,
    DownloadQueue,
    QueueItem,
    QueueState,
    resolve_variant,
)
from kaihe_desktop.core.errors import (
    DoesNotFitError,
    DownloadCancelled,
    DownloadInProgressError,
    KaiheError,
    ModelNotFoundError,
    UnsafeFilenameError,
)
from kaihe_desktop.core.fit.advice import Advice, Severity, warnings
from kaihe_desktop.core.fit.quants import Pick, QuantOption, pick
from kaihe_desktop.core.gguf.meta import read_remote
from kaihe_desktop.core.hub.listing import list_repo_files, probe_endpoint, run_with_deadline
from kaihe_desktop.core.hub.variants import RepoFile, Variant, find_variant, group_variants
from kaihe_desktop.core.library import DeleteResult, Library, LibraryEntry, LibrarySource

if TYPE_CHECKING:
    from kaihe_desktop.core.fit.plan import Plan
    from kaihe_desktop.core.machine.spec import Machine

HUB_LISTING_TIMEOUT_S = 60.0
HUB_PROBE_TIMEOUT_S = 4.0
INTERRUPTED = "interrupted"  # the error a pause records when the process itself was interrupted
T = TypeVar("T")


@dataclass(frozen=True)
class PullPlan:
    """What a pull will do, decided before any byte of the model is fetched.

    ``fits`` is None for a resume: the fit was judged when the download was queued. ``memory`` is the fit
    plan of ``variant`` (its numbers: headroom, margin, placement), ``pick`` the picker's choice with its
    reason and every candidate when no quant was named. While ``lock`` is held no other process or thread
    can download these files; ``release()`` (or leaving ``with``) frees it, ``execute_pull`` runs under it.
    """

    repo_id: str
    quant: str | None  # as asked; None lets the picker choose
    revision: str
    variant: Variant | None  # None only when already installed
    fits: bool | None
    resume: bool = False
    have_bytes: int = 0  # already on disk in partial files
    pick: Pick | None = None
    memory: Plan | None = None
    warnings: tuple[Advice, ...] = ()  # critical first, then warnings
    already_installed: LibraryEntry | None = None
    lock: DownloadLock | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> str:
        quant = self.variant.quant if self.variant is not None else self.quant
        return f"{self.repo_id}:{quant}" if quant else self.repo_id

    @property
    def reason(self) -> str | None:
        """The picker's reason when it chose the variant; None for a named quant or a resume."""
        return self.pick.reason if self.pick is not None else None

    @property
    def files(self) -> tuple[RepoFile, ...]:
        """Every file the download fetches: shards in order, then the projector."""
        return self.variant.all_files if self.variant is not None else ()

    @property
    def total_bytes(self) -> int:
        return self.variant.total_bytes if self.variant is not None else 0

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> PullPlan:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


@dataclass(frozen=True)
class PullOutcome:
    """How one pull ended. ``error`` is set only by ``run_queue``, which goes on after a failed item."""

    key: str
    entry: LibraryEntry | None
    result: DownloadResult | None = None
    item: QueueItem | None = None  # the queue item it ran as (None when it was already installed)
    already_installed: bool = False
    error: str | None = None

    @property
    def fetched_bytes(self) -> int:
        return self.result.fetched_bytes if self.result is not None else 0


@dataclass(frozen=True)
class PauseRecord:
    key: str
    kept_bytes: int  # in partial files, resumed by the next pull
    total_bytes: int
    recorded: bool  # False when the queue file could not be written (the item resumes anyway)


class PullPaused(DownloadCancelled):
    """The pull was paused: its item is "paused" and its partial files are kept for the next pull."""

    def __init__(self, message: str, *, pause: PauseRecord) -> None:
        super().__init__(message)
        self.pause = pause


class VariantDoesNotFitError(DoesNotFitError):
    """The variant does not fit this machine with the safety margin; ``plan`` has its numbers."""

    def __init__(self, message: str, *, plan: PullPlan, shortfall_bytes: int | None) -> None:
        super().__init__(message)
        self.plan = plan
        self.shortfall_bytes = shortfall_bytes


# --- planning -----------------------------------------------------------------------------------------


def plan_pull(
    repo_id: str,
    quant: str | None = None,
    *,
    machine: Machine | Callable[[], Machine],
    queue: DownloadQueue,
    library: Library,
    downloader: Downloader,
    revision: str = "main",
    api: HfApi | None = None,
    cancel: threading.Event | None = None,
    listing_timeout_s: float = HUB_LISTING_TIMEOUT_S,
    probe_timeout_s: float = HUB_PROBE_TIMEOUT_S,
) -> PullPlan:
    """The plan for pulling ``repo_id`` (``quant``, or the picker's choice), holding its download lock.

    ``machine`` may be a callable: it is only called when a fit has to be judged. Asks the Hub nothing
    when the library has the model, and only for the file list when a queued download resumes.
    """
    installed = installed_entry(library, repo_id, quant)
    if installed is not None:
        return PullPlan(
            repo_id=repo_id,
            quant=quant,
            revision=revision,
            variant=None,
            fits=True,
            already_installed=installed,
        )
    hub = api if api is not None else _api(downloader)
    pending = queue.find_pending(repo_id, quant)
    if pending is not None:
        return plan_resume(
            pending,
            downloader=downloader,
            resolve=lambda item: _bounded(
                lambda: resolve_variant(item.repo_id, item.quant, api=hub),
                what=f"listing {item.repo_id}",
                api=hub,
                timeout_s=listing_timeout_s,
                probe_timeout_s=probe_timeout_s,
            ),
        )
    variants = _bounded(
        lambda: group_variants(list_repo_files(hub, repo_id)),
        what=f"listing {repo_id}",
        api=hub,
        timeout_s=listing_timeout_s,
        probe_timeout_s=probe_timeout_s,
    )
    if not variants:
        raise ModelNotFoundError(f"{repo_id}: no GGUF model files in this repo")
    wanted = find_variant(variants, quant) if quant else None
    lock: DownloadLock | None = None
    if wanted is not None:
        _check_names(wanted)  # before any byte of it is read
        lock = downloader.lock(repo_id, wanted, revision=revision).acquire()  # a second pull stops here
    else:
        variants = tuple(v for v in variants if _names_are_safe(v))
        if not variants:
            raise UnsafeFilenameError(f"{repo_id}: every variant has a file name that leaves its folder")
    try:
        plan = _judge(
            repo_id,
            quant,
            variants,
            wanted,
            machine=machine() if callable(machine) else machine,
            downloader=downloader,
            revision=revision,
            cancel=cancel,
        )
        if lock is None:
            assert plan.variant is not None
            lock = downloader.lock(repo_id, plan.variant, revision=revision).acquire()
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return replace(plan, lock=lock)


def plan_resume(
    item: QueueItem,
    *,
    downloader: Downloader,
    resolve: Callable[[QueueItem], Variant] | None = None,
) -> PullPlan:
    """Resume a queued item as it was queued (no fit check, no header read), holding its lock.

    Refused with DownloadInProgressError before the Hub is asked anything when another process downloads
    the files the item names.
    """
    ensure_not_downloading(downloader.locks_dir, item.partial_keys, what=item.key, refusal=ALREADY)
    resolver = resolve or (lambda i: resolve_variant(i.repo_id, i.quant, api=_api(downloader)))
    try:
        variant = resolver(item)
    except KaiheError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line, whatever the listing raised
        raise KaiheError(f"cannot resume {item.key}: {exc}") from exc
    lock = downloader.lock(item.repo_id, variant, revision=item.revision).acquire()
    try:
        have = sum(
            s.have_bytes for s in downloader.partial_state(item.repo_id, variant, revision=item.revision)
        )
    except BaseException:
        lock.release()
        raise
    return PullPlan(
        repo_id=item.repo_id,
        quant=item.quant,
        revision=item.revision,
        variant=variant,
        fits=None,
        resume=True,
        have_bytes=have,
        lock=lock,
    )


def installed_entry(library: Library, repo_id: str, quant: str | None = None) -> LibraryEntry | None:
    """The library's present, downloaded model of ``repo_id`` (of ``quant``, when given)."""
    for entry in library.entries():
        if entry.repo_id is None or entry.repo_id.lower() != repo_id.lower() or not entry.present:
            continue
        if entry.source != LibrarySource.HUB:
            continue
        if quant is None or (entry.quant or "").upper() == quant.upper():
            return entry
    return None


def _judge(
    repo_id: str,
    quant: str | None,
    variants: tuple[Variant, ...],
    wanted: Variant | None,
    *,
    machine: Machine,
    downloader: Downloader,
    revision: str,
    cancel: threading.Event | None,
) -> PullPlan:
    """Read one header (the named variant's, or the smallest one-file variant's) and plan for the machine."""
    header_of = wanted or min(variants, key=lambda v: (len(v.files), v.size_bytes))
    # 429/5xx/refused are retried inside read_remote by core's one cancellable loop (hub_retry)
    meta = read_remote(
        repo_id,
        header_of.first_file,
        revision=revision,
        token=downloader.token,
        endpoint=downloader.endpoint,
        cancel=cancel,
    )
    options = [
        QuantOption(quant=v.quant, size_bytes=v.size_bytes, files=tuple(f.path for f in v.files))
        for v in variants
    ]
    chosen = pick(options, meta, machine)
    picked: Pick | None
    if wanted is None:
        variant, memory, fits, picked = find_variant(variants, chosen.quant), chosen.plan, chosen.fits, chosen
    else:
        candidate = next(c for c in chosen.candidates if c.option.quant.upper() == wanted.quant.upper())
        variant, memory, fits, picked = wanted, candidate.plan, candidate.fits, None
    advice = tuple(a for a in warnings(memory) if a.severity in (Severity.CRITICAL, Severity.WARNING))
    return PullPlan(
        repo_id=repo_id,
        quant=quant,
        revision=revision,
        variant=variant,
        fits=fits,
        pick=picked,
        memory=memory,
        warnings=advice,
    )


def _api(downloader: Downloader) -> HfApi:
    return HfApi(endpoint=downloader.endpoint, token=downloader.token)


def _bounded(fn: Callable[[], T], *, what: str, api: HfApi, timeout_s: float, probe_timeout_s: float) -> T:
    """A Hub listing within ``timeout_s``; a refused connection fails in seconds (the probe), not after
    huggingface_hub's own retries (1+2+4+8+8 s). In a thread, so an interrupt stops the wait at once."""

    def probe() -> None:
        probe_endpoint(api.endpoint, timeout_s=probe_timeout_s)

    return run_with_deadline(fn, timeout_s=timeout_s, what=what, probe=probe)


def _check_names(variant: Variant) -> None:
    for f in variant.all_files:
        safe_relative_path(f.path)


def _names_are_safe(variant: Variant) -> bool:
    try:
        _check_names(variant)
    except UnsafeFilenameError:
        return False
    return True


# --- executing ----------------------------------------------------------------------------------------


def check_fit(plan: PullPlan, *, allow_unfit: bool = False) -> None:
    """VariantDoesNotFitError (with the plan's numbers) when the variant does not fit and that is not
    allowed; a resume and an installed model pass."""
    if plan.fits is not False or allow_unfit:
        return
    refusal = next((a for a in plan.warnings if a.code == "does_not_fit"), None)
    why = refusal.message.removeprefix("does not fit: ") if refusal is not None else "not enough memory"
    shortfall = refusal.numbers.get("shortfall_bytes") if refusal is not None else None
    raise VariantDoesNotFitError(
        f"{plan.key} does not fit this machine: {why}",
        plan=plan,
        shortfall_bytes=int(shortfall) if shortfall is not None else None,
    )


def execute_pull(
    plan: PullPlan,
    *,
    queue: DownloadQueue,
    downloader: Downloader,
    library: Library,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    allow_unfit: bool = False,
    on_start: Callable[[PullPlan], None] | None = None,
) -> PullOutcome:
    """Queue the plan's variant and download it under its lock until the library lists it ("done").

    VariantDoesNotFitError before anything is queued when it does not fit (unless ``allow_unfit``);
    PullPaused when ``cancel`` is set (item "paused", partial files kept); any other KaiheError marks the
    item "failed" and is raised. ``on_start`` is called once the item is "running", before the first byte.
    """
    if plan.already_installed is not None:
        return PullOutcome(key=plan.key, entry=plan.already_installed, already_installed=True)
    if plan.variant is None:
        raise ValueError("a pull plan without a variant has nothing to execute")
    check_fit(plan, allow_unfit=allow_unfit)
    variant = plan.variant
    lock = (
        plan.lock if plan.lock is not None else downloader.lock(plan.repo_id, variant, revision=plan.revision)
    )
    with lock:  # reentrant: the plan's own lock, held once more for the whole execution
        if not plan.resume:
            queue.add(
                plan.repo_id,
                variant.quant,
                revision=plan.revision,
                files=[f.path for f in variant.all_files],
                total_bytes=variant.total_bytes,
                partial_keys=[partial_key(plan.repo_id, plan.revision, f) for f in variant.all_files],
            )
        queue.set_state(plan.key, QueueState.RUNNING)
        if on_start is not None:
            on_start(plan)
        try:
            result = downloader.download_variant(
                plan.repo_id, variant, revision=plan.revision, progress=progress, cancel=cancel, lock=lock
            )
            entry = library.add_download(result)  # still under the lock: a removal cannot slip in before it
        except DownloadCancelled as exc:
            pause = record_pause(plan, queue=queue, downloader=downloader, error=str(exc))
            raise PullPaused(str(exc), pause=pause) from exc
        except KaiheError as exc:
            queue.set_state_after_error(plan.key, QueueState.FAILED, error=str(exc))
            raise
        except BaseException:  # KeyboardInterrupt, SystemExit: paused, the partial files are a valid prefix
            record_pause(plan, queue=queue, downloader=downloader, error=INTERRUPTED)
            raise
        queue.set_state(plan.key, QueueState.DONE)
    return PullOutcome(key=plan.key, entry=entry, result=result, item=queue.get(plan.key))


def record_pause(
    plan: PullPlan, *, queue: DownloadQueue, downloader: Downloader, error: str = INTERRUPTED
) -> PauseRecord:
    """Mark the plan's item "paused" (never raising: another error may be on its way) and count the bytes
    its partial files keep. For a front end that stops waiting for a download it has cancelled."""
    recorded = queue.set_state_after_error(plan.key, QueueState.PAUSED, error=error)
    kept = 0
    if plan.variant is not None:
        try:
            states = downloader.partial_state(plan.repo_id, plan.variant, revision=plan.revision)
            kept = sum(s.have_bytes for s in states)
        except OSError:
            kept = 0
    return PauseRecord(key=plan.key, kept_bytes=kept, total_bytes=plan.total_bytes, recorded=recorded)


def run_queue(
    *,
    queue: DownloadQueue,
    downloader: Downloader,
    library: Library,
    resolve: Callable[[QueueItem], Variant] | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    on_start: Callable[[QueueItem], None] | None = None,
    include_failed: bool = True,
) -> list[PullOutcome]:
    """Work through pending items in order with ``execute_pull``. A pause stops the run (PullPaused, a
    DownloadCancelled, is raised; the item is "paused"); any other error marks its item "failed" and the
    run goes on with the next one. An item another process downloads is left to it, untouched."""
    queue.recover(locks_dir=downloader.locks_dir)
    outcomes: list[PullOutcome] = []
    for item in queue.pending():
        if item.state is QueueState.RUNNING:  # its owner is alive and downloading it (recover() said so)
            continue
        if item.state is QueueState.FAILED and not include_failed:
            continue
        if on_start is not None:
            on_start(item)
        try:
            plan = plan_resume(item, downloader=downloader, resolve=resolve)
        except DownloadInProgressError as exc:  # another process took it: its item, not ours to mark
            outcomes.append(PullOutcome(key=item.key, entry=None, item=item, error=str(exc)))
            continue
        except KaiheError as exc:
            queue.set_state_after_error(item.key, QueueState.FAILED, error=str(exc))
            outcomes.append(PullOutcome(key=item.key, entry=None, item=item, error=str(exc)))
            continue
        with plan:
            try:
                outcomes.append(
                    execute_pull(
                        plan,
                        queue=queue,
                        downloader=downloader,
                        library=library,
                        progress=progress,
                        cancel=cancel,
                    )
                )
            except DownloadCancelled:
                raise
            except KaiheError as exc:  # recorded "failed" by execute_pull
                outcomes.append(
                    PullOutcome(key=item.key, entry=None, item=queue.get(item.key), error=str(exc))
                )
    return outcomes


# --- removing -----------------------------------------------------------------------------------------


def remove(
    key: str, *, library: Library, queue: DownloadQueue, downloader: Downloader
) -> DeleteResult | DiscardResult:
    """``kaihe rm`` / the window's Remove: the library model named ``key`` (its owned files), or else the
    interrupted download REPO:QUANT and its partial files. ModelNotFoundError when neither exists;
    DownloadInProgressError while a process downloads its files."""
    try:
        plan = library.plan_delete(key)
    except ModelNotFoundError:
        discarded = queue.discard(key, downloader=downloader)
        if discarded is None:
            raise
        return discarded
    return library.execute(plan)


__all__ = [
    "HUB_LISTING_TIMEOUT_S",
    "HUB_PROBE_TIMEOUT_S",
    "PauseRecord",
    "PullOutcome",
    "PullPaused",
    "PullPlan",
    "VariantDoesNotFitError",
    "check_fit",
    "execute_pull",
    "installed_entry",
    "plan_pull",
    "plan_resume",
    "record_pause",
    "remove",
    "run_queue",
]
