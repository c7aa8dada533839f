"""One error hierarchy and one error shape: ``{"error": {"message", "type", "param", "code"}}``.

Every failure the proxy reports — bad input, unknown model, upstream trouble — is a
:class:`ProxyError` rendered by :meth:`ProxyError.to_dict`, so the OpenAI SDK raises the matching
exception class on the client side (``BadRequestError``, ``NotFoundError``, ``RateLimitError``…).
"""

from __future__ import annotations

from typing import Any

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


class RequestTooLargeError(ProxyError):
    """The request body exceeds ``server.max_body_bytes`` (413)."""

    status = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


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


class ServiceUnavailableError(ProxyError):
    """The proxy is not ready to serve (503)."""

    status = 503
    error_type = "service_unavailable"
    default_code = "not_ready"


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
