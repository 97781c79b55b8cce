"""`kaihe fit` as a user runs it: the real console command in a subprocess, against local files, the session's
local Hub server (HF_ENDPOINT) and the shipped machine profiles."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kaihe_desktop.core.gguf.meta import read_local
from kaihe_desktop.core.machine.profiles import profiles_dir
from tests.helpers.hub_server import HubServer
from tests.helpers.model_fixtures import TINY_LLAMA
from tests.helpers.tiny_gguf import write_tiny_model

MiB = 2**20
BREAKDOWN_KEYS = {"weights", "kv_cache", "compute", "output", "overhead"}


def kaihe(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed `kaihe` entry point (the module main when the script is not on PATH)."""
    exe = Path(sys.executable).with_name("kaihe")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "kaihe_desktop.cli.main"]
    env = {**os.environ, "KAIHE_HOME": str(home)}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=300, check=False)


def fit_json(*args: str, home: Path) -> dict[str, Any]:
    result = kaihe("fit", *args, "--json", home=home)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def profile(name: str) -> str:
    return str(profiles_dir() / f"{name}.json")


def assert_one_clear_error(result: subprocess.CompletedProcess[str], *, names: str) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("kaihe: error: ")
    assert names in line, line
    return line


# --- bad input -----------------------------------------------------------------------------------------


def test_corrupt_file(corrupt_gguf_path: Path, tmp_path: Path) -> None:
    line = assert_one_clear_error(
        kaihe("fit", str(corrupt_gguf_path), home=tmp_path), names=corrupt_gguf_path.name
    )
    assert "corrupt" in line.lower() or "absurd" in line.lower() or "invalid" in line.lower()


def test_truncated_file(truncated_gguf_path: Path, tmp_path: Path) -> None:
    line = assert_one_clear_error(
        kaihe("fit", str(truncated_gguf_path), home=tmp_path), names=truncated_gguf_path.name
    )
    assert "truncated" in line.lower() or "ends" in line.lower()


def test_truncated_tensor_data(truncated_data_gguf_path: Path, tmp_path: Path) -> None:
    assert_one_clear_error(
        kaihe("fit", str(truncated_data_gguf_path), home=tmp_path), names=truncated_data_gguf_path.name
    )


def test_text_file(text_file_path: Path, tmp_path: Path) -> None:
    line = assert_one_clear_error(kaihe("fit", str(text_file_path), home=tmp_path), names=text_file_path.name)
    assert "gguf" in line.lower()


@pytest.mark.parametrize("relative", [False, True])
def test_missing_path(tmp_path: Path, relative: bool) -> None:
    missing = "no-such-model.gguf" if relative else str(tmp_path / "no-such-model.gguf")
    assert_one_clear_error(kaihe("fit", missing, home=tmp_path), names="no-such-model.gguf")


@pytest.mark.parametrize("target", ["nobody/no-such-repo", "nobody/no-such-repo/model-Q4_K_M.gguf"])
def test_unknown_repo(hub: HubServer, tmp_path: Path, target: str) -> None:
    line = assert_one_clear_error(kaihe("fit", target, home=tmp_path), names="nobody/no-such-repo")
    assert "not found" in line.lower()


def test_repo_without_gguf_files(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("kaihe-test/fit-no-gguf", {"README.md": b"# nothing here\n"})
    line = assert_one_clear_error(kaihe("fit", "kaihe-test/fit-no-gguf", home=tmp_path), names="fit-no-gguf")
    assert "no GGUF" in line


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"extra_kv": {"llama.attention.head_count": 0}}, "llama.attention.head_count is 0"),
        ({"drop_kv": ("{arch}.attention.head_count",)}, "llama.attention.head_count is missing"),
        ({"arch_name": "foo"}, "unknown architecture 'foo'"),
    ],
)
def test_a_model_llama_cpp_cannot_load_gets_no_plan(
    tmp_path: Path, overrides: dict[str, Any], says: str
) -> None:
    path = write_tiny_model(tmp_path / "unloadable.gguf", TINY_LLAMA, **overrides)
    line = assert_one_clear_error(kaihe("fit", str(path), home=tmp_path), names="unloadable.gguf")
    assert line == f"kaihe: error: unloadable.gguf: llama.cpp cannot load it: {says}"


def test_a_device_or_pipe_is_not_a_regular_file(tmp_path: Path) -> None:
    line = assert_one_clear_error(kaihe("fit", "/dev/zero", home=tmp_path), names="/dev/zero")
    assert line == "kaihe: error: /dev/zero is not a regular file (a character device)"
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    line = assert_one_clear_error(kaihe("fit", str(fifo), home=tmp_path), names=str(fifo))
    assert line == f"kaihe: error: {fifo} is not a regular file (a named pipe)"


def test_bad_option_values_exit_non_zero(tiny_llama_path: Path, tmp_path: Path) -> None:
    for args in (["--ctx", "0"], ["--gpu-layers", "lots"], ["--kv-type", "q3_k"], ["--flash-attn", "maybe"]):
        result = kaihe("fit", str(tiny_llama_path), *args, home=tmp_path)
        assert result.returncode != 0 and "Traceback" not in result.stderr


def test_kv_type_choices_are_every_type_llama_cpp_takes(starter_model_path: Path, tmp_path: Path) -> None:
    """bf16 and iq4_nl are planned as themselves (not f16), and a name llama.cpp lacks lists the choices."""
    bad = kaihe("fit", str(starter_model_path), "--kv-type", "q3_k", home=tmp_path)
    assert bad.returncode != 0 and all(name in bad.stderr for name in ("bf16", "q4_1", "iq4_nl", "q5_0"))
    f16 = fit_json(str(starter_model_path), "--ctx", "4096", "--flash-attn", "on", home=tmp_path)
    for kv_type in ("bf16", "iq4_nl"):
        data = fit_json(str(starter_model_path), "--ctx", "4096", "--kv-type", kv_type, home=tmp_path)
        assert data["kv_type"] == kv_type and data["flash_attn"] is True
        if kv_type == "iq4_nl":  # 18 bytes per 32 values against f16's 64
            assert data["breakdown"]["kv_cache"] * 64 == f16["breakdown"]["kv_cache"] * 18
        else:
            assert data["breakdown"]["kv_cache"] == f16["breakdown"]["kv_cache"]


# --- the starter model, local ---------------------------------------------------------------------------


def test_starter_model_locally_on_this_machine(starter_model_path: Path, tmp_path: Path) -> None:
    data = fit_json(str(starter_model_path), home=tmp_path)
    meta = read_local(starter_model_path)
    for key in ("placement", "gpu_layers", "n_ctx", "ram_bytes", "vram_bytes", "breakdown", "headroom_pct",
                "tokens_per_s_estimate", "warnings"):  # fmt: skip
        assert key in data, key
    assert set(data["breakdown"]) >= BREAKDOWN_KEYS
    assert data["placement"] in {"gpu", "partial", "cpu"}  # a 253 MB model fits any machine running the suite
    assert 1024 <= data["n_ctx"] <= meta.context_length and data["n_ctx"] % 1024 == 0
    total = sum(data["breakdown"][k] for k in BREAKDOWN_KEYS)
    assert total == data["ram_bytes"] + data["vram_bytes"]
    # The weights are the file's tensors (give or take a repacked copy), nothing like the whole file twice.
    assert 0.9 * meta.tensor_bytes <= data["breakdown"]["weights"] <= 2.1 * meta.tensor_bytes
    assert data["breakdown"]["kv_cache"] > 0 and data["breakdown"]["compute"] > 0
    assert 0 < data["headroom_pct"] <= 100
    speed = data["tokens_per_s_estimate"]
    assert 0 < speed["low"] <= speed["high"]
    for w in data["warnings"]:
        assert set(w) >= {"code", "severity", "message"} and w["severity"] in {"info", "warning", "critical"}
    assert data["pick"] is None


def test_starter_model_with_options_and_profile(starter_model_path: Path, tmp_path: Path) -> None:
    data = fit_json(
        str(starter_model_path),
        "--ctx", "8192", "--kv-type", "q8_0", "--flash-attn", "on", "--gpu-layers", "auto",
        "--profile", profile("rtx4060-16gb"),
        home=tmp_path,
    )  # fmt: skip
    assert data["n_ctx"] == 8192 and data["kv_type"] == "q8_0" and data["flash_attn"] is True
    assert data["placement"] == "gpu" and data["gpu_layers"] == data["n_layers"]
    assert data["vram_bytes"] > data["breakdown"]["weights"] * 0.5
    cpu_only = fit_json(str(starter_model_path), "--ctx", "8192", "--gpu-layers", "0",
                        "--profile", profile("rtx4060-16gb"), home=tmp_path)  # fmt: skip
    assert cpu_only["placement"] == "cpu" and cpu_only["vram_bytes"] < data["vram_bytes"]


def test_human_output_is_a_readable_table(starter_model_path: Path, tmp_path: Path) -> None:
    result = kaihe("fit", str(starter_model_path), "--profile", profile("laptop-8gb"), home=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for word in ("Placement", "Context", "Memory", "Headroom", "Speed", "weights", "kv cache", "compute",
                 "output", "overhead", "total", "Warnings"):  # fmt: skip
        assert word in out, word
    assert "tokens/s" in out


# --- the Hub: header only ----------------------------------------------------------------------------------


def test_hub_file_reads_only_the_header(
    hub: HubServer, hub_starter_repo: str, starter_model_path: Path, tmp_path: Path
) -> None:
    meta = read_local(starter_model_path)
    file_size = starter_model_path.stat().st_size
    data = fit_json(
        f"{hub_starter_repo}/{starter_model_path.name}", "--profile", profile("laptop-8gb"), home=tmp_path
    )
    sent = hub.bytes_sent(hub_starter_repo, starter_model_path.name)
    assert 0 < sent <= meta.header_size_bytes + 4 * MiB
    assert sent < file_size / 10
    local = fit_json(str(starter_model_path), "--profile", profile("laptop-8gb"), home=tmp_path)
    for key in ("placement", "n_ctx", "ram_bytes", "breakdown"):
        assert data[key] == local[key], key


def test_hub_repo_picks_a_quant_reading_one_header(
    hub: HubServer, starter_model_path: Path, tmp_path: Path
) -> None:
    """A repo with three quants (the real Q4_K_M file, and bigger Q8_0 / F16 files of which only the size
    matters): one header is read, the others are never fetched, and the pick comes with its reason."""
    q4 = starter_model_path.name
    bigger = {}
    for quant, factor in (("Q8_0", 2), ("F16", 4)):
        path = tmp_path / f"gemma-3-270m-{quant}.gguf"
        with open(path, "wb") as out:  # same header, sparse tail: only its size is used
            with open(starter_model_path, "rb") as src:
                shutil.copyfileobj(src, out)
            out.truncate(starter_model_path.stat().st_size * factor)
        bigger[path.name] = path
    repo = "kaihe-test/fit-gemma-quants"
    hub.add_repo(repo, {q4: starter_model_path, **bigger, "README.md": b"# quants\n"})
    hub.reset_counters()

    data = fit_json(repo, "--profile", profile("m3max-64gb"), home=tmp_path)
    meta = read_local(starter_model_path)
    assert hub.bytes_sent(repo, q4) <= meta.header_size_bytes + 4 * MiB
    for name in bigger:
        assert hub.bytes_sent(repo, name) == 0
    pick = data["pick"]
    assert pick is not None
    assert {c["quant"] for c in pick["candidates"]} == {"Q4_K_M", "Q8_0", "F16"}
    assert pick["quant"] == "F16"  # all fit a 64 GB Mac: the best quality offered
    assert pick["reason"].startswith("F16: ") and "%" in pick["reason"]
    assert data["quant"] == "F16"
    # F16's weights are four times the Q4_K_M file's.
    local = fit_json(str(starter_model_path), "--profile", profile("m3max-64gb"), home=tmp_path)
    assert data["breakdown"]["weights"] > 3 * local["breakdown"]["weights"]

    small = fit_json(repo, "--profile", profile("netbook-4gb"), "--ctx", "32768", home=tmp_path)
    ranks = {"F16": 0, "Q8_0": 1, "Q4_K_M": 2}
    assert ranks[small["pick"]["quant"]] >= ranks[pick["quant"]]


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("x/.", "is not a Hub repo id"),
        ("ünï/cödé", "only ASCII"),
        ("a/b\\c", "is not a Hub repo id"),
        ("x/./model-Q4_K_M.gguf", "is not a Hub repo id"),
        ("c" * 601, "255-byte limit"),
        ("a" * 300 + "/" + "b" * 300, "255-byte limit"),
    ],
)
def test_bad_names_are_one_line(tmp_path: Path, model: str, says: str) -> None:
    line = assert_one_clear_error(kaihe("fit", model, home=tmp_path), names=says)
    assert len(line) < 400
