"""The ``/v1/adaptive/allocate`` body, validated without holding up the event loop.

A batch carries up to 10,000 prompts. Pydantic validates a list in one call that holds the GIL
(about 35 ms for 10,000 one-line prompts, and more on a busy machine), and dumping the messages
back to dicts costs as much again, so the prompts are validated and dumped a slice at a time,
with the loop serving other requests in between. The plan, and the first error reported, are
those of validating :class:`~proxy.wire.protocol.AllocateRequest` in one go.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import TypeAdapter, ValidationError

from proxy.wire.errors import InvalidRequestError
from proxy.wire.protocol import AllocateItem, AllocateRequest, ChatMessage, invalid_from_validation
from proxy.wire.responses_api import input_messages, is_responses_shaped

#: Prompts validated (and dumped) between two turns of the event loop.
VALIDATE_SLICE = 500

_item: TypeAdapter[AllocateItem] = TypeAdapter(AllocateItem)
# Stands in for every prompt while the envelope (model, budget, unit, list length) is checked.
_PLACEHOLDER = AllocateItem(messages=[ChatMessage(role="user", content="")])
# Errors pydantic reports before those of the prompts; unknown keys come after them.
_BEFORE_PROMPTS = frozenset({"model", "budget", "budget_unit"})


def _chat_shaped(item: Any, index: int) -> Any:
    """A prompt given Responses-style (``input``/``instructions``) as chat ``messages``."""
    if not isinstance(item, dict) or not is_responses_shaped(item):
        return item
    rest = {k: v for k, v in item.items() if k not in ("input", "instructions")}
    try:
        return {**rest, "messages": input_messages(item, strict=False)}
    except InvalidRequestError as error:
        param = f"requests[{index}].{error.param}" if error.param else f"requests[{index}]"
        raise InvalidRequestError(f"requests[{index}].{error.message}", param=param) from None


def _conversation(item: AllocateItem) -> list[dict[str, Any]]:
    return [m.model_dump() for m in item.messages]


async def validate_allocate(
    raw: dict[str, Any],
) -> tuple[AllocateRequest, list[list[dict[str, Any]]]]:
    """The validated plan and each prompt's messages as dicts; a 400 on the first problem.

    A prompt may be chat-shaped (``messages``) or Responses-shaped (``input``, ``instructions``).
    """
    requests = raw.get("requests")
    if isinstance(requests, list) and any(
        isinstance(r, dict) and "messages" not in r for r in requests
    ):
        requests = [_chat_shaped(item, index) for index, item in enumerate(requests)]
        raw = {**raw, "requests": requests}
    if not isinstance(requests, list) or len(requests) <= VALIDATE_SLICE:
        try:
            plan = AllocateRequest.model_validate(raw)
        except ValidationError as exc:
            raise invalid_from_validation(exc) from None
        return plan, [_conversation(item) for item in plan.requests]
    envelope: AllocateRequest | None = None
    envelope_error: ValidationError | None = None
    try:
        envelope = AllocateRequest.model_validate(
            {**raw, "requests": [_PLACEHOLDER] * len(requests)}
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]["loc"]
        if first[0] in _BEFORE_PROMPTS or tuple(first) == ("requests",):
            raise invalid_from_validation(exc) from None
        envelope_error = exc  # unknown keys: reported after any bad prompt, as pydantic does
    items: list[AllocateItem] = []
    conversations: list[list[dict[str, Any]]] = []
    for start in range(0, len(requests), VALIDATE_SLICE):
        for index in range(start, min(start + VALIDATE_SLICE, len(requests))):
            try:
                item = _item.validate_python(requests[index])
            except ValidationError as exc:
                raise invalid_from_validation(exc, at=("requests", index)) from None
            items.append(item)
            conversations.append(_conversation(item))
        await asyncio.sleep(0)
    if envelope is None:
        assert envelope_error is not None
        raise invalid_from_validation(envelope_error) from None
    return envelope.model_copy(update={"requests": items}), conversations
