"""Everything a front end needs from the core, built once: the Qt-free bundle the window is composed from.

`Services` is frozen: the objects in it (a Library, a DownloadQueue, the settings store) keep their state on
disk, and the things that are costly or stateful to open (the machine probe, the chat history database, the
engine process, a Hub catalog, a downloader) are factories, called off the GUI thread by whoever needs them.
Nothing here imports Qt; the window gets a Services from `kaihe_desktop.app` and hands each view only the
parts it uses.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from kaihe_desktop.core import json_store, paths
from kaihe_desktop.core.downloads.queue import DownloadQueue
from kaihe_desktop.core.errors import KaiheError
from kaihe_desktop.core.fit.kv_types import KVCacheType
from kaihe_desktop.core.fit.plan import DEFAULT_CONTEXT, DEFAULT_MARGIN_BYTES
from kaihe_desktop.core.library import Library
from kaihe_desktop.core.machine.spec import GpuVendor, Machine, ProbeNote
from kaihe_desktop.core.machine.tiers import TierInfo, tier_for

if TYPE_CHECKING:
    from kaihe_desktop.core.chat.history import HistoryStore
    from kaihe_desktop.core.downloads.fetch import Downloader
    from kaihe_desktop.core.engine.client import EngineClient
    from kaihe_desktop.core.hub.catalog import Catalog
    from kaihe_desktop.core.hub.recommend import RecommendationSet
    from kaihe_desktop.core.hub.recommend_data import Recommendations

SETTINGS_NAME = "settings.json"
SETTINGS_VERSION = 1
ACTIVE_DOWNLOAD_STATES = ("queued", "running")


class Settings:
    """A small JSON settings store (``<KAIHE_HOME>/settings.json``): flat keys, JSON values.

    Read once when built; every `set` writes the whole file atomically (json_store). Thread-safe.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._values: dict[str, Any] = json_store.read_json(
            path, parse=_parse_settings, empty=dict[str, Any], what="the settings", version=SETTINGS_VERSION
        ).value

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self._values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.update({key: value})

    def update(self, values: dict[str, Any]) -> None:
        """Set several keys with one write (DiskFullError / StateFileError when it cannot be saved)."""
        with self._lock:
            merged = {**self._values, **values}
            json_store.write_json(
                self.path, {"values": merged}, what="the settings", version=SETTINGS_VERSION
            )
            self._values = merged

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._values)


def _parse_settings(data: Any) -> dict[str, Any]:
    values = data.get("values", {})
    if not isinstance(values, dict):
        raise json_store.BadShapeError("'values' is not an object")
    return {str(k): v for k, v in values.items()}


PREFERENCES_PREFIX = "prefs."


@dataclass(frozen=True)
class Preferences:
    """What the Settings dialog edits, kept in the settings store under ``prefs.*`` (a bad value reads as
    the default). The models folder takes effect at the next start; offline mode at once (HF_HUB_OFFLINE)."""

    models_dir: str | None = None  # None: <KAIHE_HOME>/models
    threads: int = 0  # 0: llama.cpp's default
    gpu_layers: int | None = None  # None: auto (the planner's most layers that fit); -1: all
    n_ctx: int = DEFAULT_CONTEXT
    kv_type: KVCacheType = KVCacheType.F16
    margin_bytes: int = DEFAULT_MARGIN_BYTES
    offline: bool = False

    @classmethod
    def read(cls, settings: Settings) -> Preferences:
        d = cls()
        get = settings.get

        def integer(key: str, default: int, low: int) -> int:
            value = get(PREFERENCES_PREFIX + key, default)
            usable = isinstance(value, int) and not isinstance(value, bool) and value >= low
            return value if usable else default

        folder = get(PREFERENCES_PREFIX + "models_dir")
        layers = get(PREFERENCES_PREFIX + "gpu_layers")
        try:
            kv = KVCacheType.parse(str(get(PREFERENCES_PREFIX + "kv_type", d.kv_type)))
        except KaiheError:
            kv = d.kv_type
        return cls(
            models_dir=folder if isinstance(folder, str) and folder else None,
            threads=integer("threads", d.threads, 0),
            gpu_layers=layers
            if isinstance(layers, int) and not isinstance(layers, bool) and layers >= -1
            else None,
            n_ctx=integer("n_ctx", d.n_ctx, 256),
            kv_type=kv,
            margin_bytes=integer("margin_bytes", d.margin_bytes, 0),
            offline=get(PREFERENCES_PREFIX + "offline") is True,
        )

    def save(self, settings: Settings) -> None:
        """One write of every key (DiskFullError / StateFileError when it cannot be saved)."""
        settings.update(
            {
                PREFERENCES_PREFIX + "models_dir": self.models_dir,
                PREFERENCES_PREFIX + "threads": self.threads,
                PREFERENCES_PREFIX + "gpu_layers": self.gpu_layers,
                PREFERENCES_PREFIX + "n_ctx": self.n_ctx,
                PREFERENCES_PREFIX + "kv_type": str(self.kv_type),
                PREFERENCES_PREFIX + "margin_bytes": self.margin_bytes,
                PREFERENCES_PREFIX + "offline": self.offline,
            }
        )

    def apply_environment(self, *, was: Preferences | None = None) -> None:
        """Offline mode for everything that asks huggingface_hub afterwards (core's is_offline reads it).
        It is only turned off when ``was`` had it on: an HF_HUB_OFFLINE set by the user is left alone."""
        if self.offline:
            os.environ["HF_HUB_OFFLINE"] = "1"
        elif was is not None and was.offline:
            os.environ.pop("HF_HUB_OFFLINE", None)


@dataclass(frozen=True)
class MachineSummary:
    """The machine (probed or a profile) and its tier: what the "This machine" page shows."""

    machine: Machine
    tier: TierInfo
    profile: str | None = None  # the profile's name when acting as another machine


@dataclass(frozen=True)
class ProfileChoice:
    """A machine the window can act as: a shipped profile (by name) or a saved profile file (by path)."""

    key: str  # what `Services.machine_summary_for` takes: "rtx4060-16gb" or "/path/to/profile.json"
    label: str  # the profile's machine name ("16 GB + RTX 4060 8 GB"); the file name when it has none
    shipped: bool = True


@dataclass(frozen=True)
class StatusSnapshot:
    """One reading for the status bar: live memory use of this machine and the download queue."""

    ram_used_bytes: int
    ram_total_bytes: int
    vram_used_bytes: int | None = None  # None when no GPU memory can be read (no NVIDIA GPU, no driver)
    vram_total_bytes: int | None = None
    active_downloads: int = 0
    notices: tuple[str, ...] = ()  # json_store notices since the last reading (a state file moved aside)


class _VramReader:
    """Reads NVIDIA GPU memory through NVML; gives up for good after the first reading that finds none."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known = True

    def read(self) -> tuple[int, int] | None:
        with self._lock:
            if not self._known:
                return None
            from kaihe_desktop.core.machine.gpus import nvidia_gpus

            notes: list[ProbeNote] = []
            gpus = [g for g in nvidia_gpus(notes) if g.vendor == GpuVendor.NVIDIA and not g.unified]
            if not gpus:
                self._known = False
                return None
            total = sum(g.memory_total_bytes for g in gpus)
            return total - sum(g.memory_free_bytes for g in gpus), total


@dataclass(frozen=True)
class Services:
    """The composition of the core the window uses. Build it with `Services.create`."""

    home: Path
    library: Library
    queue: DownloadQueue
    settings: Settings
    load_machine: Callable[[], Machine]  # the probe (slow: measures RAM bandwidth) or a profile
    downloader: Callable[[], Downloader]
    open_history: Callable[[], HistoryStore]  # opens (and migrates) the SQLite history
    catalog: Callable[[Machine], Catalog]
    engine: Callable[[], EngineClient]  # starts nothing until load(); the process is a child
    profile: str | None = None
    recommendation_data: Recommendations | None = None  # None: the shipped recommendations file
    _vram: _VramReader = field(default_factory=_VramReader, repr=False, compare=False)

    @classmethod
    def create(cls, *, home: Path | None = None, profile: str | None = None) -> Services:
        """Services over ``home`` (default: KAIHE_HOME or the platform folder), acting as ``profile``
        (a shipped profile name or a profile file) when given, else this machine's probe."""
        root = home if home is not None else paths.home()
        settings = Settings(root / SETTINGS_NAME)
        chosen = Preferences.read(settings).models_dir
        models = Path(chosen).expanduser() if chosen else root / "models"

        def load_machine() -> Machine:
            if profile:
                from kaihe_desktop.core.machine.profiles import resolve_profile

                return resolve_profile(profile)
            from kaihe_desktop.core.machine.probe import probe

            return probe(models_dir=models)

        def downloader() -> Downloader:
            from kaihe_desktop.core.downloads.fetch import Downloader

            return Downloader(models_dir=models)

        def open_history() -> HistoryStore:
            from kaihe_desktop.core.chat.history import HistoryStore

            return HistoryStore(root / paths.history_db().name)

        def catalog(machine: Machine) -> Catalog:
            from kaihe_desktop.core.hub.catalog import Catalog

            return Catalog(machine=machine)

        def engine() -> EngineClient:
            from kaihe_desktop.core.engine.client import EngineClient

            return EngineClient(log_path=paths.ensure(root / "cache") / "engine.log")

        return cls(
            home=root,
            library=Library(root=root, models_dir=models),
            queue=DownloadQueue(path=root / "downloads.json"),
            settings=settings,
            load_machine=load_machine,
            downloader=downloader,
            open_history=open_history,
            catalog=catalog,
            engine=engine,
            profile=profile,
        )

    # --- queries the window runs off the GUI thread -------------------------------------------------

    def machine_summary(self) -> MachineSummary:
        machine = self.load_machine()
        return MachineSummary(machine=machine, tier=tier_for(machine), profile=self.profile)

    def machine_summary_for(self, profile: str | None) -> MachineSummary:
        """Act as another machine: a shipped profile name or a profile file, or None for this computer's
        probe. The profile Services was created with goes through `load_machine` (which tests replace)."""
        if profile == self.profile:
            return self.machine_summary()
        if profile is None:
            from kaihe_desktop.core.machine.probe import probe

            machine = probe(models_dir=self.library.models_dir)
        else:
            from kaihe_desktop.core.machine.profiles import resolve_profile

            machine = resolve_profile(profile)
        return MachineSummary(machine=machine, tier=tier_for(machine), profile=profile)

    def machine_profiles(self, files: Sequence[str] = ()) -> tuple[ProfileChoice, ...]:
        """The shipped profiles, then those of ``files`` that still read as profiles, each with its label."""
        from kaihe_desktop.core.machine.profiles import shipped_profiles
        from kaihe_desktop.core.machine.spec import ProfileError

        found: list[ProfileChoice] = []
        for name, path in shipped_profiles().items():
            try:
                found.append(ProfileChoice(name, Machine.load(path).name or name))
            except ProfileError:
                continue  # a damaged package file: not offered
        for file in files:
            try:
                machine = Machine.load(Path(file))
            except ProfileError:
                continue  # moved or deleted since it was opened
            found.append(ProfileChoice(file, machine.name or Path(file).name, shipped=False))
        return tuple(found)

    def recommendations(self, machine: Machine, catalog: Catalog | None) -> RecommendationSet:
        """The best curated model per use case for ``machine``, checked on the Hub through ``catalog``."""
        from kaihe_desktop.core.hub.recommend import recommend

        return recommend(machine, catalog=catalog, data=self.recommendation_data)

    def status_snapshot(self) -> StatusSnapshot:
        """Live RAM (and NVIDIA VRAM) use of this machine, and how many downloads are queued or running."""
        memory = psutil.virtual_memory()
        vram = self._vram.read()
        active = sum(1 for item in self.queue.items() if item.state in ACTIVE_DOWNLOAD_STATES)
        return StatusSnapshot(
            ram_used_bytes=int(memory.total - memory.available),
            ram_total_bytes=int(memory.total),
            vram_used_bytes=vram[0] if vram else None,
            vram_total_bytes=vram[1] if vram else None,
            active_downloads=active,
            notices=tuple(n.message for n in json_store.take_notices()),
        )


@dataclass(frozen=True)
class Versions:
    kaihe: str
    llama_cpp: str | None  # None when llama-cpp-python is not installed
    pyside: str | None
    python: str


def versions() -> Versions:
    """Installed versions from package metadata (llama_cpp itself is never imported here)."""

    def of(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    return Versions(
        kaihe=of("kaihe-desktop") or "unknown",
        llama_cpp=of("llama_cpp_python"),
        pyside=of("PySide6-Essentials") or of("PySide6"),
        python=platform.python_version(),
    )
