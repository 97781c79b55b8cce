"""The first start: is it one, the starter model listed, the core's first-run pick, its one-click download.

A first start is a library with no model and no first-run flag in the settings store (both read off the GUI
thread). On a first start the flag is written at once (the next start opens on the last page), the bundled
starter model is listed when its package is installed (`Library.import_starter`, on the long pool), and the
core's recommendations are computed for the active machine (`recommend(...).first_run`, checked on the Hub;
when the Hub cannot be reached the starter is what the page offers). Nothing is downloaded until
`get_recommended()` (the page's one button) is called; the download is the window's DownloadsController's,
so it goes on across pages. When it is verified and listed, the model is chosen for chat (`ChosenModel`)
and `finished(entry)` fires.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from kaihe_desktop.core.hub.recommend import Recommendation, RecommendationSet
from kaihe_desktop.core.library import Library, LibraryEntry, LibrarySource
from kaihe_desktop.core.machine.spec import Machine
from kaihe_desktop.core.starter import starter_available
from kaihe_desktop.qt.controllers.downloads import DownloadsController
from kaihe_desktop.qt.controllers.machine import MachineController
from kaihe_desktop.qt.errors import ErrorPresenter
from kaihe_desktop.qt.models.downloads import DownloadRow
from kaihe_desktop.qt.workers import Pool, run_query
from kaihe_desktop.services import MachineSummary, Settings

FIRST_RUN_KEY = "first_run.done"  # set once the first start has been seen


class ChosenModel(QObject):
    """The model chosen for chat (the Chat view, a later issue, loads it); the window owns one."""

    model_chosen = Signal(str)  # the library entry's name

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name: str | None = None

    def choose(self, name: str) -> None:
        self.name = name
        self.model_chosen.emit(name)


def first_run_done(settings: Settings) -> bool:
    """Whether a first start was already seen (the settings store keeps its values in memory)."""
    return settings.get(FIRST_RUN_KEY) is True


class FirstRunController(QObject):
    decided = Signal(bool)  # True: this is a first start, show the welcome page
    starter_ready = Signal(object)  # LibraryEntry: the starter model is in My models
    pick_ready = Signal(object)  # RecommendationSet: its first_run is the one-click pick
    pick_failed = Signal(object)  # the exception
    download_started = Signal(str)  # the download's key
    download_changed = Signal(object)  # DownloadRow of the pick's download (progress or state)
    finished = Signal(object)  # LibraryEntry: verified, listed and chosen for chat

    def __init__(
        self,
        *,
        library: Library,
        settings: Settings,
        recommendations: Callable[[Machine], RecommendationSet],
        machine: MachineController,
        downloads: DownloadsController,
        chosen: ChosenModel,
        errors: ErrorPresenter,
        has_starter: Callable[[], bool] = starter_available,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._library = library
        self._settings = settings
        self._recommend = recommendations
        self.downloads = downloads
        self._errors = errors
        self._has_starter = has_starter
        self.chosen = chosen
        self.active = False  # a first start: the page is shown
        self.recommendations: RecommendationSet | None = None
        self.starter: LibraryEntry | None = None
        self.starter_loading = False
        self.download_key: str | None = None
        self.clicks = 0  # times get_recommended was called (the test counts them)
        self._generation = 0
        self._machine_seen: Machine | None = None
        machine.loaded.connect(self._on_machine)
        self._machine_controller = machine
        downloads.installed.connect(self._on_installed)
        downloads.progressed.connect(self._on_progress)
        downloads.changed.connect(self._on_row)

    # --- is this a first start -----------------------------------------------------------------------

    def start(self) -> None:
        """Decide off the GUI thread (the library is read from disk); `decided` tells the window."""
        if first_run_done(self._settings):
            self.decided.emit(False)
            return
        library, has_starter = self._library, self._has_starter
        run_query(
            lambda: (not library.entries(), has_starter()),
            self._on_checked,
            self._on_check_failed,
            name="first start?",
        )

    def _on_checked(self, found: tuple[bool, bool]) -> None:
        empty, starter = found
        settings = self._settings
        run_query(lambda: settings.set(FIRST_RUN_KEY, True), lambda _: None, self._errors.show,
                  name="remember the first start")  # fmt: skip
        self.active = empty
        self.decided.emit(empty)
        if not empty:
            return
        if starter:
            self.starter_loading = True
            run_query(self._library.import_starter, self._on_starter, self._on_starter_failed,
                      name="add the starter model", which=Pool.LONG)  # fmt: skip
        summary = self._machine_controller.summary
        if summary is not None:
            self._on_machine(summary)

    def _on_check_failed(self, exc: BaseException) -> None:
        self._errors.show(exc)
        self.decided.emit(False)

    def _on_starter(self, entry: LibraryEntry) -> None:
        self.starter_loading = False
        self.starter = entry
        self.starter_ready.emit(entry)

    def _on_starter_failed(self, exc: BaseException) -> None:
        self.starter_loading = False
        self._errors.show(exc)

    # --- the pick ------------------------------------------------------------------------------------

    def _on_machine(self, summary: MachineSummary) -> None:
        if not self.active or summary.machine == self._machine_seen:
            return
        self._machine_seen = summary.machine
        self.refresh_pick()

    def refresh_pick(self) -> None:
        """The core's recommendations (and first-run pick) for the active machine, off the GUI thread."""
        machine = self._machine_seen
        if machine is None:
            return
        self._generation += 1
        generation = self._generation
        pick_for = self._recommend
        run_query(
            lambda: pick_for(machine),
            lambda found: self._on_pick(generation, found),
            lambda exc: self._on_pick_failed(generation, exc),
            name="first-run pick",
        )

    def _on_pick(self, generation: int, found: RecommendationSet) -> None:
        if generation != self._generation:
            return
        self.recommendations = found
        self.pick_ready.emit(found)

    def _on_pick_failed(self, generation: int, exc: BaseException) -> None:
        if generation == self._generation:
            self.pick_failed.emit(exc)

    @property
    def pick(self) -> Recommendation | None:
        found = self.recommendations
        first = found.first_run if found is not None else None
        return first if first is not None and first.repo_id is not None else None

    @property
    def hub_unreachable(self) -> bool:
        return self.recommendations is not None and self.recommendations.offline

    # --- the one click -------------------------------------------------------------------------------

    def get_recommended(self) -> str | None:
        """Start the pick's download (the only way a first-run download starts); its key."""
        pick = self.pick
        if pick is None or pick.repo_id is None:
            return None
        self.clicks += 1
        self.download_key = self.downloads.start(pick.repo_id, pick.quant)
        self.download_started.emit(self.download_key)
        return self.download_key

    def use_starter(self) -> None:
        """Choose the starter model (already in My models) for chat instead of downloading."""
        if self.starter is not None:
            self._done(self.starter)

    def _mine(self, row: DownloadRow) -> bool:
        pick = self.pick
        if self.download_key is None or pick is None or pick.repo_id is None:
            return False
        same_repo = row.repo_id.lower() == pick.repo_id.lower()
        return same_repo and (row.quant or "").upper() == (pick.quant or "").upper()

    def _on_progress(self, rows: tuple[DownloadRow, ...]) -> None:
        for row in rows:
            if self._mine(row):
                self.download_changed.emit(row)

    def _on_row(self, row: DownloadRow) -> None:
        if self._mine(row):
            self.download_changed.emit(row)

    def _on_installed(self, entry: LibraryEntry) -> None:
        pick = self.pick
        if self.download_key is None or pick is None or entry.source != LibrarySource.HUB:
            return
        if (entry.repo_id or "").lower() == (pick.repo_id or "").lower():
            self.download_key = None
            self._done(entry)

    def _done(self, entry: LibraryEntry) -> None:
        self.active = False
        self.chosen.choose(entry.name)
        self.finished.emit(entry)
