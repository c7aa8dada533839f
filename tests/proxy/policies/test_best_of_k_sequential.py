"""The ``sequential:`` section of ``best_of_k``: its YAML, round one and the prompt's cap."""

from __future__ import annotations

import pytest

from proxy.config.schema import Config, load_config_text
from proxy.policies.base import PolicyContext
from proxy.policies.best_of_k import BestOfKPolicy
from proxy.policies.decision import Decision
from proxy.policies.stopping import VerifierStop, VoteStop
from proxy.wire.errors import ConfigError

BASE = """
upstreams: {{a: {{base_url: "http://x/v1", model: a}}}}
policies:
  s: {{type: best_of_k, upstream: a, n_min: 1, n_max: 16, predictor_output: p_weak, {extra}}}
"""


def policy(extra: str) -> BestOfKPolicy:
    config: Config = load_config_text(BASE.format(extra=extra), env={})
    found = config.policies["s"]
    assert isinstance(found, BestOfKPolicy)
    return found


def decision(n: int, p: float, lambda_: float | None = None) -> Decision:
    return Decision("s", "v", "sequential", "a", n, {"p_weak": p}, lambda_=lambda_)


def test_a_hopeless_prompt_gets_round_one_only_under_a_price() -> None:
    seq = policy("lambda: 0.05, sequential: {first_n: auto, stop: {kind: vote}}")
    # p · efficiency ≤ λ: the next sample cannot pay its price.
    assert seq.sequential_plan(decision(1, 0.03, 0.05)).cap == 1
    assert seq.sequential_plan(decision(3, 0.4, 0.05)).cap == 16
    free = policy("sequential: {first_n: 2, step_n: double, stop: {kind: vote, confidence: 0.8}}")
    plan = free.sequential_plan(decision(2, 0.01))
    assert (plan.first_n, plan.step_n, plan.cap) == (2, "double", 16)
    assert plan.stop == VoteStop(0.8, 2)


def test_stop_rules_from_yaml() -> None:
    verify = policy(
        "reranker: {type: reward, url: 'http://v/score'}, "
        "sequential: {stop: {kind: verifier, accept_score: 0.7}}"
    )
    assert verify.sequential is not None
    assert verify.sequential.stop.rule() == VerifierStop(0.7)
    # Rounds, not one draw: a client's n does not grow round one (the executor registry's test
    # checks that the sequential executor runs it).
    assert not verify.samples_in_one_draw(decision(2, 0.5))
    assert policy("lambda: 0.1").samples_in_one_draw(decision(2, 0.5))
    assert not policy("lambda: 0.1").samples_in_one_draw(decision(1, 0.5))


async def test_round_one_is_the_argmax_for_auto_and_the_given_int_otherwise() -> None:
    class Costs:
        def expected_cost_usd(self, upstream: str, prompt_tokens: int, n: int = 1) -> float:
            return 0.001 * n

    class NoBudgets:
        async def current_lambda(self, name: str, version: str, p: object) -> float | None:
            return None

    ctx = PolicyContext(Costs(), NoBudgets())  # type: ignore[arg-type]
    messages = [{"role": "user", "content": "hi"}]
    auto = policy("lambda: 0.01, sequential: {stop: {kind: vote}}")
    easy = await auto.decide(ctx, "s", "v", {"p_weak": 0.97}, messages)
    hard = await auto.decide(ctx, "s", "v", {"p_weak": 0.3}, messages)
    assert easy.n < hard.n
    fixed = policy("lambda: 0.01, sequential: {first_n: 3, stop: {kind: vote}}")
    assert (await fixed.decide(ctx, "s", "v", {"p_weak": 0.3}, messages)).n == 3


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("sequential: {stop: {kind: verifier}}", "accept_score"),
        ("sequential: {stop: {kind: vote, confidence: 0.4}}", "confidence"),
        ("sequential: {step_n: 0, stop: {kind: vote}}", "step_n"),
        (
            "budget: {kind: mean_samples, target: 3}, sequential: {first_n: 2, stop: {kind: vote}}",
            "first_n: auto",
        ),
    ],
)
def test_bad_sequential_sections_are_rejected(extra: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        policy(extra)
