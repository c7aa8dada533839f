"""From a request to a :class:`Decision`: cache lookup, prediction, policy, fallback.

Key = hash of (policy name, policy version, predictor version, the whole normalised ``messages``,
the request fields that change the answer). A hit returns the stored decision (budgeted policies
re-decide from the stored predictions, because their λ moves). A miss runs the predictor and the
policy and stores the result. A predictor or cache failure falls back to the policy's default arm;
it is logged, counted, and never fails the request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

import orjson

from proxy.config.reload import Snapshot
from proxy.decide.cache import DecisionCache
from proxy.decide.prediction import Predictor
from proxy.policies.base import BasePolicy, PolicyContext
from proxy.policies.decision import Decision
from proxy.wire.protocol import normalised_messages

log = logging.getLogger("adaptive_proxy.decider")

# Fields that change the answer, hence belong in the decision's identity.
ANSWER_FIELDS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "n",
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "response_format",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
    "reasoning_effort",
)
_ANSWER_FIELD_SET = frozenset(ANSWER_FIELDS)
# Decisions rebuilt from in-process cache entries, kept to skip the rebuild on the next hit.
_PARSED_MAX_ENTRIES = 4096


class DecisionMetrics(Protocol):
    """The metrics the decider reports (cache hits/misses are counted by the cache itself)."""

    def predictor_fallback(self, policy: str, reason: str) -> None: ...
    def observe_decision(self, policy: str, seconds: float, cache_hit: bool) -> None: ...


class HeadSource(Protocol):
    """The learned heads of ``learn: true`` policies (:class:`proxy.learn.live.LiveHeads`)."""

    def model_version(self, policy: str) -> str:
        """The head in force for ``policy``: a learned version or the shipped prior's."""
        ...

    async def predict(
        self, policy: str, predictor: Predictor, messages: list[dict[str, Any]]
    ) -> tuple[dict[str, float], dict[str, float], str | None]:
        """The predictions corrected by the policy's head, the predictor's own, and the
        prompt's packed embedding (``None`` without one), from one encoding of the prompt."""
        ...

    async def predict_many(
        self, policy: str, predictor: Predictor, batch: list[list[dict[str, Any]]]
    ) -> list[dict[str, float]]:
        """The predictions of many prompts, corrected by the policy's head in force."""
        ...


def decision_key(
    policy: str, policy_version: str, predictor_version: str, body: Mapping[str, Any]
) -> str:
    """The cache key of a request under a policy."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{policy}\x00{policy_version}\x00{predictor_version}\x00".encode())
    digest.update(normalised_messages(list(body["messages"])))
    # Sorted on serialisation, so the set intersection's order does not matter.
    fields = {k: body[k] for k in _ANSWER_FIELD_SET.intersection(body)}
    if fields:
        digest.update(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS))
    return f"{policy}:{digest.hexdigest()}"


class Decider:
    """Makes (and caches) decisions for adaptive policies."""

    def __init__(
        self,
        *,
        predictor: Predictor | None,
        cache: DecisionCache,
        metrics: DecisionMetrics,
        context: PolicyContext,
        predictor_timeout_s: float = 2.0,
        heads: HeadSource | None = None,
    ) -> None:
        self._predictor = predictor
        self._heads = heads
        self._cache = cache
        self._metrics = metrics
        self._context = context
        self._predictor_timeout_s = predictor_timeout_s
        # key -> (the cache's entry, the Decision built from it). The in-process cache returns
        # the same entry object on every hit (Redis a new one), so an entry that is still the
        # one stored needs no rebuild; a replaced or foreign entry is rebuilt as before.
        self._parsed: dict[str, tuple[Mapping[str, Any], Decision]] = {}

    @property
    def heads(self) -> HeadSource | None:
        """The learned heads of ``learn: true`` policies (``None``: no policy learns)."""
        return self._heads

    @heads.setter
    def heads(self, heads: HeadSource | None) -> None:
        self._heads = heads

    @property
    def predictor(self) -> Predictor | None:
        """The predictor in use (``None``: every adaptive policy uses its default arm)."""
        return self._predictor

    def _predictor_or_raise(self) -> Predictor:
        if self._predictor is None:
            raise RuntimeError("no predictor is configured")
        return self._predictor

    async def predict(self, messages: list[dict[str, Any]]) -> dict[str, float]:
        """Predictions for one conversation, bounded by the predictor timeout."""
        async with asyncio.timeout(self._predictor_timeout_s):
            (predictions,) = await self._predictor_or_raise().predict([messages])
        return predictions

    async def predict_batch(
        self, batch: list[list[dict[str, Any]]], *, slice_size: int, learned: str | None = None
    ) -> list[dict[str, float]]:
        """Predictions for many conversations, ``slice_size`` at a time; ``learned``: a
        ``learn: true`` policy whose learned head corrects them (as its decisions are).

        The predictor serves callers in arrival order, so handing it a whole batch would queue
        every live decision behind it (10,000 prompts: over a minute, and every live request
        timed out to its default arm). One slice at a time, a live request waits for at most
        one slice.
        """
        predictor = self._predictor_or_raise()
        heads = self._heads if learned is not None else None
        out: list[dict[str, float]] = []
        for start in range(0, len(batch), slice_size):
            part = batch[start : start + slice_size]
            if heads is not None and learned is not None:
                out += await heads.predict_many(learned, predictor, part)
            else:
                out += await predictor.predict(part)
            await asyncio.sleep(0)  # let requests that arrived during the slice queue first
        return out

    async def decide(self, snapshot: Snapshot, name: str, body: Mapping[str, Any]) -> Decision:
        """The decision for ``body`` under policy ``name``; predictor/cache trouble never raises."""
        started = time.perf_counter()
        version = snapshot.policy_versions[name]
        policy = snapshot.config.policies[name]
        messages = list(body["messages"])
        if not policy.needs_prediction:
            decision = await policy.decide(self._context, name, version, {}, messages)
            return decision.with_timing(cache_hit=False, decision_ms=_ms(started))
        heads = self._heads if policy.learn else None
        predictor_version = snapshot.predictor_version
        if heads is not None:
            # A promoted head changes the predictions: decisions of the old one are stale.
            predictor_version += "+" + heads.model_version(name)
        key = decision_key(name, version, predictor_version, body)
        cached = await self._cache.get(key)
        if cached is not None:
            hit = self._from_cache(key, cached)
            if hit is not None:
                decision = hit
                if policy.is_budgeted():  # λ has moved since: re-decide from the predictions
                    decided = await policy.decide(
                        self._context, name, version, decision.predictions, messages
                    )
                    decision = _with_learning_inputs(decided, decision)
                elapsed = time.perf_counter() - started
                self._metrics.observe_decision(name, elapsed, True)
                return decision.with_timing(cache_hit=True, decision_ms=elapsed * 1000)
        try:
            if heads is None:
                predictions = await self.predict(messages)
                decision = await policy.decide(self._context, name, version, predictions, messages)
            else:
                decision = await self._decide_learned(heads, policy, name, version, messages)
        except Exception as exc:  # fail open: a prediction problem must never fail the request
            reason = "predictor_timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            log.warning(
                "policy %s: prediction failed (%s: %s); using the default arm", name, reason, exc
            )
            self._metrics.predictor_fallback(name, reason)
            decision = policy.default_decision(name, version, reason)
            if heads is not None:
                decision = replace(decision, model_version=heads.model_version(name))
        else:
            await self._cache.set(key, decision.to_cache())
        elapsed = time.perf_counter() - started
        self._metrics.observe_decision(name, elapsed, False)
        return decision.with_timing(cache_hit=False, decision_ms=elapsed * 1000)

    async def _decide_learned(
        self,
        heads: HeadSource,
        policy: BasePolicy,
        name: str,
        version: str,
        messages: list[dict[str, Any]],
    ) -> Decision:
        """A ``learn: true`` policy's decision: the prompt encoded once, the predictions
        corrected by the policy's learned head, the outcome log's inputs kept on the decision."""
        # The version is read before the head is applied: a swap in between is seen next time.
        model_version = heads.model_version(name)
        async with asyncio.timeout(self._predictor_timeout_s):
            predictions, prior, embedding = await heads.predict(
                name, self._predictor_or_raise(), messages
            )
        decision = await policy.decide(self._context, name, version, predictions, messages)
        return replace(
            decision,
            prior_predictions=prior,
            embedding_f16=embedding,
            model_version=model_version,
        )

    def _from_cache(self, key: str, cached: Mapping[str, Any]) -> Decision | None:
        """The Decision of a cache entry (``None`` for a foreign one), rebuilt only when the
        entry is not the one it was last built from."""
        parsed = self._parsed.get(key)
        if parsed is not None and parsed[0] is cached:
            return parsed[1]
        try:
            decision = Decision.from_cache(cached)
        except (TypeError, KeyError):
            return None
        if len(self._parsed) >= _PARSED_MAX_ENTRIES:
            self._parsed.clear()
        self._parsed[key] = (cached, decision)
        return decision


def _with_learning_inputs(decision: Decision, source: Decision) -> Decision:
    """``decision`` (re-decided from a cached one) with the cached one's outcome-log inputs."""
    if source.model_version is None:
        return decision
    return replace(
        decision,
        prior_predictions=source.prior_predictions,
        embedding_f16=source.embedding_f16,
        model_version=source.model_version,
    )


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
