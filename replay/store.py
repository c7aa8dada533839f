"""Index of real recorded answers, looked up by prompt, for the replay upstream.

The store never invents an answer: a prompt or a model without a record raises a 404
:class:`~proxy.wire.errors.ProxyError`. Lookups key on the LAST user message (whitespace
normalised);
for MT-Bench turn 2 the key is the first and the last user message, so whatever assistant turn a
client put in between, the recorded turn-2 answer of the requested model is served.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from proxy.wire.errors import ModelNotFoundError, ProxyError
from proxy.wire.protocol import message_text
from recorded_data.records import (
    GSM8K_PROCEDURES,
    MODEL_STRONG,
    MODEL_WEAK,
    Record,
    load_records,
    normalize_ws,
)

POOL_MODEL = "gsm8k-pool"
# Model id served -> the record arm it replays.
MODEL_ARMS: Mapping[str, str] = MappingProxyType(
    {
        MODEL_WEAK: "weak",
        MODEL_STRONG: "strong",
        **{f"gsm8k-{proc.replace('_', '-')}": proc for proc in GSM8K_PROCEDURES},
    }
)
# The pool draws from the six real solutions of a GSM8K question, cheapest procedures first.
POOL_ARMS: tuple[str, ...] = (*GSM8K_PROCEDURES, "weak", "strong")
_KEY_SEP = "\x00"


class PromptNotFoundError(ProxyError):
    """No recorded answer exists for this prompt (404); the replay never invents one."""

    status = 404
    error_type = "invalid_request_error"
    default_code = "prompt_not_found"


@dataclass(frozen=True)
class ReplayAnswer:
    """One recorded answer: which prompt and which arm (a key of ``Record.rewards``) it is."""

    prompt_id: str
    arm: str
    text: str


def _user_texts(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    return [
        normalize_ws(message_text(m.get("content"))) for m in messages if m.get("role") == "user"
    ]


def _record_key(record: Record) -> str:
    users = _user_texts(record.messages)
    return users[-1] if len(users) == 1 else users[0] + _KEY_SEP + users[-1]


def _mmlu_text(correct: bool) -> str:
    outcome = "correct" if correct else "incorrect"
    return f"[replay] recorded outcome for this MMLU question: {outcome}"


class ReplayStore:
    """Recorded answers of every model, keyed by prompt; built from :func:`load_records`."""

    def __init__(self, records: Iterable[Record]) -> None:
        self._records: dict[str, Record] = {}
        self.duplicates = 0  # prompts recorded twice (MMLU repeats a few); the first one wins
        for record in records:
            key = _record_key(record)
            if key in self._records:
                self.duplicates += 1
                continue
            self._records[key] = record
        self.models: tuple[str, ...] = (*MODEL_ARMS, POOL_MODEL)

    def __len__(self) -> int:
        return len(self._records)

    def records(self) -> list[Record]:
        """Every served record, in load order."""
        return list(self._records.values())

    def find(self, messages: Sequence[Mapping[str, Any]]) -> Record:
        """The record for a conversation; raises :class:`PromptNotFoundError`."""
        users = _user_texts(messages)
        if not users:
            raise PromptNotFoundError("the conversation has no user message", param="messages")
        record = None
        if len(users) >= 2:
            record = self._records.get(users[0] + _KEY_SEP + users[-1])
        if record is None:
            record = self._records.get(users[-1])
        if record is None:
            raise PromptNotFoundError(
                "no recorded answer for this prompt (the replay upstream only serves prompts "
                "from the recorded data)",
                param="messages",
            )
        return record

    def lookup(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        n: int = 1,
        seed: int | None = None,
    ) -> list[ReplayAnswer]:
        """``n`` recorded answers of ``model`` to ``messages``.

        A fixed model has one recorded answer, repeated ``n`` times. ``gsm8k-pool`` draws from
        the six recorded solutions of a GSM8K question without replacement while they last, then
        with replacement, seeded by ``seed`` when given.
        """
        if model not in self.models:
            raise ModelNotFoundError(f"the replay upstream has no model {model!r}", param="model")
        record = self.find(messages)
        if model == POOL_MODEL:
            return self._pool(record, n, seed)
        arm = MODEL_ARMS[model]
        if arm not in record.rewards:
            raise PromptNotFoundError(
                f"no recorded answer of {model!r} for this prompt ({record.prompt_id})",
                param="messages",
            )
        if record.dataset == "mmlu":
            text = _mmlu_text(record.rewards[arm] == 1.0)
        else:
            text = record.responses[arm]
        return [ReplayAnswer(record.prompt_id, arm, text)] * n

    def _pool(self, record: Record, n: int, seed: int | None) -> list[ReplayAnswer]:
        arms = [arm for arm in POOL_ARMS if arm in record.responses]
        if record.dataset != "gsm8k" or not arms:
            raise PromptNotFoundError(
                f"{POOL_MODEL!r} only serves GSM8K test questions ({record.prompt_id} is not one)",
                param="messages",
            )
        rng = random.Random(seed)
        drawn = rng.sample(arms, min(n, len(arms)))
        drawn += rng.choices(arms, k=n - len(drawn))
        return [ReplayAnswer(record.prompt_id, arm, record.responses[arm]) for arm in drawn]


def build_store(data_dir: Path) -> ReplayStore:
    """A store of every recorded prompt, contaminated ones included (serving them is harmless)."""
    return ReplayStore(load_records(data_dir, drop_contaminated=False))
