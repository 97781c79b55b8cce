"""`kaihe chat`: one-shot JSON on the real starter model, clear one-line errors, and the acceptance check:
SIGKILL of the engine during a reply → one clear error, the partial reply in history, the next chat works."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import psutil
import pytest

from kaihe_desktop.cli.main import main
from kaihe_desktop.core.chat.history import HistoryStore
from kaihe_desktop.core.paths import history_db
from tests.helpers.tiny_gguf import write_tiny_model


def _chat_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    code = main(["chat", *args, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    data: dict[str, object] = json.loads(out)
    return data


def test_one_shot_json_reply_is_saved(
    starter_model_path: Path, kaihe_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _chat_json(
        capsys, str(starter_model_path), "--prompt", "The sea is", "--max-tokens", "8", "--ctx", "512",
        "--temperature", "0", "--system", "Harbour notes.",
    )  # fmt: skip
    assert data["mode"] == "completion"
    assert isinstance(data["reply"], str) and data["reply"].strip()
    assert data["reasoning"] == ""
    stats = data["stats"]
    assert isinstance(stats, dict)
    assert set(stats) == {"prompt_tokens", "completion_tokens", "ttft_s", "tokens_per_s", "stop_reason"}
    assert stats["stop_reason"] in ("length", "eos") and 0 < int(stats["completion_tokens"]) <= 8
    assert data["context"] == 512
    with HistoryStore(history_db()) as history:
        conversation = history.get_conversation(int(str(data["conversation_id"])))
    assert conversation.system_prompt == "Harbour notes."
    assert [m.role for m in conversation.messages] == ["user", "assistant"]
    assert conversation.messages[1].content == data["reply"]
    assert conversation.settings["max_tokens"] == 8


def test_template_injection_is_refused_before_loading(
    injection_gguf_path: Path, kaihe_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["chat", str(injection_gguf_path), "--prompt", "hi"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("kaihe: error: ") and "template" in err
    assert not history_db().exists() or "hi" not in history_db().read_bytes().decode("latin-1")


def test_corrupt_and_unknown_models_are_one_line_errors(
    corrupt_gguf_path: Path, kaihe_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["chat", str(corrupt_gguf_path), "--prompt", "hi"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kaihe: error: ") and corrupt_gguf_path.name in err and err.count("\n") == 1

    assert main(["chat", "no-such-model", "--prompt", "hi"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kaihe: error: ") and "no-such-model" in err and err.count("\n") == 1


def test_devices_pipes_and_unloadable_models_are_named_before_any_load(
    kaihe_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    zero = write_tiny_model(tmp_path / "zero-heads.gguf", extra_kv={"llama.attention.head_count": 0})
    says = {
        "/dev/zero": "/dev/zero is not a regular file (a character device)",
        str(fifo): f"{fifo} is not a regular file (a named pipe)",
        str(zero): "zero-heads.gguf: llama.cpp cannot load it: llama.attention.head_count is 0",
    }
    for model, message in says.items():
        assert main(["chat", model, "--prompt", "hi"]) == 1
        err = capsys.readouterr().err
        assert err == f"kaihe: error: cannot load {model}: {message}\n"


def _engine_child(cli: psutil.Process, timeout_s: float = 60.0) -> psutil.Process:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in cli.children():
            try:
                cmdline = child.cmdline()
            except (psutil.ZombieProcess, psutil.NoSuchProcess):
                continue  # a short-lived helper (py-cpuinfo runs one) that has already exited
            if any("spawn_main" in part for part in cmdline):
                return child
        time.sleep(0.05)
    raise AssertionError("the engine process never started")


def test_sigkill_of_the_engine_during_a_reply(starter_model_path: Path, tmp_path: Path) -> None:
    env = {**os.environ, "KAIHE_HOME": str(tmp_path / "home")}
    command = [
        sys.executable,
        "-m",
        "kaihe_desktop.cli.main",
        "chat",
        str(starter_model_path),
        "--ctx",
        "512",
    ]
    cli = subprocess.Popen(
        [*command, "--prompt", "The sea is", "--max-tokens", "400", "--seed", "3"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert cli.stdout is not None and cli.stderr is not None
    received = bytearray()

    def read() -> None:
        assert cli.stdout is not None
        while chunk := cli.stdout.read1(4096):
            received.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    engine = _engine_child(psutil.Process(cli.pid))
    deadline = time.monotonic() + 120
    while len(received.decode("utf-8", "ignore").split()) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    engine.send_signal(signal.SIGKILL)
    code = cli.wait(60)
    reader.join(10)
    err = cli.stderr.read().decode()
    out = received.decode()

    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("kaihe: error:")]
    assert errors == [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "Traceback" not in err
    assert "the engine process was killed (signal 9, SIGKILL) while generating a reply" in errors[0]
    assert "characters) is saved in history (conversation 1)" in errors[0]

    with HistoryStore(tmp_path / "home" / "history.sqlite3") as history:
        reply = history.get_conversation(1).messages[-1]
    assert reply.role == "assistant" and reply.partial
    assert len(reply.content.split()) >= 6 and out == reply.content + "\n"

    again = subprocess.run(
        [*command, "--prompt", "The sky is", "--max-tokens", "4", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["conversation_id"] == 2


def _wait_for(condition: Callable[[], bool], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_ctrl_c_stops_the_reply_and_a_second_quits(starter_model_path: Path, tmp_path: Path) -> None:
    """Ctrl-C in a terminal hits the whole process group: the engine ignores it, the CLI stops the reply."""
    env = {**os.environ, "KAIHE_HOME": str(tmp_path / "home")}
    cli = subprocess.Popen(
        [sys.executable, "-m", "kaihe_desktop.cli.main", "chat", str(starter_model_path), "--ctx", "512",
         "--max-tokens", "400", "--seed", "5"],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    assert cli.stdin is not None
    out, err = bytearray(), bytearray()
    readers = [
        threading.Thread(target=lambda: _drain(cli.stdout, out)),
        threading.Thread(target=lambda: _drain(cli.stderr, err)),
    ]
    for reader in readers:
        reader.start()
    try:
        _wait_for(lambda: b"quits" in err)
        engine = _engine_child(psutil.Process(cli.pid))
        cli.stdin.write(b"The sea is\n")
        cli.stdin.flush()
        _wait_for(lambda: len(out.split()) >= 5)
        os.killpg(cli.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        _wait_for(lambda: b"stop: stopped (stopped)]" in err)
        assert cli.poll() is None and engine.is_running()  # the reply stopped; nothing quit

        cli.stdin.write(b"The sky is\n")
        cli.stdin.flush()
        before = len(out)
        _wait_for(lambda: len(out[before:].split()) >= 3)
        os.killpg(cli.pid, signal.SIGINT)
        time.sleep(0.2)  # two signals sent at once merge into one; a person's two presses do not
        os.killpg(cli.pid, signal.SIGINT)  # the second press quits (during the reply or at the prompt)
        code = cli.wait(60)
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
        for reader in readers:
            reader.join(10)
    assert code == 0, err.decode()
    assert b"Traceback" not in err and b"error" not in err
    with HistoryStore(tmp_path / "home" / "history.sqlite3") as history:
        messages = history.get_conversation(1).messages
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1].partial and messages[1].stats["stop_reason"] == "stopped"
    assert messages[1].content and messages[1].content in out.decode()
    assert messages[3].partial  # stopped by the first press of the pair


def _drain(stream: IO[bytes] | None, into: bytearray) -> None:
    assert stream is not None
    while chunk := stream.read1(4096):  # type: ignore[attr-defined]
        into.extend(chunk)


@pytest.mark.parametrize("model", ["c" * 601, "a" * 300 + "/" + "b" * 300, "x/.", "ünï/cödé"])
def test_bad_names_are_one_line(kaihe_home: Path, capsys: pytest.CaptureFixture[str], model: str) -> None:
    assert main(["chat", model, "--prompt", "hi"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kaihe: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert len(err) < 400
