"""The reranker registry: every reranker ``type`` the YAML accepts builds its reranker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import get_args

import aiohttp
import pytest

from proxy.config.schema import load_config_text
from proxy.execute.rerank import FirstReranker, JudgeReranker, RewardReranker, VoteReranker
from proxy.execute.reranker_registry import (
    RERANKER_TYPES,
    RerankerWiring,
    TracedReranker,
    build_reranker,
)
from proxy.observe.tracing import NO_STEPS
from proxy.policies.spec import RerankerConfig
from proxy.upstream.client import UpstreamClient
from proxy.upstream.pricing import CostModel

YAML = """
upstreams:
  small: {base_url: "http://127.0.0.1:1/v1", model: small}
policies:
  b: {type: best_of_k, upstream: small, lambda: 0.01}
"""


@pytest.fixture
async def wiring() -> AsyncIterator[RerankerWiring]:
    config = load_config_text(YAML, env={})
    async with aiohttp.ClientSession() as session:
        upstreams = UpstreamClient(config.upstreams, session, env={})
        yield RerankerWiring(upstreams, session, CostModel(config.upstreams), env={})


def test_every_reranker_type_has_a_builder() -> None:
    accepted = get_args(RerankerConfig.model_fields["type"].annotation)
    assert set(RERANKER_TYPES) == set(accepted)


async def test_each_type_builds_its_reranker(wiring: RerankerWiring) -> None:
    specs = {
        "first": (RerankerConfig(type="first"), FirstReranker),
        "vote": (RerankerConfig(type="vote"), VoteReranker),
        "judge": (RerankerConfig(type="judge", upstream="small"), JudgeReranker),
        "reward": (RerankerConfig(type="reward", url="http://127.0.0.1:1/score"), RewardReranker),
    }
    assert set(specs) == set(RERANKER_TYPES)
    for spec, expected in specs.values():
        assert type(build_reranker(spec, wiring)) is expected


async def test_with_tracing_only_rerankers_that_call_out_are_wrapped(
    wiring: RerankerWiring,
) -> None:
    traced = replace(wiring, steps=NO_STEPS)
    judge = build_reranker(RerankerConfig(type="judge", upstream="small"), traced)
    reward = build_reranker(RerankerConfig(type="reward", url="http://127.0.0.1:1/s"), traced)
    assert type(judge) is type(reward) is TracedReranker
    assert (judge.name, reward.name) == ("judge", "reward")  # metrics still name the type
    assert type(build_reranker(RerankerConfig(type="vote"), traced)) is VoteReranker
    # The wrapper answers as the reranker does: here the endpoint is down, the order is kept.
    result = await reward.rerank([{"role": "user", "content": "q"}], ["a", "b"])
    assert result.failed and result.order == (0, 1) and result.reranker == "reward"
