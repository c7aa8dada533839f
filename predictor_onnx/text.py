"""From an OpenAI ``messages`` list to encoder token ids, by one documented rule.

Normalisation: every message becomes ``"<role>: <text>"``. Roles ``system``/``developer`` render
as ``system``, ``user`` and ``assistant`` as themselves, ``tool``/``function`` as ``tool``, and any
other (or missing) role as ``other``. Content may be a string or a list of parts; only parts of
type ``text`` (or parts carrying a string ``text``) count, joined by a space; images, audio and
other non-text parts are dropped. A message that is not a mapping is ignored.

Truncation (budget ``max_tokens`` including ``[CLS]``/``[SEP]``, so ``B = max_tokens - 2`` word
pieces): the *focus* message is the last ``user`` message (or, without one, the last message).

1. The focus always survives. If it alone exceeds ``B`` it keeps its first ``3B/4`` and last
   ``B/4`` word pieces (the task statement usually opens a prompt, the actual question closes it).
2. The remaining budget goes to the other messages, most recent first: each is taken whole while
   it fits; the first one that does not fit keeps its *last* pieces, and older ones are dropped.
3. Kept pieces are laid out in the original chronological order.

Before tokenising, each message's text is clipped to ``_MAX_CHARS`` characters (head and tail of
the focus, tail of the others), so enormous prompts cost bounded time and never fail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenizers import Tokenizer

_ROLE_NAMES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}
# Generous: a word piece rarely spans more than ~8 characters, so this never cuts what survives.
_MAX_CHARS = 16_384


@dataclass(frozen=True)
class Turn:
    """One normalised message: canonical role, its text, and whether it is the focus."""

    role: str
    text: str
    focus: bool


def content_text(content: Any) -> str:
    """The text of a message ``content``: a string, or the text parts of a list of parts.

    Deliberately not ``proxy.wire.protocol.message_text`` (the server's one definition): this
    package
    imports nothing from the server, and this rule (parts joined by a space, bare string parts
    kept) is what the shipped model was trained on; changing it would change its inputs.
    """
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, bytes | bytearray):
        texts: list[str] = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping):
                text = part.get("text")
                if isinstance(text, str) and part.get("type", "text") == "text":
                    texts.append(text)
        return " ".join(texts)
    return ""


def normalise(messages: Sequence[Any]) -> list[Turn]:
    """Canonical turns of ``messages``; exactly one is the focus unless the list is empty."""
    turns = [
        (_ROLE_NAMES.get(str(m.get("role", "")).lower(), "other"), content_text(m.get("content")))
        for m in messages
        if isinstance(m, Mapping)
    ]
    focus = next((i for i in range(len(turns) - 1, -1, -1) if turns[i][0] == "user"), None)
    if focus is None:
        focus = len(turns) - 1
    return [Turn(role, text, i == focus) for i, (role, text) in enumerate(turns)]


def conversation_text(messages: Sequence[Any]) -> str:
    """The whole normalised conversation as ``role: text`` lines (no truncation)."""
    return "\n".join(f"{t.role}: {t.text}" for t in normalise(messages))


def _clip_chars(text: str, *, keep_head: bool) -> str:
    if len(text) <= _MAX_CHARS:
        return text
    if keep_head:
        head = _MAX_CHARS * 3 // 4
        return text[:head] + " " + text[-(_MAX_CHARS - head) :]
    return text[-_MAX_CHARS:]


class PromptEncoder:
    """Turns ``messages`` lists into padded ``input_ids``/``attention_mask`` batches."""

    def __init__(self, tokenizer: Tokenizer, *, max_tokens: int = 256) -> None:
        if max_tokens < 8:
            raise ValueError("max_tokens must be at least 8")
        self._tok = tokenizer
        self._tok.no_truncation()
        self._tok.no_padding()
        self.max_tokens = max_tokens
        self._cls = self._special_id("[CLS]")
        self._sep = self._special_id("[SEP]")
        self._pad = self._special_id("[PAD]")

    def _special_id(self, token: str) -> int:
        token_id = self._tok.token_to_id(token)
        if token_id is None:
            raise ValueError(f"tokenizer has no {token} token")
        return int(token_id)

    def ids(self, messages: Sequence[Any]) -> list[int]:
        """Token ids for one conversation, ``[CLS] ... [SEP]``, truncated by the module's rule."""
        return self.ids_many([messages])[0]

    def ids_many(self, conversations: Sequence[Sequence[Any]]) -> list[list[int]]:
        """:meth:`ids` of many conversations with one (parallel, Rust) tokenizer call."""
        all_turns = [normalise(m) for m in conversations]
        texts = [
            _clip_chars(f"{t.role}: {t.text}", keep_head=t.focus)
            for turns in all_turns
            for t in turns
        ]
        encoded = self._tok.encode_batch(texts, add_special_tokens=False) if texts else []
        out: list[list[int]] = []
        pos = 0
        for turns in all_turns:
            pieces = [list(e.ids) for e in encoded[pos : pos + len(turns)]]
            pos += len(turns)
            out.append(self._truncate(turns, pieces))
        return out

    def _truncate(self, turns: list[Turn], pieces: list[list[int]]) -> list[int]:
        if not turns:
            return [self._cls, self._sep]
        budget = self.max_tokens - 2
        focus = next(i for i, t in enumerate(turns) if t.focus)
        kept: dict[int, list[int]] = {}
        own = pieces[focus]
        if len(own) > budget:
            tail = budget // 4
            own = own[: budget - tail] + own[len(own) - tail :]
        kept[focus] = own
        left = budget - len(own)
        for i in range(len(turns) - 1, -1, -1):
            if i == focus:
                continue
            if left <= 0:
                break
            piece = pieces[i]
            kept[i] = piece if len(piece) <= left else piece[len(piece) - left :]
            left -= len(kept[i])
        body = [tok for i in sorted(kept) for tok in kept[i]]
        return [self._cls, *body, self._sep]

    def batch(self, batch: Sequence[Sequence[Any]]) -> tuple[Any, Any]:
        """``(input_ids, attention_mask)`` int64 arrays padded to the batch's longest row."""
        import numpy as np

        rows = self.ids_many(batch)
        width = max((len(r) for r in rows), default=2)
        input_ids = np.full((len(rows), width), self._pad, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return input_ids, mask
