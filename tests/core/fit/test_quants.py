"""The quant ladder, quant names in real file names, and the picker on real model shapes and profiles."""

from __future__ import annotations

import pytest

from kaihe_desktop.core.fit.quants import (
    FULL_GPU_FLOOR,
    LADDER,
    Pick,
    QuantOption,
    canonical,
    is_better,
    pick,
    quality_rank,
    quant_from_filename,
    quant_type,
    weights_scale,
)
from kaihe_desktop.core.machine.profiles import resolve_profile
from kaihe_desktop.core.machine.spec import Machine
from tests.helpers.fit_metas import LLAMA31_8B_QUANT_SIZES, QWEN3_14B_QUANT_SIZES, llama31_8b, qwen3_14b

# --- file names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "quant"),
    [
        ("Qwen3-8B-Q4_K_M.gguf", "Q4_K_M"),
        ("model.q8_0.gguf", "Q8_0"),
        ("Qwen3-30B-A3B-UD-Q4_K_XL-00001-of-00002.gguf", "UD-Q4_K_XL"),
        ("IQ4_XS", "IQ4_XS"),
        ("BF16", "BF16"),
        ("f16", "F16"),
        ("Meta-Llama-3.1-8B-Instruct-IQ2_XXS.gguf", "IQ2_XXS"),
        ("gemma-3-270m-it-qat-Q4_0.gguf", "Q4_0"),
        ("Meta-Llama-3-8B-Instruct.Q4_K.gguf", "Q4_K_M"),  # llama-quantize's alias
        ("gpt-oss-20b-MXFP4.gguf", "MXFP4"),
        ("gpt-oss-120b-MXFP4_MOE-00001-of-00003.gguf", "MXFP4"),
        ("DeepSeek-R1-UD-IQ1_S-00001-of-00003.gguf", "UD-IQ1_S"),
        ("some/folder/Mistral-7B-Instruct-v0.3.Q5_K_S.gguf", "Q5_K_S"),
        ("phi-4-q6_k.gguf", "Q6_K"),
        ("model_q3_k_l.gguf", "Q3_K_L"),
        ("Llama-F16-finetune-Q4_K_M.gguf", "Q4_K_M"),  # the rightmost match wins
        ("x-Q4_K_XXL.gguf", "Q4_K_XXL"),  # a quant-shaped name we have no rung for is still reported
    ],
)
def test_quant_from_filename(name: str, quant: str) -> None:
    assert quant_from_filename(name) == quant


@pytest.mark.parametrize(
    "name", ["README.md", "Qwen3-8B-00001-of-00002.gguf", "model.gguf", "config.json", "Qwen3-8B.gguf"]
)
def test_names_without_a_quant(name: str) -> None:
    assert quant_from_filename(name) is None


# --- the ladder ------------------------------------------------------------------------------------------


def test_ladder_is_unique_and_every_rung_resolves() -> None:
    names = [q.name for q in LADDER]
    assert len(names) == len(set(names))
    for q in LADDER:
        assert quant_type(q.name) is q
        assert quant_from_filename(f"model-{q.name}.gguf") == q.name
        assert q.bits_per_weight > 0


def test_published_order_of_the_usual_quants() -> None:
    order = ["F32", "BF16", "F16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "IQ4_XS",
             "Q4_0", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K", "IQ2_XXS", "IQ1_S"]  # fmt: skip
    ranks = [quality_rank(q) for q in order]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)


def test_published_perplexity_increases_down_the_k_quant_ladder() -> None:
    """Where llama.cpp publishes a Llama-3-8B perplexity increase, a lower rung never has a smaller one
    (except Q2_K_S, which the same table lists with a lower figure than Q2_K at a smaller size)."""
    published = [q for q in LADDER if q.ppl_increase is not None and q.name not in {"F32", "BF16", "F16"}]
    for upper, lower in zip(published, published[1:], strict=False):
        if lower.name == "Q2_K_S":
            continue
        assert upper.ppl_increase is not None and lower.ppl_increase is not None
        assert upper.ppl_increase <= lower.ppl_increase, (upper.name, lower.name)


def test_aliases_and_dynamic_quants_rank_with_their_base() -> None:
    assert canonical("q4_k") == "Q4_K_M"
    assert quality_rank("Q4_K") == quality_rank("Q4_K_M")
    # Unsloth's dynamic quant sits just above its base type and below the next rung up.
    assert is_better("UD-Q4_K_M", "Q4_K_M")
    assert is_better("Q4_K_XL", "Q4_K_M") and is_better("Q5_K_S", "Q4_K_XL")
    assert is_better("Q4_K_M", "UD-Q4_K_S")


def test_unknown_quant_placed_by_its_bits_per_weight() -> None:
    between = quality_rank("Q4_K_XXL", bits_per_weight=4.9)
    assert quality_rank("Q5_K_M") < between < quality_rank("IQ4_XS")
    assert quality_rank("Q4_K_XXL") > quality_rank("IQ1_S")  # no size known: last


# --- the picker --------------------------------------------------------------------------------------------


def _options(sizes: dict[str, int]) -> list[QuantOption]:
    return [QuantOption(quant=q, size_bytes=s, files=(f"model-{q}.gguf",)) for q, s in sizes.items()]


def _profile(name: str) -> Machine:
    return resolve_profile(name)


def test_weights_scale_is_the_ratio_of_tensor_data() -> None:
    meta = llama31_8b(quant="Q4_K_M")
    own = QuantOption("Q4_K_M", meta.file_size_bytes)
    assert weights_scale(own, meta) == pytest.approx(1.0)
    q8 = QuantOption("Q8_0", LLAMA31_8B_QUANT_SIZES["Q8_0"])
    expected = (q8.size_bytes - meta.header_size_bytes) / (meta.file_size_bytes - meta.header_size_bytes)
    assert weights_scale(q8, meta) == pytest.approx(expected)


def _check_pick_rule(result: Pick) -> None:
    """The documented rule, checked on the evaluated candidates: best full-GPU variant down to
    FULL_GPU_FLOOR, otherwise the best variant that fits anywhere; nothing fits -> the smallest."""
    cands = result.candidates
    assert [c.rank for c in cands] == sorted(c.rank for c in cands)  # best quality first
    fitting = [c for c in cands if c.fits]
    if not fitting:
        assert not result.fits
        assert result.option.size_bytes == min(c.option.size_bytes for c in cands)
        assert result.reason.startswith("nothing fits")
        return
    assert result.fits
    full = [c for c in fitting if c.full_gpu and c.rank <= quality_rank(FULL_GPU_FLOOR)]
    expected = full[0] if full else fitting[0]
    assert result.option == expected.option
    assert result.plan == expected.plan


@pytest.mark.parametrize(
    "profile", ["netbook-4gb", "laptop-8gb", "rtx4060-16gb", "rtx4090-32gb", "m2-16gb", "m3max-64gb"]
)
@pytest.mark.parametrize("model", ["llama31_8b", "qwen3_14b"])
def test_pick_follows_the_rule_on_every_profile(profile: str, model: str) -> None:
    meta, sizes = (
        (llama31_8b(), LLAMA31_8B_QUANT_SIZES)
        if model == "llama31_8b"
        else (qwen3_14b(), QWEN3_14B_QUANT_SIZES)
    )
    result = pick(_options(sizes), meta, _profile(profile))
    _check_pick_rule(result)
    assert result.quant in result.reason
    assert "%" in result.reason or "more" in result.reason


def test_bigger_machine_never_picks_lower_quality() -> None:
    meta, options = llama31_8b(), _options(LLAMA31_8B_QUANT_SIZES)
    small = pick(options, meta, _profile("m2-16gb"))
    big = pick(options, meta, _profile("m3max-64gb"))
    assert quality_rank(big.quant) <= quality_rank(small.quant)
    netbook = pick(options, meta, _profile("netbook-4gb"))
    laptop = pick(options, meta, _profile("laptop-8gb"))
    assert quality_rank(laptop.quant) <= quality_rank(netbook.quant) or not netbook.fits


def test_gpu_machine_prefers_a_variant_fully_on_the_gpu() -> None:
    """8 GB RTX 4060 with 16 GB RAM and Llama 3.1 8B: Q8_0 would fit split between GPU and RAM, but a
    variant that runs fully on the GPU is picked, and the reason names the better one passed over."""
    result = pick(_options(LLAMA31_8B_QUANT_SIZES), llama31_8b(), _profile("rtx4060-16gb"))
    assert str(result.plan.placement) == "gpu"
    better = [c for c in result.candidates if is_better(c.option.quant, result.quant)]
    assert better, "some better quant exists above the pick"
    assert all(not c.full_gpu for c in better)
    passed_over = max(better, key=lambda c: c.rank)
    assert passed_over.option.quant in result.reason


def test_reason_carries_numbers_of_the_pick_and_the_next_rung() -> None:
    result = pick(_options(LLAMA31_8B_QUANT_SIZES), llama31_8b(), _profile("m2-16gb"))
    assert result.fits and result.quant != "F16"  # some, not all, fit a 16 GB Mac
    assert result.reason.startswith(f"{result.quant}: ")
    assert f"{result.plan.headroom_pct:.0f}%" in result.reason
    assert "4096 tokens" in result.reason  # the context every variant was planned at
    next_up = max(
        (c for c in result.candidates if is_better(c.option.quant, result.quant)), key=lambda c: c.rank
    )
    assert f"{next_up.option.quant} would" in result.reason


def test_nothing_fits_gives_the_smallest_with_a_reason() -> None:
    result = pick(_options(QWEN3_14B_QUANT_SIZES), qwen3_14b(), _profile("netbook-4gb"))
    assert not result.fits
    assert result.quant == "Q2_K"
    assert result.reason.startswith("nothing fits")
    assert "Q2_K" in result.reason and "more" in result.reason


def test_pick_at_a_requested_context_plans_every_variant_there() -> None:
    result = pick(_options(LLAMA31_8B_QUANT_SIZES), llama31_8b(), _profile("m3max-64gb"), n_ctx=32768)
    assert {c.plan.n_ctx for c in result.candidates} == {32768}
    _check_pick_rule(result)


def test_pick_needs_options() -> None:
    with pytest.raises(ValueError):
        pick([], llama31_8b(), _profile("laptop-8gb"))


def test_below_the_floor_a_better_partial_variant_wins() -> None:
    """Qwen3-14B on the 8 GB RTX 4060: only a 2-bit variant runs fully on the GPU, so the picker takes the
    best 4-bit-or-better variant split between GPU and RAM instead (FULL_GPU_FLOOR)."""
    # IQ2_XXS at its published 2.38 bpw over Qwen3-14B's 14.77e9 weights, plus the header.
    sizes = {**QWEN3_14B_QUANT_SIZES, "IQ2_XXS": 4_400_000_000}
    result = pick(_options(sizes), qwen3_14b(), _profile("rtx4060-16gb"))
    full = [c for c in result.candidates if c.full_gpu]
    assert full, "some small variant runs fully on the GPU"
    assert all(c.rank > quality_rank(FULL_GPU_FLOOR) for c in full)
    assert str(result.plan.placement) == "partial"
    assert quality_rank(result.quant) <= quality_rank(FULL_GPU_FLOOR)
    assert f"{result.plan.gpu_layers} of {result.plan.n_layers} layers on the GPU" in result.reason
