"""Entry point of `kaihe`. Each command lives in its own module with `register(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kaihe_desktop import __version__
from kaihe_desktop.cli.common import fail
from kaihe_desktop.core.errors import KaiheError

# Modules under kaihe_desktop.cli that add sub-commands, in the order `kaihe --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "hardware_cmd",
    "fit_cmd",
    "pull_cmd",
    "models_cmd",
    "catalog_cmd",
    "chat_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaihe",
        description="Run open-weight LLMs offline, knowing what fits before anything is downloaded.",
    )
    parser.add_argument("--version", action="version", version=f"kaihe {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(f"kaihe_desktop.cli.{module_name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except KaiheError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted", code=130)
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
