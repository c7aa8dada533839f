"""Secret redaction: no configured secret leaves the proxy in a body, header, message or log line.

An upstream that echoes the request's ``Authorization`` header in an error message would
otherwise hand the proxy's API key to every client and to the log. :class:`Redactor` is built
from the whole config and the environment (so it follows reloads) and replaces every occurrence
of every secret it knows with ``[redacted]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from proxy.config.schema import Config

REDACTED = "[redacted]"
# Shorter values are too likely to occur by chance in ordinary text (a "1" or "on" header).
_MIN_SECRET_CHARS = 6
# Header names whose values are credentials even when not listed in ``secret_headers``.
_SECRET_HEADER = re.compile(r"authorization|api[-_]?key|token|secret|password|cookie", re.I)


class Redactor:
    """Replaces each known secret (string or bytes) with ``[redacted]``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is removed whole.
        unique = sorted({s for s in secrets if len(s) >= _MIN_SECRET_CHARS}, key=len, reverse=True)
        self._secrets = tuple(unique)
        self._secrets_bytes = tuple(s.encode() for s in unique)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, value: str) -> str:
        """``value`` with every secret replaced."""
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def raw(self, value: bytes) -> bytes:
        """``value`` (a body or an SSE event) with every secret replaced."""
        for secret in self._secrets_bytes:
            if secret in value:
                value = value.replace(secret, REDACTED.encode())
        return value

    @classmethod
    def from_config(cls, config: Config, env: Mapping[str, str]) -> Redactor:
        """Every secret ``config`` uses: API keys named by ``api_key_env``, secret headers, the
        master keys of ``server.auth`` (client keys are known only by their sha256)."""
        secrets: list[str] = []
        if config.server.auth is not None:
            secrets += config.server.auth.secrets(env)
        for upstream in config.upstreams.values():
            if upstream.api_key_env and env.get(upstream.api_key_env):
                secrets.append(env[upstream.api_key_env])
            marked = {h.lower() for h in upstream.secret_headers}
            secrets += [
                value
                for name, value in upstream.headers.items()
                if name.lower() in marked or _SECRET_HEADER.search(name)
            ]
        for reranker in (r for p in config.policies.values() for r in p.rerankers()):
            if reranker.api_key_env and env.get(reranker.api_key_env):
                secrets.append(env[reranker.api_key_env])
        return cls(secrets)
