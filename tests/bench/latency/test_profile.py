"""py-spy's folded stacks become self and inclusive shares per function and per package."""

from __future__ import annotations

import pytest

from bench.latency.profile import parse_raw

RAW = """\
process 1:"python -m proxy.cli serve";thread (0x1);<module> (/x/proxy/cli.py:1);chat (/x/proxy/http/handlers.py:10);dumps (/v/lib/python3.11/site-packages/orjson/x.py:3) 3
process 1:"python -m proxy.cli serve";thread (0x1);<module> (/x/proxy/cli.py:1);chat (/x/proxy/http/handlers.py:12) 1
not a stack line
"""  # noqa: E501


def test_self_and_inclusive_shares_per_function_and_package() -> None:
    profile = parse_raw(RAW)
    assert profile.samples == 4
    top = dict(profile.top(5))
    assert top["dumps (orjson/x.py)"] == pytest.approx(75.0)
    chat = next(name for name in top if name.startswith("chat ("))
    # Two lines of one function are one entry; inclusive counts it wherever it is on the stack.
    assert top[chat] == pytest.approx(25.0)
    assert dict(profile.top(5, inclusive=True))[chat] == pytest.approx(100.0)
    packages = dict(profile.by_package())
    assert packages["orjson"] == pytest.approx(75.0)
    assert sum(packages.values()) == pytest.approx(100.0)
