"""Chat formats: real templates rendered in the sandbox, fallbacks by architecture, injection payloads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kaihe_desktop.core.chat.templates import ChatMessage, RenderLimits, looks_instruct, resolve_chat_format
from kaihe_desktop.core.errors import TemplateError
from kaihe_desktop.core.gguf.meta import read_local
from kaihe_desktop.core.gguf.model_meta import ModelMeta

TEMPLATES = Path(__file__).parent / "data" / "chat_templates"


def _template(name: str) -> str:
    # GGUF files store the template without the trailing newline an editor adds
    return (TEMPLATES / name).read_text(encoding="utf-8").removesuffix("\n")


def make_meta(
    *,
    architecture: str = "llama",
    name: str | None = "Test Model",
    template: str | None = None,
    bos: str | None = "<s>",
    eos: str | None = "</s>",
    source: str = "/models/test-model.gguf",
) -> ModelMeta:
    return ModelMeta(
        source=source,
        architecture=architecture,
        name=name,
        parameter_count=1,
        block_count=1,
        embedding_length=1,
        feed_forward_length=1,
        head_count=1,
        head_count_kv=(1,),
        key_length=1,
        value_length=1,
        context_length=2048,
        vocab_size=1,
        file_type=None,
        has_chat_template=template is not None,
        chat_template=template,
        bos_token=bos,
        eos_token=eos,
    )


SYSTEM = ChatMessage("system", "You are helpful.")
HI = ChatMessage("user", "Hi")

# --- real templates -----------------------------------------------------------------------------


def test_llama3_template_renders_like_transformers() -> None:
    meta = make_meta(
        name="Meta Llama 3 8B Instruct", template=_template("llama3.jinja"), bos="<|begin_of_text|>"
    )
    fmt = resolve_chat_format(meta)
    prompt = fmt.render([SYSTEM, HI])
    assert prompt == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert (fmt.mode, fmt.name) == ("chat", "gguf")
    assert fmt.why == "'Meta Llama 3 8B Instruct' carries its own chat template: using it (in a sandbox)"
    assert not fmt.needs_bos(prompt)  # the template wrote BOS itself: the tokenizer must not add another
    assert "<|eot_id|>" in fmt.stop


def test_gemma3_template_folds_the_system_prompt_into_the_first_turn() -> None:
    meta = make_meta(
        architecture="gemma3", name="Gemma 3 1b It", template=_template("gemma3.jinja"), bos="<bos>"
    )
    fmt = resolve_chat_format(meta)
    convo = [SYSTEM, HI, ChatMessage("assistant", "Hello!"), ChatMessage("user", "Bye")]
    assert fmt.render(convo) == (
        "<bos><start_of_turn>user\nYou are helpful.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    )


def test_gemma3_template_refusal_is_a_clear_template_error() -> None:
    meta = make_meta(
        architecture="gemma3", name="Gemma 3 1b It", template=_template("gemma3.jinja"), bos="<bos>"
    )
    fmt = resolve_chat_format(meta)
    with pytest.raises(TemplateError, match=r"'Gemma 3 1b It' refused this conversation: Conversation roles"):
        fmt.render([HI, HI])


def test_qwen3_thinking_switch_reaches_the_template() -> None:
    meta = make_meta(
        architecture="qwen3", name="Qwen3 8B", template=_template("qwen3.jinja"), eos="<|im_end|>"
    )
    fmt = resolve_chat_format(meta)
    assert fmt.supports_thinking
    base = "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    base += "<|im_start|>assistant\n"
    assert fmt.render([SYSTEM, HI]) == base
    assert fmt.render([SYSTEM, HI], enable_thinking=True) == base
    assert fmt.render([SYSTEM, HI], enable_thinking=False) == base + "<think>\n\n</think>\n\n"
    assert fmt.stop[0] == "<|im_end|>"


def test_qwen3_template_drops_old_reasoning_from_history() -> None:
    meta = make_meta(
        architecture="qwen3", name="Qwen3 8B", template=_template("qwen3.jinja"), eos="<|im_end|>"
    )
    fmt = resolve_chat_format(meta)
    convo = [
        HI,
        ChatMessage("assistant", "<think>\nThey greet me.\n</think>\n\nHello!"),
        ChatMessage("user", "2+2?"),
    ]
    prompt = fmt.render(convo)
    assert "They greet me" not in prompt
    assert "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n" in prompt


@pytest.mark.parametrize(
    ("arch", "template", "bos", "eos", "name"),
    [
        ("gemma3", "gemma3.jinja", "<bos>", "<eos>", "gemma"),
        ("llama", "llama3.jinja", "<|begin_of_text|>", "<|eot_id|>", "llama3"),
        ("qwen3", "qwen3.jinja", None, "<|im_end|>", "chatml"),
    ],
)
def test_builtin_fallback_formats_match_the_real_templates(
    arch: str, template: str, bos: str | None, eos: str, name: str
) -> None:
    real = resolve_chat_format(
        make_meta(architecture=arch, name="X It", template=_template(template), bos=bos, eos=eos)
    )
    fallback = resolve_chat_format(make_meta(architecture=arch, name="X It", bos=bos, eos=eos))
    assert (fallback.mode, fallback.name) == ("chat", name)
    convos = [
        [HI],
        [SYSTEM, HI],
        [SYSTEM, HI, ChatMessage("assistant", "Hello!"), ChatMessage("user", "How are you?")],
    ]
    for convo in convos:
        for gen in (True, False):
            assert fallback.render(convo, add_generation_prompt=gen) == real.render(
                convo, add_generation_prompt=gen
            )
    if name == "chatml":
        assert fallback.render([HI], enable_thinking=False) == real.render([HI], enable_thinking=False)


# --- fallbacks ----------------------------------------------------------------------------------


def test_starter_model_is_a_base_model_in_completion_mode(starter_model_path: Path) -> None:
    meta = read_local(starter_model_path)
    assert not meta.has_chat_template
    fmt = resolve_chat_format(meta)
    assert (fmt.mode, fmt.name) == ("completion", "completion")
    assert "'Gemma 3 270m' is a base model with no chat template: plain completion mode" in fmt.why
    assert fmt.render([ChatMessage("user", "The sea is")]) == "The sea is"
    assert fmt.stop == ()


def test_completion_mode_continues_the_text() -> None:
    fmt = resolve_chat_format(make_meta(architecture="gemma3", name="Gemma 3 270m", bos="<bos>", eos="<eos>"))
    convo = [
        ChatMessage("system", "A story."),
        ChatMessage("user", "Once"),
        ChatMessage("assistant", " upon a time"),
    ]
    assert fmt.render([*convo, ChatMessage("user", "Then")]) == "A story.\n\nOnce upon a time\n\nThen"


@pytest.mark.parametrize(
    ("arch", "name", "bos", "eos", "expected"),
    [
        ("gemma3", "Gemma 3 4b It", "<bos>", "<eos>", "gemma"),
        ("gemma2", "gemma-2-9b", "<bos>", "<end_of_turn>", "gemma"),  # EOS is the end-of-turn token
        ("gemma3", "Gemma 3 270m", "<bos>", "<eos>", "completion"),
        ("llama", "Meta Llama 3.1 8B Instruct", "<|begin_of_text|>", "<|eot_id|>", "llama3"),
        ("llama", "Meta Llama 3.1 8B", "<|begin_of_text|>", "<|end_of_text|>", "completion"),
        ("llama", "Mistral 7B Instruct v0.3", "<s>", "</s>", "mistral"),
        ("qwen2", "Qwen2.5 7B Instruct", None, "<|im_end|>", "chatml"),
        ("qwen3", "Qwen3 8B Base", None, "<|endoftext|>", "completion"),
        ("phi3", "Phi 3 Mini 4k Instruct", "<s>", "<|end|>", "phi"),
        (
            "deepseek2",
            "DeepSeek V2 Lite Chat",
            "<｜begin▁of▁sentence｜>",
            "<｜end▁of▁sentence｜>",
            "deepseek",
        ),
        ("mamba", "Mamba Chat", None, None, "completion"),  # no known format for the architecture
    ],
)
def test_fallback_by_architecture_only_for_chat_models(
    arch: str, name: str, bos: str | None, eos: str | None, expected: str
) -> None:
    fmt = resolve_chat_format(make_meta(architecture=arch, name=name, bos=bos, eos=eos))
    assert fmt.name == expected
    assert fmt.mode == ("completion" if expected == "completion" else "chat")
    assert name in fmt.why


def test_instruct_signal_can_come_from_the_file_name() -> None:
    meta = make_meta(architecture="gemma3", name=None, source="/m/gemma-3-1b-it-Q4_K_M.gguf")
    assert looks_instruct(meta)
    assert resolve_chat_format(meta).name == "gemma"


def test_fallback_formats_render_their_turns() -> None:
    convo = [SYSTEM, HI, ChatMessage("assistant", "Hello!"), ChatMessage("user", "Bye")]
    mistral = resolve_chat_format(make_meta(name="Mistral 7B Instruct")).render(convo)
    assert mistral == "<s>[INST] You are helpful.\n\nHi [/INST]Hello!</s>[INST] Bye [/INST]"
    phi = resolve_chat_format(make_meta(architecture="phi3", name="Phi 3 Mini Instruct")).render([HI])
    assert phi == "<|user|>\nHi<|end|>\n<|assistant|>\n"
    deepseek = resolve_chat_format(
        make_meta(architecture="deepseek2", name="DeepSeek V2 Lite Chat", bos="<｜begin▁of▁sentence｜>")
    ).render([SYSTEM, HI])
    assert deepseek == "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>Hi<｜Assistant｜>"


def test_chatml_fallback_switches_qwen3_thinking_off_with_an_empty_think_block() -> None:
    fmt = resolve_chat_format(make_meta(architecture="qwen3", name="Qwen3 4B", bos=None, eos="<|im_end|>"))
    assert fmt.supports_thinking
    assert fmt.render([HI], enable_thinking=False).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert fmt.render([HI], enable_thinking=True).endswith("<|im_start|>assistant\n")
    qwen2 = resolve_chat_format(make_meta(architecture="qwen2", name="Qwen2.5 7B Instruct", eos="<|im_end|>"))
    assert not qwen2.supports_thinking
    assert qwen2.render([HI], enable_thinking=False).endswith("<|im_start|>assistant\n")


def test_invalid_jinja_names_the_model_and_line() -> None:
    with pytest.raises(TemplateError, match=r"chat template of 'Broken' is not valid Jinja \(line 2\)"):
        resolve_chat_format(make_meta(name="Broken", template="{{ messages }}\n{% for x in %}"))


# --- injection and denial of service ------------------------------------------------------------

MARKER = "kaihe-pwned"

# (id, template, words the error must contain). Payloads from public Jinja2 SSTI lists and the
# CVE-2024-34359 proof of concept (llama-cpp-python running GGUF templates unsandboxed).
INJECTIONS = [
    (
        "cve-2024-34359",
        "{% for x in ().__class__.__base__.__subclasses__() %}{% if 'warning' in x.__name__ %}"
        "{{ x()._module.__builtins__['__import__']('os').popen('touch {path}') }}{% endif %}{% endfor %}",
        "Python internals",
    ),
    ("class-mro", "{{ ''.__class__.__mro__[1].__subclasses__() }}", "Python internals"),
    ("cycler-globals", "{{ cycler.__init__.__globals__.os.popen('touch {path}') }}", "Python internals"),
    ("joiner-globals", "{{ joiner.__init__.__globals__.os.system('touch {path}') }}", "Python internals"),
    ("namespace-globals", "{{ namespace.__init__.__globals__.os.system('touch {path}') }}", "internals"),
    ("lipsum-globals", "{{ lipsum.__globals__['os'].popen('touch {path}') }}", "undefined"),
    ("template-context", "{{ self._TemplateReference__context.cycler }}", "Python internals"),
    ("self-builtins", "{{ self.__init__.__globals__.__builtins__ }}", "Python internals"),
    ("attr-filter", "{{ messages|attr('__class__')|attr('__base__') }}", "Python internals"),
    ("format-string", "{{ '{0.__class__.__base__.__subclasses__}'.format(messages) }}", "Python internals"),
    ("format-via-attr", "{{ ('{0.__class__}'|attr('format'))(messages) }}", "Python internals"),
    ("dict-subclasses", "{{ dict.__subclasses__() }}", "Python internals"),
    ("builtins-via-raise", "{{ raise_exception.__globals__['__builtins__'] }}", "Python internals"),
    ("request-globals", "{{ request.application.__globals__.__builtins__.__import__('os') }}", "undefined"),
    ("list-append", "{% set x = [] %}{{ x.append(1) }}", "Python internals"),
    ("huge-string", "{{ 'A' * 10**9 }}", "huge prompt"),
    ("huge-string-var", "{% set n = 1000000000 %}{{ 'ab' * n }}", "huge prompt"),
    ("huge-range", "{{ range(10**9)|list|length }}", "too much"),
    ("huge-power", "{{ 10 ** (10 ** 10) }}", "forbids"),
    (
        "doubling-concat",
        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "huge prompt",
    ),
    (
        "replace-squaring",
        "{% set ns = namespace(s='a' * 2000) %}"
        "{% for i in range(4) %}{% set ns.s = ns.s.replace('a', ns.s) %}{% endfor %}",
        "huge prompt",
    ),
    ("center-width", "{{ 'x'|center(10**9) }}", "huge prompt"),
    ("ljust-width", "{{ 'x'.ljust(10**9) }}", "huge prompt"),
    ("percent-width", "{{ '%999999999s' % 'x' }}", "huge prompt"),
    ("percent-star", "{{ '%*s' % (999999999, 'x') }}", "forbids"),
    ("format-width", "{{ '{:>999999999}'.format('x') }}", "huge prompt"),
    ("format-filter", "{{ '%999999999d'|format(1) }}", "huge prompt"),
    ("indent-width", "{{ 'a\nb'|indent(10**9) }}", "huge prompt"),
    ("tojson-indent", "{{ messages|tojson(indent=10**9) }}", "forbids"),
    ("endless-recursion", "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "recursed"),
    (
        "nested-loops",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "ran longer",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("payload_id", "template", "reason"), INJECTIONS, ids=[i[0] for i in INJECTIONS])
def test_injection_payload_fails_and_runs_nothing(
    tmp_path: Path, payload_id: str, template: str, reason: str
) -> None:
    target = tmp_path / MARKER
    source = template.replace("{path}", str(target))
    meta = make_meta(name="Evil Model", template=source)
    with pytest.raises(TemplateError) as caught:
        resolve_chat_format(meta, limits=RenderLimits(timeout_s=0.3))  # the probe render already refuses it
    message = str(caught.value)
    assert "chat template of 'Evil Model'" in message
    assert reason in message
    assert not target.exists()


def test_payload_hidden_behind_a_condition_fails_on_the_turn_that_reaches_it(tmp_path: Path) -> None:
    target = tmp_path / MARKER
    source = (
        "{% for m in messages %}{{ m.content }}{% endfor %}"
        "{% if messages|length > 2 %}{{ cycler.__init__.__globals__.os.system('touch "
        + str(target)
        + "') }}{% endif %}"
    )
    fmt = resolve_chat_format(make_meta(name="Sleeper", template=source))
    assert fmt.render([HI]) == "Hi"
    with pytest.raises(TemplateError, match="Python internals"):
        fmt.render([HI, ChatMessage("assistant", "Hello"), HI])
    assert not target.exists()


def test_output_size_is_bounded() -> None:
    source = "{% for i in range(1000) %}{{ messages[0].content }}{% endfor %}"
    fmt = resolve_chat_format(
        make_meta(name="Chatty", template=source), limits=RenderLimits(max_chars=500_000)
    )
    assert len(fmt.render([ChatMessage("user", "x" * 100)])) == 100_000
    with pytest.raises(TemplateError, match="huge prompt"):
        fmt.render([ChatMessage("user", "x" * 1000)])


def test_rendering_restores_a_tracer_that_was_installed() -> None:
    import sys

    seen: list[str] = []

    def tracer(frame: object, event: str, arg: object) -> None:
        seen.append(event)

    fmt = resolve_chat_format(make_meta(name="Plain", template=_template("llama3.jinja")))
    sys.settrace(tracer)
    try:
        fmt.render([HI])
        after = sys.gettrace()
    finally:
        sys.settrace(None)
    assert after is tracer


def test_injection_gguf_is_refused_through_the_real_metadata_reader(injection_gguf_path: Path) -> None:
    meta = read_local(injection_gguf_path)
    assert meta.has_chat_template and "__subclasses__" in (meta.chat_template or "")
    with pytest.raises(TemplateError, match="tried to reach Python internals"):
        resolve_chat_format(meta)


def test_a_bomb_in_an_unused_branch_is_not_built_at_compile_time() -> None:
    # Jinja folds constants while compiling; llama-cpp-python's own environment would build this string
    # when it loads the model. Ours intercepts the operator, so nothing is built until a render reaches it.
    import tracemalloc

    # Within the size limit, a folded 'C'|center(3999999) would still be built at load, and baked into the
    # generated code as a 4M-character literal: filters are never folded.
    source = (
        "{% if messages|length > 99 %}{{ 'A' * 300000000 }}{{ 'B'|center(300000000) }}"
        + "{{ 'C'|center(3999999) }}" * 20
        + "{% endif %}ok"
    )
    tracemalloc.start()
    try:
        fmt = resolve_chat_format(make_meta(name="Bomb", template=source))
        assert fmt.render([HI]) == "ok"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000
    with pytest.raises(TemplateError, match="huge prompt"):
        fmt.render([HI] * 100)


# --- template bombs: each stops within 3 s and 256 MB, with one clear line -------------------------

_S4 = "{% set s = 'x' * 3999999 %}"
_EMOJI = "\U0001f600"
# (id, template, words the error must contain). Each would run for minutes or hours, or take gigabytes,
# without the sandbox's bounds; 'before' figures are in the commit message of the change that added them.
BOMBS = [
    ("pow-chain", "{{ (((10**1000)**1000)**20) > 5 }}", "forbids"),  # 35 s of CPU in one C call
    ("pow-chain-deep", "{{ ((((10**1000)**1000)**1000)**1000) > 5 }}", "forbids"),
    (
        "mul-squaring",
        "{% set ns = namespace(x=10**1000) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}"
        "{% endfor %}{{ ns.x > 5 }}",
        "forbids",
    ),
    ("to-bytes", "{{ (1).to_bytes(10**9, 'big') }}", "huge prompt"),
    ("str-repeat", "{{ 'A' * 10**9 }}", "huge prompt"),
    ("list-repeat", "{{ ([0] * 10**9)|length }}", "huge prompt"),
    ("list-repeat-join", _S4 + "{{ ([s] * 1000)|join }}", "huge prompt"),
    ("list-repeat-string", _S4 + "{{ ([s] * 1000)|string|length }}", "huge prompt"),
    ("list-repeat-compare", _S4 + "{% set t = 'x' * 3999998 ~ 'y' %}{{ t in [s] * 1000000 }}", "huge prompt"),
    (
        "concat-doubling",
        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "huge prompt",
    ),
    (
        "plus-doubling",
        "{% set ns = namespace(s=['ab']) %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
        "huge prompt",
    ),
    (
        "kept-strings-recursion",  # every macro frame keeps its own 16 MB string
        "{% macro m(n, s) %}{% if n %}{{ m(n - 1, s ~ 'x') }}{% endif %}{% endmacro %}"
        "{{ m(300, '" + _EMOJI + "' * 3999000) }}",
        "memory",
    ),
    (
        "kept-strings-namespace",
        "{% set ns = namespace() %}"
        + "".join(f"{{% set ns.a{i} = '{_EMOJI}' * 3999990 ~ {i} %}}" for i in range(200)),
        "memory",
    ),
    (
        "kept-ljust-padding",
        "{% set ns = namespace() %}"
        + "".join(f"{{% set ns.a{i} = ('{i}').ljust(3999999, '{_EMOJI}') %}}" for i in range(200)),
        "memory",
    ),
    ("join-huge-range", "{{ range(100000)|join('x' * 100000) }}", "huge prompt"),
    ("format-fields", "{{ ('{0:>3999999}' * 100).format(1) }}", "huge prompt"),
    ("percent-fields", _S4 + "{{ ('%(a)s' * 1000) % {'a': s} }}", "huge prompt"),
    ("translate", "{{ ('x' * 3999999).translate({120: 'y' * 1000}) }}", "huge prompt"),
    ("list-of-chars", "{{ ('\u20ac' * 3999999)|list|length }}", "huge prompt"),
    ("split-pieces", "{{ ('\u20ac,' * 1999999).split(',')|length }}", "huge prompt"),
    ("slice-count", "{{ [1]|slice(10**9)|list|length }}", "huge prompt"),
    ("sum-of-lists", "{{ ([[1]] * 100000)|sum(start=[])|length }}", "forbids"),
    (
        "nested-list-dag",
        "{% set ns = namespace(l=['x']) %}{% for i in range(40) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}"
        "{{ ns.l }}",
        "huge prompt",
    ),
    (
        "hash-dag",
        "{% set ns = namespace(t=(1,)) %}{% for i in range(60) %}{% set ns.t = (ns.t, ns.t) %}{% endfor %}"
        "{{ {ns.t: 1} }}",
        "huge prompt",
    ),
    ("macro-doubling", "{% macro m(s) %}{{ m(s ~ s) }}{% endmacro %}{{ m('x') }}", "huge prompt"),
    (
        "macro-buffer",
        _S4 + "{% macro m() %}{% for i in range(1000) %}{{ s }}{% endfor %}{% endmacro %}{{ m()|length }}",
        "huge prompt",
    ),
    (
        "macro-exponential",
        "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(40) }}",
        "ran longer",
    ),
    (
        "nested-loops-output",
        "{% for a in range(99999) %}{% for b in range(99999) %}x{% endfor %}{% endfor %}",
        "ran longer",
    ),
]  # fmt: skip

# Runs one bomb in a fresh interpreter, so its peak resident memory is its own.
_BOMB_CHILD = """
import json, resource, sys, time
from kaihe_desktop.core.errors import TemplateError
from kaihe_desktop.core.gguf.model_meta import ModelMeta
from kaihe_desktop.core.chat.templates import resolve_chat_format

meta = ModelMeta(
    source="/m/evil.gguf", architecture="llama", name="Evil Model", parameter_count=1, block_count=1,
    embedding_length=1, feed_forward_length=1, head_count=1, head_count_kv=(1,), key_length=1,
    value_length=1, context_length=2048, vocab_size=1, file_type=None, has_chat_template=True,
    chat_template=sys.stdin.read(), bos_token="<s>", eos_token="</s>",
)
scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
start = time.monotonic()
try:
    resolve_chat_format(meta)
    message = "rendered without an error"
except TemplateError as exc:
    message = str(exc)
wall = time.monotonic() - start
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale - before
print(json.dumps({"wall_s": wall, "grown_bytes": grown, "message": message}))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="measures peak memory with resource.getrusage")
@pytest.mark.parametrize(("bomb_id", "template", "reason"), BOMBS, ids=[b[0] for b in BOMBS])
def test_template_bomb_stops_within_3_s_and_256_mb(bomb_id: str, template: str, reason: str) -> None:
    # The acceptance bound (stops within 3 s, grows memory by less than 256 MB), with the default
    # limits (2 s). Without the bounds these ran for minutes to hours in one C call, or took gigabytes.
    child = subprocess.run(
        [sys.executable, "-c", _BOMB_CHILD],
        input=template,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[3],
    )
    assert child.returncode == 0, child.stderr[-2000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    message = result["message"]
    assert message.startswith("the chat template of 'Evil Model' "), message
    assert reason in message, message
    assert "\n" not in message
    assert result["wall_s"] < 3.0, result
    assert result["grown_bytes"] < 256 * 2**20, result


def test_a_long_conversation_still_renders_within_the_bounds() -> None:
    # ~1.3M characters of conversation through the real Qwen3 template: the size, memory and time bounds
    # leave room for any prompt a context window can hold.
    meta = make_meta(
        architecture="qwen3", name="Qwen3 8B", template=_template("qwen3.jinja"), eos="<|im_end|>"
    )
    real = resolve_chat_format(meta)
    fallback = resolve_chat_format(make_meta(architecture="qwen3", name="Qwen3 8B", eos="<|im_end|>"))
    convo = [SYSTEM]
    for i in range(200):
        convo += [ChatMessage("user", f"question {i} " * 300), ChatMessage("assistant", f"answer {i} " * 300)]
    convo.append(HI)
    prompt = real.render(convo)
    assert len(prompt) > 1_300_000
    assert prompt == fallback.render(convo)
