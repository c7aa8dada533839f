"""Normalisation and truncation of ``messages``: the documented rule, and bad input."""

from __future__ import annotations

from typing import Any

from predictor_onnx.text import PromptEncoder, content_text, conversation_text, normalise


def test_roles_are_canonical_and_unknown_roles_become_other() -> None:
    turns = normalise(
        [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": "hi"},
            {"role": "wizard", "content": "abracadabra"},
            {"role": "function", "content": "{}"},
            {"content": "no role at all"},
            "not a message",
        ]
    )
    assert [t.role for t in turns] == ["system", "user", "other", "tool", "other"]
    assert [t.focus for t in turns] == [False, True, False, False, False]


def test_list_content_keeps_only_text_parts() -> None:
    parts = [
        {"type": "text", "text": "what is"},
        {"type": "image_url", "image_url": {"url": "data:..."}},
        {"type": "text", "text": "this?"},
    ]
    assert content_text(parts) == "what is this?"
    assert content_text([{"type": "image_url", "image_url": {"url": "x"}}]) == ""
    assert content_text(None) == ""
    assert content_text(42) == ""


def test_without_a_user_turn_the_last_message_is_the_focus() -> None:
    turns = normalise([{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}])
    assert [t.focus for t in turns] == [False, True]


def test_conversation_text_has_role_markers() -> None:
    text = conversation_text([{"role": "user", "content": "2+2?"}])
    assert text == "user: 2+2?"


def test_empty_and_non_text_inputs_encode_to_cls_sep(prompt_encoder: PromptEncoder) -> None:
    assert len(prompt_encoder.ids([])) == 2
    only_image: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
    ]
    ids = prompt_encoder.ids(only_image)
    assert 2 < len(ids) <= prompt_encoder.max_tokens  # the role marker remains


def test_truncation_keeps_the_last_user_turn(prompt_encoder: PromptEncoder) -> None:
    history = [
        {"role": "user", "content": "old question " * 200},
        {"role": "assistant", "content": "long answer " * 200},
    ]
    last = {"role": "user", "content": "zebra quokka"}
    ids = prompt_encoder.ids([*history, last])
    assert len(ids) == prompt_encoder.max_tokens
    tail = prompt_encoder.ids([last])[1:-1]
    assert ids[-1 - len(tail) : -1] == tail


def test_an_enormous_focus_keeps_its_head_and_tail(prompt_encoder: PromptEncoder) -> None:
    content = "alpha " + "filler " * 200_000 + "omega"
    ids = prompt_encoder.ids([{"role": "user", "content": content}])
    assert len(ids) == prompt_encoder.max_tokens
    head = prompt_encoder.ids([{"role": "user", "content": "alpha"}])[1:-1]
    omega = prompt_encoder.ids([{"role": "user", "content": "omega"}])[-2]
    assert ids[1 : 1 + len(head)] == head
    assert ids[-2] == omega


def test_batches_pad_to_the_longest_row(prompt_encoder: PromptEncoder) -> None:
    ids, mask = prompt_encoder.batch(
        [[{"role": "user", "content": "a"}], [{"role": "user", "content": "a b c d e f"}]]
    )
    assert ids.shape == mask.shape
    assert ids.shape[1] == int(mask[1].sum())
    assert int(mask[0].sum()) < ids.shape[1]
