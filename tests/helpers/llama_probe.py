"""Load a GGUF with the real llama.cpp in a fresh process and report what it allocated and what it cost.

The fit estimator's ground truth, shared by tests/core/fit/test_estimate.py and benchmarks/fit_accuracy.py.

Each load runs in its own Python process (so nothing from an earlier load is resident), with llama.cpp's log
(stderr, verbose=True) captured and parsed for every buffer it prints:
"<dev> model buffer size" (CPU_Mapped, CPU_REPACK, AMX, CUDA0, ...), "<dev> KV buffer size", "<dev> compute
buffer size", "<dev> output buffer size" (and "RS buffer size" for recurrent models).

RSS is read with psutil at three points: after `import llama_cpp` (the baseline: the shared libraries are
mapped by then), after the model and context are created, and after one decode of a full micro-batch
(`n_ubatch` prompt tokens) plus a few generated tokens. What RSS growth should be, and why:
- llama.cpp maps the file with MAP_POPULATE (prefetch), so every page of the tensor data is resident right
  after the load (file-backed pages count in RSS once mapped into the process), minus the header, which it
  unmaps;
- the repacked copies (CPU_REPACK/AMX) and the KV cache are anonymous memory written at load (the KV cache
  is cleared with memset), so they are resident at once;
- the compute buffer is reserved for the worst case (a full micro-batch with every token's logits) but
  pages become resident only when a graph writes them: a real prompt of n_ubatch tokens with one output
  touches the attention and feed-forward scratch but only one row of logits;
- the output buffer (logits of one token) is written by every decode.
So the estimator's `resident_bytes` is compared with RSS after that full-micro-batch decode.

The load uses the engine's own llama_model_params patch (core.engine.worker.model_params_patched) with
use_extra_bufts = core.llama_build.extra_buffers_usable(): a build with AMX loads without extra buffer types
(no CPU_REPACK, no AMX copies; the AMX backend crashes), any other build with them, exactly as the app does.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
_REPO_ROOT = Path(__file__).resolve().parents[2]  # the child imports this tree's kaihe_desktop

_BUFFER_RE = re.compile(
    r"(?P<dev>[A-Za-z0-9_]+)\s+(?P<kind>model|KV|compute|output|RS)\s+buffer size"
    r"\s*=\s*(?P<mib>[0-9.]+)\s*MiB"
)

_CHILD = r"""
import json, os, sys, time
args = json.loads(sys.argv[1])
sys.path.insert(0, args["root"])
import psutil
import llama_cpp
from llama_cpp import Llama
from kaihe_desktop.core.engine.protocol import LoadOptions
from kaihe_desktop.core.engine.worker import llama_kwargs, model_params_patched
from kaihe_desktop.core.machine.llama_build import extra_buffers_usable

extra_buffers = extra_buffers_usable()
proc = psutil.Process()
rss_base = proc.memory_info().rss
kwargs = dict(
    model_path=args["path"], n_ctx=args["n_ctx"], n_batch=args["n_batch"], n_ubatch=args["n_ubatch"],
    flash_attn=args["flash_attn"], verbose=True, n_gpu_layers=0, use_mmap=args["use_mmap"],
)
if args["n_threads"]:
    kwargs["n_threads"] = args["n_threads"]
# the KV type as the engine passes it: core.engine.worker.llama_kwargs, from the one KV type table
kv = llama_kwargs(LoadOptions(path=args["path"], n_ctx=args["n_ctx"], kv_type=args["kv_type"]))
kwargs["type_k"], kwargs["type_v"] = kv["type_k"], kv["type_v"]
started = time.perf_counter()
with model_params_patched(llama_cpp, on_progress=None, extra_buffers=extra_buffers):  # as the engine loads
    llm = Llama(**kwargs)
load_s = time.perf_counter() - started
rss_load = proc.memory_info().rss
sys.stderr.flush()
n_vocab = llm.n_vocab()
prompt = [(7 + 13 * i) % max(n_vocab - 16, 1) + 8 for i in range(min(args["n_ubatch"], args["n_ctx"] - 64))]
llm.reset()
llm.eval(prompt)
wall, cpu = [], []
for _ in range(args["n_gen"]):
    t0, c0 = time.perf_counter(), time.thread_time()
    token = llm.sample(temp=0.0)
    llm.eval([token])
    wall.append(time.perf_counter() - t0)
    cpu.append(time.thread_time() - c0)
rss_decode = proc.memory_info().rss

def rate(samples):
    kept = sorted(samples[2:]) if len(samples) > 4 else sorted(samples)
    return 1.0 / kept[len(kept) // 2] if kept and kept[len(kept) // 2] > 0 else 0.0

print("KAIHE_PROBE " + json.dumps({
    "rss_base": rss_base, "rss_load": rss_load, "rss_decode": rss_decode, "load_s": load_s,
    "tokens_per_s": rate(wall), "tokens_per_cpu_s": rate(cpu), "n_prompt": len(prompt), "n_gen": len(wall),
    "extra_buffers": extra_buffers,
}), flush=True)
"""


@dataclass(frozen=True)
class ProbeResult:
    """What one real load allocated (from llama.cpp's log) and what it cost (RSS)."""

    n_ctx: int
    buffers: dict[str, int]  # "model:CPU_Mapped", "KV:CPU", "compute:CPU", "output:CPU" -> bytes (summed)
    rss_base: int
    rss_load: int
    rss_decode: int
    tokens_per_s: float  # generation (sample + decode), median over tokens, wall clock
    tokens_per_cpu_s: float  # the same from this thread's CPU time: what an idle core would give at 1 thread
    extra_buffers: bool  # loaded with llama.cpp's extra CPU buffer types (CPU_REPACK), as the engine does
    log: str = field(repr=False)

    def kind_bytes(self, kind: str) -> int:
        return sum(v for k, v in self.buffers.items() if k.split(":", 1)[0] == kind)

    @property
    def model_bytes(self) -> int:
        return self.kind_bytes("model")

    @property
    def kv_bytes(self) -> int:
        return self.kind_bytes("KV") + self.kind_bytes("RS")

    @property
    def compute_bytes(self) -> int:
        return self.kind_bytes("compute")

    @property
    def output_bytes(self) -> int:
        return self.kind_bytes("output")

    @property
    def reported_total(self) -> int:
        """The sum of every buffer llama.cpp reported: model (mapped + repacked), KV, output, compute."""
        return sum(self.buffers.values())

    @property
    def rss_growth(self) -> int:
        return self.rss_decode - self.rss_base


def parse_buffers(log: str) -> dict[str, int]:
    """Every "<dev> <kind> buffer size = X MiB" line of a llama.cpp log, summed per kind and device."""
    found: dict[str, int] = {}
    for match in _BUFFER_RE.finditer(log):
        key = f"{match['kind']}:{match['dev']}"
        found[key] = found.get(key, 0) + round(float(match["mib"]) * MIB)
    return found


def probe_load(
    model_path: Path,
    *,
    n_ctx: int,
    n_batch: int = 512,
    n_ubatch: int = 512,
    kv_type: str = "f16",
    flash_attn: bool = False,
    n_gen: int = 4,
    n_threads: int | None = None,
    use_mmap: bool = True,
    timeout_s: float = 300.0,
) -> ProbeResult:
    """Load model_path in a fresh python with llama.cpp, decode one micro-batch and n_gen tokens, report."""
    args = {
        "path": str(model_path),
        "n_ctx": n_ctx,
        "n_batch": n_batch,
        "n_ubatch": n_ubatch,
        "kv_type": kv_type,
        "flash_attn": flash_attn,
        "n_gen": n_gen,
        "use_mmap": use_mmap,
        "n_threads": n_threads,  # None: llama-cpp-python's default (cpu_count // 2), as the engine uses
        "root": str(_REPO_ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    log = done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("KAIHE_PROBE ")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(log.splitlines()[-15:])
        raise RuntimeError(f"llama.cpp probe of {model_path} failed (exit {done.returncode}):\n{tail}")
    data: dict[str, Any] = json.loads(lines[-1].removeprefix("KAIHE_PROBE "))
    return ProbeResult(
        n_ctx=n_ctx,
        buffers=parse_buffers(log),
        rss_base=int(data["rss_base"]),
        rss_load=int(data["rss_load"]),
        rss_decode=int(data["rss_decode"]),
        tokens_per_s=float(data["tokens_per_s"]),
        tokens_per_cpu_s=float(data["tokens_per_cpu_s"]),
        extra_buffers=bool(data["extra_buffers"]),
        log=log,
    )
