"""One error hierarchy and one error shape: ``{"error": {"message", "type", "param", "code"}}``.

Every failure the proxy reports — bad input, unknown model, upstream trouble — is a
:class:`ProxyError` rendered by :meth:`ProxyError.to_dict`, so the OpenAI SDK raises the matching
exception class on the client side (``BadRequestError``, ``NotFoundError``, ``RateLimitError``…).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

# One class on both sides: predictor_onnx raises it and must not import proxy.
from predictor_onnx.errors import PredictorLoadError as PredictorLoadError


class ProxyError(Exception):
    """Base of every error the proxy reports to a client."""

    status: int = 500
    error_type: str = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        if status is not None:
            self.status = status
        self.headers: dict[str, str] = dict(headers or {})

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI error object, the only error shape the proxy emits."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(ProxyError):
    """Malformed JSON or a schema violation (400)."""

    status = 400
    error_type = "invalid_request_error"


class ModelNotFoundError(ProxyError):
    """The requested ``model`` is neither a policy nor a passthrough upstream (404)."""

    status = 404
    error_type = "invalid_request_error"
    default_code = "model_not_found"


class UpstreamError(ProxyError):
    """An upstream failed; ``status`` is what the client sees (4xx passthrough, 429, 502, 504)."""

    status = 502
    error_type = "upstream_error"
    default_code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        upstream: str | None = None,
        retryable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.upstream = upstream
        self.retryable = retryable


class UpstreamTimeoutError(UpstreamError):
    """The upstream did not answer within its timeout (504)."""

    status = 504
    error_type = "timeout_error"
    default_code = "upstream_timeout"


class AuthenticationError(ProxyError):
    """No API key, or one the proxy does not know (401)."""

    status = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(ProxyError):
    """A valid key that may not do this (403): a model outside its list, a non-master admin."""

    status = 403
    error_type = "invalid_request_error"
    default_code = "permission_denied"


class RateLimitedError(ProxyError):
    """A client over its request rate or spend limit (429)."""

    status = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class ServiceUnavailableError(ProxyError):
    """The proxy is not ready to serve (503)."""

    status = 503
    error_type = "service_unavailable"
    default_code = "not_ready"


# Upstream statuses worth retrying (then trying the policy's fallback upstream).
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


def _error_message(body: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    """(message, type, param, code) of an upstream's error body, as far as it has them."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None, None, None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):

        def text(key: str) -> str | None:
            value = err.get(key)
            return str(value) if isinstance(value, str | int) and value != "" else None

        return text("message"), text("type"), text("param"), text("code")
    if isinstance(err, str):
        return err, None, None, None
    return None, None, None, None


def map_status_error(
    name: str,
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    redact: Callable[[bytes], bytes] | None = None,
) -> UpstreamError:
    """Turn an upstream's non-2xx answer into the error the client should see.

    ``redact`` removes every configured secret from the body first: what comes out of here
    reaches the client, the retry log line and the fallback warning.
    """
    if status in (401, 403):
        return UpstreamError(
            f"upstream {name!r} rejected the proxy's credentials (HTTP {status}); "
            "check the upstream's api_key_env",
            upstream=name,
            status=502,
            code="upstream_auth_failed",
        )
    message, err_type, param, code = _error_message(redact(body) if redact else body)
    if status == 429:
        retry_after = headers.get("Retry-After")
        if retry_after and redact:
            retry_after = redact(retry_after.encode()).decode()
        return UpstreamError(
            message or f"upstream {name!r} is rate limiting (HTTP 429)",
            upstream=name,
            status=429,
            code="rate_limit_exceeded",
            retryable=True,
            headers={"Retry-After": retry_after} if retry_after else None,
        )
    if 400 <= status < 500:
        error = UpstreamError(
            message or f"upstream {name!r} rejected the request (HTTP {status})",
            upstream=name,
            status=status,
            param=param,
            code=code or "upstream_error",
        )
        error.error_type = err_type or "invalid_request_error"
        return error
    return UpstreamError(
        f"upstream {name!r} failed (HTTP {status})",
        upstream=name,
        status=502,
        retryable=status in RETRYABLE_STATUS,
    )


class ConfigError(Exception):
    """A policy file is invalid; ``problems`` lists ``(yaml_path, message)`` pairs.

    Not a :class:`ProxyError`: config problems are reported to operators (CLI, logs), never to
    API clients.
    """

    def __init__(self, problems: list[tuple[str, str]], *, source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        lines = [f"{where}{len(problems)} problem(s) in the policy file:"]
        lines += [f"  - {path or '<root>'}: {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))
