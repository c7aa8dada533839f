"""A mixed workload for the dashboard tests: route, best-of-k and cascade policies on the replay
upstream, sent through the official SDK, and what the responses said about each request."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from openai import AsyncOpenAI

from proxy.config.schema import Config, load_config_text
from proxy.decide.prediction import HashPredictor
from replay.store import ReplayStore
from tests.replay_helpers import replay_upstreams

MASTER = "sk-master-dashboard-0123456789"
ENV = {"DASHBOARD_MASTER_KEY": MASTER}
HARD = "Janet’s ducks lay 16 eggs"

POLICY = """
{auth}
upstreams:
{upstreams}
policies:
  auto: {{type: route, cheap: mixtral, expensive: gpt-4, threshold: 0.1}}
  budgeted: {{type: route, cheap: mixtral, expensive: gpt-4,
              budget: {{kind: fraction_expensive, target: 0.3}}}}
  vote: {{type: best_of_k, upstream: pool, n_max: 6, predictor_output: p_weak,
          reranker: {{type: vote}}}}
  seq:
    type: best_of_k
    upstream: pool
    n_max: 6
    predictor_output: p_weak
    reranker: {{type: vote}}
    sequential: {{first_n: 2, step_n: 1, stop: {{kind: vote, confidence: 0.9}}}}
  casc:
    type: cascade
    stages: [{{upstream: mixtral}}, {{upstream: checker}}, {{upstream: gpt-4}}]
    escalate: {{threshold: 0.5}}
{cache}
"""
AUTH = """server:
  auth: {master_key_envs: [DASHBOARD_MASTER_KEY]}"""


def dashboard_config(
    upstream_url: str, *, auth: bool = False, redis_url: str | None = None
) -> Config:
    """The three policies; with ``auth``, a master key in ``ENV``; with Redis, shared stats."""
    text = POLICY.format(
        upstreams=replay_upstreams(upstream_url, pool=True),
        auth=AUTH if auth else "",
        cache=f'cache: {{redis_url: "{redis_url}"}}' if redis_url else "",
    )
    return load_config_text(text, env=ENV)


def steering() -> HashPredictor:
    """The hard question goes to the expensive arm; everything else stays cheap."""
    return HashPredictor(
        {HARD: {"p_weak": 0.2, "p_strong": 0.9}, "": {"p_weak": 0.8, "p_strong": 0.82}}
    )


@dataclass
class Sent:
    """What the responses said: requests and arms per policy, cost and samples drawn."""

    requests: Counter[str] = field(default_factory=Counter)
    arms: dict[str, Counter[str]] = field(default_factory=dict)
    cost_usd: dict[str, float] = field(default_factory=dict)

    def add(self, policy: str, arm: str, cost_usd: float) -> None:
        self.requests[policy] += 1
        self.arms.setdefault(policy, Counter())[arm] += 1
        self.cost_usd[policy] = self.cost_usd.get(policy, 0.0) + cost_usd


def gsm8k_messages(store: ReplayStore, count: int) -> list[list[Any]]:
    """``count`` GSM8K conversations the pool and every fixed upstream can answer, the hard one
    first."""
    records = [
        r
        for r in store.records()
        if r.dataset == "gsm8k" and "6b_finetuning" in r.responses and HARD not in str(r.messages)
    ]
    hard = next(r for r in store.records() if HARD in str(r.messages))
    return [[dict(m) for m in r.messages] for r in [hard, *records[: count - 1]]]


async def send_workload(client: AsyncOpenAI, store: ReplayStore) -> Sent:
    """5 route requests (one hard, one streamed), 4 budgeted route, 3 best-of-k (one hard), 3
    sequential best-of-k and 4 cascade requests."""
    sent = Sent()
    conversations = gsm8k_messages(store, 5)
    for i, messages in enumerate(conversations):
        if i == 1:
            stream = await client.chat.completions.create(
                model="auto",
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
            )
            async for _ in stream:
                pass
            # A stream's cost is not in its body: the arm says it (cheap, steered).
            sent.add("auto", "cheap", 0.0)
            continue
        raw = await client.chat.completions.with_raw_response.create(
            model="auto",
            messages=messages,
        )
        body = raw.parse()
        sent.add("auto", raw.headers["x-adaptive-arm"], body.model_extra["adaptive"]["cost_usd"])  # type: ignore[index]
    for policy, conversations_of in (
        ("budgeted", conversations[1:5]),
        ("vote", conversations[0:3]),
        ("seq", conversations[0:3]),
        ("casc", conversations[1:5]),
    ):
        for messages in conversations_of:
            raw = await client.chat.completions.with_raw_response.create(
                model=policy,
                messages=messages,
            )
            body = raw.parse()
            adaptive = body.model_extra["adaptive"]  # type: ignore[index]
            sent.add(policy, raw.headers["x-adaptive-arm"], adaptive["cost_usd"])
    return sent
