"""OpenAI wire models and SSE framing.

Models are permissive (``extra="allow"``): a field OpenAI adds tomorrow passes through to the
upstream untouched. Validation checks only what the proxy itself reads or acts on, with OpenAI's
types and ranges and no coercion (``n: "3"``, ``n: 3.0``, ``stream: 1`` are 400s naming the
field, not values the upstream later refuses or the proxy misreads), and the request that is
forwarded is the client's own dict (with ``model`` swapped), never a re-serialised model, so
nothing is lost or reordered on the way.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic_core import PydanticCustomError

from proxy.wire.errors import InvalidRequestError

KNOWN_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class ContentPart(BaseModel):
    """One part of multi-part content (``text``, ``image_url``, ``input_audio``, …)."""

    model_config = ConfigDict(extra="allow")
    type: str


_parts_adapter: TypeAdapter[list[ContentPart]] = TypeAdapter(list[ContentPart])


class ChatMessage(BaseModel):
    """A chat message; content may be a string, a list of parts, or null (tool calls)."""

    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[ContentPart] | None = None

    @field_validator("content", mode="wrap")
    @classmethod
    def _content(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # Validated here rather than as a union, whose errors name the union's members
        # (``messages[0].content.str``) instead of the field the client wrote.
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list):
            return _parts_adapter.validate_python(value)  # errors keep their [i].type path
        raise PydanticCustomError(
            "content",
            "must be a string, an array of content parts, or null, not {kind}",
            {"kind": _json_type_name(value)},
        )


class StreamOptions(BaseModel):
    """``stream_options``: the proxy acts on ``include_usage``."""

    model_config = ConfigDict(extra="allow")
    include_usage: StrictBool | None = None


# OpenAI's types and ranges; null is accepted wherever OpenAI accepts it (the default applies).
_Count = Annotated[StrictInt, Field(ge=1)]
_INT64 = 2**63


class ChatCompletionRequest(BaseModel):
    """The fields of ``POST /v1/chat/completions`` the proxy reads or acts on; the rest ride
    along unchecked."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    n: Annotated[StrictInt, Field(ge=1, le=128)] | None = None
    temperature: Annotated[StrictFloat, Field(ge=0, le=2)] | None = None
    top_p: Annotated[StrictFloat, Field(ge=0, le=1)] | None = None
    max_tokens: _Count | None = None
    max_completion_tokens: _Count | None = None
    seed: Annotated[StrictInt, Field(ge=-_INT64, lt=_INT64)] | None = None


class AllocateItem(BaseModel):
    """One prompt of an allocation batch."""

    model_config = ConfigDict(extra="allow")
    messages: list[ChatMessage] = Field(min_length=1)


class AllocateRequest(BaseModel):
    """``POST /v1/adaptive/allocate``: plan a total budget over a batch of prompts."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)
    budget: float = Field(ge=0)
    budget_unit: Literal["samples", "usd"] = "samples"
    requests: list[AllocateItem] = Field(min_length=1, max_length=10_000)


_chat_adapter: TypeAdapter[ChatCompletionRequest] = TypeAdapter(ChatCompletionRequest)


def _param_of(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_JSON_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),  # before int: a bool is an int in Python, never in JSON
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (list, "an array"),
    (dict, "an object"),
    (type(None), "null"),
)


def _json_type_name(value: Any) -> str:
    return next((name for kind, name in _JSON_TYPE_NAMES if isinstance(value, kind)), "a value")


def invalid_from_validation(
    exc: ValidationError, *, at: tuple[int | str, ...] = ()
) -> InvalidRequestError:
    """The first schema violation as a 400 with ``param`` set to its path (under ``at``)."""
    err = exc.errors(include_url=False)[0]
    param = _param_of((*at, *err["loc"]))
    message = str(err["msg"])
    if err["type"] == "model_type":
        message = "Input should be an object"  # not the proxy's class name
    if err["type"].endswith("_type"):
        # The JSON type the client sent: no value, which may be long or private.
        message += f", not {_json_type_name(err.get('input'))}"
    return InvalidRequestError(f"{param}: {message}" if param else message, param=param or None)


# The JSON reader accepts 1,024 levels, the writer 254; the proxy re-serialises every body
# (cache key, upstream request), so deeper bodies are refused at parse with room to spare.
MAX_JSON_DEPTH = 200
# The most nested containers orjson's writer serialises (it refuses one more).
_WRITER_MAX_DEPTH = 254


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` (as decoded by orjson) nests more than ``limit`` containers deep.

    Asked of orjson's writer, in C: wrapped in ``_WRITER_MAX_DEPTH - limit`` lists, the value
    serialises exactly when it nests at most ``limit`` deep (whatever orjson decodes, it can
    encode; only depth can fail). A walk in Python held the event loop for over a second on a
    4 MB body of small lists; this costs one serialisation.
    """
    wrapped = value
    for _ in range(_WRITER_MAX_DEPTH - limit):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        return True
    return False


def parse_json_body(body: bytes) -> dict[str, Any]:
    """Decode a JSON object body or raise a 400 (also for nesting over ``MAX_JSON_DEPTH``)."""
    if not body:
        raise InvalidRequestError("request body is empty; expected a JSON object")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("request body must be a JSON object")
    # Fewer brackets than the limit cannot nest deeper than it: the common case costs two
    # C-speed scans, and only bodies with many containers are checked.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _deeper_than(data, MAX_JSON_DEPTH):
        raise InvalidRequestError(
            f"request JSON nests deeper than {MAX_JSON_DEPTH} levels, the proxy's limit",
            code="json_too_deep",
        )
    return data


def validate_chat_request(data: dict[str, Any]) -> ChatCompletionRequest:
    """Validate a chat completion request (400 with ``param`` on the first problem)."""
    try:
        request = _chat_adapter.validate_python(data)
    except ValidationError as exc:
        raise invalid_from_validation(exc) from None
    for i, message in enumerate(request.messages):
        if message.role not in KNOWN_ROLES:
            raise InvalidRequestError(
                f"messages[{i}].role: unknown role {message.role!r}; expected one of "
                f"{', '.join(sorted(KNOWN_ROLES))}",
                param=f"messages[{i}].role",
            )
    return request


def client_choices(data: dict[str, Any]) -> int:
    """The choices a (validated) request asks for: its ``n``, 1 when absent or null."""
    n = data.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def message_text(content: Any) -> str:
    """Text of a message's content: a string, or the text parts of a list joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def normalised_messages(messages: list[dict[str, Any]]) -> bytes:
    """Canonical bytes of a whole conversation (every role, every turn) for cache keys.

    A string and a single text part are the same content; key order does not matter.
    """
    canon = []
    for message in messages:
        content = message.get("content")
        if (
            isinstance(content, list)
            and len(content) == 1
            and isinstance(content[0], dict)
            and content[0].get("type") == "text"
            and set(content[0]) <= {"type", "text"}
        ):
            message = {**message, "content": content[0].get("text")}
        canon.append(message)  # unchanged messages are serialised as they are, never copied
    return orjson.dumps(canon, option=orjson.OPT_SORT_KEYS)


def now_s() -> int:
    """Unix time in seconds, as OpenAI's ``created``."""
    return int(time.time())


def sse_event(payload: dict[str, Any]) -> bytes:
    """One SSE ``data:`` event."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"
SSE_KEEPALIVE = b": keep-alive\n\n"
