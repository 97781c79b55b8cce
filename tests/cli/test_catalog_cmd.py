"""`kaihe search` and `kaihe recommend` end to end, against the local Hub server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kaihe_desktop.cli.main import main
from tests.helpers.hub_server import HubServer
from tests.helpers.tiny_gguf import TinySpec, write_tiny_model


@pytest.fixture
def served(hub: HubServer, tmp_path: Path, kaihe_home: Path) -> HubServer:
    spec = TinySpec(arch="llama", n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256)
    files = {
        f"Cli-{q}.gguf": write_tiny_model(tmp_path / f"Cli-{q}.gguf", spec, tensor_type=q)
        for q in ("Q8_0", "Q4_0")
    }
    hub.add_repo("kaiheS/Cli-Apache-GGUF", files, license="apache-2.0", downloads=20, tags=("gguf",))
    hub.add_repo("kaiheS/Cli-NonCommercial-GGUF", files, license="cc-by-nc-4.0", downloads=10, tags=("gguf",))
    return hub


def test_search_json_has_the_documented_keys(served: HubServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "kaihes", "--json", "--profile", "laptop-8gb"]) == 0
    repos = json.loads(capsys.readouterr().out)
    assert [r["repo_id"] for r in repos] == ["kaiheS/Cli-Apache-GGUF", "kaiheS/Cli-NonCommercial-GGUF"]
    first = repos[0]
    for key in ("repo_id", "license", "commercial_use", "gated", "downloads", "picked_quant", "variants"):
        assert key in first
    assert first["picked_quant"] == "Q8_0"
    variant = first["variants"][0]
    assert variant["quant"] == "Q8_0" and variant["files"] == ["Cli-Q8_0.gguf"]
    assert variant["size_bytes"] > 0
    assert set(variant["fit"]) >= {"placement", "headroom_pct"}
    assert variant["fit"]["placement"] == "cpu"


def test_search_filters_and_table(served: HubServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "kaihes", "--fits", "--license", "commercial", "--profile", "laptop-8gb"]) == 0
    out = capsys.readouterr().out
    assert "kaiheS/Cli-Apache-GGUF" in out
    assert "NonCommercial" not in out
    header = out.splitlines()[0]
    for column in ("REPO", "PICK", "FIT", "FREE"):
        assert column in header
    assert "Q8_0: the best quality offered" in out


def test_search_offline_shows_the_cache_with_a_notice(
    served: HubServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["search", "kaihes", "--json", "--profile", "laptop-8gb"]) == 0
    online = json.loads(capsys.readouterr().out)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    served.reset_counters()
    assert main(["search", "kaihes", "--profile", "laptop-8gb"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OFFLINE: offline mode is on (HF_HUB_OFFLINE)")
    assert "kaiheS/Cli-Apache-GGUF" in out
    assert main(["search", "kaihes", "--json", "--profile", "laptop-8gb"]) == 0
    captured = capsys.readouterr()
    assert "offline" in captured.err
    assert json.loads(captured.out) == online
    assert served.requests() == []


def test_recommend_json_keys_and_first_run(kaihe_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", "--offline", "--json", "--profile", "m2-16gb"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert [i["use_case"] for i in items] == [
        "general-chat", "coding", "multilingual", "reasoning", "efficiency", "edge", "first-run",
    ]  # fmt: skip
    for item in items:
        for key in ("use_case", "repo_id", "quant", "reason", "headroom_pct", "checked_on_hub"):
            assert key in item
        assert item["checked_on_hub"] is False


def test_recommend_human_output_names_the_first_run_pick(
    kaihe_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["recommend", "--offline", "--profile", "laptop-8gb"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("not checked against the Hub")
    assert "First-run pick:" in out and "kaihe pull " in out
    assert main(["recommend", "--offline", "--use-case", "coding", "--profile", "laptop-8gb"]) == 0
    out = capsys.readouterr().out
    assert "Coding" in out and "General chat" not in out and "First-run" not in out


def test_bad_arguments_are_one_line_errors(kaihe_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "x", "--timeout", "0", "--profile", "laptop-8gb"]) == 1
    assert capsys.readouterr().err.strip() == "kaihe: error: --timeout must be more than 0 seconds"
    assert main(["recommend", "--profile", str(kaihe_home / "missing.json")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kaihe: error:")
    with pytest.raises(SystemExit) as exit_info:
        main(["recommend", "--use-case", "poetry"])
    assert exit_info.value.code == 2


def test_offline_search_also_lists_installed_models(
    served: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kaihe_desktop.core.library import Library

    assert main(["search", "kaihes", "--profile", "laptop-8gb"]) == 0
    capsys.readouterr()
    Library().import_file(tmp_path / "Cli-Q4_0.gguf", name="cli-tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["search", "cli", "--profile", "laptop-8gb"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OFFLINE:")
    assert "Installed and matching: cli-tiny" in out
    assert "kaiheS/Cli-Apache-GGUF" in out and "kaiheS/Cli-NonCommercial-GGUF" in out
