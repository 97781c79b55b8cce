"""Group a repo's files into downloadable variants: one per quantization, shards joined, projector attached.

A GGUF repo on the Hub is a flat list of files. What a user picks is a *variant*: every shard of one
quantization (``name-Q4_K_M-00001-of-00003.gguf`` ...), plus the vision projector (``mmproj*.gguf``) when the
model has one. Pure functions, no network: the catalog and the downloader both build on this.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from kaihe_desktop.core.errors import ModelNotFoundError
from kaihe_desktop.core.fit.quants import quality_rank, quant_from_filename

# llama.cpp's gguf-split naming: "<stem>-00001-of-00003.gguf".
_SHARD_RE = re.compile(r"^(?P<stem>.*)-(?P<index>\d{5})-of-(?P<total>\d{5})\.gguf$", re.IGNORECASE)

# Which projector to attach when a repo ships several precisions: the most common first.
_MMPROJ_PREFERENCE = ("f16", "bf16", "q8_0", "f32")


@dataclass(frozen=True)
class RepoFile:
    """One file of a Hub repo: its path in the repo, size and LFS sha256 (None for non-LFS files)."""

    path: str
    size_bytes: int
    sha256: str | None = None

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


@dataclass(frozen=True)
class Variant:
    """One quantization of a model: its shards in order and, for vision models, the projector."""

    quant: str
    files: tuple[RepoFile, ...]
    mmproj: RepoFile | None = None

    @property
    def size_bytes(self) -> int:
        """Bytes of the model weights (all shards), without the projector."""
        return sum(f.size_bytes for f in self.files)

    @property
    def total_bytes(self) -> int:
        """Everything a download of this variant fetches, projector included."""
        return self.size_bytes + (self.mmproj.size_bytes if self.mmproj else 0)

    @property
    def is_split(self) -> bool:
        return len(self.files) > 1

    @property
    def first_file(self) -> str:
        """The path llama.cpp loads (it finds the other shards next to it)."""
        return self.files[0].path

    @property
    def all_files(self) -> tuple[RepoFile, ...]:
        return self.files + ((self.mmproj,) if self.mmproj else ())


def is_mmproj(path: str) -> bool:
    return PurePosixPath(path).name.lower().startswith("mmproj")


def _shard_key(path: str) -> tuple[str, int, int] | None:
    match = _SHARD_RE.match(path)
    if match is None:
        return None
    return match["stem"], int(match["index"]), int(match["total"])


def _quant_of(path: str) -> str | None:
    """The quant named in the file name, or (for "Q8_0/model-00001-of-00002.gguf") in its folder."""
    pure = PurePosixPath(path)
    quant = quant_from_filename(pure.name)
    if quant is None and pure.parent.name:
        quant = quant_from_filename(pure.parent.name + ".gguf")
    return quant


def _pick_mmproj(projectors: Sequence[RepoFile]) -> RepoFile | None:
    if not projectors:
        return None

    def preference(f: RepoFile) -> tuple[int, str]:
        lowered = f.name.lower()
        for rank, tag in enumerate(_MMPROJ_PREFERENCE):
            if tag in lowered:
                return rank, f.path
        return len(_MMPROJ_PREFERENCE), f.path

    return min(projectors, key=preference)


def group_variants(files: Sequence[RepoFile]) -> tuple[Variant, ...]:
    """One variant per quantization, best quality first.

    Shards of one split model are joined in index order (an incomplete set is dropped: it cannot load);
    ``mmproj*`` projectors are attached to every variant; files that are not GGUF weights are ignored.
    When two separate files carry the same quant (e.g. two models in one repo), the larger set wins.
    """
    projectors = [f for f in files if f.path.lower().endswith(".gguf") and is_mmproj(f.path)]
    mmproj = _pick_mmproj(projectors)

    # Collect candidate file sets: single files and shard groups (keyed by their common stem).
    groups: dict[str, list[tuple[int, RepoFile]]] = {}
    expected_total: dict[str, int] = {}
    for f in files:
        if not f.path.lower().endswith(".gguf") or is_mmproj(f.path):
            continue
        shard = _shard_key(f.path)
        if shard is None:
            groups[f.path] = [(1, f)]
            expected_total[f.path] = 1
        else:
            stem, index, total = shard
            groups.setdefault(stem, []).append((index, f))
            expected_total[stem] = total

    by_quant: dict[str, tuple[RepoFile, ...]] = {}
    for key, members in groups.items():
        members.sort(key=lambda item: item[0])
        indexes = [i for i, _ in members]
        if indexes != list(range(1, expected_total[key] + 1)):
            continue  # missing or duplicated shard: not a loadable model
        shard_files = tuple(f for _, f in members)
        quant = _quant_of(shard_files[0].path)
        if quant is None:
            continue
        current = by_quant.get(quant.upper())
        if current is None or sum(f.size_bytes for f in shard_files) > sum(f.size_bytes for f in current):
            by_quant[quant.upper()] = shard_files

    variants = [Variant(quant=q, files=fs, mmproj=mmproj) for q, fs in by_quant.items()]
    variants.sort(key=lambda v: (quality_rank(v.quant), -v.size_bytes, v.quant))
    return tuple(variants)


def find_variant(variants: Sequence[Variant], quant: str) -> Variant:
    """The variant named ``quant`` (case-insensitive); an unknown quant names the available ones."""
    wanted = quant.strip().upper()
    for variant in variants:
        if variant.quant.upper() == wanted:
            return variant
    available = ", ".join(v.quant for v in variants) or "none"
    raise ModelNotFoundError(f"no {quant} variant in this repo; available: {available}")
