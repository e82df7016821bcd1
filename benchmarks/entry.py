"""What every benchmark's `__main__` shares: qstar's own errors (a wrong name, path or value) as one line and exit
code 2, as the `qstar` command prints them, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from qstar.errors import QstarError


def run(main: Callable[[], object]) -> None:
    try:
        main()
    except QstarError as e:
        print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
        sys.exit(2)
