"""Sliced validation of allocation batches reports what validating the whole body reports."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from proxy.http.allocate_input import VALIDATE_SLICE, validate_allocate
from proxy.wire.errors import InvalidRequestError
from proxy.wire.protocol import AllocateRequest, invalid_from_validation

COUNT = 2 * VALIDATE_SLICE + 7  # several slices, the last one partial


def batch(**changes: Any) -> dict[str, Any]:
    requests: list[Any] = [
        {"messages": [{"role": "user", "content": f"question {i}"}]} for i in range(COUNT)
    ]
    return {"model": "auto", "budget": 10, "requests": requests, **changes}


def whole(raw: dict[str, Any]) -> tuple[str, str | None]:
    """The 400 of validating the body in one call."""
    with pytest.raises(ValidationError) as caught:
        AllocateRequest.model_validate(raw)
    error = invalid_from_validation(caught.value)
    return str(error), error.param


async def sliced(raw: dict[str, Any]) -> tuple[str, str | None]:
    with pytest.raises(InvalidRequestError) as caught:
        await validate_allocate(raw)
    return str(caught.value), caught.value.param


async def test_a_valid_batch_gives_the_same_plan_and_conversations() -> None:
    raw = batch()
    raw["requests"][VALIDATE_SLICE + 1]["messages"].insert(
        0, {"role": "system", "content": [{"type": "text", "text": "be brief"}], "name": "s"}
    )
    plan, conversations = await validate_allocate(raw)
    expected = AllocateRequest.model_validate(raw)
    assert plan == expected
    assert conversations == [[m.model_dump() for m in r.messages] for r in expected.requests]


def bad_prompt(index: int) -> dict[str, Any]:
    raw = batch()
    raw["requests"][index] = {"messages": []}
    return raw


@pytest.mark.parametrize(
    "raw",
    [
        bad_prompt(VALIDATE_SLICE + 3),  # a prompt in a later slice: its index in `param`
        bad_prompt(COUNT - 1),
        {**bad_prompt(3), "extra": 1},  # a bad prompt is reported before an unknown key
        batch(extra=1),
        {**bad_prompt(5), "budget": -1},  # the envelope's fields before the prompts
        {**bad_prompt(5), "model": ""},
        batch(budget_unit="tokens"),
        {**batch(), "requests": batch()["requests"] * 10},  # over the list's limit
    ],
)
async def test_errors_are_those_of_validating_the_whole_body(raw: dict[str, Any]) -> None:
    assert await sliced(raw) == whole(raw)
