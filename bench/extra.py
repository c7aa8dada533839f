"""The ``bench`` extra: a run missing one of its modules stops with one line, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

#: Top-level modules of the ``bench`` extra the benchmarks import (threadpoolctl comes with
#: scikit-learn).
BENCH_EXTRA_MODULES = frozenset({"matplotlib", "sklearn", "threadpoolctl"})
INSTALL_HINT = "pip install 'adaptive-proxy[bench]' (in a checkout: pip install -e \".[bench]\")"


def missing_extra_message(exc: ModuleNotFoundError) -> str | None:
    """The line to print when ``exc`` is a module of the bench extra (``None``: it is not)."""
    top = (exc.name or "").partition(".")[0]
    if top not in BENCH_EXTRA_MODULES:
        return None
    return f"bench needs the bench extra (no module {top!r}): {INSTALL_HINT}"


def or_missing_extra(run: Callable[[], int]) -> int:
    """``run()``'s exit status; 2, with that line on stderr, when the bench extra is missing."""
    try:
        return run()
    except ModuleNotFoundError as exc:
        message = missing_extra_message(exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2
