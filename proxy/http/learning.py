"""``POST /v1/adaptive/feedback`` and ``GET /v1/adaptive/learning``.

Feedback labels a logged request (by the ``x-request-id`` its response carried) with the reward
of the answer the client received (``reward``, in [0, 1]; it informs only the arm that answered)
or with the rewards of several arms by the names ``x-adaptive-arm`` uses (``arm_rewards``), one
object or ``{"feedback": [...]}`` (at most ``learning.feedback_max_batch``). A batch is accepted
whole or refused whole, by the first item at fault: 404 for an id never logged, 410 for one past
``learning.retention_days``, 400 for a reward outside [0, 1] or an unknown arm (``param`` names
it), 403 for another client key's request (with ``server.auth``; a master key may label any). The
answer is 202 with the number of labels accepted; they reach the store in the background.

The learning report is the master key's (with ``server.auth``): per ``learn: true`` policy, its
labels by kind, the head in force and when it was promoted, the prequential scores, and today's
exploration spend (:func:`proxy.learn.report.policy_learning`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web
from pydantic import Field, ValidationError, model_validator

from proxy.config.schema import Config
from proxy.http.auth import client_of
from proxy.http.body import read_body
from proxy.http.explore import explorer_of
from proxy.http.state import LEARNING, LearningParts
from proxy.learn.records import LabelRecord, OutcomeRecord, Reward
from proxy.learn.report import policy_learning
from proxy.policies.best_of_k import BestOfKPolicy
from proxy.policies.cascade import CascadePolicy
from proxy.policies.ladder import LadderPolicy
from proxy.policies.route import RoutePolicy
from proxy.policies.spec import StrictModel
from proxy.wire.errors import InvalidRequestError, PermissionDeniedError, ProxyError
from proxy.wire.protocol import invalid_from_validation, parse_json_body


class FeedbackItem(StrictModel):
    """One request's feedback: the reward of the answer received, or rewards by arm."""

    request_id: str = Field(min_length=1, max_length=256)
    reward: Reward | None = None
    arm_rewards: dict[str, Reward] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _has_reward(self) -> FeedbackItem:
        if self.reward is None and not self.arm_rewards:
            raise ValueError("give reward or arm_rewards")
        return self


class FeedbackBatch(StrictModel):
    """``{"feedback": [...]}``."""

    feedback: list[FeedbackItem] = Field(min_length=1)


def _runtime(request: web.Request) -> LearningParts:
    runtime = request.app[LEARNING].runtime
    if runtime is None:
        raise ProxyError(
            "no policy learns (set learn: true on a policy to log its requests)",
            status=404,
            code="learning_off",
        )
    return runtime


def _items(data: Any, max_batch: int) -> tuple[list[FeedbackItem], bool]:
    """The feedback items and whether they came as a batch."""
    batch = isinstance(data, dict) and "feedback" in data
    if batch and isinstance(data["feedback"], list) and len(data["feedback"]) > max_batch:
        raise InvalidRequestError(
            f"{len(data['feedback'])} feedback items in one request; at most {max_batch} "
            "(learning.feedback_max_batch): split the batch",
            param="feedback",
            code="request_too_large",
            status=413,
        )
    try:
        if batch:
            return FeedbackBatch.model_validate(data).feedback, True
        return [FeedbackItem.model_validate(data)], False
    except ValidationError as exc:
        raise invalid_from_validation(exc) from None


def known_arms(config: Config, record: OutcomeRecord) -> set[str]:
    """The arm names feedback may use for ``record``'s policy (what ``x-adaptive-arm`` says)."""
    arms = {record.decision.arm}
    policy = config.policies.get(record.policy)
    if isinstance(policy, RoutePolicy):
        arms |= {"cheap", "expensive"}
    elif isinstance(policy, CascadePolicy):
        arms |= {s.label for s in policy.stages}
    elif isinstance(policy, LadderPolicy):
        arms |= {a.name for a in policy.arms}
    elif isinstance(policy, BestOfKPolicy):
        arms |= {policy.arm_name(n) for n in range(1, policy.n_max + 1)}
    return arms


async def feedback(request: web.Request) -> web.Response:
    """``POST /v1/adaptive/feedback``: labels for logged requests (202: how many accepted)."""
    runtime = _runtime(request)
    data = parse_json_body(await read_body(request))
    items, batch = _items(data, runtime.config.learning.feedback_max_batch)
    client = client_of(request)
    found = await asyncio.gather(*(runtime.log.get(item.request_id) for item in items))
    now = time.time()
    labels = []
    for index, (item, lookup) in enumerate(zip(items, found, strict=True)):
        at = f"feedback[{index}]." if batch else ""
        rid = item.request_id
        if lookup.status == "expired":
            raise ProxyError(
                f"request {rid!r} is past retention (learning.retention_days)",
                status=410,
                code="request_expired",
                param=f"{at}request_id",
            )
        if lookup.record is None:
            raise ProxyError(
                f"no logged request {rid!r} (only learn: true policies are logged)",
                status=404,
                code="request_not_found",
                param=f"{at}request_id",
            )
        record = lookup.record
        if client is not None and not client.is_master and record.key != client.name:
            raise PermissionDeniedError(
                f"request {rid!r} was not made with this key", param=f"{at}request_id"
            )
        arms = known_arms(runtime.config, record)
        unknown = sorted(set(item.arm_rewards) - arms)
        if unknown:
            raise InvalidRequestError(
                f"arm_rewards: policy {record.policy!r} has no arm {unknown[0]!r} "
                f"(its arms: {', '.join(sorted(arms))})",
                param=f"{at}arm_rewards.{unknown[0]}",
            )
        labels.append(
            LabelRecord(
                request_id=rid,
                unix_time_s=now,
                kind="feedback",
                source="feedback",
                arm_rewards=item.arm_rewards,
                reward=item.reward,
                key=client.name if client is not None else None,
            )
        )
    accepted = sum(runtime.log.label(label) for label in labels)
    return _json({"object": "adaptive.feedback", "accepted": accepted}, status=202)


async def learning(request: web.Request) -> web.Response:
    """``GET /v1/adaptive/learning``: labels, head version and scores of each learning policy."""
    client = client_of(request)
    if client is not None and not client.is_master:
        raise PermissionDeniedError("GET /v1/adaptive/learning needs a master key")
    runtime = request.app[LEARNING].runtime
    policies: dict[str, Any] = {}
    if runtime is not None:
        explorer = explorer_of(request.app)
        for name in sorted(runtime.policies):
            spend = await explorer.budget.spent_usd(name) if explorer is not None else 0.0
            policies[name] = await policy_learning(
                runtime.log.store,
                name,
                prior_version=runtime.heads.prior_version,
                explore_spend_usd=spend,
            )
    return _json({"policies": policies})


def _json(data: Any, *, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


def register_learning_routes(app: web.Application) -> None:
    """Attach the feedback and learning-report endpoints."""
    app.router.add_post("/v1/adaptive/feedback", feedback)
    app.router.add_get("/v1/adaptive/learning", learning)
