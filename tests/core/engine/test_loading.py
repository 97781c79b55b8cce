"""From a model file to a load: the planner's choice, user overrides, and refusing what does not fit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from kaihe_desktop.core.engine.client import EngineClient
from kaihe_desktop.core.engine.loading import LoadOverrides, decide, load_model, read_meta
from kaihe_desktop.core.errors import DoesNotFitError, ModelLoadError
from kaihe_desktop.core.fit.plan import plan
from kaihe_desktop.core.machine.profiles import resolve_profile
from kaihe_desktop.core.machine.spec import Machine
from kaihe_desktop.core.reasons import ReasonCode

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def laptop() -> Machine:
    return resolve_profile("laptop-8gb")


@pytest.fixture(scope="module")
def tiny_machine(laptop: Machine) -> Machine:
    """A machine with 200 MiB free: the 253 MB starter model cannot fit."""
    return replace(laptop, ram=replace(laptop.ram, total_bytes=512 * MiB, available_bytes=200 * MiB))


def test_the_planners_choice_becomes_the_load_options(starter_model_path: Path, laptop: Machine) -> None:
    meta = read_meta(starter_model_path)
    chosen = plan(meta, laptop)
    decision = decide(starter_model_path, meta, laptop)
    o = decision.options
    assert decision.placement == "cpu" == str(chosen.placement)
    assert (o.n_ctx, o.n_gpu_layers, o.flash_attn, o.kv_type) == (
        chosen.n_ctx,
        0,
        chosen.flash_attn,
        chosen.kv_type,
    )
    assert o.n_threads == o.n_threads_batch == laptop.cpu.cores_physical
    assert o.use_mmap and o.path == str(starter_model_path)
    assert decision.reason == chosen.reason and not decision.forced


def test_user_overrides_win(starter_model_path: Path, laptop: Machine) -> None:
    meta = read_meta(starter_model_path)
    overrides = LoadOverrides(n_ctx=1024, n_threads=1, flash_attn=True, kv_type="q8_0", use_mmap=False)
    o = decide(starter_model_path, meta, laptop, overrides=overrides).options
    assert (o.n_ctx, o.n_threads, o.flash_attn, o.kv_type, o.use_mmap) == (1024, 1, True, "q8_0", False)


def test_a_model_that_does_not_fit_is_refused_with_the_headroom_warning(
    starter_model_path: Path, tiny_machine: Machine
) -> None:
    meta = read_meta(starter_model_path)
    with EngineClient() as engine:
        with pytest.raises(DoesNotFitError) as caught:
            load_model(engine, starter_model_path, machine=tiny_machine, meta=meta)
        message = str(caught.value)
        assert starter_model_path.name in message and "does not fit" in message
        assert "--" not in message  # the core names no flag: each front end words the reason
        assert engine.loaded is None

        loaded, decision = load_model(
            engine,
            starter_model_path,
            machine=tiny_machine,
            meta=meta,
            overrides=LoadOverrides(n_ctx=512),
            force=True,
        )
    assert decision.forced and decision.placement == "none"
    assert any("does not fit" in w for w in decision.warnings)
    assert loaded.n_ctx == 512


def test_a_corrupt_file_is_a_load_error_naming_it(corrupt_gguf_path: Path, laptop: Machine) -> None:
    with EngineClient() as engine, pytest.raises(ModelLoadError, match=corrupt_gguf_path.name):
        load_model(engine, corrupt_gguf_path, machine=laptop)


def test_the_refusal_carries_its_numbers(starter_model_path: Path, tiny_machine: Machine) -> None:
    meta = read_meta(starter_model_path)
    refused = plan(meta, tiny_machine)
    with pytest.raises(DoesNotFitError) as caught:
        decide(starter_model_path, meta, tiny_machine)
    reason = caught.value.reason
    assert reason is not None and reason.code == ReasonCode.LOAD_DOES_NOT_FIT
    assert reason.model == starter_model_path.name
    assert reason.margin_bytes == refused.margin_bytes and reason.headroom_bytes == refused.headroom_bytes
    # 200 MiB free for a 253 MB model: short by what it lacks plus the margin
    assert reason.shortfall_bytes == refused.margin_bytes - refused.headroom_bytes > refused.margin_bytes
    assert (reason.context_tokens, reason.max_fitting_context_tokens) == (refused.n_ctx, refused.max_n_ctx)
