"""What the replay upstream's handlers share: its app keys, latency model, lookups and refusals.

The replay never invents an answer. Besides prompts and models without a recording (404
``prompt_not_found`` / ``model_not_found``), that holds for effort levels: a request that sets
a reasoning effort (chat's ``reasoning_effort``, the Responses API's ``reasoning.effort``) is
served only where answers at that effort were recorded, and the bundled recordings carry no
effort level at all, so any effort is a 404 ``effort_not_recorded``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from aiohttp import web

from proxy.wire.errors import ProxyError
from replay.multisample import VERIFY_STORE_KEY
from replay.store import ReplayAnswer, ReplayStore


@dataclass(frozen=True)
class LatencyModel:
    """Simulated generation time: ``ttft_ms`` before the first token, ``per_token_ms`` after."""

    ttft_ms: float = 0.0
    per_token_ms: float = 0.0

    def delay_s(self, tokens: int, *, first: bool) -> float:
        """Seconds to wait before emitting ``tokens`` (the first emission also pays the TTFT)."""
        return ((self.ttft_ms if first else 0.0) + self.per_token_ms * tokens) / 1000.0


_WORDS_PER_CHUNK = 4


def split_chunks(text: str) -> list[str]:
    """Pieces of a few words each that concatenate back to exactly ``text`` (stream deltas)."""
    words = [w for w in re.split(r"(?<=\s)(?=\S)", text) if w]
    return [
        "".join(words[i : i + _WORDS_PER_CHUNK]) for i in range(0, len(words), _WORDS_PER_CHUNK)
    ]


STORE_KEY = web.AppKey("replay_store", ReplayStore)
LATENCY_KEY = web.AppKey("replay_latency", LatencyModel)


class EffortNotRecordedError(ProxyError):
    """No answer of this model was recorded at the requested reasoning effort (404)."""

    status = 404
    error_type = "invalid_request_error"
    default_code = "effort_not_recorded"


# Effort levels with recorded answers, per served model: none in the bundled data (its answers
# come from models without an effort setting).
RECORDED_EFFORTS: Mapping[str, frozenset[str]] = MappingProxyType({})


def check_effort(model: str, effort: Any, *, param: str) -> None:
    """Refuse an ``effort`` no recording of ``model`` has (``None``: no effort asked)."""
    if effort is None:
        return
    recorded = RECORDED_EFFORTS.get(model, frozenset())
    if effort not in recorded:
        levels = ", ".join(sorted(recorded)) or "none"
        raise EffortNotRecordedError(
            f"no answer of {model!r} was recorded at reasoning effort {effort!r} (recorded "
            f"efforts: {levels}); the replay upstream never invents an answer: drop {param}",
            param=param,
        )


def lookup_answers(
    app: web.Application,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    n: int,
    seed: int | None,
) -> list[ReplayAnswer]:
    """The recorded answers of ``model`` (multi-sample models first, then the main store)."""
    multisample = app.get(VERIFY_STORE_KEY)
    if multisample is not None and model in multisample.models:
        return multisample.lookup(model, messages, n=n, seed=seed)
    return app[STORE_KEY].lookup(model, messages, n=n, seed=seed)


class Conversations:
    """Stored responses (``store`` not false): id → the conversation up to and with the answer.

    Bounded to the newest ``max_entries``, as a test and benchmark upstream needs no more.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._max_entries = max_entries
        self._items: OrderedDict[str, tuple[dict[str, Any], ...]] = OrderedDict()

    def put(self, response_id: str, messages: Sequence[dict[str, Any]]) -> None:
        """Keep the conversation of ``response_id``."""
        self._items[response_id] = tuple(messages)
        while len(self._items) > self._max_entries:
            self._items.popitem(last=False)

    def get(self, response_id: str) -> list[dict[str, Any]] | None:
        """The conversation of ``response_id`` (``None``: unknown)."""
        found = self._items.get(response_id)
        return list(found) if found is not None else None


CONVERSATIONS_KEY = web.AppKey("replay_conversations", Conversations)
