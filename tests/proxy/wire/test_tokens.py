"""Token counts on the event loop: the async forms count exactly what the plain ones do."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.wire.tokens import (
    INLINE_COUNT_CHARS,
    count_message_tokens,
    count_message_tokens_async,
    count_tokens,
    count_tokens_async,
)

LONG = "Retrieved passage: the proxy routes each prompt. " * (INLINE_COUNT_CHARS // 20)


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "What is 17 * 23?"}],
        [{"role": "system", "content": LONG}, {"role": "user", "content": "Summarise."}],
        [{"role": "user", "content": [{"type": "text", "text": LONG}], "name": "reader"}],
        [{"role": "user", "content": "a" * (4 * INLINE_COUNT_CHARS)}],  # one very long word
    ],
)
async def test_async_message_counts_equal_the_plain_ones(messages: list[dict[str, Any]]) -> None:
    assert await count_message_tokens_async(messages) == count_message_tokens(messages)


@pytest.mark.parametrize("text", ["", "short answer", LONG])
async def test_async_text_counts_equal_the_plain_ones(text: str) -> None:
    assert await count_tokens_async(text) == count_tokens(text)
