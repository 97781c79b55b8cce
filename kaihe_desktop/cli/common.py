"""What every command shares: --profile, --json, one-line errors, plain tables."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from kaihe_desktop.core.machine.spec import Machine
from kaihe_desktop.core.units import format_bytes


def add_profile_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        metavar="NAME|FILE",
        help="act as this machine instead of probing this one: a shipped profile name "
        "(e.g. laptop-8gb, rtx4060-16gb, m2-16gb) or a profile JSON file",
    )


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def machine_from_args(args: argparse.Namespace) -> Machine:
    """The machine a command acts for: the --profile if given, otherwise a live probe."""
    if getattr(args, "profile", None) is not None:
        from kaihe_desktop.core.machine.profiles import resolve_profile

        return resolve_profile(str(args.profile))
    from kaihe_desktop.core.machine.probe import probe

    return probe()


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def fail(message: str, *, code: int = 1) -> int:
    """One clear line on stderr, no traceback."""
    first_line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    print(f"kaihe: error: {first_line}", file=sys.stderr)
    return code


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_one_line(str(c)) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _one_line(text: str) -> str:
    """A cell as one line: control characters (a name saved before they were refused) shown escaped."""
    from kaihe_desktop.core.names import escape_controls

    return escape_controls(text)


def human_bytes(n: float | None) -> str:
    """Bytes for tables: the core's binary-unit format, "-" for unknown."""
    return "-" if n is None else format_bytes(n)
