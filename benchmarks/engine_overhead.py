"""What the engine process costs: the same prompt and settings through EngineClient and through
llama_cpp.Llama in this process, alternating, in one run.

Claims checked (issue 4): generation tokens/s through the engine ≥ 0.97 × direct; time to first token
within +20 ms of direct; stop ends a long reply within 200 ms.

    .venv/bin/python benchmarks/engine_overhead.py [--model PATH] [--ctx 2048] [--tokens 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from kaihe_desktop.cli.common import render_table
from kaihe_desktop.core import paths
from kaihe_desktop.core.engine import protocol as p
from kaihe_desktop.core.engine.client import EngineClient
from kaihe_desktop.core.engine.worker import llama_kwargs, model_params_patched
from kaihe_desktop.core.machine.llama_build import extra_buffers_usable

PROMPT = "{n}. The sea was calm that morning, and the fishermen"
# Between two runs: lets the other side's OpenMP threads stop spinning, so neither competes for the cores.
PAUSE_S = 0.3


def direct_run(llm: Any, prompt: str, sampling: p.SamplingSettings) -> tuple[float, float, int, str]:
    """ttft_s, decode tok/s, tokens, text: create_completion streaming, timed the same way as the client."""
    arrivals: list[float] = []

    def count(_ids: Any, logits: Any) -> Any:  # called once per sampled token
        arrivals.append(0.0)
        return logits

    start = time.perf_counter()
    first = last = None
    pieces = []
    for chunk in llm.create_completion(
        prompt,
        max_tokens=sampling.max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        min_p=sampling.min_p,
        repeat_penalty=sampling.repeat_penalty,
        seed=sampling.seed,
        stream=True,
        logits_processor=[count],
    ):
        last = time.perf_counter()
        if first is None:
            first = last
        pieces.append(chunk["choices"][0]["text"])
    assert first is not None and last is not None
    n = len(arrivals)
    rate = (n - 1) / (last - first) if n > 1 and last > first else 0.0
    return first - start, rate, n, "".join(pieces)


def stop_latency(engine: EngineClient, sampling: p.SamplingSettings, *, after: int) -> float:
    stream = engine.stream(PROMPT.format(n=99), sampling=sampling, max_tokens=4000)
    for received, _ in enumerate(stream, start=1):
        if received == after:
            engine.stop()
    assert stream.result is not None and stream.result.stop_latency_s is not None
    return stream.result.stop_latency_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="a .gguf (default: the starter model)")
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=psutil.cpu_count(logical=False) or 1)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)

    import llama_cpp

    if args.model is None:
        from kaihe_desktop.core.starter import starter_model_path

        args.model = starter_model_path(paths.ensure(paths.cache_dir()) / "starter")
    sampling = p.SamplingSettings(temperature=0.0, seed=42, max_tokens=args.tokens, repeat_penalty=1.0)
    options = p.LoadOptions(
        path=str(args.model), n_ctx=args.ctx, n_threads=args.threads, n_threads_batch=args.threads
    )
    extra = extra_buffers_usable()
    with model_params_patched(llama_cpp, on_progress=None, extra_buffers=extra):
        llm = llama_cpp.Llama(**llama_kwargs(options))  # exactly what the engine passes
    engine = EngineClient()
    engine.load(options)

    # warm both up (first decode pays page faults and thread start)
    engine.generate(PROMPT.format(n=0), sampling=sampling)
    direct_run(llm, PROMPT.format(n=0), sampling)

    rows: dict[str, list[tuple[float, float, int]]] = {"engine process": [], "llama_cpp.Llama direct": []}
    same_text = True
    transport: list[float] = []
    for n in range(1, args.rounds + 1):
        prompt = PROMPT.format(n=n)  # a fresh prompt each round: no KV prefix reuse on either side
        order = ("engine", "direct") if n % 2 else ("direct", "engine")
        texts = {}
        for side in order:
            time.sleep(PAUSE_S)
            if side == "engine":
                r = engine.generate(prompt, sampling=sampling)
                rows["engine process"].append((r.ttft_s, r.tokens_per_s, r.completion_tokens))
                transport.append(r.ttft_s - r.engine_prompt_eval_s)
                texts[side] = r.text
            else:
                ttft, rate, count, text = direct_run(llm, prompt, sampling)
                rows["llama_cpp.Llama direct"].append((ttft, rate, count))
                texts[side] = text
        same_text = same_text and texts["engine"] == texts["direct"]

    stops = []
    for n in range(10):
        time.sleep(PAUSE_S)
        stops.append(stop_latency(engine, p.SamplingSettings(seed=n, max_tokens=4000), after=8))
    unloaded = engine.unload()
    engine.close()
    llm.close()

    table = []
    for name, runs in rows.items():
        table.append(
            [
                name,
                f"{statistics.median(r[0] for r in runs) * 1000:.1f}",
                f"{statistics.median(r[1] for r in runs):.2f}",
                f"{statistics.median(r[2] for r in runs):.0f}",
            ]
        )
    eng, direct = rows["engine process"], rows["llama_cpp.Llama direct"]
    # paired by round (the two runs of a round are adjacent in time), so drifts in machine load cancel
    ratio = statistics.median(e[1] / d[1] for e, d in zip(eng, direct, strict=True))
    ttft_delta_ms = statistics.median(e[0] - d[0] for e, d in zip(eng, direct, strict=True)) * 1000
    print(
        f"model: {Path(args.model).name}  context: {args.ctx}  threads: {args.threads}  "
        f"tokens/reply: {args.tokens}  rounds: {args.rounds} (alternating)  "
        f"llama.cpp extra CPU buffers: {'on' if extra else 'off (AMX build)'}"
    )
    print(render_table(["path", "ttft ms (median)", "decode tok/s (median)", "tokens"], table))
    print()
    verdicts = [
        [
            "decode tok/s ratio engine/direct (median of rounds)",
            f"{ratio:.3f}",
            ">= 0.97",
            "ok" if ratio >= 0.97 else "FAIL",
        ],
        [
            "ttft engine - direct ms (median of rounds)",
            f"{ttft_delta_ms:+.1f}",
            "<= +20",
            "ok" if ttft_delta_ms <= 20 else "FAIL",
        ],
        [
            "stop latency ms (median / max of 10)",
            f"{statistics.median(stops) * 1000:.1f} / {max(stops) * 1000:.1f}",
            "<= 200",
            "ok" if max(stops) <= 0.2 else "FAIL",
        ],
        [
            "engine transport ms (client ttft - worker ttft, median)",
            f"{statistics.median(transport) * 1000:.2f}",
            "-",
            "info",
        ],
        ["same text both paths (greedy)", str(same_text), "True", "ok" if same_text else "FAIL"],
    ]
    print(render_table(["claim", "measured", "target", "verdict"], verdicts))
    print(
        f"\nunload: engine RSS {unloaded.rss_before_bytes / 2**20:.0f} MiB -> "
        f"{unloaded.rss_after_bytes / 2**20:.0f} MiB ({unloaded.freed_bytes / 2**20:.0f} MiB returned)"
    )
    return 0 if all(v[3] in ("ok", "info") for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
