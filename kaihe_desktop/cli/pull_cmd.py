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
from typing import Any, TextIO

from kaihe_desktop.cli.common import (
    add_json_arg,
    add_profile_arg,
    emit_json,
    fail,
    human_bytes,
    machine_from_args,
)
from kaihe_desktop.core.downloads.fetch import Downloader, DownloadProgress
from kaihe_desktop.core.downloads.pull import (
    PullOutcome,
    PullPaused,
    PullPlan,
    execute_pull,
    plan_pull,
    record_pause,
)
from kaihe_desktop.core.downloads.queue import DownloadQueue
from kaihe_desktop.core.errors import DoesNotFitError, ModelNotFoundError
from kaihe_desktop.core.library import Library, LibraryEntry
from kaihe_desktop.core.names import check_repo_id, shown

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


def run(args: argparse.Namespace) -> int:
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # our own lines, not its retry chatter
    repo_id, quant = parse_model_ref(args.model)
    library, queue, downloader = Library(), DownloadQueue(), Downloader()
    out = sys.stdout
    say = (lambda text: print(text, file=sys.stderr)) if args.json else (lambda text: print(text, file=out))

    with plan_pull(
        repo_id,
        quant,
        machine=lambda: machine_from_args(args),
        queue=queue,
        library=library,
        downloader=downloader,
        revision=args.revision,
    ) as plan:  # holds the download lock until the library lists the model
        if plan.already_installed is not None:
            installed = plan.already_installed
            say(f"{installed.name} is already in the library: {installed.path}")
            if args.json:
                emit_json(_entry_json(installed, fetched=0, reason=None))
            return 0
        _say_plan(plan, say)
        try:
            outcome = _execute_in_thread(
                plan,
                queue=queue,
                downloader=downloader,
                library=library,
                allow_unfit=args.yes,
                on_start=lambda p: say(
                    f"downloading {p.key}: {len(p.files)} file(s), {human_bytes(p.total_bytes)}"
                ),
            )
        except DoesNotFitError as exc:
            return fail(f"{exc}; pass --yes to download it anyway")
        except PullPaused as paused:
            pause = paused.pause
            print(
                f"\npaused: {human_bytes(pause.kept_bytes)} of {human_bytes(pause.total_bytes)} kept; "
                f"run `kaihe pull {pause.key}` again to resume",
                file=sys.stderr,
            )
            return 130
    entry, result = outcome.entry, outcome.result
    assert entry is not None and result is not None
    say(
        f"verified sha256 of {len(result.files)} file(s); added {entry.name} to the library "
        f"({human_bytes(entry.size_bytes)}): {entry.path}"
    )
    if args.json:
        emit_json(_entry_json(entry, fetched=outcome.fetched_bytes, reason=plan.reason))
    return 0


def _say_plan(plan: PullPlan, say: Callable[[str], None]) -> None:
    if plan.resume:
        say(
            f"resuming {plan.key}: {human_bytes(plan.have_bytes)} of {human_bytes(plan.total_bytes)} "
            "already downloaded"
        )
        return
    if plan.reason is not None and plan.variant is not None:
        say(f"picked {plan.variant.quant}: {plan.reason}")
    for warning in plan.warnings:
        say(f"warning: {warning.message}")


def _execute_in_thread(
    plan: PullPlan,
    *,
    queue: DownloadQueue,
    downloader: Downloader,
    library: Library,
    allow_unfit: bool,
    on_start: Callable[[PullPlan], None],
) -> PullOutcome:
    """Run the pull in a worker so Ctrl-C in the main thread becomes a clean pause (partials kept)."""
    cancel = threading.Event()
    finished = threading.Event()  # not Thread.join: a Ctrl-C inside join() can leave the thread looking dead
    box: dict[str, Any] = {}
    bar = ProgressBar(sys.stderr, enabled=True)

    def work() -> None:
        try:
            box["outcome"] = execute_pull(
                plan,
                queue=queue,
                downloader=downloader,
                library=library,
                progress=bar,
                cancel=cancel,
                allow_unfit=allow_unfit,
                on_start=on_start,
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
            done: PullOutcome = box["outcome"]
            return done
        if isinstance(box.get("error"), PullPaused):  # core recorded the pause
            raise box["error"] from None
        pause = record_pause(plan, queue=queue, downloader=downloader)
        raise PullPaused("interrupted", pause=pause) from box.get("error")
    if "error" in box:
        raise box["error"]
    outcome: PullOutcome = box["outcome"]
    return outcome


def _entry_json(entry: LibraryEntry, *, fetched: int, reason: object) -> dict[str, Any]:
    data = entry.public_dict()
    data["fetched_bytes"] = fetched
    data["reason"] = reason
    return data
