"""The Responses API's event stream, built from text and tool-call deltas.

A Responses stream is SSE with named events (``event: response.output_text.delta`` then its
``data:``), each numbered by ``sequence_number``: ``response.created`` and
``response.in_progress``; per output item ``response.output_item.added``, then its content
(``response.content_part.added`` and ``response.output_text.delta`` for a message,
``response.function_call_arguments.delta`` for a function call), its ``….done`` events and
``response.output_item.done``; finally ``response.completed`` (or ``response.incomplete``) with
the whole response. There is no ``[DONE]``. :class:`ResponseEventBuilder` produces exactly that
sequence; the proxy feeds it a chat completion's chunks, the replay upstream its recorded text.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from proxy.wire.responses_api import message_item, new_id


def named_event(payload: dict[str, Any]) -> bytes:
    """One SSE event named after its payload's ``type``."""
    return (
        b"event: " + str(payload["type"]).encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
    )


def event_payload(event: bytes) -> dict[str, Any] | None:
    """The JSON object of an SSE event's ``data:`` line (``None`` for anything else)."""
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            try:
                payload = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                return None
            return payload if isinstance(payload, dict) else None
    return None


class ResponseEventBuilder:
    """The events of one streamed response, in order; :attr:`output` is what was streamed."""

    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response
        self.output: list[dict[str, Any]] = []
        self._sequence = 0
        self._message: dict[str, Any] | None = None
        self._text: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return named_event(payload)

    def start(self) -> list[bytes]:
        """``response.created`` and ``response.in_progress``."""
        snapshot = {**copy.deepcopy(self.response), "status": "in_progress", "output": []}
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def text(self, delta: str) -> list[bytes]:
        """A piece of the answer's text (opening the message item on the first)."""
        events = []
        if self._message is None:
            self._message = message_item(new_id("msg"), "", "in_progress")
            self._message["content"] = []
            events.append(self._added(self._message))
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append(self._event("response.content_part.added", **self._at(), part=part))
        self._text.append(delta)
        events.append(
            self._event("response.output_text.delta", **self._at(), delta=delta, logprobs=[])
        )
        return events

    def tool_call(
        self, index: int, *, call_id: str | None, name: str | None, arguments: str
    ) -> list[bytes]:
        """A piece of tool call ``index`` (opening its ``function_call`` item on the first)."""
        events = []
        item = self._calls.get(index)
        if item is None:
            item = {
                "type": "function_call",
                "id": new_id("fc"),
                "call_id": call_id or new_id("call"),
                "name": name or "",
                "arguments": "",
                "status": "in_progress",
            }
            self._calls[index] = item
            events.append(self._added(item))
        if arguments:
            item["arguments"] += arguments
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=self._index(item),
                    delta=arguments,
                )
            )
        return events

    def finish(self, final: dict[str, Any]) -> list[bytes]:
        """The ``….done`` events of every item, then the terminal event with ``final``.

        ``final`` is the whole response but its ``output``, which is what was streamed.
        """
        events = []
        status = "completed" if final.get("status", "completed") == "completed" else "incomplete"
        for index, item in enumerate(self.output):
            if item is self._message:
                text = "".join(self._text)
                done = message_item(item["id"], text, status)
                part = done["content"][0]
                at = {"item_id": item["id"], "output_index": index, "content_index": 0}
                events.append(
                    self._event("response.output_text.done", **at, text=text, logprobs=[])
                )
                events.append(self._event("response.content_part.done", **at, part=part))
                self.output[index] = done
            else:
                item["status"] = "completed"
                events.append(
                    self._event(
                        "response.function_call_arguments.done",
                        item_id=item["id"],
                        output_index=index,
                        arguments=item["arguments"],
                    )
                )
            events.append(
                self._event(
                    "response.output_item.done", output_index=index, item=self.output[index]
                )
            )
        final = {**final, "output": self.output}
        kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
        events.append(self._event(kind, response=final))
        return events

    def error(self, error: dict[str, Any]) -> bytes:
        """An ``error`` event (the stream ends after it)."""
        return self._event(
            "error",
            code=error.get("code"),
            message=error.get("message"),
            param=error.get("param"),
        )

    def _added(self, item: dict[str, Any]) -> bytes:
        self.output.append(item)
        return self._event(
            "response.output_item.added", output_index=len(self.output) - 1, item=dict(item)
        )

    def _index(self, item: dict[str, Any]) -> int:
        # By identity: two items may be equal (two calls with the same arguments).
        return next(i for i, seen in enumerate(self.output) if seen is item)

    def _at(self) -> dict[str, Any]:
        assert self._message is not None
        return {
            "item_id": self._message["id"],
            "output_index": self._index(self._message),
            "content_index": 0,
        }
