"""Discover against the local Hub: results with badges whose numbers are the core plan's, sorting on raw
values, the filters, paging, the what-if pane, superseded queries, the download signal, Ctrl+K.

Repos are tiny GGUFs (tests/helpers/tiny_gguf.py) and the real starter model, served by the session's Hub
server; the machine is a profile file with 1.4 GiB of RAM free, where the tiny models fit and the starter
model (its 262k vocabulary needs ~514 MiB of compute buffer) plus the 1 GiB margin does not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QPushButton
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from kaihe_desktop.core.fit.kv_types import KVCacheType
from kaihe_desktop.core.fit.quants import pick
from kaihe_desktop.core.hub.catalog import Catalog, CatalogRepo
from kaihe_desktop.core.hub.listing_cache import ListingCache
from kaihe_desktop.core.hub.recommend import recommend
from kaihe_desktop.core.machine.profiles import resolve_profile
from kaihe_desktop.core.machine.spec import Machine
from kaihe_desktop.core.units import format_bytes
from kaihe_desktop.qt import format as fmt
from kaihe_desktop.qt import workers
from kaihe_desktop.qt.controllers.catalog import Details, options_of
from kaihe_desktop.qt.main_window import MainWindow
from kaihe_desktop.qt.models.catalog import (
    FIT_ROLE,
    REPO_ROLE,
    SORT_ROLE,
    CatalogFilter,
    CatalogModel,
    Fit,
    Level,
    RecommendationsModel,
    VariantsModel,
    variant_rows,
)
from kaihe_desktop.qt.views.discover import DiscoverView, context_steps
from kaihe_desktop.services import Services
from tests.helpers.hub_server import HubServer
from tests.helpers.tiny_gguf import TinySpec, write_tiny_model

SPEC = TinySpec(arch="llama", n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256)
LONG_CTX = 1 << 20  # a tiny model trained for 1M tokens: its KV cache at full context is 512 MiB
SPEED = CatalogModel.TITLES.index("Tokens/s")
FIT = CatalogModel.TITLES.index("Fit")


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("discover-variants")
    files = {
        f"Tiny-{q}.gguf": write_tiny_model(root / f"Tiny-{q}.gguf", SPEC, tensor_type=q)
        for q in ("F16", "Q8_0", "Q4_0")
    }
    files["Long-Q4_0.gguf"] = write_tiny_model(
        root / "Long-Q4_0.gguf", SPEC, tensor_type="Q4_0", n_ctx_train=LONG_CTX
    )
    files["Long-Q8_0.gguf"] = write_tiny_model(
        root / "Long-Q8_0.gguf", SPEC, tensor_type="Q8_0", n_ctx_train=LONG_CTX
    )
    return files


@pytest.fixture
def small_machine(tmp_path: Path) -> tuple[Machine, Path]:
    base = resolve_profile("laptop-8gb")
    machine = dataclasses.replace(
        base, ram=dataclasses.replace(base.ram, total_bytes=2 << 30, available_bytes=1434 << 20)
    )
    path = tmp_path / "small.json"
    machine.save(path)
    return Machine.load(path), path


@pytest.fixture
def small_services(kaihe_home: Path, small_machine: tuple[Machine, Path]) -> Services:
    return Services.create(home=kaihe_home, profile=str(small_machine[1]))


def _add(hub: HubServer, repo_id: str, files: dict[str, Path], **kw: object) -> None:
    hub.add_repo(repo_id, {**files, "README.md": b"# card\n"}, tags=("gguf",), **kw)  # type: ignore[arg-type]


def _discover(qtbot: QtBot, window: MainWindow) -> DiscoverView:
    view = window.pages["discover"].widget
    assert isinstance(view, DiscoverView)
    qtbot.waitUntil(lambda: window._machine.summary is not None, timeout=15_000)  # noqa: SLF001
    return view


def _search(qtbot: QtBot, view: DiscoverView, text: str, rows: int) -> None:
    view.search.setText(text)  # debounced: the controller asks after 300 ms
    qtbot.waitUntil(lambda: view._controller.model.rowCount() == rows, timeout=20_000)  # noqa: SLF001
    qtbot.waitUntil(lambda: not view._controller.busy, timeout=20_000)  # noqa: SLF001


def _repos(view: DiscoverView) -> list[CatalogRepo]:
    proxy = view.proxy
    return [proxy.index(r, 0).data(REPO_ROLE) for r in range(proxy.rowCount())]


def _wait_idle(qtbot: QtBot) -> None:
    qtbot.waitUntil(lambda: not workers.in_flight(), timeout=20_000)


def _wait_details(qtbot: QtBot, view: DiscoverView, n_ctx: int, kv: KVCacheType = KVCacheType.F16) -> Details:
    def ready() -> bool:
        shown = view.shown
        return shown is not None and shown.what_if.n_ctx == n_ctx and shown.what_if.kv_type == kv

    qtbot.waitUntil(ready, timeout=20_000)
    assert view.shown is not None
    return view.shown


def _select(view: DiscoverView, repo_id: str) -> None:
    for row in range(view.proxy.rowCount()):
        if view.proxy.index(row, 0).data(REPO_ROLE).repo_id == repo_id:
            view.results.selectRow(row)
            return
    raise AssertionError(f"{repo_id} is not in the results")


# --- the models ---------------------------------------------------------------------------------------


def test_the_models_pass_qtmodeltester(
    qtbot: QtBot,
    qtmodeltester: ModelTester,
    hub: HubServer,
    tiny_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    tiny = {k: v for k, v in tiny_files.items() if k.startswith("Tiny-")}
    _add(hub, "kdiscM/Tiny-Chat-GGUF", tiny, license="apache-2.0", downloads=5)
    _add(hub, "kdiscM/Other-GGUF", {"O-Q4_0.gguf": tiny_files["Tiny-Q4_0.gguf"]}, license="mit")
    machine = resolve_profile("rtx4060-16gb")
    repos = Catalog(machine=machine, cache=ListingCache(tmp_path / "cache")).search("kdiscm").repos
    assert len(repos) == 2

    paged = CatalogModel()
    paged.set_repos(repos, has_more=True)
    assert paged.canFetchMore()
    with qtbot.waitSignal(paged.more_requested):
        paged.fetchMore()
    assert not paged.canFetchMore()  # one request until the page comes back
    paged.append_repos(repos[:1], has_more=False)  # a repo already shown is not repeated
    assert paged.rowCount() == 2 and not paged.canFetchMore()

    model = CatalogModel()
    qtmodeltester.check(model)
    model.set_repos(repos, has_more=True)
    qtmodeltester.check(model)
    proxy = CatalogFilter()
    proxy.setSourceModel(model)
    qtmodeltester.check(proxy)
    proxy.set_commercial_only(True)
    qtmodeltester.check(proxy)

    variants = VariantsModel()
    qtmodeltester.check(variants)
    chat = next(r for r in repos if r.repo_id == "kdiscM/Tiny-Chat-GGUF")
    variants.set_rows(variant_rows(chat))
    qtmodeltester.check(variants)
    assert [variants.index(r, 0).data(REPO_ROLE).quant for r in range(3)] == ["F16", "Q8_0", "Q4_0"]

    recs = RecommendationsModel()
    qtmodeltester.check(recs)
    recs.set_items(recommend(machine, catalog=None).items)  # estimates: no network
    qtmodeltester.check(recs)
    assert recs.rowCount() > 0


def test_fit_words_say_how_much() -> None:
    assert fmt.fit_words("gpu", int(3.1 * 2**30)) == "full GPU, 3.1 GiB spare"
    assert fmt.fit_words("cpu", int(6.2 * 2**30)) == "CPU only, 6.2 GiB spare"
    assert fmt.fit_words("none", -int(6.4 * 2**30), margin_bytes=2**30) == "over by 7.4 GiB"
    assert fmt.fit_words("none", 2**29, margin_bytes=2**30) == "over by 512.0 MiB"
    assert fmt.fit_words("partial", 2**30, gpu_layers=20, n_layers=33) == (
        "partial GPU (20/33 layers), 1.0 GiB spare"
    )
    assert fmt.speed_range(12.04, 18.3) == "12.0–18.3 tokens/s"
    assert fmt.speed_range(120.4, 180.3, unit=False) == "120–180"
    assert [fmt.count_short(n) for n in (950, 4200, 120_000, 3_400_000)] == ["950", "4.2k", "120k", "3.4M"]


def test_context_steps_end_at_the_trained_context() -> None:
    assert context_steps(2048) == (1024, 2048)
    assert context_steps(3000) == (1024, 2048, 3000)
    assert context_steps(None) == (1024, 2048, 4096)


# --- the page against the local Hub ---------------------------------------------------------------------


def test_a_search_shows_badges_with_the_core_plans_numbers_sorted_and_filtered(
    qtbot: QtBot,
    hub: HubServer,
    tiny_files: dict[str, Path],
    starter_model_path: Path,
    small_services: Services,
    small_machine: tuple[Machine, Path],
    make_window: Callable[[Services], MainWindow],
) -> None:
    tiny = {k: v for k, v in tiny_files.items() if k.startswith("Tiny-")}
    _add(hub, "kdiscS/Tiny-Chat-GGUF", tiny, license="apache-2.0", downloads=300)
    _add(hub, "kdiscS/Tiny-Coder-GGUF", {"C-Q8_0.gguf": tiny_files["Tiny-Q8_0.gguf"]},
         license="cc-by-nc-4.0", downloads=20)  # fmt: skip
    _add(hub, "kdiscS/Big-GGUF", {starter_model_path.name: starter_model_path}, license="gemma", downloads=9)
    window = make_window(small_services)
    view = _discover(qtbot, window)
    _search(qtbot, view, "kdiscs", 3)

    machine = small_machine[0]
    for repo in _repos(view):
        assert repo.meta is not None
        chosen = pick(options_of(repo), repo.meta, machine)  # the core's own plan, asked here directly
        row = next(r for r in range(view.proxy.rowCount()) if view.proxy.index(r, 0).data(REPO_ROLE) is repo)
        badge = view.proxy.index(row, FIT).data()
        plan = chosen.plan
        assert view.proxy.index(row, 2).data() == chosen.quant
        if repo.repo_id == "kdiscS/Big-GGUF":
            short = format_bytes(plan.margin_bytes - plan.headroom_bytes)
            assert badge == f"over by {short}"
            assert f"{short} short with the" in plan.reason  # the planner's own number
            assert view.proxy.index(row, FIT).data(FIT_ROLE).level is Level.OVER
        else:
            assert badge == f"CPU only, {format_bytes(plan.headroom_bytes)} spare"
            assert view.proxy.index(row, FIT).data(Qt.ItemDataRole.ToolTipRole) == plan.reason
    licence = view.proxy.index(0, CatalogModel.TITLES.index("Licence"))
    assert licence.data() == "apache-2.0 ✓"  # sorted by downloads, most first
    assert licence.data(Qt.ItemDataRole.ToolTipRole).startswith("apache-2.0 (commercial ✓): permissive")
    assert view.proxy.index(0, 0).data() == "Tiny-Chat-GGUF · kdiscS"

    # Sorting on tokens/s: on the raw number, fastest first.
    view.results.sortByColumn(SPEED, Qt.SortOrder.DescendingOrder)
    speeds = [view.proxy.index(r, SPEED).data(SORT_ROLE) for r in range(view.proxy.rowCount())]
    assert all(isinstance(s, float) for s in speeds)
    assert speeds == sorted(speeds, reverse=True)
    expected = sorted(
        (r.pick.plan.tokens_per_s.mid if r.pick and r.pick.plan.tokens_per_s else -1.0) for r in _repos(view)
    )
    assert speeds == expected[::-1]
    assert _repos(view)[-1].repo_id == "kdiscS/Big-GGUF"  # no speed: it does not fit

    # Filters: "fits this machine" hides the starter model, "commercial use" the NC licence.
    view.fits_box.setChecked(True)
    assert sorted(r.repo_id for r in _repos(view)) == ["kdiscS/Tiny-Chat-GGUF", "kdiscS/Tiny-Coder-GGUF"]
    view.commercial_box.setChecked(True)
    assert [r.repo_id for r in _repos(view)] == ["kdiscS/Tiny-Chat-GGUF"]
    assert "1 shown with the filters" in view.status_label.text()
    view.fits_box.setChecked(False)
    view.commercial_box.setChecked(False)
    assert view.proxy.rowCount() == 3
    _wait_idle(qtbot)


def test_the_pane_recomputes_every_badge_for_another_context_and_kv_type(
    qtbot: QtBot,
    hub: HubServer,
    tiny_files: dict[str, Path],
    small_services: Services,
    small_machine: tuple[Machine, Path],
    make_window: Callable[[Services], MainWindow],
) -> None:
    long = {k: v for k, v in tiny_files.items() if k.startswith("Long-")}
    _add(hub, "kdiscW/Long-Context-GGUF", long, license="mit")
    window = make_window(small_services)
    view = _discover(qtbot, window)
    _search(qtbot, view, "kdiscw", 1)
    _select(view, "kdiscW/Long-Context-GGUF")
    repo = view.repo
    assert repo is not None and repo.meta is not None and repo.context_length == LONG_CTX
    machine = small_machine[0]

    def check(details: Details, n_ctx: int, kv: KVCacheType) -> list[str]:
        assert repo is not None and repo.meta is not None
        chosen = pick(options_of(repo), repo.meta, machine, n_ctx=n_ctx, kv_type=kv)
        plans = {c.option.quant: c.plan for c in chosen.candidates}
        texts = []
        for row in range(view.variants_model.rowCount()):
            quant = view.variants_model.index(row, 0).data(REPO_ROLE).quant
            text = view.variants_model.index(row, VariantsModel.FIT_COLUMN).data()
            assert text == Fit.of(plans[quant]).text
            texts.append(text)
        assert view.badge.text() == Fit.of(chosen.plan).text
        assert details.report is not None and details.report.plan.n_ctx == n_ctx
        assert view.memory_bar.devices and view.memory_bar.devices[0].kv_cache > 0
        return texts

    first = check(_wait_details(qtbot, view, 4096), 4096, KVCacheType.F16)
    view.set_context(LONG_CTX)  # the slider's last stop: 512 MiB of f16 KV cache
    longest = check(_wait_details(qtbot, view, LONG_CTX), LONG_CTX, KVCacheType.F16)
    assert longest != first
    assert view.context_label.text() == f"{LONG_CTX:,} tokens"
    view.kv_box.setCurrentIndex(view.kv_box.findData(KVCacheType.Q4_0))  # a quarter of the KV cache
    quartered = check(_wait_details(qtbot, view, LONG_CTX, KVCacheType.Q4_0), LONG_CTX, KVCacheType.Q4_0)
    assert quartered != longest
    assert view.warnings_label.text()
    _wait_idle(qtbot)


def test_a_new_query_supersedes_the_one_in_flight(
    qtbot: QtBot,
    hub: HubServer,
    tiny_files: dict[str, Path],
    small_services: Services,
    make_window: Callable[[Services], MainWindow],
) -> None:
    q4 = {"M-Q4_0.gguf": tiny_files["Tiny-Q4_0.gguf"]}
    _add(hub, "kdiscSlow/Slow-GGUF", q4)
    _add(hub, "kdiscFast/Fast-GGUF", q4)
    hub.inject("kdiscSlow/Slow-GGUF", latency_s=1.5)  # its tree call and header read lag
    window = make_window(small_services)
    view = _discover(qtbot, window)
    controller = view._controller  # noqa: SLF001
    controller.search_now("kdiscslow")
    qtbot.wait(100)  # the slow search is on its way
    controller.search_now("kdiscfast")
    qtbot.waitUntil(lambda: controller.model.rowCount() == 1, timeout=20_000)
    _wait_idle(qtbot)  # the slow one has come back too, and was dropped
    assert [r.repo_id for r in controller.model.repos] == ["kdiscFast/Fast-GGUF"]
    assert view.lists.currentWidget() is view.results


def test_more_results_load_as_the_table_scrolls(
    qtbot: QtBot,
    hub: HubServer,
    tiny_files: dict[str, Path],
    small_services: Services,
    make_window: Callable[[Services], MainWindow],
) -> None:
    for n in range(3):
        _add(hub, f"kdiscP/M{n}-GGUF", {"M-Q4_0.gguf": tiny_files["Tiny-Q4_0.gguf"]}, downloads=10 - n)
    window = make_window(small_services)
    view = _discover(qtbot, window)
    controller = view._controller  # noqa: SLF001
    controller.page_size = 2
    _search(qtbot, view, "kdiscp", 2)
    assert controller.model.canFetchMore()
    view.proxy.fetchMore(view.proxy.index(-1, -1))  # what the view does when scrolled to the end
    qtbot.waitUntil(lambda: controller.model.rowCount() == 3, timeout=20_000)
    assert not controller.model.canFetchMore()
    assert [r.repo_id for r in controller.model.repos] == [f"kdiscP/M{n}-GGUF" for n in range(3)]
    _wait_idle(qtbot)


def test_download_buttons_emit_the_repo_and_quant(
    qtbot: QtBot,
    hub: HubServer,
    tiny_files: dict[str, Path],
    small_services: Services,
    make_window: Callable[[Services], MainWindow],
) -> None:
    tiny = {k: v for k, v in tiny_files.items() if k.startswith("Tiny-")}
    _add(hub, "kdiscD/Tiny-Chat-GGUF", tiny, license="apache-2.0")
    window = make_window(small_services)
    view = _discover(qtbot, window)
    _search(qtbot, view, "kdiscd", 1)
    _select(view, "kdiscD/Tiny-Chat-GGUF")
    _wait_details(qtbot, view, SPEC.n_ctx_train)
    assert view.repo is not None and view.repo.pick is not None
    picked = view.repo.pick.quant
    with qtbot.waitSignal(view.download_requested) as signal:
        qtbot.mouseClick(view.download_button, Qt.MouseButton.LeftButton)
    assert signal.args == ["kdiscD/Tiny-Chat-GGUF", picked]
    button = view.findChild(QPushButton, "discover-download-Q8_0")
    assert button is not None
    with qtbot.waitSignal(view.download_requested) as signal:
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert signal.args == ["kdiscD/Tiny-Chat-GGUF", "Q8_0"]
    _wait_idle(qtbot)


def test_nav_button_and_ctrl_k_focus_the_search(
    qtbot: QtBot, small_services: Services, make_window: Callable[[Services], MainWindow]
) -> None:
    window = make_window(small_services)
    view = _discover(qtbot, window)
    window.show()
    qtbot.waitExposed(window)
    assert window.findChild(type(window.pages["discover"].button), "nav-discover") is not None
    window.show_page("machine")
    find = window.findChild(QAction, "action-find-models")
    assert find is not None and find.shortcut() == QKeySequence("Ctrl+K")
    with qtbot.waitActive(window):
        window.activateWindow()
    qtbot.keyClick(window, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    assert window.current_page == "discover"
    qtbot.waitUntil(lambda: view.search.hasFocus(), timeout=5_000)
    assert view.search.objectName() == "discover-search"
    assert view.results.objectName() == "discover-results"
    qtbot.waitUntil(lambda: not view._controller.busy, timeout=30_000)  # noqa: SLF001 - recommendations
    _wait_idle(qtbot)


def test_switching_the_machine_judges_the_results_again(
    qtbot: QtBot,
    hub: HubServer,
    starter_model_path: Path,
    small_services: Services,
    make_window: Callable[[Services], MainWindow],
) -> None:
    _add(hub, "kdiscX/Big-GGUF", {starter_model_path.name: starter_model_path}, license="gemma")
    window = make_window(small_services)
    view = _discover(qtbot, window)
    _search(qtbot, view, "kdiscx", 1)
    qtbot.waitUntil(lambda: view.shown is not None, timeout=20_000)
    assert view.badge.text().startswith("over by ")
    window._machine.select("rtx4060-16gb")  # noqa: SLF001 - what the profile selector does
    qtbot.waitUntil(lambda: view.badge.text().startswith("full GPU, "), timeout=20_000)
    repo = view._controller.model.repos[0]  # noqa: SLF001
    assert repo.pick is not None and str(repo.pick.plan.placement) == "gpu"
    assert view.proxy.index(0, FIT).data() == view.badge.text()
    _wait_idle(qtbot)


def test_the_use_case_filter_keeps_the_repos_core_puts_in_that_use_case(
    qtbot: QtBot,
    hub: HubServer,
    tiny_files: dict[str, Path],
    small_services: Services,
    make_window: Callable[[Services], MainWindow],
) -> None:
    from kaihe_desktop.core.hub.recommend_data import load_recommendations, use_case_matches

    tiny = {"T-Q4_0.gguf": tiny_files["Tiny-Q4_0.gguf"]}
    _add(hub, "kdiscU/Tiny-Chat-GGUF", tiny, license="apache-2.0", downloads=30)
    _add(hub, "kdiscU/Tiny-Coder-GGUF", tiny, license="apache-2.0", downloads=20)
    hub.add_repo("kdiscU/Plain-GGUF", {**tiny, "README.md": b"# card\n"}, tags=("gguf", "code"), downloads=10)
    window = make_window(small_services)
    view = _discover(qtbot, window)
    box = view.use_case_box
    assert box.objectName() == "discover-use-case" and box.accessibleName()
    cases = load_recommendations().use_cases
    assert [box.itemText(i) for i in range(box.count())] == ["Any use", *(c.title for c in cases)]
    assert "keywords" in box.toolTip()
    _search(qtbot, view, "kdiscu", 3)

    box.setCurrentIndex(box.findData("coding"))
    assert view.proxy.use_case == "coding"
    # the coder by its name, the plain repo by its Hub tag "code"; the chat model is not for coding
    assert sorted(r.repo_id for r in _repos(view)) == ["kdiscU/Plain-GGUF", "kdiscU/Tiny-Coder-GGUF"]
    assert "2 shown with the filters" in view.status_label.text()
    box.setCurrentIndex(box.findData("general-chat"))
    assert [r.repo_id for r in _repos(view)] == ["kdiscU/Tiny-Chat-GGUF"]
    for case in cases:  # the proxy says what the core says, for every use case
        box.setCurrentIndex(box.findData(case.id))
        expected = {
            r.repo_id
            for r in view._controller.model.repos  # noqa: SLF001
            if use_case_matches(case.id, r.repo_id, r.hub.tags)
        }
        assert {r.repo_id for r in _repos(view)} == expected
    box.setCurrentIndex(0)
    assert view.proxy.use_case is None and view.proxy.rowCount() == 3
    _wait_idle(qtbot)


CARD_MD = (
    "---\nlicense: apache-2.0\nbase_model: x/y\n---\n\n# Tiny Card Model\n\n"
    "A **tiny** model for tests. See [the Hub](https://huggingface.co/kdiscM).\n\n"
    "![logo](https://example.invalid/logo.png)\n\n## Usage\n\n- run it\n- chat with it\n"
)


def test_the_pane_shows_the_model_card_online_and_says_so_offline(
    qtbot: QtBot,
    hub: HubServer,
    tiny_files: dict[str, Path],
    small_services: Services,
    make_window: Callable[[Services], MainWindow],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tiny = {"T-Q4_0.gguf": tiny_files["Tiny-Q4_0.gguf"]}
    hub.add_repo("kdiscM/Card-GGUF", {**tiny, "README.md": CARD_MD.encode()}, tags=("gguf",), downloads=9)
    hub.add_repo("kdiscM/NoCard-GGUF", tiny, tags=("gguf",), downloads=1)
    window = make_window(small_services)
    view = _discover(qtbot, window)
    _search(qtbot, view, "kdiscm", 2)
    _select(view, "kdiscM/Card-GGUF")
    card = view.card
    assert card.objectName() == "discover-card" and card.isReadOnly() and card.openExternalLinks()
    qtbot.waitUntil(lambda: "Tiny Card Model" in card.toPlainText(), timeout=20_000)
    text = card.toPlainText()
    assert "license: apache-2.0" not in text and "base_model" not in text  # front matter stripped
    assert "A tiny model for tests." in text  # rendered Markdown, not the source
    assert "**" not in text and "https://huggingface.co/kdiscM" in card.toMarkdown()
    card.grab()  # laid out and painted: the image is asked for, and refused (no request leaves)
    assert set(card.requested) == {"https://example.invalid/logo.png"}
    assert card.document().resource(2, QUrl("https://example.invalid/logo.png")) is None

    _select(view, "kdiscM/NoCard-GGUF")
    qtbot.waitUntil(lambda: card.toPlainText() == "This repo has no model card.", timeout=20_000)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _select(view, "kdiscM/Card-GGUF")
    assert card.toPlainText() == "Model card not available offline."
    _wait_idle(qtbot)
