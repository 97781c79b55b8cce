"""`kaihe pull REPO[:QUANT] [--yes] [--json]`: download a verified variant into the library.

Without ``:QUANT`` the quant picker chooses (and the reason is printed). A variant that does not fit this
machine (or the --profile) is refused with the headroom warning unless --yes. Ctrl-C pauses: the partial
files stay, and running the same command again fetches only what is missing. A download interrupted in any
way (Ctrl-C, crash, SIGKILL) is resumed as it was queued, without asking the Hub for the fit again.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar

from kaihe_desktop.cli.common import add_json_arg, add_profile_arg, emit_json, human_bytes, machine_from_args
from kaihe_desktop.core.download_queue import DownloadQueue, QueueItem
from kaihe_desktop.core.downloads import (
    Downloader,
    DownloadProgress,
    DownloadResult,
    partial_key,
    safe_relative_path,
)
from kaihe_desktop.core.errors import (
    DoesNotFitError,
    DownloadCancelled,
    KaiheError,
    ModelNotFoundError,
    UnsafeFilenameError,
)
from kaihe_desktop.core.library import Library, LibraryEntry
from kaihe_desktop.core.variants import Variant, find_variant

HUB_LISTING_TIMEOUT_S = 60.0
HEADER_ATTEMPTS = 4
T = TypeVar("T")
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
        raise ModelNotFoundError(f"{text!r} is not a Hub repo name: expected OWNER/NAME[:QUANT]")
    return repo_id, (quant.strip().upper() or None)


@dataclass(frozen=True)
class PullDecision:
    variant: Variant
    reason: str | None  # the picker's reason when it chose
    warnings: tuple[str, ...]
    fits: bool


def decide(repo_id: str, quant: str | None, args: argparse.Namespace) -> PullDecision:
    """List the repo, read one header, plan the variant(s) for the machine: which one, and does it fit."""
    from kaihe_desktop.core.advice import Severity, warnings
    from kaihe_desktop.core.gguf_meta import read_remote
    from kaihe_desktop.core.hub_listing import list_repo_files, run_with_deadline
    from kaihe_desktop.core.quants import QuantOption, pick
    from kaihe_desktop.core.variants import group_variants

    def listing() -> tuple[Variant, ...]:
        from huggingface_hub import HfApi

        return group_variants(list_repo_files(HfApi(), repo_id))

    variants = run_with_deadline(listing, timeout_s=HUB_LISTING_TIMEOUT_S, what=f"listing {repo_id}")
    if not variants:
        raise ModelNotFoundError(f"{repo_id}: no GGUF model files in this repo")
    wanted = find_variant(variants, quant) if quant else None
    if wanted is not None:
        _check_names(wanted)  # before any byte of it is read
    else:
        variants = tuple(v for v in variants if _names_are_safe(v))
        if not variants:
            raise UnsafeFilenameError(f"{repo_id}: every variant has a file name that leaves its folder")
    header_of = wanted or min(variants, key=lambda v: (len(v.files), v.size_bytes))
    meta = _with_retries(
        lambda: read_remote(repo_id, header_of.first_file, revision=args.revision),
        what=f"reading the header of {repo_id}/{header_of.first_file}",
    )
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


def _with_retries(fn: Callable[[], T], *, what: str, attempts: int = HEADER_ATTEMPTS) -> T:
    """Transient Hub failures (5xx, 429, timeouts) get a few more tries with backoff; others fail at once."""
    from kaihe_desktop.core.errors import GatedRepoError, HubError, RepoNotFoundError

    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except (GatedRepoError, RepoNotFoundError):
            raise
        except HubError as exc:
            if attempt == attempts:
                raise HubError(f"{what} failed after {attempts} attempts: {exc}") from exc
            time.sleep(min(8.0, 2.0 ** (attempt - 1)))
    raise AssertionError("unreachable")


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
) -> DownloadResult:
    """Run the download in a worker so Ctrl-C in the main thread becomes a clean pause (partials kept)."""
    cancel = threading.Event()
    finished = threading.Event()  # not Thread.join: a Ctrl-C inside join() can leave the thread looking dead
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = downloader.download_variant(
                repo_id, variant, revision=revision, progress=progress, cancel=cancel
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
        while not finished.wait(0.2):
            pass
        if "error" not in box:  # it had just finished
            done: DownloadResult = box["result"]
            return done
        raise KeyboardInterrupt from box["error"]
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
    pending = queue.find_pending(repo_id, quant)
    reason: str | None = None
    if pending is not None:
        variant = _variant_of(pending)
        have = sum(
            s.have_bytes for s in downloader.partial_state(repo_id, variant, revision=pending.revision)
        )
        say(
            f"resuming {pending.key}: {human_bytes(have)} of {human_bytes(variant.total_bytes)} "
            "already downloaded"
        )
        revision = pending.revision
    else:
        decision = decide(repo_id, quant, args)
        variant = decision.variant
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
        result = _download_in_thread(downloader, repo_id, variant, revision=revision, progress=bar)
    except (KeyboardInterrupt, DownloadCancelled):
        have = sum(s.have_bytes for s in downloader.partial_state(repo_id, variant, revision=revision))
        queue.set_state(key, "paused", error="interrupted")
        print(
            f"\npaused: {human_bytes(have)} of {human_bytes(variant.total_bytes)} kept; "
            f"run `kaihe pull {key}` again to resume",
            file=sys.stderr,
        )
        return 130
    except KaiheError as exc:
        queue.set_state(key, "failed", error=str(exc))
        raise
    entry = library.add_download(result)
    queue.remove(key)
    say(
        f"verified sha256 of {len(result.files)} file(s); added {entry.name} to the library "
        f"({human_bytes(entry.size_bytes)}): {entry.path}"
    )
    if args.json:
        emit_json(_entry_json(entry, fetched=result.fetched_bytes, reason=reason))
    return 0


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
    from kaihe_desktop.core.download_queue import resolve_variant

    try:
        return resolve_variant(item.repo_id, item.quant)
    except KaiheError:
        raise
    except Exception as exc:  # noqa: BLE001 - shown as one line
        raise KaiheError(f"cannot resume {item.key}: {exc}") from exc
