"""The fit report in core: what `kaihe fit` shows, as data the window can show too (local files, a Hub file,
and a bare repo whose quant is picked), against the real starter model and the local Hub."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kaihe_desktop.core.errors import InvalidNameError, ModelNotFoundError, UnknownKVCacheTypeError
from kaihe_desktop.core.fit.advice import Advice, Severity
from kaihe_desktop.core.fit.kv_types import KVCacheType
from kaihe_desktop.core.fit.placement import Placement
from kaihe_desktop.core.fit.plan import plan
from kaihe_desktop.core.fit.report import (
    FitReport,
    ModelRef,
    SourceKind,
    classify,
    fit_report,
    report_for,
)
from kaihe_desktop.core.gguf.meta import read_local
from kaihe_desktop.core.machine.profiles import resolve_profile
from kaihe_desktop.core.machine.spec import CpuInfo, Machine, RamInfo
from kaihe_desktop.core.machine.tiers import tier_for
from tests.helpers.hub_server import HubServer

MiB = 2**20


def test_classify_names_a_local_file_a_hub_file_or_a_repo(tmp_path: Path) -> None:
    here = tmp_path / "m.gguf"
    here.write_bytes(b"")
    assert classify(str(here)) == ModelRef(SourceKind.LOCAL, str(here))
    assert classify("./missing.gguf").kind == SourceKind.LOCAL  # a path, even when it is not there
    assert classify("owner/repo") == ModelRef(SourceKind.HUB_REPO, "owner/repo")
    assert classify("owner/repo/sub/m-Q4_K_M.gguf") == ModelRef(
        SourceKind.HUB_FILE, "owner/repo", "sub/m-Q4_K_M.gguf"
    )
    with pytest.raises(ModelNotFoundError, match="not a Hub name"):
        classify("model.gguf")
    with pytest.raises(InvalidNameError):
        classify("x/.")


def test_local_report_holds_everything_fit_shows(starter_model_path: Path) -> None:
    machine = resolve_profile("rtx4060-16gb")
    report = fit_report(str(starter_model_path), machine)
    meta = read_local(starter_model_path)
    assert isinstance(report, FitReport) and report.pick is None
    assert report.source == str(starter_model_path)
    assert report.meta == meta and report.machine == machine
    assert report.tier == tier_for(machine)
    assert report.quant == meta.file_type and report.file_size_bytes == meta.file_size_bytes
    # the same plan the planner makes, placement as the enum
    assert report.plan == plan(meta, machine)
    assert report.plan.placement is Placement.GPU and report.plan.kv_type is KVCacheType.F16
    assert report.plan.tokens_per_s is not None and report.plan.reason
    # memory per device: RAM, then the one GPU, adding up to the plan's total
    assert [(d.gpu_index, d.name) for d in report.devices] == [(None, "RAM"), (0, machine.gpus[0].name)]
    assert sum(d.breakdown.total for d in report.devices) == report.memory_total.total
    assert report.memory_total.total == report.plan.estimate.total_bytes
    # warnings as data: codes, severities, numbers
    assert report.advice and all(isinstance(a, Advice) and a.code for a in report.advice)
    assert {a.code for a in report.advice} >= {"next_quant"}
    severities = [a.severity for a in report.advice]
    order = [Severity.CRITICAL, Severity.WARNING, Severity.INFO]
    assert severities == sorted(severities, key=order.index)


def test_to_dict_is_the_json_of_kaihe_fit(starter_model_path: Path) -> None:
    data = fit_report(str(starter_model_path), resolve_profile("laptop-8gb"), kv_type="q8_0").to_dict()
    assert data["placement"] == "cpu" and data["kv_type"] == "q8_0" and data["flash_attn"] is True
    assert data["model"] == str(starter_model_path) and data["pick"] is None
    assert data["tier"] == str(tier_for(resolve_profile("laptop-8gb")).tier)
    assert set(data["breakdown"]) >= {"weights", "kv_cache", "compute", "output", "overhead"}
    assert all({"code", "severity", "message", "numbers"} == set(w) for w in data["warnings"])


def test_a_model_that_fits_nowhere_has_no_speed_and_says_why_first(starter_model_path: Path) -> None:
    small = Machine(
        ram=RamInfo(total_bytes=2 * 2**30, available_bytes=2**30), cpu=CpuInfo("c", "x86_64", 2, 2, ())
    )
    report = report_for(read_local(starter_model_path), small, source="starter")
    assert report.plan.placement is Placement.NONE and report.plan.tokens_per_s is None
    assert report.to_dict()["tokens_per_s_estimate"] == {"low": None, "high": None}
    assert report.advice[0].code == "does_not_fit" and report.advice[0].severity is Severity.CRITICAL
    assert report.advice[0].numbers["margin_bytes"] == report.plan.margin_bytes


def test_an_unknown_kv_type_fails_before_anything_is_read() -> None:
    with pytest.raises(UnknownKVCacheTypeError, match="iq4_nl"):
        fit_report("owner/never-listed", resolve_profile("laptop-8gb"), kv_type="q3_k")


def test_a_bare_repo_picks_the_quant_and_the_report_follows_it(
    hub: HubServer, starter_model_path: Path, tmp_path: Path
) -> None:
    q4 = starter_model_path.name
    q8 = tmp_path / "gemma-3-270m-Q8_0.gguf"
    with open(q8, "wb") as out:  # the same header, a sparse tail: only its size matters
        with open(starter_model_path, "rb") as src:
            shutil.copyfileobj(src, out)
        out.truncate(starter_model_path.stat().st_size * 2)
    repo = "kaihe-test/report-gemma-quants"
    hub.add_repo(repo, {q4: starter_model_path, q8.name: q8})
    hub.reset_counters()

    report = fit_report(repo, resolve_profile("m3max-64gb"))
    assert hub.bytes_sent(repo, q8.name) == 0  # one header read, from the single-file Q4_K_M
    assert report.pick is not None and report.pick.quant == "Q8_0" == report.quant
    assert report.source == f"{repo}/{q8.name}"
    assert report.file_size_bytes == q8.stat().st_size
    assert {c.option.quant for c in report.pick.candidates} == {"Q4_K_M", "Q8_0"}
    assert report.plan.weights_scale > 1.5  # the plan is the picked variant's, not the header's file
    assert report.to_dict()["pick"]["quant"] == "Q8_0"


def test_a_repo_without_gguf_files_is_not_found(hub: HubServer) -> None:
    repo = "kaihe-test/report-no-gguf"
    hub.add_repo(repo, {"README.md": b"# nothing\n"})
    with pytest.raises(ModelNotFoundError, match="no GGUF model files"):
        fit_report(repo, resolve_profile("laptop-8gb"))
