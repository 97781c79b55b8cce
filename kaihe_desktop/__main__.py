"""`python -m kaihe_desktop` and `kaihe-desktop`: open the window."""

from __future__ import annotations

import sys


def main() -> int:
    from kaihe_desktop.app import run

    return run()


if __name__ == "__main__":
    sys.exit(main())
