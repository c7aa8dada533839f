"""The ``learning:`` section and ``learn: true``: defaults, bounds, references, `check`."""

from __future__ import annotations

import pytest

from proxy.config.schema import load_config_text
from proxy.wire.errors import ConfigError

BASE = """
upstreams:
  cheap: {base_url: "http://127.0.0.1:1/v1", model: small}
  strong: {base_url: "http://127.0.0.1:1/v1", model: big}
policies:
  auto: {type: route, cheap: cheap, expensive: strong, threshold: 0.2, learn: true}
  direct: {type: passthrough, upstream: cheap}
"""


def problems(text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, env={})
    return dict(info.value.problems)


def test_defaults_and_learn_flag() -> None:
    config = load_config_text(BASE, env={})
    assert config.policies["auto"].learn is True
    assert config.policies["direct"].learn is False
    learning = config.learning
    assert learning.store is None and learning.explore_fraction == 0
    assert learning.feedback_max_batch >= 1 and learning.poll_s > 0


def test_every_learning_problem_is_named_by_its_path() -> None:
    text = BASE + (
        "learning: {retention_days: 0, explore_fraction: 1.5, judge: nowhere, typo_key: 1,"
        " feedback_max_batch: 0}\n"
    )
    found = problems(text)
    for path in (
        "learning.retention_days",
        "learning.explore_fraction",
        "learning.typo_key",
        "learning.feedback_max_batch",
    ):
        assert path in found, found


def test_judge_must_be_an_upstream_and_passthrough_cannot_learn() -> None:
    text = BASE.replace("upstream: cheap}", "upstream: cheap, learn: true}") + (
        "learning: {judge: nowhere}\n"
    )
    found = problems(text)
    assert "unknown upstream 'nowhere'" in found["learning.judge"]
    assert "policies.direct.learn" in found
