"""The replay upstream's multi-sample models and its verifier endpoint.

Each multi-sample suite is a model id (``humaneval-codegen16b``, ``game24-gpt4-standard``,
``game24-gpt4-cot``). A request with ``n`` gets n of the prompt's recorded samples, drawn without
replacement (deterministic for a given ``seed``); each answer's arm is ``sample-J``, the index of
the recorded sample, so a benchmark can join the recorded correctness. A seeded draw is a window
of one fixed shuffle of the prompt's samples starting at ``seed``: a client that moves its seed
on by the samples it already has (the proxy's parallel calls and sequential rounds do) continues
the same draw without replacement, as the unbiased pass@k of the offline benchmark assumes,
instead of drawing a recorded sample twice.

``POST /v1/verify`` speaks the ``reward`` reranker's protocol, ``{"query", "candidates"}`` →
``{"scores"}``, with one extra field ``verifier`` naming what scored them:

- ``game24-checker``: a real Game of 24 checker on the candidate text (:mod:`replay.game24`), a
  verifier anyone can deploy;
- ``recorded-execution-oracle``: HumanEval candidates scored by their recorded execution against
  HumanEval's own tests. That is the benchmark's answer key, so every report labels it an oracle
  verifier. A text with no recorded execution scores 0 (this server never runs code).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from proxy.wire.errors import InvalidRequestError, ModelNotFoundError
from proxy.wire.protocol import message_text
from recorded_data.multisample import MULTISAMPLE_SUITES, MultiSamplePrompt, load_multisample
from recorded_data.records import normalize_ws
from replay.game24 import ExpressionError, check_answer, puzzle_numbers
from replay.store import PromptNotFoundError, ReplayAnswer

__all__ = [
    "GAME24_VERIFIER",
    "ORACLE_VERIFIER",
    "MultiSampleStore",
    "build_multisample_store",
    "verify_handler",
]

GAME24_VERIFIER = "game24-checker"
ORACLE_VERIFIER = "recorded-execution-oracle"
_QUERY_ROLE_PREFIX = "user: "  # how the reward reranker renders a one-turn conversation


def _last_user(messages: Sequence[Mapping[str, Any]]) -> str:
    users = [message_text(m.get("content")) for m in messages if m.get("role") == "user"]
    if not users:
        raise PromptNotFoundError("the conversation has no user message", param="messages")
    return normalize_ws(users[-1])


class MultiSampleStore:
    """Recorded samples of every multi-sample suite, keyed by model id and prompt text."""

    def __init__(self, suites: Mapping[str, Sequence[MultiSamplePrompt]]) -> None:
        self._prompts: dict[str, dict[str, MultiSamplePrompt]] = {}
        self._verifiers: dict[str, str] = {}
        for model, prompts in suites.items():
            spec = MULTISAMPLE_SUITES[model]
            self._prompts[model] = {_last_user(p.messages): p for p in prompts}
            self._verifiers[model] = (
                GAME24_VERIFIER if spec.verifier == "game24" else (ORACLE_VERIFIER)
            )
        self.models: tuple[str, ...] = tuple(suites)

    def find(self, model: str, messages: Sequence[Mapping[str, Any]]) -> MultiSamplePrompt:
        """The recorded prompt of ``model``; raises a 404 error when there is none."""
        if model not in self._prompts:
            raise ModelNotFoundError(f"the replay upstream has no model {model!r}", param="model")
        prompt = self._prompts[model].get(_last_user(messages))
        if prompt is None:
            raise PromptNotFoundError(
                f"no recorded samples of {model!r} for this prompt", param="messages"
            )
        return prompt

    def lookup(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        n: int = 1,
        seed: int | None = None,
    ) -> list[ReplayAnswer]:
        """``n`` recorded samples drawn without replacement: with a ``seed``, the ``n`` samples
        from position ``seed`` (cyclically) of the prompt's fixed shuffle, so seeds ``s`` and
        ``s + n`` never overlap (for at most all samples together); without one, at random."""
        prompt = self.find(model, messages)
        if n > len(prompt.texts):
            raise InvalidRequestError(
                f"'n' must be at most {len(prompt.texts)} for {model!r} (recorded samples)",
                param="n",
            )
        total = len(prompt.texts)
        if seed is None:
            drawn = random.Random().sample(range(total), n)
        else:
            shuffle = random.Random(f"{model}/{prompt.prompt_id}").sample(range(total), total)
            drawn = [shuffle[(seed + j) % total] for j in range(n)]
        return [ReplayAnswer(prompt.prompt_id, f"sample-{j}", prompt.texts[j]) for j in drawn]

    def _match_query(self, query: str) -> tuple[str, MultiSamplePrompt] | None:
        text = normalize_ws(query)
        stripped = text.removeprefix(_QUERY_ROLE_PREFIX)
        for model, prompts in self._prompts.items():
            if stripped in prompts:
                return model, prompts[stripped]
        for model, prompts in self._prompts.items():  # a longer conversation: its last turn
            for key, prompt in prompts.items():
                if text.endswith(key):
                    return model, prompt
        return None

    def verify(self, query: str, candidates: Sequence[str]) -> tuple[str, list[float]]:
        """The verifier's name and one score in {0, 1} per candidate."""
        match = self._match_query(query)
        if match is not None and self._verifiers[match[0]] == ORACLE_VERIFIER:
            prompt = match[1]
            passed: dict[str, bool] = {}
            for text, ok in zip(prompt.texts, prompt.correct, strict=True):
                passed[text] = passed.get(text, False) or ok
            return ORACLE_VERIFIER, [float(passed.get(c, False)) for c in candidates]
        try:
            numbers = list(match[1].numbers or ()) if match else puzzle_numbers(query)
        except ExpressionError:
            numbers = []
        if not numbers:
            raise PromptNotFoundError(
                "no verifier for this query: neither a recorded HumanEval prompt nor a Game of "
                "24 puzzle ('Input: a b c d')",
                param="query",
            )
        return GAME24_VERIFIER, [float(check_answer(c, numbers)) for c in candidates]


VERIFY_STORE_KEY = web.AppKey("replay_multisample", MultiSampleStore)


async def verify_handler(request: web.Request) -> web.Response:
    """``POST /v1/verify``: ``{"query", "candidates"}`` → ``{"scores", "verifier"}``."""
    try:
        body = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise InvalidRequestError("'query' must be a string", param="query")
    candidates = body.get("candidates")
    if not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates):
        raise InvalidRequestError("'candidates' must be a list of strings", param="candidates")
    verifier, scores = request.app[VERIFY_STORE_KEY].verify(body["query"], candidates)
    return web.json_response({"scores": scores, "verifier": verifier})


def build_multisample_store(data_dir: Path) -> MultiSampleStore | None:
    """Every multi-sample suite found under ``data_dir/multisample`` (None when there is none)."""
    folder = data_dir / "multisample"
    names = [n for n, s in MULTISAMPLE_SUITES.items() if (folder / s.file).is_file()]
    if not names:
        return None
    return MultiSampleStore({n: load_multisample(data_dir, n).prompts for n in names})
