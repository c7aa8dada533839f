"""Exploration: a share of route and cascade requests also run the arm that was not chosen.

``learning.explore_fraction`` of a ``learn: true`` route or cascade policy's requests get a
background run of the other arm: a route's other upstream; a cascade's last stage when it did not
escalate, its first stage again when it did. The run starts only once the request's handler task
has finished, i.e. once the client's response has been written, so it never delays an answer.
It costs what the upstream charges, within ``learning.explore_budget_usd_per_day``
(:class:`~proxy.learn.explore_budget.ExploreBudget`), and that spend is the proxy's: it is not
booked to the client key (the access middleware books the request's own cost before this runs).

The pair (the cheap arm's answer, the reference arm's answer) becomes an ``explored`` label:

* by agreement of their extracted final answers when the policy has an ``answer_pattern``
  (the extractor ``vote`` and the cascade use, :func:`predictor_onnx.answers.extract_answer`);
* else by a pairwise judge upstream (``learning.judge``) in the judge reranker's protocol: both
  answers as candidates, in a random order; the cheap arm succeeded iff the judge picks it.

Either way the expensive (reference) answer is the reference, so the label is the cheap arm's
reward, as a cascade's free label is. Streamed responses are not explored (the proxy does not
keep their text). Each run is counted (``adaptive_explore_requests_total{policy,outcome}``,
``adaptive_explore_spend_usd_total{policy}``) and written to the access log as its own line with
``"explore": true``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson
from prometheus_client import CollectorRegistry, Counter

from predictor_onnx.answers import extract_answer
from proxy.learn.explore_budget import ExploreBudget
from proxy.learn.labels import agreement_label
from proxy.learn.records import LabelRecord
from proxy.policies.base import BasePolicy
from proxy.policies.cascade import CascadePolicy
from proxy.policies.overrides import apply_overrides
from proxy.policies.route import RoutePolicy
from proxy.upstream.pricing import CostModel, billed_tokens

log = logging.getLogger("proxy.learn")
access_log = logging.getLogger("adaptive_proxy.access")
ChatCaller = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
Messages = Sequence[Mapping[str, Any]]
ExploreOutcome = Literal["labelled", "unlabelled", "over_budget", "failed"]
# Client parameters that shape the response's form, not the answer: one plain completion.
SEND_POLL_S = 0.005
SEND_WAIT_S = 60.0
_FORM_KEYS = ("n", "stream", "stream_options", "logprobs", "top_logprobs")


@dataclass(frozen=True)
class ExploreSettings:
    """The ``learning:`` keys exploration reads (built from the config by the caller)."""

    explore_fraction: float = 0.0
    explore_budget_usd_per_day: float = 0.0
    #: The judge upstream's name, for policies without an answer pattern (``None``: none).
    judge: str | None = None


class JudgeResult(Protocol):
    """What a judge answers (:class:`proxy.execute.rerank.RerankResult` has these)."""

    @property
    def order(self) -> tuple[int, ...]: ...
    @property
    def failed(self) -> bool: ...
    @property
    def cost_usd(self) -> float: ...


class PairJudge(Protocol):
    """A judge in the reranker protocol (:class:`proxy.execute.rerank.JudgeReranker`)."""

    async def rerank(self, messages: Messages, candidates: Sequence[str]) -> JudgeResult:
        """Rank the candidates, best first."""
        ...


class LabelSink(Protocol):
    """Where explored labels go (:class:`proxy.learn.log.OutcomeLog`)."""

    def label(self, label: LabelRecord) -> bool:
        """Queue a label; ``False`` when it was dropped."""
        ...


@dataclass(frozen=True)
class ExplorePair:
    """The two arms of one explored request and which of them answered the client."""

    cheap_arm: str
    cheap_upstream: str
    reference_arm: str
    reference_upstream: str
    answered: Literal["cheap", "reference"]
    answer_pattern: str | None
    # The arms' request overrides (reasoning effort, ...): an effort arm explored is its effort.
    cheap_overrides: Mapping[str, Any] = field(default_factory=dict)
    reference_overrides: Mapping[str, Any] = field(default_factory=dict)
    override_client: bool = False

    @property
    def other_upstream(self) -> str:
        """The upstream the background run calls."""
        return self.reference_upstream if self.answered == "cheap" else self.cheap_upstream

    @property
    def other_overrides(self) -> Mapping[str, Any]:
        """The request overrides of the arm the background run stands for."""
        return self.reference_overrides if self.answered == "cheap" else self.cheap_overrides

    @property
    def other_arm(self) -> str:
        """The arm the background run stands for."""
        return self.reference_arm if self.answered == "cheap" else self.cheap_arm


def pair_of(policy: BasePolicy, answered_arm: str) -> ExplorePair | None:
    """The explored pair of a route or cascade request answered by ``answered_arm``."""
    if isinstance(policy, RoutePolicy):
        answered: Literal["cheap", "reference"] = (
            "reference" if answered_arm == "expensive" else "cheap"
        )
        cheap, expensive = policy.cheap_target, policy.expensive_target
        return ExplorePair(
            "cheap", cheap.upstream, "expensive", expensive.upstream, answered, None,
            cheap.overrides.as_body(), expensive.overrides.as_body(), policy.override_client,
        )  # fmt: skip
    if isinstance(policy, CascadePolicy):
        last = policy.stages[-1]
        if answered_arm == last.label:
            first = policy.stages[0]
            return ExplorePair(
                first.label, first.upstream, last.label, last.upstream, "reference",
                policy.answer_pattern, first.body_overrides(), last.body_overrides(),
                policy.override_client,
            )  # fmt: skip
        stage = next((s for s in policy.stages if s.label == answered_arm), policy.stages[0])
        return ExplorePair(
            stage.label, stage.upstream, last.label, last.upstream, "cheap",
            policy.answer_pattern, stage.body_overrides(), last.body_overrides(),
            policy.override_client,
        )  # fmt: skip
    return None


class ExploreCounters:
    """The Prometheus series of exploration, in the app's registry."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.requests = Counter(
            "adaptive_explore_requests",
            "Background runs of the arm not chosen, by how they ended.",
            ["policy", "outcome"],
            registry=registry,
        )
        self.spend = Counter(
            "adaptive_explore_spend_usd",
            "Spend on exploration (the other arm and its judge), not booked to any client key.",
            ["policy"],
            registry=registry,
        )


class Explorer:
    """Decides which requests to explore and runs them in the background."""

    def __init__(
        self,
        settings: ExploreSettings,
        *,
        chat: ChatCaller,
        costs: CostModel,
        budget: ExploreBudget,
        labels: LabelSink | None,
        judge: PairJudge | None = None,
        registry: CollectorRegistry | None = None,
        counters: ExploreCounters | None = None,
        access_log_enabled: bool = True,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.budget = budget
        # An explorer rebuilt on a reload keeps counting in the series of the one before.
        self.counters = counters if counters is not None else ExploreCounters(registry)
        self._chat = chat
        self._costs = costs
        self._labels = labels
        self._judge = judge
        self._access_log = access_log_enabled
        self._rng = rng or random.Random()
        self._clock = clock
        self._tasks: set[asyncio.Task[ExploreOutcome]] = set()

    @property
    def running(self) -> int:
        """Background runs not finished yet."""
        return len(self._tasks)

    def maybe_explore(
        self,
        *,
        request_id: str,
        policy_name: str,
        policy: BasePolicy,
        answered_arm: str,
        body: Mapping[str, Any],
        answer_text: str | None,
        prompt_tokens: int,
        sent: Callable[[], bool] | None = None,
    ) -> bool:
        """Schedule a background run of the arm not chosen for ``explore_fraction`` of the
        requests; it starts when the calling task (the request's handler) has finished and
        ``sent()`` says the response has left the process (its connection's buffer is empty)."""
        if answer_text is None or self._labels is None:
            return False
        pair = pair_of(policy, answered_arm)
        if pair is None or (pair.answer_pattern is None and self._judge is None):
            return False  # no way to label the pair: spend nothing
        if self._rng.random() >= self.settings.explore_fraction:
            return False
        task = asyncio.current_task()
        args = (request_id, policy_name, pair, dict(body), answer_text, prompt_tokens, sent)
        if task is None:
            self._start(*args)
            return True

        def after(done: asyncio.Task[Any]) -> None:
            if not done.cancelled():  # a client that went away got no answer to compare
                self._start(*args)

        task.add_done_callback(after)
        return True

    def _start(self, *args: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._run(*args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Cancel the runs still going (shutdown: exploration is optional, a label is lost)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def drain(self) -> None:
        """Wait for every background run (shutdown; tests)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(
        self,
        request_id: str,
        policy_name: str,
        pair: ExplorePair,
        body: dict[str, Any],
        answer_text: str,
        prompt_tokens: int,
        sent: Callable[[], bool] | None,
    ) -> ExploreOutcome:
        if sent is not None:
            await _until(sent)
        outcome: ExploreOutcome = "failed"
        cost = 0.0
        usage: tuple[int, int] = (0, 0)
        label: LabelRecord | None = None
        try:
            overrides = pair.other_overrides
            expected = self._costs.expected_cost_usd(
                pair.other_upstream, prompt_tokens, overrides=overrides
            )
            if not await self.budget.allows(expected):
                outcome = "over_budget"
                return outcome
            request = {k: v for k, v in body.items() if k not in _FORM_KEYS}
            request = apply_overrides(request, overrides, override_client=pair.override_client)
            reply = await self._chat(pair.other_upstream, request)
            usage = _usage(reply)
            cost = self._costs.observe(pair.other_upstream, *usage, overrides=overrides)
            other_text = _content(reply)
            cheap_text: str | None
            reference_text: str | None
            if pair.answered == "cheap":
                cheap_text, reference_text = answer_text, other_text
            else:
                cheap_text, reference_text = other_text, answer_text
            label, judge_cost = await self._label(
                request_id, pair, body.get("messages") or [], cheap_text, reference_text
            )
            cost += judge_cost
            outcome = "labelled" if label is not None else "unlabelled"
            if label is not None and self._labels is not None:
                self._labels.label(label)
            return outcome
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # exploration is optional: it must never surface as an error
            log.warning("exploration of %s (%s) failed: %s", request_id, policy_name, exc)
            return outcome
        finally:
            self.counters.requests.labels(policy_name, outcome).inc()
            if cost:
                self.counters.spend.labels(policy_name).inc(cost)
                await self.budget.add(policy_name, cost)
            if outcome != "over_budget":
                self._write_line(request_id, policy_name, pair, outcome, cost, usage, label)

    async def _label(
        self,
        request_id: str,
        pair: ExplorePair,
        messages: Messages,
        cheap_text: str | None,
        reference_text: str | None,
    ) -> tuple[LabelRecord | None, float]:
        now = self._clock()
        if pair.answer_pattern is not None:
            pattern = pair.answer_pattern
            label = agreement_label(
                request_id,
                cheap_answer=extract_answer(cheap_text, pattern) if cheap_text else None,
                reference_answer=extract_answer(reference_text, pattern)
                if reference_text
                else None,
                cheap_arm=pair.cheap_arm,
                unix_time_s=now,
                kind="explored",
                source="explore:agreement",
            )
            return label, 0.0
        if self._judge is None or not cheap_text or not reference_text:
            return None, 0.0
        # A random order: a judge's preference for a position must not become a preference for
        # an arm.
        cheap_first = self._rng.random() < 0.5
        candidates = [cheap_text, reference_text] if cheap_first else [reference_text, cheap_text]
        result = await self._judge.rerank(messages, candidates)
        if result.failed:
            return None, result.cost_usd
        cheap_won = result.order[0] == (0 if cheap_first else 1)
        label = LabelRecord(
            request_id=request_id,
            unix_time_s=now,
            kind="explored",
            source="explore:judge",
            arm_rewards={pair.cheap_arm: 1.0 if cheap_won else 0.0},
        )
        return label, result.cost_usd

    def _write_line(
        self,
        request_id: str,
        policy_name: str,
        pair: ExplorePair,
        outcome: ExploreOutcome,
        cost_usd: float,
        usage: tuple[int, int],
        label: LabelRecord | None,
    ) -> None:
        if not self._access_log or not access_log.isEnabledFor(logging.INFO):
            return
        line = {
            "ts": round(time.time(), 3),
            "request_id": request_id,
            "explore": True,
            "policy": policy_name,
            "arm": pair.other_arm,
            "upstream": pair.other_upstream,
            "outcome": outcome,
            "label": None if label is None else label.source,
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "cost_usd": round(cost_usd, 8),
        }
        access_log.info(orjson.dumps(line).decode())


async def _until(sent: Callable[[], bool]) -> None:
    """Wait (polling, in the background) until ``sent()``; a client that never reads the rest
    of its answer holds exploration back at most :data:`SEND_WAIT_S`."""
    # No event says "the kernel took the last byte": the buffer's size is polled.
    for _ in range(round(SEND_WAIT_S / SEND_POLL_S)):
        if sent():
            return
        await asyncio.sleep(SEND_POLL_S)


def _usage(reply: Mapping[str, Any]) -> tuple[int, int]:
    # Reasoning tokens are billed like any answer token (:func:`billed_tokens`).
    return billed_tokens(reply.get("usage")) or (0, 0)


def _content(reply: Mapping[str, Any]) -> str | None:
    try:
        content = reply["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    return content if isinstance(content, str) else None
