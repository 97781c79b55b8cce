"""Guardrails before a download or a load, on real plans of full-size model shapes on the shipped profiles."""

from __future__ import annotations

import dataclasses

import pytest

from kaihe_desktop.core.fit.guardrails import (
    DOWNLOAD,
    LOAD,
    Change,
    Growth,
    InUse,
    Requested,
    Trigger,
    check,
)
from kaihe_desktop.core.fit.kv_types import KVCacheType
from kaihe_desktop.core.fit.plan import CONTEXT_STEP, Placement, Plan, plan
from kaihe_desktop.core.fit.quants import QuantOption, quality_rank, weights_scale
from kaihe_desktop.core.fit.upgrades import quant_scale
from kaihe_desktop.core.gguf.model_meta import ModelMeta
from kaihe_desktop.core.machine.profiles import resolve_profile
from kaihe_desktop.core.machine.spec import Machine
from tests.helpers.fit_metas import LLAMA31_8B_QUANT_SIZES, llama31_8b
from tests.helpers.synthetic_models import llama33_70b, mistral_7b, synthetic_model

LLAMA31_8B_VARIANTS = tuple(QuantOption(q, s) for q, s in LLAMA31_8B_QUANT_SIZES.items())


def llama31_8b_shape() -> ModelMeta:
    """Llama-3.1-8B built tensor by tensor (Q4_K_M), so its speed estimate reads real tensor sizes."""
    return synthetic_model(
        "Llama-3.1-8B", n_layer=32, n_embd=4096, n_head=32, n_head_kv=8, n_ff=14336, n_vocab=128256,
        n_ctx_train=131072,
    )  # fmt: skip


def llama32_1b() -> ModelMeta:
    return synthetic_model(
        "Llama-3.2-1B", n_layer=16, n_embd=2048, n_head=32, n_head_kv=8, n_ff=8192, n_vocab=128256,
        n_ctx_train=131072, tied=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def laptop() -> Machine:
    return resolve_profile("laptop-8gb")


@pytest.fixture(scope="module")
def rtx4060() -> Machine:
    return resolve_profile("rtx4060-16gb")


def _fits_with_margin(p: Plan) -> None:
    assert p.placement != Placement.NONE
    assert p.headroom_bytes >= p.margin_bytes


# --- below the margin -----------------------------------------------------------------------------------


def test_a_too_big_q8_on_the_laptop_offers_a_q8_kv_cache_a_shorter_context_and_the_next_quant_down(
    laptop: Machine,
) -> None:
    meta = llama32_1b()
    asked = Requested(quant="Q8_0", n_ctx=24576)
    g = check(meta, laptop, options=asked, kind=LOAD)
    assert g is not None
    assert g.trigger == Trigger.BELOW_MARGIN and g.action == LOAD and g.grew == ()
    # the numbers: the RAM it needs, what is available, and what would be left (under the margin)
    assert g.device == "RAM"
    assert g.available_bytes == laptop.ram.available_bytes
    assert g.needed_bytes == g.plan.estimate.ram_bytes
    assert g.left_bytes == g.available_bytes - g.needed_bytes == g.plan.headroom_bytes
    assert g.left_bytes < g.margin_bytes and g.short_bytes == g.margin_bytes - g.left_bytes
    # least quality lost first: the whole context at q8_0, then a shorter one, then a lower quant
    assert [o.change for o in g.options] == [Change.KV_Q8_0, Change.SHORTER_CONTEXT, Change.NEXT_QUANT_DOWN]
    by = {o.change: o for o in g.options}
    for option in g.options:
        _fits_with_margin(option.plan)
        assert option.tokens_per_s is not None and 0 < option.tokens_per_s.low < option.tokens_per_s.high
        assert option.total_bytes == option.plan.estimate.total_bytes
        # taking it loads what was predicted: asked again, it goes ahead quietly
        assert check(meta, laptop, options=option.requested) is None

    kv = by[Change.KV_Q8_0]
    assert kv.kv_type == KVCacheType.Q8_0 and kv.n_ctx == 24576 and kv.quant == "Q8_0"

    shorter = by[Change.SHORTER_CONTEXT]
    assert shorter.n_ctx < 24576 and shorter.n_ctx % CONTEXT_STEP == 0 and shorter.kv_type == KVCacheType.F16
    scale = quant_scale("Q4_K_M", "Q8_0")
    assert scale is not None
    one_more = plan(meta, laptop, n_ctx=shorter.n_ctx + CONTEXT_STEP, weights_scale=scale)
    assert one_more.placement == Placement.NONE  # the longest context that fits

    down = by[Change.NEXT_QUANT_DOWN]
    assert down.quant is not None and quality_rank(down.quant) > quality_rank("Q8_0")
    assert down.n_ctx == 24576
    down_scale = quant_scale("Q4_K_M", down.quant)
    assert down_scale is not None
    direct = plan(meta, laptop, n_ctx=24576, weights_scale=down_scale)
    assert down.plan == direct  # the numbers are the planner's for that quant, planned directly


def test_the_quant_down_is_the_best_offered_variant_that_fits_planned_like_that_file(laptop: Machine) -> None:
    meta = llama31_8b(quant="Q8_0")
    g = check(meta, laptop, options=Requested(quant="Q8_0"), variants=LLAMA31_8B_VARIANTS, kind=DOWNLOAD)
    assert g is not None and g.trigger == Trigger.BELOW_MARGIN and g.action == DOWNLOAD
    assert g.size_bytes == LLAMA31_8B_QUANT_SIZES["Q8_0"]
    assert g.needed_bytes > g.available_bytes  # more than all of the free RAM
    downs = [o for o in g.options if o.change == Change.NEXT_QUANT_DOWN]
    assert len(downs) == 1
    down = downs[0]
    assert down.quant is not None and down.size_bytes == LLAMA31_8B_QUANT_SIZES[down.quant]
    variant = next(v for v in LLAMA31_8B_VARIANTS if v.quant == down.quant)
    assert down.plan == plan(meta, laptop, weights_scale=weights_scale(variant, meta))
    # and as if that file's own header had been read (the sizes agree to a rounding of tensor bytes)
    own = plan(llama31_8b(quant=down.quant), laptop)
    assert own.n_ctx == down.n_ctx and own.placement == down.placement
    assert abs(own.estimate.total_bytes - down.total_bytes) <= 0.001 * own.estimate.total_bytes
    # every better variant below Q8_0 does not fit
    for better in LLAMA31_8B_VARIANTS:
        if quality_rank("Q8_0") < quality_rank(better.quant) < quality_rank(down.quant):
            assert not plan(meta, laptop, weights_scale=weights_scale(better, meta)).fits
    # the upgrade advice: the tier and hardware that run Q8_0 as asked, with the margin kept free
    assert g.upgrade.needed_bytes >= g.plan.estimate.total_bytes
    assert g.upgrade.holders and all(h.memory_bytes > g.plan.estimate.total_bytes for h in g.upgrade.holders)
    assert g.upgrade.tier != "minimal"
    assert g.advice[0].code == "does_not_fit"


def test_nothing_to_offer_when_no_change_makes_it_fit(laptop: Machine) -> None:
    g = check(llama33_70b(), laptop)
    assert g is not None and g.trigger == Trigger.BELOW_MARGIN
    assert g.options == ()


def test_a_comfortable_plan_goes_ahead_quietly(laptop: Machine) -> None:
    meta = llama32_1b()
    assert check(meta, laptop, options=Requested(quant="Q8_0", n_ctx=8192)) is None
    assert check(meta, laptop, options=Requested(quant="Q8_0", n_ctx=8192), kind=DOWNLOAD) is None
    # the same model as what is in use: no step up either
    cur = InUse(meta.parameter_count, "Q8_0", 8192)
    assert check(meta, laptop, options=Requested(quant="Q8_0", n_ctx=8192), current=cur) is None


# --- GPU layers -----------------------------------------------------------------------------------------


def test_all_layers_on_an_rtx_4060_offers_the_partial_offload_that_fits(rtx4060: Machine) -> None:
    meta = llama31_8b_shape()
    g = check(meta, rtx4060, options=Requested(quant="Q8_0", gpu_layers=-1), variants=LLAMA31_8B_VARIANTS)
    assert g is not None and g.trigger == Trigger.BELOW_MARGIN
    gpu = rtx4060.gpus[0]
    assert g.device == gpu.name and g.available_bytes == gpu.memory_free_bytes
    assert g.needed_bytes == g.plan.estimate.vram_bytes
    assert g.plan.gpu_layers == g.plan.n_layers
    first = g.options[0]
    assert first.change == Change.FEWER_GPU_LAYERS
    assert first.placement == Placement.PARTIAL and 0 < first.gpu_layers < g.plan.n_layers
    assert first.n_ctx == g.plan.n_ctx  # the same context: only slower
    q8 = next(v for v in LLAMA31_8B_VARIANTS if v.quant == "Q8_0")
    auto = plan(meta, rtx4060, weights_scale=weights_scale(q8, meta))
    assert first.gpu_layers == auto.gpu_layers and first.plan == auto
    assert first.requested.gpu_layers == first.gpu_layers
    _fits_with_margin(first.plan)
    for option in g.options:
        _fits_with_margin(option.plan)
    # with the planner's own layer count the same model fits (partially): nothing to ask
    assert check(meta, rtx4060, options=Requested(quant="Q8_0"), variants=LLAMA31_8B_VARIANTS) is None


def test_fewer_gpu_layers_is_not_offered_without_a_gpu(laptop: Machine) -> None:
    g = check(llama32_1b(), laptop, options=Requested(quant="Q8_0", n_ctx=24576, gpu_layers=-1))
    assert g is not None
    assert Change.FEWER_GPU_LAYERS not in {o.change for o in g.options}


# --- step ups -------------------------------------------------------------------------------------------


def test_a_step_up_from_q4_to_q8_that_leaves_little_room_asks_first() -> None:
    m2 = resolve_profile("m2-16gb")
    meta = mistral_7b()
    cur = InUse.of(plan(meta, m2))
    assert cur.quant == "Q4_K_M"
    g = check(meta, m2, options=Requested(quant="Q8_0"), current=cur)
    assert g is not None
    assert g.trigger == Trigger.STEP_UP and g.grew == (Growth.QUANT,)
    assert g.plan.fits and g.left_bytes >= g.margin_bytes and g.short_bytes == 0
    assert g.upgrade.kind == "quant" and g.upgrade.label == "Q8_0"
    # a step up's options fit and leave more room than the step up
    assert g.options
    for option in g.options:
        _fits_with_margin(option.plan)
        assert option.headroom_bytes > g.plan.headroom_bytes
    assert g.options[-1].change == Change.NEXT_QUANT_DOWN and g.options[-1].quant == "Q6_K"


def test_a_step_up_with_plenty_of_room_goes_ahead_unless_asked_to_always_check() -> None:
    mac = resolve_profile("m3max-64gb")
    meta = mistral_7b()
    cur = InUse(meta.parameter_count, "Q4_K_M", 8192)
    assert check(meta, mac, options=Requested(quant="Q8_0"), current=cur) is None
    g = check(meta, mac, options=Requested(quant="Q8_0"), current=cur, step_up_below_pct=None)
    assert g is not None and g.trigger == Trigger.STEP_UP and g.grew == (Growth.QUANT,)


def test_a_bigger_model_and_a_longer_context_are_step_ups(laptop: Machine) -> None:
    small = llama32_1b()
    big = llama31_8b_shape()
    cur = InUse(small.parameter_count, "Q4_K_M", 8192)
    g = check(big, laptop, current=cur)
    assert g is not None and Growth.MODEL_SIZE in g.grew
    assert g.trigger == Trigger.BELOW_MARGIN  # it does not fit at all: that is what it says first
    assert g.upgrade.kind == "size"

    cur = InUse(small.parameter_count, "Q8_0", 4096)
    g = check(
        small, laptop, options=Requested(quant="Q8_0", n_ctx=20480), current=cur, step_up_below_pct=None
    )
    assert g is not None and g.trigger == Trigger.STEP_UP and g.grew == (Growth.CONTEXT,)
    assert g.upgrade.kind == "context" and g.upgrade.label == "20480 tokens"
    shorter = next(o for o in g.options if o.change == Change.SHORTER_CONTEXT)
    assert shorter.n_ctx == 4096  # back to the context in use now


def test_a_guardrail_is_frozen(laptop: Machine) -> None:
    g = check(llama32_1b(), laptop, options=Requested(quant="Q8_0", n_ctx=24576))
    assert g is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.needed_bytes = 0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.options[0].change = Change.KV_Q8_0  # type: ignore[misc]


def test_a_kv_type_by_name_is_parsed() -> None:
    assert Requested(kv_type="Q8_0").kv_type == KVCacheType.Q8_0  # type: ignore[arg-type]
