"""A Jinja environment for chat templates we did not write (they come inside downloaded GGUF files).

CVE-2024-34359 showed a GGUF chat template running shell commands through llama-cpp-python's unsandboxed
Jinja. Here every template runs in jinja2's ImmutableSandboxedEnvironment, hardened further:

* any unsafe attribute (``__class__``, ``__globals__``, ``_TemplateReference__context``, ...) raises at once
  instead of quietly rendering as an empty string;
* a trace hook bounds render time, but it cannot interrupt one C call (``(10**1000)**1000``, a 4-GB join,
  comparing or printing a list that holds one string a million times). So every operation that can be
  costly in one call is checked *before* it runs, from the size of what it is given (template_bounds.py):
  integer results are kept under ``max_int_bits``; repetition, concatenation, string methods, filters,
  format strings, comparisons, dict keys and printed values are bounded by their inputs' weight; a string
  is never turned into more than ``max_items`` objects;
* what all operations build together is bounded by the process's memory growth, sampled as they return;
* filters and tests are never constant-folded at compile time (nothing is built while a model loads), and
  the output, including macros' and ``{% set %}`` blocks' buffered output, is bounded in size.
The helpers Hugging Face templates expect are provided as transformers does: ``raise_exception``,
``strftime_now``, a ``tojson`` filter, the loop-controls extension and a pass-through ``{% generation %}``
tag.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import string
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from types import FrameType
from typing import Any

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, operators
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import Namespace, _PassArg

from kaihe_desktop.core.chat.bounds import (
    _REPR_FACTOR,
    OutputTooLarge,
    RenderLimits,
    RenderMemoryExceeded,
    RenderMeter,
    RenderTimeout,
    SandboxViolation,
    TemplateRaised,
    int_bits,
)

TEMPLATE_FILENAME = "<kaihe-chat-template>"

__all__ = [
    "ChatTemplateEnvironment",
    "OutputTooLarge",
    "RenderLimits",
    "RenderMemoryExceeded",
    "RenderTimeout",
    "SandboxViolation",
    "TemplateRaised",
]


class _IgnoreGenerationTags(jinja2.ext.Extension):
    """Pass-through for Hugging Face's ``{% generation %}`` tag (marks assistant tokens for training)."""

    tags = {"generation"}

    def parse(self, parser: Any) -> Any:
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


class _BoundedCodeGenerator(CodeGenerator):
    """Routes the constructs Jinja compiles to plain Python through the environment's checks.

    ``a ~ b`` is size-checked like ``+``; comparison operands and dict keys are weighed first (comparing
    or hashing a nested value is one C call that no time limit interrupts); slices are followed by a
    memory check.
    """

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_Compare(self, node: nodes.Compare, frame: Frame) -> None:
        self.write("(environment.weighed(")
        self.visit(node.expr, frame)
        self.write(")")
        for op in node.ops:
            self.write(f" {operators[op.op]} environment.weighed(")
            self.visit(op.expr, frame)
            self.write(")")
        self.write(")")

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self.write("{")
        for idx, item in enumerate(node.items):
            if idx:
                self.write(", ")
            self.write("environment.weighed(")
            self.visit(item.key, frame)
            self.write("): ")
            self.visit(item.value, frame)
        self.write("}")

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        if not isinstance(node.arg, nodes.Slice):
            super().visit_Getitem(node, frame)
            return
        self.write("environment.checked(")
        super().visit_Getitem(node, frame)
        self.write(")")


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]?")
_NUMBERS = re.compile(r"\d+")
_SIZED = (str, bytes, bytearray, list, tuple, dict, set, frozenset)
_ARITHMETIC = frozenset({"+", "-", "*", "/", "//", "%", "**"})
_LINE_BREAKS = ("\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")
# filters that walk a string character by character: a 4M-char string would become 4M objects
_ITERATING_FILTERS = frozenset(
    {"list", "map", "select", "reject", "selectattr", "rejectattr", "batch", "slice", "unique", "sort"}
    | {"groupby", "sum", "min", "max", "join", "dictsort", "items"}
)
# filters that split their text into a Python list of words or bytes on the way
_SCANNING_FILTERS = frozenset({"wordwrap", "urlize", "wordcount", "striptags", "title", "urlencode"})
_SCANNING_FACTOR = 10  # these may take up to max_items * 10 characters
_PPRINT_MAX_WEIGHT = 100_000  # pprint is pure Python: a big value would run past the deadline unchecked
_CONTEXT_PARAMETERS = frozenset({"context", "eval_ctx", "environment", "env"})
_BOUND_FILTERS = frozenset(
    {"center", "indent", "replace", "format", "join", "wordwrap", "slice", "sum", "truncate"}
)
# str methods whose result is no larger than the string and its arguments, and that walk nothing else
_HARMLESS_STR_METHODS = frozenset(
    {"strip", "lstrip", "rstrip", "startswith", "endswith", "find", "rfind", "index", "rindex", "count"}
    | {"lower", "upper", "title", "capitalize", "casefold", "swapcase", "removeprefix", "removesuffix"}
    | {"isalpha", "isdigit", "isspace", "isalnum", "islower", "isupper", "istitle", "isnumeric"}
    | {"partition", "rpartition", "encode"}
)


class ChatTemplateEnvironment(ImmutableSandboxedEnvironment):
    """The hardened sandbox. One instance per compiled template (it carries that template's limits)."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = _ARITHMETIC

    def __init__(self, *, limits: RenderLimits) -> None:
        super().__init__(
            loader=jinja2.BaseLoader(),
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[jinja2.ext.loopcontrols, _IgnoreGenerationTags],
            keep_trailing_newline=False,
            finalize=self._finalize_output,
        )
        self.limits = limits
        self._local = threading.local()
        self._detached = RenderMeter.detached(limits)  # weighs values outside a render (compile time)
        self.globals.pop("lipsum", None)  # unbounded text generator; no chat template uses it
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = _strftime_now
        self.filters["tojson"] = self._tojson
        # Every filter and test goes through one size check. Marked pass_context, so Jinja's compiler never
        # constant-folds them: a folded 'x'|center(3999999) would be built, and baked into the code, at load.
        for name, func in list(self.filters.items()):
            self.filters[name] = self._bounded(func, name, "filter")
        for name, func in list(self.tests.items()):
            self.tests[name] = self._bounded(func, name, "test")

    # --- the per-render meter ------------------------------------------------------------------

    # The hot paths avoid small helper calls: while a render runs, every Python call also runs the trace
    # hook's global function, so each saved call is a saved microsecond.

    @property
    def _meter(self) -> RenderMeter | None:
        meter: RenderMeter | None = getattr(self._local, "meter", None)
        return meter

    def _weight(self, value: Any) -> int:
        if type(value) is str:
            return len(value)
        return (self._meter or self._detached).weight(value)

    def _str_bound(self, value: Any) -> int:
        return (self._meter or self._detached).str_bound(value)

    def checked(self, value: Any) -> Any:
        """Pass a freshly built value through the time and memory check."""
        meter = getattr(self._local, "meter", None)
        if meter is not None:
            meter.check(value)
        return value

    def weighed(self, value: Any) -> Any:
        """A comparison operand or dict key: refuse one too large to compare or hash in one C call."""
        if isinstance(value, (list, tuple, dict, set, frozenset, Namespace)):
            weight = self._weight(value)
            if weight > self.limits.max_chars:
                raise OutputTooLarge(f"comparing a value of {weight:,} characters")
        return value

    # --- size checks ---------------------------------------------------------------------------

    def check_size(self, value: Any, what: str = "a value") -> Any:
        """A freshly built value: refuse it if too large, then the time and (sampled) memory check."""
        if isinstance(value, _SIZED) and len(value) > self.limits.max_chars:
            raise OutputTooLarge(f"{what} grew past {self.limits.max_chars:,} characters")
        if type(value) is int and value.bit_length() > self.limits.max_int_bits:
            raise SandboxViolation(self._int_message(value.bit_length()))
        meter = getattr(self._local, "meter", None)
        if meter is not None:
            meter.check(value)
        return value

    def _int_message(self, bits: float) -> str:
        return f"an integer of {bits:,.0f} bits (the limit is {self.limits.max_int_bits:,})"

    def _check_args(self, values: Iterable[Any], what: str) -> None:
        """Arguments of one call: refuse huge integers, and a total weight one C call could not bear."""
        total = 0
        meter = None
        for value in values:
            kind = type(value)
            if kind is str:
                total += len(value)
            elif kind is int and value.bit_length() > self.limits.max_int_bits:
                raise SandboxViolation(f"{what} got {self._int_message(value.bit_length())}")
            elif kind is not bool and value is not None and kind is not int and kind is not float:
                meter = meter or self._meter or self._detached
                total += meter.weight(value)
        if total > self.limits.max_chars:
            raise OutputTooLarge(f"{what} was given {total:,} characters of values")

    def _check_stringified(self, values: Iterable[Any], what: str) -> None:
        total = sum(self._str_bound(v) for v in values)
        if total > self.limits.max_chars:
            raise OutputTooLarge(f"{what} would write {total:,} characters")

    def _check_width(self, width: Any, what: str) -> None:
        if isinstance(width, int) and not isinstance(width, bool) and width > self.limits.max_chars:
            raise OutputTooLarge(f"{what} asks for a width of {width:,}")

    def _check_count(self, count: int, what: str) -> None:
        if count > self.limits.max_items:
            raise OutputTooLarge(
                f"{what} would make {count:,} pieces (the limit is {self.limits.max_items:,})"
            )

    def _check_format_string(self, fmt: str, values: Sequence[Any]) -> None:
        try:
            fields = list(string.Formatter().parse(fmt))
        except ValueError as exc:
            raise SandboxViolation(f"malformed format string: {exc}") from exc
        widest = 0
        count = 0
        repr_conversion = False
        for _literal, name, spec, conversion in fields:
            if name is None:
                continue
            count += 1
            repr_conversion = repr_conversion or conversion in ("r", "a")
            if not spec:
                continue
            if "{" in spec:
                raise SandboxViolation("nested format specs are not allowed in chat templates")
            for number in _NUMBERS.findall(spec):
                self._check_width(int(number), "a format spec")
                widest = max(widest, int(number))
        self._check_fields(fmt, count, widest, values, repr_conversion, "str.format")

    def _check_fields(
        self, fmt: str, count: int, widest: int, values: Sequence[Any], repr_conversion: bool, what: str
    ) -> None:
        """A format string repeats its arguments once per field: bound fields x (width or argument)."""
        if not count:
            return
        biggest = max((self._str_bound(v) for v in values), default=0)
        if repr_conversion:
            biggest = _REPR_FACTOR * biggest
        total = len(fmt) + count * max(widest, biggest)
        if total > self.limits.max_chars:
            raise OutputTooLarge(f"{what} would write {total:,} characters ({count:,} fields)")

    def _check_percent_format(self, fmt: str, args: Any) -> None:
        widest = 0
        count = 0
        repr_conversion = False
        for match in _PERCENT_SPEC.finditer(fmt):
            if match.group(0) == "%%":
                continue
            count += 1
            repr_conversion = repr_conversion or match.group(0).endswith(("r", "a"))
            for group in match.groups():
                if group == "*":
                    raise SandboxViolation("'*' widths are not allowed in chat templates")
                if group:
                    self._check_width(int(group), "a %-format")
                    widest = max(widest, int(group))
        if isinstance(args, tuple):
            values: list[Any] = list(args)
        elif isinstance(args, dict):
            values = list(args.values())
        else:
            values = [args]
        self._check_fields(fmt, count, widest, values, repr_conversion, "a %-format")

    # --- sandbox hooks -------------------------------------------------------------------------

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__!r} object")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limit = self.limits.max_chars
        if operator == "+" and type(left) is str and type(right) is str:  # the common case, inline
            if len(left) + len(right) > limit:
                raise OutputTooLarge(f"a value grew past {limit:,} characters")
            return self.check_size(left + right)
        max_bits = self.limits.max_int_bits
        left_bits, right_bits = int_bits(left), int_bits(right)
        if left_bits > max_bits or right_bits > max_bits:
            raise SandboxViolation(f"arithmetic on {self._int_message(max(left_bits, right_bits))}")
        if operator == "*":
            count, seq = (right, left) if isinstance(left, _SIZED) else (left, right)
            if isinstance(seq, _SIZED) and isinstance(count, int):
                total = self._weight(seq) * max(count, 0)
                if total > limit:
                    raise OutputTooLarge(f"repeating a value {count:,} times would pass {limit:,} characters")
            elif isinstance(left, int) and isinstance(right, int) and left_bits + right_bits > max_bits:
                raise SandboxViolation(f"the product would be {self._int_message(left_bits + right_bits)}")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                bits = right * math.log2(abs(left))
                if bits > max_bits:
                    raise SandboxViolation(f"a power would be {self._int_message(bits)}")
        elif operator == "+":
            sized = isinstance(left, _SIZED) and isinstance(right, _SIZED)
            if sized and self._weight(left) + self._weight(right) > limit:
                raise OutputTooLarge(f"a value grew past {limit:,} characters")
        elif operator == "%" and isinstance(left, str):
            self._check_percent_format(left, right)
        return self.check_size(super().call_binop(context, operator, left, right))

    def bounded_concat(self, parts: tuple[Any, ...]) -> str:
        self._check_stringified(parts, "a ~ concatenation")
        texts = [p if isinstance(p, str) else jinja2.runtime.str_join((p,)) for p in parts]
        if sum(len(t) for t in texts) > self.limits.max_chars:
            raise OutputTooLarge(f"a string grew past {self.limits.max_chars:,} characters")
        return str(self.checked("".join(texts)))

    def concat(self, parts: Iterable[str]) -> str:
        """Joins the buffered output of macros, call blocks and ``{% set %}`` blocks: bounded first."""
        pieces = list(parts)
        size = sum(len(p) for p in pieces)
        if size > self.limits.max_chars:
            raise OutputTooLarge(f"a block's output grew past {self.limits.max_chars:,} characters")
        return str(self.checked("".join(pieces)))

    def _finalize_output(self, value: Any) -> Any:
        """Every ``{{ value }}`` passes here before str(): a list's repr could be far larger than the list."""
        if not isinstance(value, str):
            self._check_stringified((value,), "an output value")
        return self.checked(value)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(argument, (tuple, frozenset)):  # a key is hashed: a deeply shared tuple takes ages
            self.weighed(argument)
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt: str = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            values = [*args, *kwargs.values()]
            if value.__name__ == "format_map" and args and isinstance(args[0], dict):
                values = list(args[0].values())
            self._check_args(values, "str.format")
            self._check_format_string(fmt, values)
            return str(self.check_size(wrapped(*args, **kwargs)))

        return checked

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if (  # no growth, nothing to walk: the common case, without the checks below
            type(owner) is str
            and name in _HARMLESS_STR_METHODS
            and not kwargs
            and len(args) <= 2
            and not [a for a in args if type(a) is not str and type(a) is not int]
        ):
            return __self.check_size(__context.call(__obj, *args))
        what = f"{type(owner).__name__}.{name}" if owner is not None else f"{name or 'a'}()"
        if isinstance(owner, (str, bytes, bytearray)):
            args = __self._precheck_str_method(owner, name, args, kwargs)
        elif isinstance(owner, int) and name == "to_bytes":
            length = args[0] if args else kwargs.get("length", 1)
            __self._check_width(length, "int.to_bytes")
        elif isinstance(owner, (list, tuple, dict, set, frozenset, Namespace)):
            __self._check_args((owner,), what)
        __self._check_args([*args, *kwargs.values()], what)
        return __self.check_size(super().call(__context, __obj, *args, **kwargs))

    def _precheck_str_method(
        self, text: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, ...]:
        """Refuse a string method whose result would be huge. Returns the (possibly materialized) args."""
        limit = self.limits.max_chars
        values = list(args) + list(kwargs.values())
        if name in {"center", "ljust", "rjust", "zfill"} and values:
            self._check_width(values[0], f"str.{name}")
        elif name == "expandtabs":
            size = values[0] if values else 8
            tab: Any = "\t" if isinstance(text, str) else b"\t"
            if isinstance(size, int) and text.count(tab) * size > limit:
                raise OutputTooLarge("str.expandtabs would pass the size limit")
        elif name == "replace" and len(values) >= 2:
            old, new = values[0], values[1]
            if isinstance(old, type(text)) and isinstance(new, type(text)):
                hits = text.count(old) if old else len(text) + 1
                if len(text) + hits * len(new) > limit:
                    raise OutputTooLarge("str.replace would pass the size limit")
        elif name == "join" and values:
            items = values[0]
            if isinstance(items, (str, bytes, bytearray)):  # joining characters: one object each
                self._check_count(len(items), "str.join of a string")
            if not isinstance(items, (list, tuple)):
                items = list(items)  # a generator: count what it yields (each through the checks)
                args = (items, *args[1:])
            self._check_count(len(items), "str.join")
            total = len(text) * len(items) + sum(len(i) for i in items if isinstance(i, (str, bytes)))
            if total > limit:
                raise OutputTooLarge("str.join would pass the size limit")
        elif name in {"split", "rsplit"}:
            self._precheck_split(text, name, values, kwargs)
        elif name == "splitlines" and isinstance(text, str):
            self._check_count(sum(text.count(c) for c in _LINE_BREAKS) + 1, "str.splitlines")
        elif name == "translate" and values and isinstance(values[0], dict):
            longest = max((len(v) for v in values[0].values() if isinstance(v, str)), default=1)
            if len(text) * longest > limit:
                raise OutputTooLarge("str.translate would pass the size limit")
        return args

    def _precheck_split(self, text: Any, name: str, values: list[Any], kwargs: dict[str, Any]) -> None:
        sep = kwargs.get("sep", values[0] if values else None)
        maxsplit = kwargs.get("maxsplit", values[1] if len(values) > 1 else -1)
        if isinstance(maxsplit, int) and 0 <= maxsplit < self.limits.max_items:
            return
        if sep is None:
            # pieces are separated by whitespace runs: at most one per two characters
            self._check_count((len(text) + 1) // 2, f"str.{name}() of {len(text):,} characters")
        elif isinstance(sep, (str, bytes)) and sep:
            self._check_count(text.count(sep) + 1, f"str.{name}")

    def _bounded(self, original: Any, name: str, kind: str) -> Callable[..., Any]:
        """Wrap a filter or test: check its arguments, call it, check its result."""
        pass_arg = _PassArg.from_obj(original)
        try:
            signature: inspect.Signature | None = inspect.signature(original)
        except (TypeError, ValueError):
            signature = None
        what = f"the {name} {kind}"

        check_name = name if kind == "filter" else ""  # tests get the generic argument checks only

        def bounded(context: Any, *args: Any, **kwargs: Any) -> Any:
            args = self._precheck_filter(check_name, what, signature, pass_arg, args, kwargs)
            if pass_arg is _PassArg.context:
                result = original(context, *args, **kwargs)
            elif pass_arg is _PassArg.eval_context:
                result = original(context.eval_ctx, *args, **kwargs)
            elif pass_arg is _PassArg.environment:
                result = original(self, *args, **kwargs)
            else:
                result = original(*args, **kwargs)
            return self.check_size(result, f"{what}'s result")

        bounded.__name__ = getattr(original, "__name__", name)
        return jinja2.pass_context(bounded)

    def _precheck_filter(
        self,
        name: str,
        what: str,
        signature: inspect.Signature | None,
        pass_arg: _PassArg | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Any, ...]:
        """Refuse filter arguments that would build or walk too much. Returns the (materialized) args."""
        if not args:
            return args
        value = args[0]
        if name in {"join", "slice", "batch", "sum", "list", "unique", "sort"} and not isinstance(
            value, (str, list, tuple, dict)
        ):
            value = list(value)  # a generator (map, select): materialize it, each item through the checks
            self._check_count(len(value), what)
            args = (value, *args[1:])
        self._check_args([*args, *kwargs.values()], what)
        if isinstance(value, str):
            if name in _ITERATING_FILTERS:
                self._check_count(len(value), f"{what} on a string")
            elif name in _SCANNING_FILTERS and len(value) > _SCANNING_FACTOR * self.limits.max_items:
                raise OutputTooLarge(f"{what} on {len(value):,} characters")
        if name in {"string", "pprint", "tojson", "xmlattr", "join", "format", "escape", "e", "forceescape"}:
            if name == "join" and isinstance(value, (list, tuple)):
                total = (self._meter or self._detached).join_bound(value)
                if total > self.limits.max_chars:
                    raise OutputTooLarge(f"{what} would write {total:,} characters")
            else:
                self._check_stringified((value,), what)
        if name == "pprint" and self._weight(value) > _PPRINT_MAX_WEIGHT:
            raise OutputTooLarge(f"{what} on a value of {self._weight(value):,} characters")
        bound = self._bind(signature, pass_arg, args, kwargs) if name in _BOUND_FILTERS else None
        if bound is not None:
            self._precheck_filter_arguments(name, what, bound)
        return args

    @staticmethod
    def _bind(
        signature: inspect.Signature | None,
        pass_arg: _PassArg | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> dict[str, Any] | None:
        if signature is None:
            return None
        # async_variant filters are marked pass_eval_context while their signature (the sync function's)
        # may not take it: look at the first parameter's name
        first = next(iter(signature.parameters), "")
        lead = (None,) if pass_arg is not None and first in _CONTEXT_PARAMETERS else ()
        try:
            bound = signature.bind(*lead, *args, **kwargs)
        except TypeError:
            return None  # the filter itself will raise the right error
        bound.apply_defaults()
        return dict(bound.arguments)

    def _precheck_filter_arguments(self, name: str, what: str, a: dict[str, Any]) -> None:
        limit = self.limits.max_chars
        if name == "center":
            self._check_width(a.get("width"), what)
        elif name == "indent":
            width, text = a.get("width"), str(a.get("s", ""))
            lines = text.count("\n") + 1
            size = width if isinstance(width, int) else len(str(width))
            if size * lines + len(text) > limit:
                raise OutputTooLarge(f"{what} would pass the size limit")
        elif name == "replace":
            source, old, new = a.get("s"), a.get("old"), a.get("new")
            if isinstance(source, str) and isinstance(old, str) and isinstance(new, str):
                hits = source.count(old) if old else len(source) + 1
                if len(source) + hits * len(new) > limit:
                    raise OutputTooLarge(f"{what} would pass the size limit")
        elif name == "format":
            fmt = a.get("value")
            if isinstance(fmt, str):
                values = tuple(a.get("args", ())) + tuple(a.get("kwargs", {}).values())
                self._check_percent_format(fmt, values)
        elif name == "join":
            items, sep = a.get("value"), a.get("d", "")
            if isinstance(items, (list, tuple)) and isinstance(sep, str):
                self._check_count(len(items), what)
                if len(sep) * len(items) > limit:
                    raise OutputTooLarge(f"{what} would pass the size limit")
        elif name == "wordwrap":
            text, width, wrap = str(a.get("s", "")), a.get("width", 79), str(a.get("wrapstring") or "\n")
            lines = len(text) // max(width, 1) + text.count("\n") + 1 if isinstance(width, int) else 1
            if len(text) + lines * len(wrap) > limit:
                raise OutputTooLarge(f"{what} would pass the size limit")
        elif name == "slice":
            slices = a.get("slices")
            if isinstance(slices, int):
                self._check_count(slices, what)
        elif name == "sum":
            start = a.get("start", 0)
            if not isinstance(start, (int, float)):
                raise SandboxViolation("the sum filter only adds numbers in chat templates")
        elif name == "truncate":
            self._check_width(a.get("length"), what)

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
        if indent is None:  # one C call, bounded beforehand by the filter's str_bound check
            text = json.dumps(value, ensure_ascii=ensure_ascii, separators=separators, sort_keys=sort_keys)
            return str(self.check_size(text, "tojson output"))
        # indented json adds indent x depth characters per item: encode piece by piece, counting
        encoder = json.JSONEncoder(
            ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )
        pieces: list[str] = []
        size = 0
        for n, piece in enumerate(encoder.iterencode(value)):
            size += len(piece)
            if size > self.limits.max_chars:
                raise OutputTooLarge(f"tojson output grew past {self.limits.max_chars:,} characters")
            pieces.append(piece)
            if n % 1024 == 1023:
                self.checked(None)
        return "".join(pieces)

    # --- rendering -----------------------------------------------------------------------------

    def render_bounded(self, template: jinja2.Template, context: dict[str, Any]) -> str:
        """Render with the time, memory and output bounds. Raises this module's exceptions, or Jinja's."""
        limits = self.limits
        meter = RenderMeter(limits)
        deadline = meter.deadline
        ticks = 0

        def local_trace(frame: FrameType, event: str, arg: Any) -> Any:
            nonlocal ticks
            ticks += 1
            if ticks % 64 == 0:
                if time.monotonic() > deadline:
                    raise RenderTimeout
                if ticks % 1024 == 0:
                    meter.check_memory()
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
        self._local.meter = meter
        sys.settrace(global_trace)
        try:
            chunks: Iterator[str] = template.generate(**context)
            for chunk in chunks:
                size += len(chunk)
                if size > limits.max_chars:
                    raise OutputTooLarge(f"the prompt grew past {limits.max_chars:,} characters")
                pieces.append(chunk)
            return "".join(pieces)
        finally:
            sys.settrace(previous)
            self._local.meter = None
            meter.close()

    def compile_template(self, source: str) -> jinja2.Template:
        code = self.compile(source, filename=TEMPLATE_FILENAME)
        return self.template_class.from_code(self, code, self.make_globals(None))


def _raise_exception(message: str) -> None:
    raise TemplateRaised(str(message))


def _strftime_now(fmt: str) -> str:
    if not isinstance(fmt, str) or len(fmt) > 200:
        raise SandboxViolation("strftime_now needs a short format string")
    return datetime.now().strftime(fmt)
