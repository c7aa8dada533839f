"""Rerankers: pick the best of n candidate completions.

Four rerankers, chosen per policy in the YAML:

* ``first`` — no reranking; candidate 0 wins (n is still adaptive; useful with an external
  verifier).
* ``vote`` — self-consistency: extract each candidate's final answer and return a candidate of
  the majority answer. No extra call. See :func:`extract_answer` for the default extraction.
* ``judge`` — one chat call to a judge upstream that sees the whole conversation and all
  candidates, and answers ``{"best_index": N}`` (requested with ``response_format`` json_schema,
  parsed robustly). The default prompt is :data:`DEFAULT_JUDGE_TEMPLATE`; a replacement template
  uses the placeholders ``{question}`` (the full conversation, one ``role: content`` block per
  message) and ``{candidates}`` (``[Candidate 1]`` … blocks), substituted literally, so other
  braces need no escaping. Candidates are numbered from 1 in the prompt and ``best_index`` is
  read as 1-based; the parser also accepts fenced JSON, ``Candidate 2`` and a bare number. An
  answer out of range, unparseable, or a failed call is a *failure*: ``failed=True`` and the
  first sample wins.
* ``reward`` — POST to a reward-model endpoint that scores each candidate. Default request
  ``{"query": <conversation>, "candidates": [<text>, …]}`` and response ``{"scores": [float, …]}``;
  ``request_format="vllm_score"`` sends vLLM's ``/score`` shape
  (``{"model", "text_1": query, "text_2": [...]}``, scores read from ``data.*.score``);
  ``scores_path`` (dotted, ``*`` = every list element) and ``extra_body`` adapt to other servers.

Every reranker returns a :class:`RerankResult`; none raises on a reranking failure.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from proxy.execute.rerank_text import (
    DEFAULT_JUDGE_TEMPLATE,
    JUDGE_RESPONSE_FORMAT,
    extract_answer,
    normalise_answer,
    parse_judge_answer,
    render_conversation,
    truncate_middle,
)

__all__ = [
    "DEFAULT_JUDGE_TEMPLATE",
    "ChatCaller",
    "FirstReranker",
    "JudgeReranker",
    "RerankResult",
    "Reranker",
    "RewardReranker",
    "VoteReranker",
    "extract_answer",
    "normalise_answer",
    "parse_judge_answer",
    "render_conversation",
    "truncate_middle",
]

ChatCaller = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
"""``(upstream name, OpenAI chat request body) -> OpenAI chat response``; raises ProxyError."""

Messages = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class RerankResult:
    """A reranker's verdict: ``order`` lists candidate indexes, best first."""

    order: tuple[int, ...]
    scores: tuple[float | None, ...]
    reranker: str
    latency_ms: float
    usage: dict[str, int] | None = None
    cost_usd: float = 0.0
    failed: bool = False
    detail: str | None = None

    @property
    def best(self) -> int:
        """Index of the winning candidate."""
        return self.order[0]


class Reranker(Protocol):
    """What a ``best_of_k`` policy needs from a reranker."""

    name: str

    async def rerank(self, messages: Messages, candidates: Sequence[str]) -> RerankResult:
        """Rank ``candidates`` (completions of ``messages``); never raises on its own failure."""
        ...


def _elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _identity(n: int) -> tuple[int, ...]:
    return tuple(range(n))


class FirstReranker:
    """No reranking: candidates keep their order, so the first sample wins."""

    name = "first"

    async def rerank(self, messages: Messages, candidates: Sequence[str]) -> RerankResult:
        """Identity order, no scores."""
        return RerankResult(
            order=_identity(len(candidates)),
            scores=(None,) * len(candidates),
            reranker=self.name,
            latency_ms=0.0,
        )


# --- vote ---------------------------------------------------------------------------------


class VoteReranker:
    """Self-consistency: a candidate of the most frequent final answer wins.

    Ties between answers go to the answer seen first; candidates with no extractable answer
    rank last. Scores are each candidate's answer's vote share (0 without an answer).
    """

    name = "vote"

    def __init__(self, pattern: str | None = None, *, exact: bool = False) -> None:
        self._pattern = re.compile(pattern) if pattern else None
        # ``exact``: each candidate is its own answer (canonical tool calls or JSON).
        self._exact = exact

    def _answer(self, candidate: str) -> str | None:
        if self._exact:
            return candidate.strip() or None
        return extract_answer(candidate, self._pattern)

    async def rerank(self, messages: Messages, candidates: Sequence[str]) -> RerankResult:
        """Rank candidates by the size of their answer's group."""
        start = time.perf_counter()
        answers = [self._answer(c) for c in candidates]
        counts: dict[str, int] = {}
        first_seen: dict[str, int] = {}
        for i, answer in enumerate(answers):
            if answer is not None:
                counts[answer] = counts.get(answer, 0) + 1
                first_seen.setdefault(answer, i)
        n = len(candidates)
        if not counts:
            return RerankResult(
                order=_identity(n),
                scores=(0.0,) * n,
                reranker=self.name,
                latency_ms=_elapsed_ms(start),
                failed=True,
                detail="no extractable answer",
            )

        def rank(i: int) -> tuple[int, int, int]:
            answer = answers[i]
            if answer is None:
                return (1, 0, i)
            return (0, -counts[answer], first_seen[answer] * (n + 1) + i)

        order = tuple(sorted(range(n), key=rank))
        winner = answers[order[0]]
        assert winner is not None
        return RerankResult(
            order=order,
            scores=tuple(counts[a] / n if a is not None else 0.0 for a in answers),
            reranker=self.name,
            latency_ms=_elapsed_ms(start),
            detail=f"answer={winner} votes={counts[winner]}/{n}",
        )


# --- judge --------------------------------------------------------------------------------


def _usage_of(response: Mapping[str, Any]) -> dict[str, int] | None:
    usage = response.get("usage")
    if not isinstance(usage, Mapping):
        return None
    keys = ("prompt_tokens", "completion_tokens", "total_tokens")
    return {k: int(usage[k]) for k in keys if isinstance(usage.get(k), int | float)}


class JudgeReranker:
    """One call to an LLM judge that sees the conversation and every candidate.

    ``cost_fn`` turns the judge call's ``usage`` into USD (the policy knows the prices).
    ``structured_output=False`` omits ``response_format`` for upstreams that reject it.
    """

    name = "judge"

    def __init__(
        self,
        chat: ChatCaller,
        upstream: str,
        *,
        template: str | None = None,
        max_candidate_chars: int = 4000,
        model: str | None = None,
        structured_output: bool = True,
        max_tokens: int = 64,
        cost_fn: Callable[[dict[str, int]], float] | None = None,
    ) -> None:
        self._chat = chat
        self._upstream = upstream
        self._template = template or DEFAULT_JUDGE_TEMPLATE
        self._max_candidate_chars = max_candidate_chars
        self._model = model or upstream
        self._structured_output = structured_output
        self._max_tokens = max_tokens
        self._cost_fn = cost_fn

    def build_prompt(self, messages: Messages, candidates: Sequence[str]) -> str:
        """The judge prompt (the template with both placeholders substituted)."""
        blocks = "\n\n".join(
            f"[Candidate {i + 1}]\n{truncate_middle(c, self._max_candidate_chars)}"
            for i, c in enumerate(candidates)
        )
        return self._template.replace("{question}", render_conversation(messages)).replace(
            "{candidates}", blocks
        )

    def build_request(self, messages: Messages, candidates: Sequence[str]) -> dict[str, Any]:
        """The OpenAI chat request sent to the judge upstream."""
        body: dict[str, Any] = {
            "model": self._model,
            "messages": [{"role": "user", "content": self.build_prompt(messages, candidates)}],
            "temperature": 0,
            "max_tokens": self._max_tokens,
        }
        if self._structured_output:
            body["response_format"] = JUDGE_RESPONSE_FORMAT
        return body

    async def rerank(self, messages: Messages, candidates: Sequence[str]) -> RerankResult:
        """Ask the judge; on failure or nonsense, keep the order (first sample wins)."""
        start = time.perf_counter()
        n = len(candidates)
        usage: dict[str, int] | None = None
        cost_usd = 0.0
        try:
            response = await self._chat(self._upstream, self.build_request(messages, candidates))
            usage = _usage_of(response)
            if usage and self._cost_fn is not None:
                cost_usd = self._cost_fn(usage)
            content = response["choices"][0]["message"].get("content") or ""
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any judge failure falls back to the first sample
            return self._failure(n, start, f"judge call failed: {exc}", usage, cost_usd)
        index = parse_judge_answer(str(content))
        if index is None or not 1 <= index <= n:
            return self._failure(
                n, start, f"judge answer unusable: {str(content)[:200]!r}", usage, cost_usd
            )
        best = index - 1
        return RerankResult(
            order=(best, *(i for i in range(n) if i != best)),
            scores=tuple(1.0 if i == best else None for i in range(n)),
            reranker=self.name,
            latency_ms=_elapsed_ms(start),
            usage=usage,
            cost_usd=cost_usd,
            detail=f"best_index={index}",
        )

    def _failure(
        self, n: int, start: float, detail: str, usage: dict[str, int] | None, cost_usd: float
    ) -> RerankResult:
        return RerankResult(
            order=_identity(n),
            scores=(None,) * n,
            reranker=self.name,
            latency_ms=_elapsed_ms(start),
            usage=usage,
            cost_usd=cost_usd,
            failed=True,
            detail=detail,
        )


# --- reward -------------------------------------------------------------------------------


def extract_path(data: Any, path: str) -> list[Any]:
    """Values at a dotted ``path`` in JSON; ``*`` maps over a list (``data.*.score``)."""
    values = [data]
    for part in path.split(".") if path else []:
        next_values: list[Any] = []
        for value in values:
            if part == "*" and isinstance(value, list):
                next_values.extend(value)
            elif isinstance(value, Mapping) and part in value:
                next_values.append(value[part])
            elif isinstance(value, list) and part.lstrip("-").isdigit():
                next_values.append(value[int(part)])
            else:
                raise KeyError(f"path {path!r}: no {part!r}")
        values = next_values
    if len(values) == 1 and isinstance(values[0], list):
        return list(values[0])
    return values


class RewardReranker:
    """Scores candidates with an HTTP reward-model endpoint; the highest score wins.

    ``request_format``: ``"simple"`` (``{"query", "candidates"}``) or ``"vllm_score"``
    (``{"model", "text_1", "text_2"}``). ``scores_path`` defaults to ``scores`` / ``data.*.score``
    respectively. Ties go to the earlier candidate.
    """

    name = "reward"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        request_format: str = "simple",
        model: str | None = None,
        scores_path: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 30.0,
        cost_per_call_usd: float = 0.0,
    ) -> None:
        if request_format not in ("simple", "vllm_score"):
            raise ValueError(f"unknown reward request_format {request_format!r}")
        self._session = session
        self._url = url
        self._format = request_format
        self._model = model
        default_path = "scores" if request_format == "simple" else "data.*.score"
        self._scores_path = scores_path or default_path
        self._extra_body = dict(extra_body or {})
        self._headers = dict(headers or {})
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._cost_per_call_usd = cost_per_call_usd

    def build_request(self, messages: Messages, candidates: Sequence[str]) -> dict[str, Any]:
        """The JSON body posted to the reward endpoint."""
        query = render_conversation(messages)
        body: dict[str, Any]
        if self._format == "simple":
            body = {"query": query, "candidates": list(candidates)}
        else:
            body = {"text_1": query, "text_2": list(candidates)}
        if self._model is not None:
            body["model"] = self._model
        body.update(self._extra_body)
        return body

    async def rerank(self, messages: Messages, candidates: Sequence[str]) -> RerankResult:
        """POST, read one finite score per candidate; on any failure keep the order."""
        start = time.perf_counter()
        n = len(candidates)
        try:
            async with self._session.post(
                self._url,
                json=self.build_request(messages, candidates),
                headers=self._headers,
                timeout=self._timeout,
            ) as response:
                if response.status >= 400:
                    # The body is not quoted: an endpoint may echo the request's credentials.
                    raise ValueError(f"HTTP {response.status}")
                data = await response.json(content_type=None)
            scores = [float(s) for s in extract_path(data, self._scores_path)]
            if len(scores) != n or not all(math.isfinite(s) for s in scores):
                raise ValueError(f"expected {n} finite scores, got {scores[:8]!r}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any reward failure falls back to the first sample
            return RerankResult(
                order=_identity(n),
                scores=(None,) * n,
                reranker=self.name,
                latency_ms=_elapsed_ms(start),
                cost_usd=self._cost_per_call_usd,
                failed=True,
                detail=f"reward call failed: {exc}",
            )
        order = tuple(sorted(range(n), key=lambda i: (-scores[i], i)))
        return RerankResult(
            order=order,
            scores=tuple(scores),
            reranker=self.name,
            latency_ms=_elapsed_ms(start),
            cost_usd=self._cost_per_call_usd,
        )
