"""The executor registry: each policy class picks the executor of its decisions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from proxy.config.schema import Config, load_config_text
from proxy.execute.registry import EXECUTOR_TYPES, Executors
from proxy.observe.metrics import Metrics
from proxy.policies.decision import Decision
from proxy.policies.registry import POLICY_TYPES
from proxy.upstream.client import UpstreamClient
from proxy.upstream.pricing import CostModel

YAML = """
upstreams:
  small: {base_url: "http://127.0.0.1:1/v1", model: small}
  big: {base_url: "http://127.0.0.1:1/v1", model: big}
policies:
  r: {type: route, cheap: small, expensive: big, threshold: 0.1}
  p: {type: passthrough, upstream: big}
  b: {type: best_of_k, upstream: small, lambda: 0.01}
  s:
    type: best_of_k
    upstream: small
    n_max: 8
    predictor_output: p_weak
    sequential: {stop: {kind: vote}}
  c:
    type: cascade
    stages: [{upstream: small, n: 3}, {upstream: big}]
    escalate: {threshold: 0.5}
"""


@pytest.fixture
def config() -> Config:
    return load_config_text(YAML, env={})


@pytest.fixture
async def executors(config: Config) -> AsyncIterator[Executors]:
    async with aiohttp.ClientSession() as session:
        metrics, costs = Metrics(), CostModel(config.upstreams)
        upstreams = UpstreamClient(config.upstreams, session, env={})
        yield Executors.build(upstreams, session, costs, metrics, env={})


def decision(policy: str, n: int = 1) -> Decision:
    return Decision(policy, "v", f"best_of_{n}" if n > 1 else "cheap", "small", n)


def test_every_policy_type_has_an_executor() -> None:
    assert set(EXECUTOR_TYPES) == set(POLICY_TYPES.values())


async def test_each_policy_class_picks_its_executor(config: Config, executors: Executors) -> None:
    policies = config.policies
    pick = executors.for_request
    assert pick(policies["r"], decision("r")) is executors.route
    assert pick(policies["p"], decision("p")) is executors.route
    assert pick(policies["b"], decision("b", n=4)) is executors.best_of_k
    assert pick(policies["b"], decision("b")) is executors.route
    # A sequential section draws in rounds, whatever round one's size.
    assert pick(policies["s"], decision("s")) is executors.sequential
    assert pick(policies["s"], decision("s", n=4)) is executors.sequential
    assert pick(policies["c"], decision("c")) is executors.cascade
    # A bare upstream model: route, or best-of-k for a multi-sample decision.
    assert pick(None, decision("passthrough")) is executors.route
