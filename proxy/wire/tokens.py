"""Offline token counting with tiktoken.

tiktoken normally downloads its BPE files on first use; the proxy must not touch the network
outside its upstreams. litellm's wheel bundles the ``cl100k_base`` and ``o200k_base`` BPE files
(named by tiktoken's cache key), so we build the encoding from those files directly. When they are
absent, a documented approximation (4 characters per token) keeps accounting working.

Counting is CPU work that grows with the text (a 100k-token prompt: ~50 ms; one 1 MB "word":
~0.4 s), so code on the event loop uses the ``*_async`` forms: short texts are counted inline,
longer ones in a worker thread (tiktoken releases the GIL while it encodes, so the loop keeps
serving meanwhile). :func:`warm` builds the encoding (~0.15 s) before the proxy takes requests.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
from pathlib import Path
from typing import Any

from proxy.wire.protocol import message_text

# tiktoken's cache file names are sha1 of the download URL.
_BUNDLED_BPE_FILES = {
    "cl100k_base": "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
    "o200k_base": "fb374d419588a4632f3f557e76b4b70aebbca790",
}
# tiktoken's own cl100k_base split pattern, verbatim (joined to keep lines short).
_PAT_STR = {
    "cl100k_base": "|".join(
        (
            r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)""",
            r"""[^\r\n\p{L}\p{N}]?\p{L}+""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        )
    ),
}
_SPECIAL = {
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
}


def _bundled_bpe_path(name: str) -> Path | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "litellm_core_utils" / "tokenizers" / _BUNDLED_BPE_FILES[name]
    return path if path.is_file() else None


@functools.lru_cache(maxsize=2)
def _encoding(name: str = "cl100k_base") -> Any | None:
    """The tiktoken encoding built from local files, or ``None`` when unavailable offline."""
    if name not in _PAT_STR:
        return None
    path = _bundled_bpe_path(name)
    if path is None:
        return None
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    ranks = load_tiktoken_bpe(str(path))
    return tiktoken.Encoding(
        name=name, pat_str=_PAT_STR[name], mergeable_ranks=ranks, special_tokens=_SPECIAL[name]
    )


# Up to this many characters a count costs a few milliseconds at worst (even as one long word),
# less than handing it to a thread would on a short prompt; longer texts go to a thread.
INLINE_COUNT_CHARS = 16_384


def warm() -> None:
    """Build the encoding now (blocking, ~0.15 s: run it in an executor), not on a first request."""
    _encoding("cl100k_base")


def count_tokens(text: str) -> int:
    """Number of cl100k_base tokens in ``text`` (≈ len/4 when no local BPE file exists)."""
    if not text:
        return 0
    enc = _encoding("cl100k_base")
    if enc is None:
        return max(1, (len(text) + 3) // 4)
    return len(enc.encode(text, disallowed_special=()))


def count_message_tokens(messages: list[dict[str, Any]]) -> int:
    """Prompt tokens of a chat ``messages`` list, with OpenAI's per-message overhead (3 + 3)."""
    total = 3
    for message in messages:
        total += 3
        total += count_tokens(message_text(message.get("content")))
        name = message.get("name")
        if isinstance(name, str):
            total += count_tokens(name) + 1
    return total


def _message_chars(messages: list[dict[str, Any]]) -> int:
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(str(p.get("text", ""))) for p in content if isinstance(p, dict))
        name = message.get("name")
        if isinstance(name, str):
            total += len(name)
    return total


async def count_message_tokens_async(messages: list[dict[str, Any]]) -> int:
    """:func:`count_message_tokens` without holding up the event loop on long conversations."""
    if _message_chars(messages) <= INLINE_COUNT_CHARS:
        return count_message_tokens(messages)
    return await asyncio.to_thread(count_message_tokens, messages)


async def count_tokens_async(text: str) -> int:
    """:func:`count_tokens` without holding up the event loop on long texts."""
    if len(text) <= INLINE_COUNT_CHARS:
        return count_tokens(text)
    return await asyncio.to_thread(count_tokens, text)
