"""Number formats and claim checks shared by the generated documentation blocks
(:mod:`bench.docs.run`).

Figures in the README are written with a typographic minus and intervals without a repeated
unit (``−10.6% [−19.4, −3.0]``). A generated sentence that states something about the figures
(a goal met, an interval below zero) goes through :func:`claim`, so a rerun that changes the
facts stops the generator instead of printing a sentence the results no longer support.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

MINUS = "−"


class StaleClaimError(ValueError):
    """A generated sentence claims something the results no longer support: rewrite it."""


def claim(holds: bool, sentence: str) -> str:
    """``sentence`` if the results support it; else :class:`StaleClaimError` naming it."""
    if not holds:
        raise StaleClaimError(f"the results no longer support: {sentence!r}")
    return sentence


def _minus(text: str) -> str:
    return text.replace("-", MINUS)


def num(x: float, digits: int = 3) -> str:
    """A plain number, typographic minus: ``0.631``, ``−0.4``."""
    return _minus(f"{x:.{digits}f}")


def pct(x: float | None, digits: int = 1, *, none: str = "never") -> str:
    """A share as a percentage; thousands separated (``−144,672%``), ``none`` for a missing one."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return none
    return _minus(_zero(f"{100 * x:,.{digits}f}")) + "%"


def _is_zero(text: str) -> bool:
    return not any(ch in "123456789" for ch in text)


def span(ci: Sequence[Any] | None, digits: int = 1, *, scale: float = 100.0) -> str:
    """An interval as ``[lo, hi]`` in the unit of the figure before it (percent by default)."""
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    lo, hi = (f"{scale * float(v):,.{digits}f}" for v in ci[:2])
    return _minus(f"[{_zero(lo)}, {_zero(hi)}]")


def _zero(text: str) -> str:
    return text[1:] if text.startswith("-") and _is_zero(text) else text


def pct_ci(x: float | None, ci: Sequence[Any] | None, digits: int = 1) -> str:
    """``12.3% [7.9, 22.3]``; ``never`` when there is no figure."""
    if x is None:
        return "never"
    interval = span(ci, digits)
    return f"{pct(x, digits)} {interval}" if interval else pct(x, digits)


def pts(x: float, digits: int = 1) -> str:
    """A change in accuracy points, signed: ``+0.2 pts``, ``−0.5 pts``."""
    return _minus(_zero_signed(f"{100 * x:+.{digits}f}")) + " pts"


def _zero_signed(text: str) -> str:
    return "+" + text[1:] if text.startswith("-") and _is_zero(text) else text


def pts_span(ci: Sequence[float], digits: int = 1) -> str:
    """``[−0.6, +1.0]``: an interval of accuracy points, signed."""
    lo, hi = (_zero_signed(f"{100 * float(v):+.{digits}f}") for v in ci[:2])
    return _minus(f"[{lo}, {hi}]")


def side(ci: Sequence[float]) -> str:
    """Where an interval lies relative to zero."""
    lo, hi = float(ci[0]), float(ci[1])
    if hi < 0:
        return "wholly below zero"
    if lo > 0:
        return "wholly above zero"
    return "spanning zero"


def times(x: float) -> str:
    """A cost multiple: ``1,448×``."""
    return f"{x:,.0f}×"


def usd(x: float, digits: int = 6) -> str:
    """A price: ``$0.000092``."""
    return f"${x:.{digits}f}"


def join(items: Sequence[str], last: str = "and") -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


_COUNTS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def count(n: int) -> str:
    """A small count in words (``two``), larger ones in digits."""
    return _COUNTS[n] if 0 <= n < len(_COUNTS) else f"{n:,}"
