"""Run the Node client scripts (``tests/clients/node/*.mjs``) and read their JSON results.

A script takes ``KIND BASE_URL MODELS json|stream MESSAGES`` and prints one JSON line per model;
:class:`NodeRuns` runs each (script, kind, mode) once for every model the tests ask about (one
Node start-up instead of one per test) and hands each test its model's line.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.clients.required import NODE_DIR_ENV
from tests.clients.stack import POLICIES, ClientStack, Expected

SCRIPTS = Path(__file__).resolve().parent / "node"
# Every policy, and an upstream's own name (forwarded unchanged on /v1/responses).
MODELS = (*POLICIES, "mixtral")
_TIMEOUT_S = 300


@dataclass(frozen=True, slots=True)
class NodeResult:
    """What a script printed: the answer text, its usage and the ``x-adaptive-*`` headers."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    headers: dict[str, str]

    def check(self, expected: Expected) -> None:
        """Assert the text and usage are what the policy answers with."""
        assert self.text in expected.texts
        expected.check_usage(self.prompt_tokens, self.completion_tokens)


@dataclass
class NodeRuns:
    """Script runs against one stack, each made once and kept for the session."""

    node_modules: Path
    stack: ClientStack
    _lines: dict[tuple[str, str, bool], dict[str, dict[str, Any]]] = field(default_factory=dict)

    def result(self, script: str, kind: str, model: str, stream: bool) -> NodeResult:
        """``model``'s answer from ``node SCRIPT KIND …``."""
        key = (script, kind, stream)
        if key not in self._lines:
            self._lines[key] = self._run(script, kind, stream)
        out = self._lines[key][model]
        if "error" in out:
            raise AssertionError(f"{script} {kind} {model}: {out['error']}")
        usage = out["usage"]
        return NodeResult(
            out["text"], usage["prompt_tokens"], usage["completion_tokens"], out["headers"]
        )

    def check_policy(self, script: str, kind: str, policy: str, stream: bool) -> None:
        """``policy``'s answer from the script is its known answer, with its decision headers."""
        result = self.result(script, kind, policy, stream)
        result.check(self.stack.expect(policy))
        self.stack.check_headers(result.headers, policy)

    def check_passthrough(self, script: str, kind: str, stream: bool) -> None:
        """An upstream's own name (``mixtral``) is answered as the passthrough policy answers."""
        result = self.result(script, kind, "mixtral", stream)
        result.check(self.stack.expect("passthrough"))
        assert result.headers["x-request-id"]

    def _run(self, script: str, kind: str, stream: bool) -> dict[str, dict[str, Any]]:
        argv = [
            "node",
            str(SCRIPTS / script),
            kind,
            self.stack.base_url,
            ",".join(MODELS),
            "stream" if stream else "json",
            json.dumps(self.stack.messages),
        ]
        env = {**os.environ, NODE_DIR_ENV: str(self.node_modules.parent)}
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=_TIMEOUT_S)
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        return {line["model"]: line for line in lines}
