"""Pieces of the cascade executor: logprob evidence and usage summed into a stream."""

from __future__ import annotations

import orjson
import pytest

from proxy.execute.cascade_events import with_cheap_usage
from proxy.execute.cascade_stages import mean_logprob


def test_mean_logprob_of_an_openai_choice() -> None:
    choice = {"logprobs": {"content": [{"logprob": -0.5}, {"logprob": -1.5}, {"token": "x"}]}}
    assert mean_logprob(choice) == pytest.approx(-1.0)
    assert mean_logprob({"logprobs": None}) is None
    assert mean_logprob({}) is None


def test_the_usage_event_adds_the_cheap_stages_tokens() -> None:
    event = b'data: {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5}}\n\n'
    payload = orjson.loads(with_cheap_usage(event, 7, 3)[6:])
    assert payload["usage"] == {"prompt_tokens": 17, "completion_tokens": 8, "total_tokens": 25}
    other = b'data: {"choices": [{"delta": {"content": "usage"}}]}\n\n'
    assert with_cheap_usage(other, 7, 3) == other
