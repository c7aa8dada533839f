"""Request bodies: the nesting limit is exact at its boundary
(proxy.wire.protocol.parse_json_body)."""

from __future__ import annotations

import pytest

from proxy.wire.errors import InvalidRequestError
from proxy.wire.protocol import MAX_JSON_DEPTH, parse_json_body


def body_nesting(depth: int) -> bytes:
    """A JSON object (one level) whose ``x`` holds ``depth - 1`` nested lists."""
    inner = depth - 1
    return b'{"x":' + b"[" * inner + b"1" + b"]" * inner + b"}"


def test_a_body_exactly_at_the_limit_is_accepted() -> None:
    assert parse_json_body(body_nesting(MAX_JSON_DEPTH))["x"] is not None


def test_one_level_more_is_refused() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_json_body(body_nesting(MAX_JSON_DEPTH + 1))
    assert caught.value.code == "json_too_deep"


def test_many_shallow_containers_are_accepted() -> None:
    body = b'{"x":[' + b",".join([b"[{}]"] * 100_000) + b"]}"
    assert len(parse_json_body(body)["x"]) == 100_000
