"""`python -m kaihe_desktop` and `kaihe-desktop`: open the window.

kaihe-desktop [--profile NAME]                  the window
kaihe-desktop --self-test [--profile NAME]      probe, run the engine, open and close the window; exit 0
kaihe-desktop --screenshots DIR [--profile NAME]  render every view offscreen into DIR/*.png; exit 0
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _automation(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kaihe-desktop", add_help=False)
    parser.add_argument("--profile")
    parser.add_argument("--self-test", action="store_true")
    parser.add_argument("--screenshots", metavar="DIR")
    args, _rest = parser.parse_known_args(list(argv))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv if argv is None else argv)
    args = _automation(args_list[1:])
    if args.self_test:
        from kaihe_desktop.selftest import run_self_test

        return run_self_test(args.profile)
    if args.screenshots:
        from pathlib import Path

        from kaihe_desktop.qt.screenshots import render_screenshots
        from kaihe_desktop.services import Services

        def make(home: Path, profile: str | None) -> Services:
            return Services.create(home=home, profile=profile)

        return render_screenshots(Path(args.screenshots), make=make, profile=args.profile)
    from kaihe_desktop.app import run

    return run(args_list)


if __name__ == "__main__":
    sys.exit(main())
