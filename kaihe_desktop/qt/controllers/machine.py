"""The active machine: this computer's probe or a profile it acts as, read off the GUI thread.

The window owns one MachineController. Every view that evaluates fit (badges, picks, warnings) connects to
`active_machine_changed(Machine)`: it fires after the first read and again whenever the person picks another
machine on the This machine page ("what would an RTX 4060 laptop run?"). The choice is remembered in the
settings store and restored at the next start; a ``--profile`` on the command line wins over it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from kaihe_desktop.core.fit.plan import DEFAULT_MARGIN_BYTES
from kaihe_desktop.core.machine.spec import Machine
from kaihe_desktop.core.machine.tiers import TIERS, TierInfo
from kaihe_desktop.qt.errors import ErrorPresenter
from kaihe_desktop.qt.workers import run_query
from kaihe_desktop.services import MachineSummary, ProfileChoice, Settings

# The machine acted as: a shipped profile name, a profile file's path, or None (this computer).
PROFILE_KEY = "machine.profile"
PROFILE_FILES_KEY = "machine.profile_files"  # profile files opened before, offered again
MAX_PROFILE_FILES = 8


@dataclass(frozen=True)
class TierUpgrade:
    """What the next tier unlocks and the memory it needs: core's tier numbers, plus the safety margin."""

    label: str  # "Professional"
    range_text: str  # "32 GB+"
    unlocks: str  # "70B-class models for deep domain analysis"
    missing_bytes: int  # more memory a model can use (core: TierInfo.missing_bytes)
    margin_bytes: int  # the planner's safety margin (llama.cpp keeps this free)
    needed_bytes: int  # missing + margin


def tier_upgrade(tier: TierInfo, margin_bytes: int = DEFAULT_MARGIN_BYTES) -> TierUpgrade | None:
    """The next tier of ``tier`` and what reaching it takes; None at the top tier."""
    spec = next((s for s in TIERS if s.tier == tier.next_tier), None)
    if spec is None:
        return None
    return TierUpgrade(
        label=spec.tier.label,
        range_text=spec.range_text,
        unlocks=f"{spec.models} for {spec.good_for}",
        missing_bytes=tier.missing_bytes,
        margin_bytes=margin_bytes,
        needed_bytes=tier.missing_bytes + margin_bytes,
    )


class MachineController(QObject):
    loaded = Signal(object)  # MachineSummary
    failed = Signal(object)  # the exception
    active_machine_changed = Signal(object)  # Machine: re-evaluate every badge, pick and warning
    profiles_changed = Signal(object)  # tuple[ProfileChoice, ...]: what the profile selector offers
    loading_changed = Signal(bool)

    def __init__(
        self,
        load: Callable[[str | None], MachineSummary],
        errors: ErrorPresenter,
        parent: QObject | None = None,
        *,
        profiles: Callable[[Sequence[str]], tuple[ProfileChoice, ...]] | None = None,
        settings: Settings | None = None,
        profile: str | None = None,
        margin_bytes: Callable[[], int] | None = None,
    ) -> None:
        """``load(profile)`` reads a profile (or probes this computer for None); ``profile`` is the
        command line's and wins over the one remembered in ``settings``."""
        super().__init__(parent)
        self._load = load
        self._errors = errors
        self._profiles = profiles
        self._settings = settings
        self._margin = margin_bytes
        saved = settings.get(PROFILE_KEY) if settings is not None else None
        remembered = saved if isinstance(saved, str) and saved else None
        self.profile: str | None = profile or remembered
        self._from_settings = not profile and self.profile is not None
        self.summary: MachineSummary | None = None
        self.choices: tuple[ProfileChoice, ...] = ()
        self.loading = False
        self.wanted: str | None = self.profile  # the machine being read now (or last asked for)
        self._generation = 0

    # --- the active machine -----------------------------------------------------------------------------

    @property
    def machine(self) -> Machine | None:
        return self.summary.machine if self.summary is not None else None

    def upgrade(self) -> TierUpgrade | None:
        if self.summary is None:
            return None
        margin = self._margin() if self._margin is not None else DEFAULT_MARGIN_BYTES
        return tier_upgrade(self.summary.tier, margin)

    def refresh(self) -> None:
        """Read the active machine again (this computer is probed again)."""
        self.select(self.wanted if self.summary is None else self.profile, force=True, remember=False)

    def select(self, profile: str | None, *, force: bool = False, remember: bool = True) -> None:
        """Act as ``profile`` (a shipped name or a file), or as this computer for None, read off the GUI
        thread. The newest choice wins: an older read still running is dropped when it lands. A choice
        that loads is remembered in the settings store (``remember``)."""
        if not force and profile == self.wanted and (self.loading or self.summary is not None):
            return
        self.wanted = profile
        self._generation += 1
        generation = self._generation
        self._set_loading(True)
        run_query(
            lambda: self._load(profile),
            lambda summary: self._on_loaded(generation, summary, remember),
            lambda exc: self._on_failed(generation, profile, exc),
            name="this computer's probe" if profile is None else f"machine profile {profile}",
        )

    def open_file(self, path: str | Path) -> None:
        """A saved profile file (e.g. from `kaihe hardware --save-profile`), offered again afterwards."""
        self.select(str(Path(path).expanduser()))

    def _on_loaded(self, generation: int, summary: MachineSummary, remember: bool) -> None:
        if generation != self._generation:
            return  # a newer choice is on its way
        self._set_loading(False)
        self.summary = summary
        self.profile = summary.profile
        self._from_settings = False
        self.loaded.emit(summary)
        self.active_machine_changed.emit(summary.machine)
        if remember:
            self._remember(summary.profile)

    def _on_failed(self, generation: int, profile: str | None, exc: BaseException) -> None:
        if generation != self._generation:
            return
        self._set_loading(False)
        self.wanted = self.profile if self.summary is not None else profile
        self._errors.show(exc, retry=lambda: self.select(profile, force=True))  # this one again
        self.failed.emit(exc)
        if self.summary is None and self._from_settings:
            # The machine remembered from last time is gone (a moved file): this computer instead.
            self._from_settings = False
            self.select(None)

    def _set_loading(self, loading: bool) -> None:
        if loading != self.loading:
            self.loading = loading
            self.loading_changed.emit(loading)

    # --- the choices ------------------------------------------------------------------------------------

    def profile_files(self) -> tuple[str, ...]:
        saved = self._settings.get(PROFILE_FILES_KEY, []) if self._settings is not None else []
        return tuple(f for f in saved if isinstance(f, str)) if isinstance(saved, list) else ()

    def refresh_profiles(self) -> None:
        """The shipped profiles and the saved files, read off the GUI thread."""
        if self._profiles is None:
            return
        files = self.profile_files()
        read = self._profiles
        run_query(lambda: read(files), self._on_profiles, self._errors.show, name="machine profiles")

    def _on_profiles(self, choices: tuple[ProfileChoice, ...]) -> None:
        self.choices = choices
        self.profiles_changed.emit(choices)

    def _remember(self, profile: str | None) -> None:
        """The choice (and a new profile file) into the settings store, written off the GUI thread."""
        settings = self._settings
        if settings is None:
            return
        values: dict[str, object] = {}
        if settings.get(PROFILE_KEY) != profile:
            values[PROFILE_KEY] = profile
        files = self.profile_files()
        if profile is not None and _looks_like_file(profile) and profile not in files:
            values[PROFILE_FILES_KEY] = [profile, *files][:MAX_PROFILE_FILES]
        if not values:
            return
        added_file = PROFILE_FILES_KEY in values
        run_query(
            lambda: settings.update(values),
            lambda _none: self.refresh_profiles() if added_file else None,
            self._errors.show,
            name="remember the machine",
        )


def _looks_like_file(profile: str) -> bool:
    """A profile key that names a file rather than a shipped profile (which never has a separator)."""
    return "/" in profile or "\\" in profile or profile.endswith(".json")
