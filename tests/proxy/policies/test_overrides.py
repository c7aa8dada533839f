"""Request overrides of an arm: how they meet a client's request, and what ``check`` refuses."""

from __future__ import annotations

from typing import Any

from proxy.config.schema import parse_config_text
from proxy.policies.overrides import apply_overrides, apply_responses_overrides, arm_key


def test_an_override_fills_in_what_the_client_did_not_set() -> None:
    body = {"messages": [], "temperature": 0.2}
    sent = apply_overrides(body, {"reasoning_effort": "high"}, override_client=False)
    assert sent == {"messages": [], "temperature": 0.2, "reasoning_effort": "high"}
    assert "reasoning_effort" not in body  # the client's request is not edited in place


def test_a_clients_own_value_wins_unless_the_policy_overrides_it() -> None:
    body = {"reasoning_effort": "medium", "max_tokens": 50}
    overrides = {"reasoning_effort": "high", "max_completion_tokens": 4000}
    kept = apply_overrides(body, overrides, override_client=False)
    assert kept == body
    forced = apply_overrides(body, overrides, override_client=True)
    # max_tokens is the client's spelling of max_completion_tokens: both may not be sent.
    assert forced == {"reasoning_effort": "high", "max_completion_tokens": 4000}


def test_a_thinking_budget_yields_to_a_clients_thinking() -> None:
    body: dict[str, Any] = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    assert apply_overrides(body, {"thinking_budget_tokens": 8000}, override_client=False) == body
    forced = apply_overrides(body, {"thinking_budget_tokens": 8000}, override_client=True)
    assert forced == {"thinking_budget_tokens": 8000}


def test_arms_on_one_upstream_are_told_apart_by_their_overrides() -> None:
    assert arm_key("o", None) == arm_key("o", {}) == "o"
    low = arm_key("o", {"reasoning_effort": "low"})
    assert low != arm_key("o", {"reasoning_effort": "high"})
    both = {"verbosity": "low", "reasoning_effort": "low"}
    assert arm_key("o", both) == arm_key("o", dict(reversed(both.items())))


CONFIG = """
upstreams:
  o-model: {base_url: "http://127.0.0.1:9/v1", model: o4-mini}
  claude: {provider: anthropic, model: claude-sonnet-4}
policies:
  effort:
    type: route
    cheap: {upstream: o-model, overrides: {reasoning_effort: low}}
    expensive: {upstream: o-model, overrides: {reasoning_effort: %(effort)s}}
    threshold: 0.5
  ladder:
    type: ladder
    lambda: 1
    override_client: true
    arms:
      - {name: quick, upstream: o-model, predictor_output: gain, overrides: {%(key)s: 100}}
      - {name: deep, upstream: %(deep)s, predictor_output: gain,
         overrides: {thinking_budget_tokens: 8000}}
"""


def problems_of(**values: str) -> list[tuple[str, str]]:
    text = CONFIG % ({"effort": "high", "key": "max_completion_tokens", "deep": "claude"} | values)
    return parse_config_text(text, env={}).problems


def test_valid_overrides_pass_check() -> None:
    assert problems_of() == []


def test_check_names_every_bad_override_by_its_yaml_path() -> None:
    problems = dict(problems_of(effort="extreme", key="temperature"))
    assert problems.keys() == {
        "policies.effort.expensive.overrides.reasoning_effort",
        "policies.ladder.arms.0.overrides.temperature",
    }
    assert "'low'" in problems["policies.effort.expensive.overrides.reasoning_effort"]
    allowed = problems["policies.ladder.arms.0.overrides.temperature"]
    assert allowed.startswith("unknown override (allowed: reasoning_effort, max_completion_tokens")


def test_a_thinking_budget_needs_an_upstream_that_takes_one() -> None:
    problems = dict(problems_of(deep="o-model"))
    message = problems["policies.ladder.arms.1.overrides.thinking_budget_tokens"]
    assert "use reasoning_effort" in message


def test_an_arm_written_with_overrides_names_an_upstream_that_exists() -> None:
    text = CONFIG.replace(
        "{upstream: o-model, overrides: {reasoning_effort: low}}", "{upstream: nope}"
    )
    problems = dict(
        parse_config_text(
            text % {"effort": "high", "key": "verbosity", "deep": "claude"}, env={}
        ).problems
    )
    assert "policies.effort.cheap.upstream" in problems
    assert "policies.ladder.arms.0.overrides.verbosity" in problems  # 100 is not low/medium/high


def test_a_responses_body_gets_the_overrides_in_its_own_spelling() -> None:
    body: dict[str, Any] = {"input": "hi", "text": {"format": {"type": "text"}}}
    overrides = {"reasoning_effort": "high", "max_completion_tokens": 500, "verbosity": "low"}
    sent = apply_responses_overrides(body, overrides, override_client=False)
    assert sent == {
        "input": "hi",
        "text": {"format": {"type": "text"}, "verbosity": "low"},
        "reasoning": {"effort": "high"},
        "max_output_tokens": 500,
    }
    assert body == {"input": "hi", "text": {"format": {"type": "text"}}}
    client = {"input": "hi", "reasoning": {"effort": "minimal", "summary": "auto"}}
    kept = apply_responses_overrides(client, overrides, override_client=False)
    assert kept["reasoning"] == {"effort": "minimal", "summary": "auto"}
    forced = apply_responses_overrides(client, overrides, override_client=True)
    assert forced["reasoning"] == {"effort": "high", "summary": "auto"}
