"""The engine process with the real llama.cpp: the starter model and tiny GGUFs written by the tests."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kaihe_desktop.core.engine import protocol as p
from kaihe_desktop.core.engine.client import EngineClient, describe_exit
from kaihe_desktop.core.engine.worker import _StopTextFilter
from kaihe_desktop.core.errors import EngineCrashedError, EngineError, ModelLoadError

GREEDY = p.SamplingSettings(temperature=0.0, seed=7, max_tokens=12)


@pytest.fixture(scope="module")
def engine(starter_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineClient]:
    client = EngineClient(log_path=tmp_path_factory.mktemp("engine") / "engine.log")
    client.load(p.LoadOptions(path=str(starter_model_path), n_ctx=512, n_threads=2, n_threads_batch=2))
    yield client
    client.close()


def test_load_reports_progress_and_context(starter_model_path: Path, tmp_path: Path) -> None:
    progress: list[p.Progress] = []
    with EngineClient(log_path=tmp_path / "engine.log") as client:
        loaded = client.load(
            p.LoadOptions(path=str(starter_model_path), n_ctx=1024, n_threads=1, n_threads_batch=1),
            on_progress=progress.append,
        )
        assert loaded.n_ctx == 1024
        assert loaded.n_ctx_train == 32768
        assert loaded.n_vocab == 262144
        assert loaded.metadata["general.architecture"] == "gemma3"
        fractions = [e.fraction for e in progress]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0
        assert any(e.stage == "loading" and 0 < e.fraction < 1 for e in progress)  # llama.cpp's callback

        report = client.unload()
        assert report.was_loaded
        # the 253 MB model is mapped and resident after the load; unloading hands it back
        assert report.freed_bytes > 150 * 1024 * 1024, report
        assert client.alive and client.loaded is None
        with pytest.raises(EngineError, match="no model is loaded"):
            client.count_tokens("hello")
    assert not client.alive


def test_streamed_pieces_make_the_reply_and_stats_add_up(engine: EngineClient) -> None:
    pieces: list[str] = []
    result = engine.generate("The sea is", sampling=GREEDY, on_token=pieces.append)
    assert "".join(pieces) == result.text and result.text.strip()
    assert result.prompt_tokens == engine.count_tokens("The sea is") == 4  # BOS + 3
    assert result.stop_reason in (p.StopReason.LENGTH, p.StopReason.EOS)
    if result.stop_reason == p.StopReason.LENGTH:
        assert result.completion_tokens == GREEDY.max_tokens
    assert 0 < result.ttft_s < result.total_s
    assert result.tokens_per_s > 0
    assert result.stop_latency_s is None


def test_same_seed_same_reply(engine: EngineClient) -> None:
    """A fixed seed repeats a reply. (In between, another prompt: llama.cpp reuses a cached prompt prefix,
    and a prompt evaluated in one batch or token by token differs in the last bits of its logits.)"""
    sampling = p.SamplingSettings(temperature=0.9, seed=1234, max_tokens=10)
    first = engine.generate("Once upon a time", sampling=sampling)
    engine.generate("The sea is", sampling=GREEDY)
    second = engine.generate("Once upon a time", sampling=sampling)
    assert first.text == second.text


def test_max_tokens_is_clamped_to_the_room_left(engine: EngineClient) -> None:
    loaded = engine.loaded
    assert loaded is not None
    prompt = "word " * 500  # about 500 tokens of a 512 context
    room = loaded.n_ctx - engine.count_tokens(prompt)
    assert 0 < room < 20
    result = engine.generate(prompt, sampling=p.SamplingSettings(max_tokens=100, seed=1))
    assert result.completion_tokens <= room
    if result.completion_tokens == room:
        assert result.stop_reason == p.StopReason.CONTEXT_FULL


def test_stop_from_another_thread_ends_the_reply(engine: EngineClient) -> None:
    stream = engine.stream(
        "Write a long story about the sea.", sampling=p.SamplingSettings(max_tokens=400, seed=3)
    )
    for received, _ in enumerate(stream, start=1):
        if received == 3:
            threading.Thread(target=engine.stop).start()
    result = stream.result
    assert result is not None
    assert result.stop_reason == p.StopReason.STOPPED
    assert result.completion_tokens < 50
    assert result.stop_latency_s is not None and result.stop_latency_s < 1.0  # the issue asks for 200 ms
    # the engine is in step again: the next request gets its own answer
    assert engine.count_tokens("The sea is") == 4


def test_leaving_a_stream_early_keeps_the_pipe_in_step(engine: EngineClient) -> None:
    stream = engine.stream("The sea is", sampling=p.SamplingSettings(max_tokens=200, seed=3))
    for _ in stream:
        break
    del stream
    assert engine.count_tokens("The sea is") == 4
    assert engine.generate("The sea is", sampling=GREEDY).text.strip()


def test_stop_strings_are_cut_and_never_streamed() -> None:
    f = _StopTextFilter(("\nUser:",))
    out = [f.feed(t) for t in ("Hello", " there\n", "Us", "er: more")]
    assert out == [("Hello", False), (" there", False), ("", False), ("", True)]
    g = _StopTextFilter(("</s>",))
    assert g.feed("a</") == ("a", False)
    assert g.feed("b") == ("</b", False)
    assert g.flush("") == ""


def test_describe_exit_names_the_signal() -> None:
    assert describe_exit(-9) == "was killed (signal 9, SIGKILL)"
    assert describe_exit(-11) == "was killed (signal 11, SIGSEGV)"
    assert describe_exit(3) == "exited with code 3"


def test_corrupt_model_is_a_load_error_and_the_engine_survives(
    corrupt_gguf_path: Path, tiny_llama_path: Path, tmp_path: Path
) -> None:
    with EngineClient(log_path=tmp_path / "engine.log") as client:
        with pytest.raises(ModelLoadError) as caught:
            client.load(p.LoadOptions(path=str(corrupt_gguf_path), n_ctx=256))
        assert corrupt_gguf_path.name in str(caught.value)
        assert client.alive and client.loaded is None
        client.load(p.LoadOptions(path=str(tiny_llama_path), n_ctx=256))
        result = client.generate("hello", sampling=p.SamplingSettings(max_tokens=5, seed=1))
        assert result.completion_tokens + (result.stop_reason == p.StopReason.EOS) >= 1


def test_missing_model_file_is_a_load_error(tmp_path: Path) -> None:
    with EngineClient() as client, pytest.raises(ModelLoadError, match="nothing-here.gguf"):
        client.load(p.LoadOptions(path=str(tmp_path / "nothing-here.gguf"), n_ctx=256))


def test_sigkill_mid_reply_keeps_the_partial_and_the_model_loads_again(
    engine: EngineClient, starter_model_path: Path
) -> None:
    old_pid = engine.pid
    assert old_pid is not None
    stream = engine.stream("The sea is", sampling=p.SamplingSettings(max_tokens=400, seed=5))
    seen: list[str] = []
    with pytest.raises(EngineCrashedError) as caught:
        for piece in stream:
            seen.append(piece)
            if len(seen) == 4:
                os.kill(old_pid, signal.SIGKILL)
    error = caught.value
    assert "the engine process was killed (signal 9, SIGKILL) while generating a reply" in str(error)
    assert error.exitcode == -signal.SIGKILL
    assert error.partial_text == "".join(seen) and len(seen) >= 4
    assert not engine.alive and engine.loaded is None
    with pytest.raises(EngineError, match="no model is loaded"):
        engine.stream("again", sampling=GREEDY)

    engine.load(p.LoadOptions(path=str(starter_model_path), n_ctx=512, n_threads=2, n_threads_batch=2))
    assert engine.pid != old_pid
    assert engine.generate("The sea is", sampling=GREEDY).text.strip()


def test_a_generation_error_is_reported_and_the_engine_stays_usable(engine: EngineClient) -> None:
    loaded = engine.loaded
    assert loaded is not None
    with pytest.raises(EngineError, match="the context holds 512"):
        for _ in engine.stream("word " * 600, sampling=GREEDY):
            pass
    assert engine.count_tokens("The sea is") == 4


def test_stop_during_a_long_prompt_aborts_its_evaluation(engine: EngineClient) -> None:
    """Without llama.cpp's abort check the whole prompt would be evaluated and one token sampled first."""
    prompt = "The harbour was quiet that night. " * 55  # about 400 tokens
    stream = engine.stream(prompt, sampling=GREEDY)
    engine.stop()
    assert list(stream) == []
    result = stream.result
    assert result is not None
    assert result.stop_reason == p.StopReason.STOPPED and result.completion_tokens == 0
    assert result.stop_latency_s is not None and result.stop_latency_s < 1.0
    after = engine.generate(prompt, sampling=GREEDY)  # the aborted prompt left the KV cache consistent
    assert after.prompt_tokens == result.prompt_tokens and after.text.strip()


def test_a_template_bomb_in_the_gguf_costs_the_engine_nothing(tmp_path: Path) -> None:
    """llama-cpp-python compiles every GGUF chat template at load; Jinja folds `'a' * 300000000` while
    compiling, even in a branch that never runs. The engine disarms that compile (KAIHE renders templates
    in its own sandbox), so loading such a model must not grow the worker by hundreds of megabytes."""
    import psutil

    from tests.helpers.model_fixtures import TINY_LLAMA
    from tests.helpers.tiny_gguf import write_tiny_model

    bomb = "{% if false %}{{ 'a' * 300000000 }}{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}"
    model = write_tiny_model(tmp_path / "bomb.gguf", TINY_LLAMA, chat_template=bomb)
    with EngineClient(log_path=tmp_path / "engine.log") as client:
        client.load(p.LoadOptions(path=str(model), n_ctx=256, n_threads=1, n_threads_batch=1))
        rss = psutil.Process(client.pid).memory_info().rss
        assert rss < 250 * 1024 * 1024, f"engine RSS {rss / 2**20:.0f} MiB after loading a tiny model"
        assert client.generate("ab", sampling=GREEDY).stop_reason in (p.StopReason.LENGTH, p.StopReason.EOS)
