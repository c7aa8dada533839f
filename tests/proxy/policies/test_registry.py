"""The policy registry: YAML ``type`` → class, and the config's union built from it."""

from __future__ import annotations

import pytest

from proxy.config.schema import load_config_text
from proxy.policies.base import BasePolicy
from proxy.policies.registry import POLICY_TYPES
from proxy.wire.errors import ConfigError

YAML = """
upstreams:
  small: {base_url: "http://127.0.0.1:1/v1", model: small}
  big: {base_url: "http://127.0.0.1:1/v1", model: big}
policies:
  r: {type: route, cheap: small, expensive: big, threshold: 0.1, fallback: small}
  p: {type: passthrough, upstream: big}
  b: {type: best_of_k, upstream: small, lambda: 0.01, fallback: big}
  l:
    type: ladder
    lambda: 1.0
    arms:
      - {name: one, upstream: small, predictor_output: p_weak}
      - {name: four, upstream: small, n: 4, predictor_output: p_weak}
"""


def test_each_yaml_type_loads_as_its_registered_class() -> None:
    config = load_config_text(YAML, env={})
    for name, kind in (("r", "route"), ("p", "passthrough"), ("b", "best_of_k"), ("l", "ladder")):
        policy = config.policies[name]
        assert type(policy) is POLICY_TYPES[kind]
        assert isinstance(policy, BasePolicy)


def test_fallbacks_and_defaults_come_from_the_policy() -> None:
    config = load_config_text(YAML, env={})
    assert config.policies["r"].fallback_upstream() == "small"
    # Best-of-k tolerates failed samples itself; its YAML fallback is checked but not used.
    assert config.policies["b"].fallback_upstream() is None
    default = config.policies["l"].default_decision("l", "v1", "predictor_timeout")
    assert (default.arm, default.n, default.fallback_reason) == ("one", 1, "predictor_timeout")


def test_an_unknown_type_names_the_registered_ones() -> None:
    bad = YAML.replace("type: passthrough", "type: waterfall")
    with pytest.raises(ConfigError) as raised:
        load_config_text(bad, env={})
    message = str(raised.value)
    assert "policies.p" in message
    for kind in POLICY_TYPES:
        assert kind in message
