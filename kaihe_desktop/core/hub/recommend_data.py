"""The curated recommendations file (``kaihe_desktop/data/recommendations.json``) as typed data.

The file maps use cases to GGUF repos in preference order (best first), each with the model's shape from
its config.json. The shape lets the fit estimator judge a model before the Hub is asked (or when it cannot
be): :func:`estimated_meta` builds an approximate :class:`ModelMeta`, and :func:`estimated_options` the
quant variants with sizes from llama.cpp's bits per weight. The Hub's real files replace both when reachable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from kaihe_desktop.core.errors import KaiheError
from kaihe_desktop.core.fit.quants import QuantOption, quant_type
from kaihe_desktop.core.gguf.model_meta import ModelMeta

# Bytes a GGUF header takes per vocabulary token (token text, score, type; merges for BPE vocabularies):
# the starter model's 6.5 MB header over 262,144 tokens is ~25 B/token.
HEADER_BYTES_PER_TOKEN = 25
REFERENCE_QUANT = "F16"


@dataclass(frozen=True)
class Shape:
    arch: str
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_vocab: int
    n_ctx_train: int
    tied_embeddings: bool = False
    sliding_window: int | None = None
    swa_period: int | None = None  # every n-th layer is global, the rest use the sliding window
    n_expert: int = 0
    n_expert_used: int = 0
    n_ff_expert: int | None = None


@dataclass(frozen=True)
class CuratedRepo:
    repo_id: str
    family: str
    shape: Shape
    params_b: float
    license: str
    gated: bool
    quants: tuple[str, ...]
    sizes: tuple[tuple[str, float], ...] = ()
    note: str | None = None


@dataclass(frozen=True)
class UseCase:
    id: str
    title: str
    description: str
    keywords: tuple[str, ...]
    repos: tuple[CuratedRepo, ...]  # best first


@dataclass(frozen=True)
class Recommendations:
    version: int
    updated: str
    source: str
    use_cases: tuple[UseCase, ...]
    first_run_use_case: str
    first_run_min_headroom_pct: float
    first_run_max_download_gb: float

    def use_case(self, use_case_id: str) -> UseCase:
        wanted = normalise_use_case(use_case_id)
        for case in self.use_cases:
            if case.id == wanted:
                return case
        known = ", ".join(c.id for c in self.use_cases)
        raise KaiheError(f"unknown use case {use_case_id!r}; choose one of: {known}")


def normalise_use_case(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def _parse(data: dict[str, Any]) -> Recommendations:
    shapes = {name: Shape(**values) for name, values in data["shapes"].items()}
    cases = []
    for case in data["use_cases"]:
        repos = tuple(
            CuratedRepo(
                repo_id=r["repo_id"],
                family=r["family"],
                shape=shapes[r["shape"]],
                params_b=float(r["params_b"]),
                license=r["license"],
                gated=bool(r.get("gated", False)),
                quants=tuple(r["quants"]),
                sizes=tuple((q, float(s)) for q, s in r.get("sizes", {}).items()),
                note=r.get("note"),
            )
            for r in case["repos"]
        )
        cases.append(
            UseCase(
                id=case["id"],
                title=case["title"],
                description=case["description"],
                keywords=tuple(k.lower() for k in case["keywords"]),
                repos=repos,
            )
        )
    first = data["first_run"]
    return Recommendations(
        version=int(data["version"]),
        updated=str(data["updated"]),
        source=str(data["source"]),
        use_cases=tuple(cases),
        first_run_use_case=first["use_case"],
        first_run_min_headroom_pct=float(first["min_headroom_pct"]),
        first_run_max_download_gb=float(first["max_download_gb"]),
    )


def load_recommendations(path: Path | None = None) -> Recommendations:
    """The shipped file, or ``path``. A damaged file is a clear error naming it."""
    if path is None:
        return _shipped()
    try:
        return _parse(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KaiheError(f"cannot read recommendations file {path}: {exc}") from exc


@lru_cache(maxsize=1)
def _shipped() -> Recommendations:
    text = resources.files("kaihe_desktop").joinpath("data/recommendations.json").read_text(encoding="utf-8")
    return _parse(json.loads(text))


def use_case_matches(use_case_id: str, repo_id: str, tags: tuple[str, ...] | list[str] = ()) -> bool:
    """Whether a Hub repo belongs to a use case: curated for it, or named/tagged with a keyword of it."""
    case = load_recommendations().use_case(use_case_id)
    lowered = repo_id.lower()
    if any(r.repo_id.lower() == lowered for r in case.repos):
        return True
    haystack = [lowered, *(t.lower() for t in tags)]
    return any(k in text for k in case.keywords for text in haystack)


# --- estimates before the Hub is asked ------------------------------------------------------------------


def _bpw(quant: str) -> float:
    rung = quant_type(quant)
    return rung.bits_per_weight if rung is not None else 4.9


# llama.cpp's k-quant mixes keep the output matrix (the token embeddings when tied) at Q6_K or better.
OUTPUT_MIN_BPW = 6.5633


def estimated_size(repo: CuratedRepo, quant: str) -> int:
    """The file size of ``quant``: curated when known, else bits per weight over the parameters."""
    sizes = dict(repo.sizes)
    if quant in sizes:
        return int(sizes[quant])
    s = repo.shape
    bpw = _bpw(quant)
    output_params = s.n_vocab * s.n_embd  # the output matrix (or tied embeddings)
    rest = max(0.0, repo.params_b * 1e9 - output_params)
    weights = rest * bpw / 8 + output_params * max(bpw, OUTPUT_MIN_BPW) / 8
    return int(weights) + s.n_vocab * HEADER_BYTES_PER_TOKEN


def estimated_options(repo: CuratedRepo) -> list[QuantOption]:
    return [QuantOption(quant=q, size_bytes=estimated_size(repo, q)) for q in repo.quants]


def estimated_meta(repo: CuratedRepo) -> ModelMeta:
    """An approximate ModelMeta at F16 (2 bytes/weight), from the shape and the parameter count."""
    s = repo.shape
    params = int(repo.params_b * 1e9)
    embd = s.n_vocab * s.n_embd
    output = 0 if s.tied_embeddings else embd
    per_layer = max(1, (params - embd - output) // s.n_layer)
    header = s.n_vocab * HEADER_BYTES_PER_TOKEN
    expert_params = 3 * s.n_embd * (s.n_ff_expert or 0) * s.n_expert * s.n_layer
    pattern = None
    if s.sliding_window and s.swa_period:
        pattern = tuple((i + 1) % s.swa_period != 0 for i in range(s.n_layer))
    return ModelMeta(
        source=f"{repo.repo_id} (estimated from recommendations.json)",
        architecture=s.arch,
        name=repo.family,
        parameter_count=params,
        block_count=s.n_layer,
        embedding_length=s.n_embd,
        feed_forward_length=s.n_ff,
        head_count=s.n_head,
        head_count_kv=(s.n_head_kv,) * s.n_layer,
        key_length=s.head_dim,
        value_length=s.head_dim,
        context_length=s.n_ctx_train,
        vocab_size=s.n_vocab,
        file_type=REFERENCE_QUANT,
        has_chat_template=True,
        sliding_window=s.sliding_window,
        sliding_window_pattern=pattern,
        expert_count=s.n_expert,
        expert_used_count=s.n_expert_used,
        layer_tensor_bytes=(per_layer * 2,) * s.n_layer,
        non_layer_tensor_bytes=(embd + output) * 2,
        token_embd_bytes=embd * 2,
        output_bytes=output * 2,
        expert_tensor_bytes=expert_params * 2,
        file_size_bytes=params * 2 + header,
        header_size_bytes=header,
    )
