"""The learning loop in the server: the outcome log, the learned heads and exploration.

One ``cleanup_ctx`` (:func:`learning_ctx`) owns the loop's parts while the app runs: the outcome
store and its :class:`~proxy.learn.log.OutcomeLog` (written off the request path), the
:class:`~proxy.learn.live.LiveHeads` polled every ``learning.poll_s`` (a swap re-solves a budgeted
policy's λ), and the :class:`~proxy.learn.explore.Explorer` built from ``learning:``. A reload
re-reads which policies learn and rebuilds the explorer; the store's location is read at start
(moving it takes a restart). Without a ``learn: true`` policy nothing is built and the request
path does one dictionary lookup.

:func:`record_outcome` is the request path's one call: after a ``learn: true`` policy answered,
it queues the request's :class:`~proxy.learn.records.OutcomeRecord` and its free labels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from aiohttp import web

from proxy.config.reload import Snapshot
from proxy.config.schema import Config
from proxy.execute.seam import Outcome
from proxy.http.auth import client_of
from proxy.http.cache_redis import cache_redis
from proxy.http.explore import make_explorer
from proxy.http.state import (
    BUDGETS,
    CONFIG,
    DECIDER,
    LEARNING,
    METRICS,
    RECORD,
    LearningParts,
)
from proxy.learn.explore import ExploreCounters
from proxy.learn.labels import cascade_label, sequential_label
from proxy.learn.live import LiveHeads
from proxy.learn.log import OutcomeLog
from proxy.learn.records import (
    CascadeEvidence,
    DecisionRecord,
    LabelRecord,
    OutcomeRecord,
    RouteEvidence,
    SequentialEvidence,
    UsageRecord,
)
from proxy.learn.wiring import (
    OutcomeLogSeries,
    build_store,
    explore_settings,
    learn_policies,
    prior_version,
)
from proxy.policies.base import BasePolicy
from proxy.policies.cascade import CascadePolicy
from proxy.policies.decision import Decision

log = logging.getLogger("proxy.learn")


class LearningRuntime:
    """The loop's parts of one app: the outcome log, the heads, the poller."""

    def __init__(
        self,
        log_: OutcomeLog,
        heads: LiveHeads,
        config: Config,
        *,
        explore_counters: ExploreCounters,
        budget_redis: Any = None,
    ) -> None:
        self.log = log_
        self.heads = heads
        self.config = config
        #: The exploration budget's client (``cache.redis_url``: one budget for every replica).
        self.budget_redis = budget_redis
        #: Exploration's series, registered once for every explorer a reload builds.
        self.explore_counters = explore_counters
        self.policies = frozenset(learn_policies(config))
        self._stop = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None

    @property
    def store(self) -> Any:
        """The outcome store."""
        return self.log.store

    def update(self, config: Config) -> None:
        """Follow a reloaded config's ``learn: true`` policies and ``poll_s``."""
        self.config = config
        self.policies = frozenset(learn_policies(config))
        self.heads.set_policies(learn_policies(config))

    def start(self, on_swap: Callable[[str, str], Any]) -> None:
        """Start polling the store for promoted heads."""
        self._poller = asyncio.get_running_loop().create_task(self._poll(on_swap))

    async def _poll(self, on_swap: Callable[[str, str], Any]) -> None:
        while not self._stop.is_set():
            try:
                swapped = await self.heads.refresh()
                for policy, version in swapped.items():
                    log.info("learned heads: %s now serves %s", policy, version)
                    await on_swap(policy, version)
            except Exception:  # the poller must outlive one bad refresh
                log.exception("learned heads: refresh failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.learning.poll_s):
                    await self._stop.wait()

    async def aclose(self) -> None:
        """Stop polling; write what is queued; close the store."""
        self._stop.set()
        if self._poller is not None:
            await self._poller
        await self.log.aclose()
        if self.budget_redis is not None:
            await self.budget_redis.aclose()


def _build(app: web.Application, config: Config, env: Mapping[str, str]) -> LearningRuntime:
    store = build_store(config, env=env)
    outcome_log = OutcomeLog(store, metrics=OutcomeLogSeries(app[METRICS].registry))
    heads = LiveHeads(store, learn_policies(config), prior_version=prior_version(config))
    cache = config.cache
    budget_redis = cache_redis(cache)
    counters = ExploreCounters(app[METRICS].registry)
    return LearningRuntime(
        outcome_log, heads, config, explore_counters=counters, budget_redis=budget_redis
    )


def _explorer(app: web.Application, runtime: LearningParts | None, config: Config) -> Any:
    settings = explore_settings(config)
    if runtime is None or settings.explore_fraction <= 0:
        return None
    return make_explorer(
        app,
        settings,
        labels=runtime.log,
        redis=runtime.budget_redis,
        counters=runtime.explore_counters,
    )


def _use_heads(app: web.Application, runtime: LearningParts | None) -> None:
    decider = app.get(DECIDER)
    if decider is not None:
        decider.heads = runtime.heads if runtime is not None else None


def learning_ctx(env: Mapping[str, str]):  # type: ignore[no-untyped-def]
    """The ``cleanup_ctx`` of the learning loop (an explorer set before start is kept)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        learning = app[LEARNING]
        config = app[CONFIG].snapshot.config

        async def on_swap(policy: str, version: str) -> None:
            # The predictions moved: a budget's λ is re-solved now, not at its next interval.
            await app[BUDGETS].resolve(policy)

        if learn_policies(config):
            runtime = _build(app, config, env)
            # A replica starting after a promotion serves it from its first request.
            await runtime.heads.refresh()
            runtime.start(on_swap)
            learning.runtime = runtime
            _use_heads(app, runtime)
        learning.explorer = _explorer(app, learning.runtime, config)

        def reloaded(snapshot: Snapshot) -> None:
            if learning.runtime is None and learn_policies(snapshot.config):
                runtime = _build(app, snapshot.config, env)
                runtime.start(on_swap)
                learning.runtime = runtime
                _use_heads(app, runtime)
            elif learning.runtime is not None:
                learning.runtime.update(snapshot.config)
            # The one running keeps its background runs; new requests use the new settings.
            learning.explorer = _explorer(app, learning.runtime, snapshot.config)

        app[CONFIG].subscribe(reloaded)
        try:
            yield
        finally:
            if learning.explorer is not None:
                await learning.explorer.aclose()
            if learning.runtime is not None:
                await learning.runtime.aclose()

    return ctx


def _free_labels(record: OutcomeRecord) -> list[LabelRecord]:
    evidence = record.evidence
    label = None
    if isinstance(evidence, SequentialEvidence):
        label = sequential_label(record.request_id, evidence, unix_time_s=record.unix_time_s)
    elif isinstance(evidence, CascadeEvidence) and evidence.stages:
        label = cascade_label(
            record.request_id,
            evidence,
            unix_time_s=record.unix_time_s,
            cheap_arm=evidence.stages[0].name,
        )
    return [label] if label is not None else []


def record_outcome(
    request: web.Request,
    decision: Decision,
    policy: BasePolicy | None,
    data: Mapping[str, Any],
    outcome: Outcome,
    *,
    status: int,
    explored: bool,
) -> None:
    """Queue the record and free labels of a ``learn: true`` policy's answered request (a plain
    call: it appends to the log's queue and returns; the store is written in the background)."""
    if policy is None or not policy.learn or status != 200:
        return
    runtime = request.app[LEARNING].runtime
    if runtime is None or decision.policy not in runtime.policies:
        return
    access = request.get(RECORD)
    if access is None:
        return
    try:
        record = _outcome_record(
            request, runtime, access.request_id, decision, policy, data, outcome, explored
        )
    except Exception:  # a record that cannot be built must not fail the answered request
        log.exception("outcome log: the record of %s could not be built", access.request_id)
        runtime.log.metrics.outcome_dropped("invalid", 1)
        return
    if runtime.log.record(record):
        for label in _free_labels(record):
            runtime.log.label(label)


def _outcome_record(
    request: web.Request,
    runtime: LearningParts,
    request_id: str,
    decision: Decision,
    policy: BasePolicy,
    data: Mapping[str, Any],
    outcome: Outcome,
    explored: bool,
) -> OutcomeRecord:
    """The request's record: what was decided, seen and spent."""
    client = client_of(request)
    arm = outcome.answered_by[0] if outcome.answered_by is not None else decision.arm
    upstream = outcome.answered_by[1] if outcome.answered_by is not None else decision.upstream
    include_messages = runtime.config.server.access_log.include_messages
    return OutcomeRecord(
        request_id=request_id,
        unix_time_s=time.time(),
        policy=decision.policy,
        policy_version=decision.policy_version,
        key=client.name if client is not None else None,
        model_version=decision.model_version or runtime.heads.model_version(decision.policy),
        # The arm that answered: a reward alone is that arm's (a cascade's answering stage).
        decision=DecisionRecord(
            arm=arm,
            upstream=upstream,
            n=outcome.n_samples or decision.n,
            stages=[s.label for s in policy.stages] if isinstance(policy, CascadePolicy) else [],
            gain=decision.gain,
            threshold=decision.threshold,
            lambda_=decision.lambda_,
            cache_hit=decision.cache_hit,
            fallback_reason=decision.fallback_reason,
        ),
        predictions=dict(decision.prior_predictions or {}),
        embedding_f16=decision.embedding_f16,
        # A route's evidence is its arm; the sequential and cascade executors report theirs.
        evidence=outcome.evidence if outcome.evidence is not None else RouteEvidence(arm=arm),
        usage=UsageRecord(
            prompt_tokens=outcome.prompt_tokens or 0,
            completion_tokens=outcome.completion_tokens or 0,
            cost_usd=outcome.cost_usd,
        ),
        explore=explored,
        messages=list(data.get("messages") or []) if include_messages else None,
    )
