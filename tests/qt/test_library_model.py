"""The library table model: checked by qtmodeltester, sorted on raw values."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSortFilterProxyModel, Qt
from pytestqt.modeltest import ModelTester

from kaihe_desktop.core.library import Library, LibraryEntry
from kaihe_desktop.qt.models.library import ENTRY_ROLE, SORT_ROLE, LibraryModel


def _entry(
    name: str, size: int, *, quant: str | None = "Q4_K_M", last_used: str | None = None
) -> LibraryEntry:
    path = f"/models/{name}.gguf"
    return LibraryEntry.from_dict(
        {"name": name, "repo_id": f"org/{name}", "quant": quant, "variant": quant or "", "path": path,
         "files": [path], "size_bytes": size, "source": "hub", "owned": True,
         "added_at": "2026-12-01T10:00:00+00:00", "last_used": last_used}
    )  # fmt: skip


ENTRIES = (
    _entry("qwen3-4b", 2_500_000_000, last_used="2026-12-02T10:00:00+00:00"),
    _entry("gemma-3-1b", 800_000_000, quant=None),
    _entry("llama-3.2-3b", 10_000_000_000, quant="Q8_0", last_used="2026-12-03T10:00:00+00:00"),
)


def test_the_model_passes_qtmodeltester_empty_and_filled(qtmodeltester: ModelTester) -> None:
    model = LibraryModel()
    qtmodeltester.check(model)
    model.set_entries(ENTRIES)
    qtmodeltester.check(model)
    assert model.rowCount() == 3 and model.columnCount() == 6


def test_columns_read_as_words_and_sort_on_raw_values(qtmodeltester: ModelTester) -> None:
    model = LibraryModel()
    model.set_entries(ENTRIES)
    headers = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    assert headers == ["Name", "Quant", "Size", "Source", "Last used", "Fit on this machine now"]
    row = [model.data(model.index(0, c)) for c in range(5)]
    assert row[0] == "qwen3-4b" and row[1] == "Q4_K_M" and row[2] == "2.3 GiB" and row[3] == "Hugging Face"
    assert model.data(model.index(1, 1)) == "unknown"
    assert model.data(model.index(1, 4)) == "never"
    assert model.data(model.index(0, 0), ENTRY_ROLE) is ENTRIES[0]

    proxy = QSortFilterProxyModel()
    proxy.setSourceModel(model)
    proxy.setSortRole(SORT_ROLE)
    qtmodeltester.check(proxy)
    proxy.sort(2, Qt.SortOrder.AscendingOrder)
    # by bytes, not by text ("762.9 MiB" < "9.3 GiB" < "2.3 GiB" as text would be wrong)
    assert [proxy.index(r, 0).data() for r in range(3)] == ["gemma-3-1b", "qwen3-4b", "llama-3.2-3b"]
    proxy.sort(4, Qt.SortOrder.DescendingOrder)
    assert [proxy.index(r, 0).data() for r in range(3)] == ["llama-3.2-3b", "qwen3-4b", "gemma-3-1b"]


def test_a_real_library_entry(qtmodeltester: ModelTester, kaihe_home: Path, tiny_llama_path: Path) -> None:
    entry = Library().import_file(tiny_llama_path)
    model = LibraryModel()
    model.set_entries((entry,))
    qtmodeltester.check(model)
    assert model.data(model.index(0, 0)) == entry.name
    assert model.data(model.index(0, 3)) == "Imported file"
    assert model.data(model.index(0, 2), SORT_ROLE) == entry.size_bytes


def test_the_fit_column_shows_badges_and_sorts_fits_first(qtmodeltester: ModelTester) -> None:
    from kaihe_desktop.qt.models.library import FIT_COLUMN, FIT_ROLE, Fit

    model = LibraryModel()
    model.set_entries(ENTRIES)
    assert model.data(model.index(0, FIT_COLUMN)) == "checking…"
    fits = {
        "qwen3-4b": Fit("cpu", 3_328_599_654, 8192, "fits in RAM"),
        "gemma-3-1b": Fit("gpu", 6 * 2**30, 8192),
        "llama-3.2-3b": Fit("none", -(2**30), 0),
    }
    model.set_fits(fits)
    qtmodeltester.check(model)
    assert model.data(model.index(0, FIT_COLUMN)) == "fits: CPU, 3.1 GiB spare"
    assert model.data(model.index(1, FIT_COLUMN)) == "fits: GPU, 6.0 GiB spare"
    assert model.data(model.index(2, FIT_COLUMN)) == "does not fit: 1.0 GiB over"
    assert model.data(model.index(0, FIT_COLUMN), FIT_ROLE) is fits["qwen3-4b"]
    proxy = QSortFilterProxyModel()
    proxy.setSourceModel(model)
    proxy.setSortRole(SORT_ROLE)
    proxy.sort(FIT_COLUMN, Qt.SortOrder.DescendingOrder)
    assert [proxy.index(r, 0).data() for r in range(3)] == ["gemma-3-1b", "qwen3-4b", "llama-3.2-3b"]
    model.set_entries(ENTRIES[:2])  # a refresh keeps the fits it already has
    assert model.data(model.index(0, FIT_COLUMN)) == "fits: CPU, 3.1 GiB spare"
