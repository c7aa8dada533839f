"""The request path's one line into exploration, and the explorer built from the app's parts."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from proxy.execute.rerank import JudgeReranker
from proxy.execute.seam import Execution, JsonResult, Outcome
from proxy.http.state import CONFIG, COSTS, EXPLORER, LEARNING, METRICS, RECORD, UPSTREAMS
from proxy.learn.explore import ExploreCounters, Explorer, ExploreSettings, LabelSink
from proxy.learn.explore_budget import ExploreBudget
from proxy.policies.base import BasePolicy
from proxy.policies.decision import Decision


def maybe_explore(
    request: web.Request,
    decision: Decision,
    policy: BasePolicy | None,
    body: dict[str, Any],
    result: Execution,
) -> bool:
    """Schedule a background run of the arm not chosen (after this response is written) for a
    ``learn: true`` policy; whether one was."""
    if not isinstance(result, JsonResult):
        return False
    choices = result.body.get("choices") or [{}]
    content = (choices[0].get("message") or {}).get("content")
    return explore_answer(
        request,
        decision,
        policy,
        body,
        result.outcome,
        content if isinstance(content, str) else None,
    )


def explore_answer(
    request: web.Request,
    decision: Decision,
    policy: BasePolicy | None,
    body: dict[str, Any],
    outcome: Outcome,
    answer_text: str | None,
) -> bool:
    """:func:`maybe_explore` for an answer already read (``body``: the chat request; a
    Responses request as :func:`proxy.wire.responses_api.to_chat_body` converts it)."""
    if policy is None or not policy.learn:
        return False
    explorer = explorer_of(request.app)
    if explorer is None:
        return False
    record = request.get(RECORD)
    answered = outcome.answered_by[0] if outcome.answered_by is not None else decision.arm
    transport = request.transport

    def sent() -> bool:
        # The handler's task is over when this is asked: the response is written, and out of
        # the process once the connection's buffer is empty (or the connection is gone).
        return transport is None or transport.is_closing() or not transport.get_write_buffer_size()

    return explorer.maybe_explore(
        sent=sent,
        request_id=record.request_id if record is not None else "",
        policy_name=decision.policy,
        policy=policy,
        answered_arm=answered,
        body=body,
        answer_text=answer_text,
        prompt_tokens=outcome.prompt_tokens or 0,
    )


def explorer_of(app: web.Application) -> Explorer | None:
    """The explorer in force: one set before start as ``app[EXPLORER]``, else the config's."""
    injected = app.get(EXPLORER)
    return injected if injected is not None else app[LEARNING].explorer


def make_explorer(
    app: web.Application,
    settings: ExploreSettings,
    *,
    labels: LabelSink | None,
    redis: Any = None,
    counters: ExploreCounters | None = None,
) -> Explorer:
    """An :class:`Explorer` for ``app`` (set it as ``app[EXPLORER]`` before the app starts): it
    calls the app's upstreams, asks ``settings.judge`` in the judge reranker's protocol, counts
    in the app's ``/metrics`` (in ``counters`` when given: one set per app, whatever the number
    of explorers built) and its spend in Redis when ``redis`` is given (else in process)."""
    costs = app[COSTS]

    async def chat(name: str, request: dict[str, Any]) -> dict[str, Any]:
        # The upstream client exists once the app has started, before any request.
        return (await app[UPSTREAMS].chat(name, request)).data

    judge = None
    if settings.judge is not None:
        judge_upstream = settings.judge

        def judge_cost(usage: dict[str, int]) -> float:
            return costs.prices(judge_upstream).cost_usd(
                int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
            )

        judge = JudgeReranker(chat, judge_upstream, cost_fn=judge_cost)
    return Explorer(
        settings,
        chat=chat,
        costs=costs,
        budget=ExploreBudget(settings.explore_budget_usd_per_day, redis=redis),
        labels=labels,
        judge=judge,
        registry=app[METRICS].registry,
        counters=counters,
        access_log_enabled=app[CONFIG].snapshot.config.server.access_log.enabled,
    )
