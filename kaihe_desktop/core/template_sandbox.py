"""A Jinja environment for chat templates we did not write (they come inside downloaded GGUF files).

CVE-2024-34359 showed a GGUF chat template running shell commands through llama-cpp-python's unsandboxed
Jinja. Here every template runs in jinja2's ImmutableSandboxedEnvironment, hardened further:

* any unsafe attribute (``__class__``, ``__globals__``, ``_TemplateReference__context``, ...) raises at once
  instead of quietly rendering as an empty string;
* operators, concatenation, string methods and filters that can multiply a string's size are checked before
  they run, so ``'a' * 10**9`` or ``s.replace('a', s)`` cannot eat the machine's memory;
* the output size is bounded, and render time is bounded by a trace hook on the template's own frames
  (``{% for i in range(100000) %}{% for j in range(100000) %}`` is stopped, not waited for).

The helpers Hugging Face templates expect are provided as transformers does: ``raise_exception``,
``strftime_now``, a ``tojson`` filter, the loop-controls extension and a pass-through ``{% generation %}``
tag.
"""

from __future__ import annotations

import json
import re
import string
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from types import FrameType
from typing import Any

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

TEMPLATE_FILENAME = "<kaihe-chat-template>"


@dataclass(frozen=True)
class RenderLimits:
    """How much one render may produce and how long it may take."""

    max_chars: int = 4_000_000  # ~1M tokens of prompt: more than any context window we can load
    timeout_s: float = 2.0


class TemplateRaised(Exception):
    """The template called raise_exception(): it refuses this conversation (not an attack)."""


class SandboxViolation(Exception):
    """The template tried something the sandbox forbids (internals, huge allocations)."""


class RenderTimeout(BaseException):
    """Raised from the trace hook; a BaseException so no ``except Exception`` inside Jinja swallows it."""


class OutputTooLarge(Exception):
    """The rendered prompt (or a string built on the way) grew past RenderLimits.max_chars."""


class _IgnoreGenerationTags(jinja2.ext.Extension):
    """Pass-through for Hugging Face's ``{% generation %}`` tag (marks assistant tokens for training)."""

    tags = {"generation"}

    def parse(self, parser: Any) -> Any:
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


class _BoundedCodeGenerator(CodeGenerator):
    """Routes ``a ~ b`` through the environment so concatenation is size-checked like ``+``."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_NUMBERS = re.compile(r"\d+")
_SIZED = (str, list, tuple, dict, set, frozenset)


class ChatTemplateEnvironment(ImmutableSandboxedEnvironment):
    """The hardened sandbox. One instance per compiled template (it carries that template's limits)."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%", "//"})

    def __init__(self, *, limits: RenderLimits) -> None:
        super().__init__(
            loader=jinja2.BaseLoader(),
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[jinja2.ext.loopcontrols, _IgnoreGenerationTags],
            keep_trailing_newline=False,
        )
        self.limits = limits
        self.globals.pop("lipsum", None)  # unbounded text generator; no chat template uses it
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = _strftime_now
        self.filters["tojson"] = self._tojson
        for name in ("center", "indent", "replace", "format", "wordwrap", "join", "truncate"):
            self.filters[name] = self._bounded_filter(self.filters[name], name)

    # --- size checks ---------------------------------------------------------------------------

    def check_size(self, value: Any, what: str = "a value") -> Any:
        if isinstance(value, _SIZED) and len(value) > self.limits.max_chars:
            raise OutputTooLarge(f"{what} grew past {self.limits.max_chars:,} characters")
        return value

    def _check_width(self, width: Any, what: str) -> None:
        if isinstance(width, int) and not isinstance(width, bool) and width > self.limits.max_chars:
            raise OutputTooLarge(f"{what} asks for a width of {width:,}")

    def _check_format_string(self, fmt: str) -> None:
        try:
            fields = list(string.Formatter().parse(fmt))
        except ValueError as exc:
            raise SandboxViolation(f"malformed format string: {exc}") from exc
        for _literal, _name, spec, _conversion in fields:
            if not spec:
                continue
            if "{" in spec:
                raise SandboxViolation("nested format specs are not allowed in chat templates")
            for number in _NUMBERS.findall(spec):
                self._check_width(int(number), "a format spec")

    def _check_percent_format(self, fmt: str) -> None:
        for match in _PERCENT_SPEC.finditer(fmt):
            for group in match.groups():
                if group == "*":
                    raise SandboxViolation("'*' widths are not allowed in chat templates")
                if group:
                    self._check_width(int(group), "a %-format")

    # --- sandbox hooks -------------------------------------------------------------------------

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__!r} object")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limit = self.limits.max_chars
        if operator == "*":
            count, seq = (right, left) if isinstance(left, _SIZED) else (left, right)
            if isinstance(seq, _SIZED) and isinstance(count, int) and len(seq) * max(count, 0) > limit:
                raise OutputTooLarge(f"repeating a value {count:,} times would pass {limit:,} characters")
        elif operator == "**":
            if isinstance(right, (int, float)) and abs(right) > 1024 and isinstance(left, (int, float)):
                raise SandboxViolation(f"the power {left!r} ** {right!r} is too large")
        elif operator == "+":
            if isinstance(left, _SIZED) and isinstance(right, _SIZED) and len(left) + len(right) > limit:
                raise OutputTooLarge(f"a value grew past {limit:,} characters")
        elif operator == "%" and isinstance(left, str):
            self._check_percent_format(left)
        return self.check_size(super().call_binop(context, operator, left, right))

    def bounded_concat(self, parts: tuple[Any, ...]) -> str:
        texts = [p if isinstance(p, str) else jinja2.runtime.str_join((p,)) for p in parts]
        if sum(len(t) for t in texts) > self.limits.max_chars:
            raise OutputTooLarge(f"a string grew past {self.limits.max_chars:,} characters")
        return "".join(texts)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt: str = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            self._check_format_string(fmt)
            return str(self.check_size(wrapped(*args, **kwargs)))

        return checked

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            __self._precheck_str_method(owner, getattr(__obj, "__name__", ""), args, kwargs)
        return __self.check_size(super().call(__context, __obj, *args, **kwargs))

    def _precheck_str_method(
        self, text: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        limit = self.limits.max_chars
        values = list(args) + list(kwargs.values())
        if name in {"center", "ljust", "rjust", "zfill"} and values:
            self._check_width(values[0], f"str.{name}")
        elif name == "expandtabs":
            size = values[0] if values else 8
            if isinstance(size, int) and text.count("\t") * size > limit:
                raise OutputTooLarge("str.expandtabs would pass the size limit")
        elif name == "replace" and len(values) >= 2:
            old, new = values[0], values[1]
            if isinstance(old, str) and isinstance(new, str):
                hits = text.count(old) if old else len(text) + 1
                if len(text) + hits * len(new) > limit:
                    raise OutputTooLarge("str.replace would pass the size limit")
        elif name == "join" and values:
            items = values[0]
            if isinstance(items, (list, tuple)):
                total = len(text) * len(items) + sum(len(i) for i in items if isinstance(i, str))
                if total > limit:
                    raise OutputTooLarge("str.join would pass the size limit")

    def _bounded_filter(self, original: Callable[..., Any], name: str) -> Callable[..., Any]:
        def bounded(*args: Any, **kwargs: Any) -> Any:
            values = list(args) + list(kwargs.values())
            if name == "center" and len(values) >= 2:
                self._check_width(values[1], "the center filter")
            elif name == "indent" and len(values) >= 2:
                width = values[1]
                lines = str(values[0]).count("\n") + 1
                if isinstance(width, int) and width * lines > self.limits.max_chars:
                    raise OutputTooLarge("the indent filter would pass the size limit")
                self.check_size(width, "the indent filter's prefix")
            elif name == "replace" and len(values) >= 4:
                _ctx, text, old, new = values[:4]
                if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
                    hits = text.count(old) if old else len(text) + 1
                    if len(text) + hits * len(new) > self.limits.max_chars:
                        raise OutputTooLarge("the replace filter would pass the size limit")
            elif name == "format" and values and isinstance(values[0], str):
                self._check_percent_format(values[0])
            return self.check_size(original(*args, **kwargs), f"the {name} filter's result")

        # keep the pass_context / pass_eval_context markers jinja reads from the function
        for marker in ("jinja_pass_arg",):
            if hasattr(original, marker):
                setattr(bounded, marker, getattr(original, marker))
        return bounded

    def _tojson(
        self,
        value: Any,
        ensure_ascii: bool = False,
        indent: int | None = None,
        separators: tuple[str, str] | None = None,
        sort_keys: bool = False,
    ) -> str:
        if indent is not None and (not isinstance(indent, int) or indent > 64):
            raise SandboxViolation(f"tojson indent {indent!r} is too large")
        text = json.dumps(
            value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )
        return str(self.check_size(text, "tojson output"))

    # --- rendering -----------------------------------------------------------------------------

    def render_bounded(self, template: jinja2.Template, context: dict[str, Any]) -> str:
        """Render with the time and output bounds. Raises the exceptions of this module, or Jinja's."""
        limits = self.limits
        deadline = time.monotonic() + limits.timeout_s
        ticks = 0

        def local_trace(frame: FrameType, event: str, arg: Any) -> Any:
            nonlocal ticks
            ticks += 1
            if ticks % 64 == 0 and time.monotonic() > deadline:
                raise RenderTimeout
            return local_trace

        def global_trace(frame: FrameType, event: str, arg: Any) -> Any:
            # Only template frames are traced (and only they raise): a __del__ or a library frame that
            # raised here would swallow the timeout and unset the hook.
            if frame.f_code.co_filename != TEMPLATE_FILENAME:
                return None
            if time.monotonic() > deadline:
                raise RenderTimeout
            return local_trace

        pieces: list[str] = []
        size = 0
        previous = sys.gettrace()
        sys.settrace(global_trace)
        try:
            chunks: Iterator[str] = template.generate(**context)
            for chunk in chunks:
                size += len(chunk)
                if size > limits.max_chars:
                    raise OutputTooLarge(f"the prompt grew past {limits.max_chars:,} characters")
                pieces.append(chunk)
        finally:
            sys.settrace(previous)
        return "".join(pieces)

    def compile_template(self, source: str) -> jinja2.Template:
        code = self.compile(source, filename=TEMPLATE_FILENAME)
        return self.template_class.from_code(self, code, self.make_globals(None))


def _raise_exception(message: str) -> None:
    raise TemplateRaised(str(message))


def _strftime_now(fmt: str) -> str:
    if not isinstance(fmt, str) or len(fmt) > 200:
        raise SandboxViolation("strftime_now needs a short format string")
    return datetime.now().strftime(fmt)
