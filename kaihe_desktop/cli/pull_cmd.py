"""`kaihe pull REPO[:QUANT] [--yes] [--json]`: download a verified variant into the library.

Without ``:QUANT`` the quant picker chooses (and the reason is printed). A variant that does not fit this
machine (or the --profile) is refused with the headroom warning unless --yes. Ctrl-C pauses: the partial
files stay, and running the same command again fetches only what is missing. A download interrupted in any
way (Ctrl-C, crash, SIGKILL) is resumed as it was queued, without asking the Hub for the fit again.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar

from kaihe_desktop.cli.common import add_json_arg, add_profile_arg, emit_json, human_bytes, machine_from_args
from kaihe_desktop.core.downloads.fetch import (
    Downloader,
    DownloadProgress,
    DownloadResult,
    partial_key,
    safe_relative_path,
)
from kaihe_desktop.core.downloads.lock import ALREADY, DownloadLock, ensure_not_downloading
from kaihe_desktop.core.downloads.queue import DownloadQueue, QueueItem
from kaihe_desktop.core.errors import (
    DoesNotFitError,
    DownloadCancelled,
    KaiheError,
    ModelNotFoundError,
    UnsafeFilenameError,
)
from kaihe_desktop.core.hub.variants import Variant, find_variant
from kaihe_desktop.core.library import Library, LibraryEntry
from kaihe_desktop.core.names import check_repo_id, shown

HUB_LISTING_TIMEOUT_S = 60.0
HUB_PROBE_TIMEOUT_S = 4.0
T = TypeVar("T")
PAUSE_GRACE_S = 0.8  # after Ctrl-C, how long the download thread gets to stop before we report the pause
_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "pull",
        help="download a model variant (resumable, sha256-verified) into the library",
        description=(
            "Download every file of one quant variant of a Hub repo (shards and vision projector), verify "
            "their sha256 against the Hub, and add the model to the library. Without :QUANT the best "
            "variant that fits this machine is picked. Interrupted downloads resume where they stopped."
        ),
    )
    parser.add_argument("model", metavar="REPO[:QUANT]", help="e.g. google/gemma-3-270m-GGUF:Q4_K_M")
    parser.add_argument("--yes", "-y", action="store_true", help="download even if it does not fit")
    parser.add_argument("--revision", default="main", help="Hub revision (branch, tag or commit)")
    add_json_arg(parser)
    add_profile_arg(parser)
    parser.set_defaults(handler=run)


def parse_model_ref(text: str) -> tuple[str, str | None]:
    """ "owner/name[:QUANT]" -> (repo_id, quant or None)."""
    repo_id, _, quant = text.strip().partition(":")
    if not _REPO_RE.match(repo_id) or ".." in repo_id:
        raise ModelNotFoundError(f"{shown(text)} is not a Hub repo name: expected OWNER/NAME[:QUANT]")
    check_repo_id(repo_id)  # the Hub's own rules, as one line instead of HFValidationError's traceback
    return repo_id, (quant.strip().upper() or None)


@dataclass(frozen=True)
class PullDecision:
    variant: Variant
    reason: str | None  # the picker's reason when it chose
    warnings: tuple[str, ...]
    fits: bool


def decide(
    repo_id: str,
    quant: str | None,
    args: argparse.Namespace,
    *,
    claim: Callable[[Variant], object] | None = None,
) -> PullDecision:
    """List the repo, read one header, plan the variant(s) for the machine: which one, and does it fit.

    ``claim`` gets a named variant before its header is read: a second pull of it is refused there,
    before it moves any byte.
    """
    from kaihe_desktop.core.fit.advice import Severity, warnings
    from kaihe_desktop.core.fit.quants import QuantOption, pick
    from kaihe_desktop.core.gguf.meta import read_remote
    from kaihe_desktop.core.hub.listing import list_repo_files
    from kaihe_desktop.core.hub.variants import group_variants

    def listing() -> tuple[Variant, ...]:
        from huggingface_hub import HfApi

        return group_variants(list_repo_files(HfApi(), repo_id))

    variants = _listing_call(listing, what=f"listing {repo_id}")
    if not variants:
        raise ModelNotFoundError(f"{repo_id}: no GGUF model files in this repo")
    wanted = find_variant(variants, quant) if quant else None
    if wanted is not None:
        _check_names(wanted)  # before any byte of it is read
        if claim is not None:
            claim(wanted)
    else:
        variants = tuple(v for v in variants if _names_are_safe(v))
        if not variants:
            raise UnsafeFilenameError(f"{repo_id}: every variant has a file name that leaves its folder")
    header_of = wanted or min(variants, key=lambda v: (len(v.files), v.size_bytes))
    # 429/5xx/refused are retried inside read_remote by core's one cancellable loop (hub_retry)
    meta = read_remote(repo_id, header_of.first_file, revision=args.revision)
    machine = machine_from_args(args)
    options = [
        QuantOption(quant=v.quant, size_bytes=v.size_bytes, files=tuple(f.path for f in v.files))
        for v in variants
    ]
    chosen = pick(options, meta, machine)
    if wanted is None:
        variant = find_variant(variants, chosen.quant)
        plan, reason = chosen.plan, chosen.reason
    else:
        variant = wanted
        plan = next(c.plan for c in chosen.candidates if c.option.quant.upper() == wanted.quant.upper())
        reason = None
    advice = [a for a in warnings(plan) if a.severity in (Severity.CRITICAL, Severity.WARNING)]
    fits = str(plan.placement) != "none"
    return PullDecision(variant=variant, reason=reason, warnings=tuple(a.message for a in advice), fits=fits)


def _listing_call(fn: Callable[[], T], *, what: str) -> T:
    """A Hub listing within HUB_LISTING_TIMEOUT_S; a refused connection fails in seconds (the probe), not
    after huggingface_hub's own retries (1+2+4+8+8 s). In a thread, so Ctrl-C stops the wait at once."""
    from huggingface_hub import constants

    from kaihe_desktop.core.hub.listing import probe_endpoint, run_with_deadline

    def probe() -> None:
        probe_endpoint(constants.ENDPOINT, timeout_s=HUB_PROBE_TIMEOUT_S)

    return run_with_deadline(fn, timeout_s=HUB_LISTING_TIMEOUT_S, what=what, probe=probe)


def _check_names(variant: Variant) -> None:
    for f in variant.all_files:
        safe_relative_path(f.path)


def _names_are_safe(variant: Variant) -> bool:
    try:
        _check_names(variant)
    except UnsafeFilenameError:
        return False
    return True


class ProgressBar:
    """One line on stderr, redrawn in place on a terminal; a line per 10% otherwise."""

    def __init__(self, stream: TextIO, *, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self._last_step = -1
        self._last_draw = 0.0

    def __call__(self, p: DownloadProgress) -> None:
        if not self.enabled:
            return
        pct = 100.0 * p.fraction
        speed = f"{human_bytes(p.speed_bps)}/s" if p.speed_bps else "-"
        eta = _eta(p.eta_s)
        files = f" file {p.file_index}/{p.file_count}" if p.file_count > 1 else ""
        width = 30
        filled = int(width * p.fraction)
        bar = "#" * filled + "-" * (width - filled)
        label = "verifying" if p.phase == "verify" else "done" if p.phase == "done" else "downloading"
        line = (
            f"{label} [{bar}] {pct:5.1f}% {human_bytes(p.done_bytes)} / {human_bytes(p.total_bytes)}"
            f"  {speed}  ETA {eta}{files}"
        )
        now = time.monotonic()
        if self.tty:
            if p.phase == "done" or now - self._last_draw >= 0.2:
                self.stream.write("\r" + line.ljust(100))
                if p.phase == "done":
                    self.stream.write("\n")
                self.stream.flush()
                self._last_draw = now
            return
        step = int(pct // 10)
        if step != self._last_step or p.phase == "done":
            self._last_step = step
            self.stream.write(line + "\n")
            self.stream.flush()


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _download_in_thread(
    downloader: Downloader,
    repo_id: str,
    variant: Variant,
    *,
    revision: str,
    progress: ProgressBar,
    lock: DownloadLock,
) -> DownloadResult:
    """Run the download in a worker so Ctrl-C in the main thread becomes a clean pause (partials kept)."""
    cancel = threading.Event()
    finished = threading.Event()  # not Thread.join: a Ctrl-C inside join() can leave the thread looking dead
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = downloader.download_variant(
                repo_id, variant, revision=revision, progress=progress, cancel=cancel, lock=lock
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            box["error"] = exc
        finally:
            finished.set()

    threading.Thread(target=work, name="kaihe-pull", daemon=True).start()
    try:
        while not finished.wait(0.2):
            pass
    except KeyboardInterrupt:
        cancel.set()
        # Core's waits and reads see `cancel` within a fraction of a second; the grace bounds the rest (a HEAD
        # to a stalled server, the sha256 of a big file): the partial file stays a valid prefix either way.
        finished.wait(PAUSE_GRACE_S)
        if finished.is_set() and "error" not in box:  # it had just finished
            done: DownloadResult = box["result"]
            return done
        raise KeyboardInterrupt from box.get("error")
    if "error" in box:
        raise box["error"]
    result: DownloadResult = box["result"]
    return result


def _entry_json(entry: LibraryEntry, *, fetched: int, reason: str | None) -> dict[str, Any]:
    data = entry.public_dict()
    data["fetched_bytes"] = fetched
    data["reason"] = reason
    return data


def run(args: argparse.Namespace) -> int:
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # our own lines, not its retry chatter
    repo_id, quant = parse_model_ref(args.model)
    library = Library()
    queue = DownloadQueue()
    out = sys.stdout
    say = (lambda text: print(text, file=sys.stderr)) if args.json else (lambda text: print(text, file=out))

    installed = _installed(library, repo_id, quant)
    if installed is not None:
        say(f"{installed.name} is already in the library: {installed.path}")
        if args.json:
            emit_json(_entry_json(installed, fetched=0, reason=None))
        return 0

    downloader = Downloader()
    with contextlib.ExitStack() as held:  # the download lock, released once the library lists the model
        pulled = _pull_locked(args, repo_id, quant, downloader, queue, library, held, say)
    if pulled is None:
        return 130
    result, entry = pulled.result, pulled.entry
    say(
        f"verified sha256 of {len(result.files)} file(s); added {entry.name} to the library "
        f"({human_bytes(entry.size_bytes)}): {entry.path}"
    )
    if args.json:
        emit_json(_entry_json(entry, fetched=result.fetched_bytes, reason=pulled.reason))
    return 0


@dataclass(frozen=True)
class _Pulled:
    result: DownloadResult
    entry: LibraryEntry
    reason: str | None


def _pull_locked(
    args: argparse.Namespace,
    repo_id: str,
    quant: str | None,
    downloader: Downloader,
    queue: DownloadQueue,
    library: Library,
    held: contextlib.ExitStack,
    say: Callable[[str], None],
) -> _Pulled | None:
    """Claim the variant's download lock (DownloadInProgressError when another process holds it), then
    queue, download and list it under that lock, held by ``held``; None when it was paused."""
    claimed: list[DownloadLock] = []

    def claim(variant: Variant, revision: str) -> DownloadLock:
        if not claimed:
            claimed.append(held.enter_context(downloader.lock(repo_id, variant, revision=revision)))
        return claimed[0]

    pending = queue.find_pending(repo_id, quant)
    reason: str | None = None
    if pending is not None:
        # refused at once, before asking the Hub anything, when the queue already names the partial files
        ensure_not_downloading(downloader.locks_dir, pending.partial_keys, what=pending.key, refusal=ALREADY)
        variant = _variant_of(pending)
        lock = claim(variant, pending.revision)
        have = sum(
            s.have_bytes for s in downloader.partial_state(repo_id, variant, revision=pending.revision)
        )
        say(
            f"resuming {pending.key}: {human_bytes(have)} of {human_bytes(variant.total_bytes)} "
            "already downloaded"
        )
        revision = pending.revision
    else:
        decision = decide(repo_id, quant, args, claim=lambda v: claim(v, args.revision))
        variant = decision.variant
        lock = claim(variant, args.revision)  # without :QUANT, known only now
        reason = decision.reason
        if decision.reason:
            say(f"picked {variant.quant}: {decision.reason}")
        for warning in decision.warnings:
            say(f"warning: {warning}")
        if not decision.fits and not args.yes:
            why = decision.warnings[0] if decision.warnings else "not enough memory"
            why = why.removeprefix("does not fit: ")
            raise DoesNotFitError(
                f"{repo_id}:{variant.quant} does not fit this machine: {why}; "
                "pass --yes to download it anyway"
            )
        revision = args.revision
        queue.add(
            repo_id,
            variant.quant,
            revision=revision,
            files=[f.path for f in variant.all_files],
            total_bytes=variant.total_bytes,
            partial_keys=[partial_key(repo_id, revision, f) for f in variant.all_files],
        )
    key = f"{repo_id}:{variant.quant}"
    say(f"downloading {key}: {len(variant.all_files)} file(s), {human_bytes(variant.total_bytes)}")
    queue.set_state(key, "running")
    bar = ProgressBar(sys.stderr, enabled=True)
    try:
        result = _download_in_thread(downloader, repo_id, variant, revision=revision, progress=bar, lock=lock)
    except (KeyboardInterrupt, DownloadCancelled):
        have = sum(s.have_bytes for s in downloader.partial_state(repo_id, variant, revision=revision))
        queue.set_state_after_error(key, "paused", error="interrupted")
        print(
            f"\npaused: {human_bytes(have)} of {human_bytes(variant.total_bytes)} kept; "
            f"run `kaihe pull {key}` again to resume",
            file=sys.stderr,
        )
        return None
    except KaiheError as exc:
        queue.set_state_after_error(key, "failed", error=str(exc))
        raise
    entry = library.add_download(result)  # still under the lock: `kaihe rm` cannot slip in before it
    queue.remove(key)
    return _Pulled(result=result, entry=entry, reason=reason)


def _installed(library: Library, repo_id: str, quant: str | None) -> LibraryEntry | None:
    for entry in library.entries():
        if entry.repo_id is None or entry.repo_id.lower() != repo_id.lower() or not entry.present:
            continue
        if entry.source != "hub":
            continue
        if quant is None or (entry.quant or "").upper() == quant:
            return entry
    return None


def _variant_of(item: QueueItem) -> Variant:
    """The queued variant's files as the Hub lists them now (sizes and hashes to verify against)."""
    from kaihe_desktop.core.downloads.queue import resolve_variant

    try:
        return _listing_call(
            lambda: resolve_variant(item.repo_id, item.quant), what=f"listing {item.repo_id}"
        )
    except KaiheError:
        raise
    except Exception as exc:  # noqa: BLE001 - shown as one line
        raise KaiheError(f"cannot resume {item.key}: {exc}") from exc
