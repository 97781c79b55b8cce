"""Entry point of `kaihe`. Each command lives in its own module with `register(subparsers)`."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Sequence

from kaihe_desktop import __version__
from kaihe_desktop.cli.common import fail
from kaihe_desktop.cli.format import error_text
from kaihe_desktop.core.errors import KaiheError
from kaihe_desktop.core.json_store import DISK_FULL_ERRNOS, StoreNotice, set_notice_listener

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


def _warn(notice: StoreNotice) -> None:
    """A state file moved aside (or a cache not written): one line as it happens; the command goes on."""
    print(f"kaihe: warning: {notice.message}", file=sys.stderr)


def _stray_failure(exc: Exception) -> str | None:
    """One line for library errors that should have been caught earlier (a safety net, not the fix)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        return f"a name is too long for the file system: {exc.filename or exc}"[:300]
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        where = os.path.dirname(str(exc.filename)) if exc.filename else "the disk"
        return f"{where}: {exc.strerror or exc}; free some space there and try again"
    hf_errors = sys.modules.get("huggingface_hub.errors")
    validation = getattr(hf_errors, "HFValidationError", None)
    if validation is not None and isinstance(exc, validation):
        return " ".join(str(exc).split())
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_notice_listener(_warn)
    try:
        code: int = args.handler(args)
        return code
    except KaiheError as exc:
        return fail(error_text(exc))  # a reason (code and numbers) in the CLI's words, with its flags
    except KeyboardInterrupt:
        return fail("interrupted", code=130)
    except BrokenPipeError:
        return 0
    except Exception as exc:
        message = _stray_failure(exc)
        if message is None:
            raise
        return fail(message)
    finally:
        set_notice_listener(None)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
