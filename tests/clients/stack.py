"""One replay upstream and one proxy, one policy of each type, for the client tests.

The servers run on an event loop of their own in a background thread (:class:`ClientStack`), so
that synchronous clients (the SDKs' sync APIs, a Node subprocess) and every test module of the
session share them. The prompt is a real GSM8K question on which Mixtral and the 6B sample give
the same final answer, so every policy's answer is known from the recorded data:
:meth:`ClientStack.expect` says which texts, arm and usage each policy may answer with.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from proxy.config.schema import load_config_text
from proxy.decide.prediction import HashPredictor
from proxy.http.app import create_app
from proxy.wire.tokens import count_message_tokens, count_tokens
from recorded_data.records import Record
from replay.server import create_replay_app
from replay.store import POOL_ARMS, ReplayStore
from tests.replay_helpers import cheap_answers, replay_upstreams
from tests.servers import running

POLICIES_YAML = """
server: {{reload: false, default_upstream: mixtral}}
upstreams:
{upstreams}
policies:
  route: {{type: route, cheap: mixtral, expensive: gpt-4, threshold: 0.5}}
  ladder:
    type: ladder
    arms:
      - {{name: quick, upstream: mixtral, predictor_output: p_weak}}
      - {{name: strong, upstream: gpt-4, predictor_output: p_strong}}
    lambda: 1.0
    default_arm: quick
  best-of-k:
    type: best_of_k
    upstream: pool
    n_min: 3
    n_max: 3
    predictor_output: p_weak
    lambda: 0.01
    reranker: {{type: vote}}
  sequential:
    type: best_of_k
    upstream: pool
    n_min: 1
    n_max: 6
    predictor_output: p_weak
    lambda: 0.01
    reranker: {{type: vote}}
    sequential: {{first_n: 2, step_n: 2, stop: {{kind: vote, confidence: 0.9}}}}
  cascade:
    type: cascade
    stages: [{{upstream: mixtral}}, {{upstream: checker}}, {{upstream: gpt-4}}]
    escalate: {{threshold: 0.5}}
  passthrough: {{type: passthrough, upstream: mixtral}}
predictor: {{type: hash}}
"""

POLICIES = ("route", "ladder", "best-of-k", "sequential", "cascade", "passthrough")
# The arm each policy answers with on the stack's prompt (the predictor is pinned to equal
# success probabilities, so every decision takes the cheap side; the cheap answers agree).
ARMS: Mapping[str, str] = {
    "route": "cheap",
    "ladder": "quick",
    "best-of-k": "best_of_3",
    "sequential": "sequential",
    "cascade": "mixtral",
    "passthrough": "passthrough",
}
# Policies answering with exactly one upstream call: their usage is that call's, to the token.
SINGLE_CALL = frozenset({"route", "ladder", "passthrough"})


@dataclass(frozen=True, slots=True)
class Expected:
    """What a policy may answer: one of ``texts``; usage of at least these token counts
    (exactly these for a single-call policy, ``exact``)."""

    arm: str
    texts: frozenset[str]
    prompt_tokens: int
    completion_tokens: int
    exact: bool

    def check_usage(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Assert a client's reported usage fits what the recorded answer costs."""
        if self.exact:
            assert (prompt_tokens, completion_tokens) == (
                self.prompt_tokens,
                self.completion_tokens,
            )
        else:
            assert prompt_tokens >= self.prompt_tokens
            assert completion_tokens >= self.completion_tokens


def pick_record(store: ReplayStore) -> Record:
    """A GSM8K question with all six pool solutions where Mixtral and the 6B sample agree."""
    for record in store.records():
        if record.dataset != "gsm8k" or not all(a in record.responses for a in POOL_ARMS):
            continue
        weak, checker = cheap_answers(record)
        if weak is not None and weak == checker:
            return record
    raise AssertionError("the recorded data has no GSM8K question the cheap stages agree on")


class ClientStack:
    """The replay upstream and the proxy, served from a thread of their own.

    ``base_url`` is the proxy's ``…/v1``; ``messages`` the prompt every test sends.
    """

    def __init__(self, store: ReplayStore) -> None:
        self.record = pick_record(store)
        # Any: each SDK types messages as its own TypedDicts; these are plain recorded dicts.
        self.messages: list[Any] = [dict(m) for m in self.record.messages]
        self.base_url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._exit = AsyncExitStack()
        self._store = store

    def start(self) -> ClientStack:
        """Start the loop and both servers; returns ``self``."""
        self._thread.start()
        self.base_url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(60)
        return self

    async def _start(self) -> str:
        replay_url = await self._exit.enter_async_context(running(create_replay_app(self._store)))
        upstreams = replay_upstreams(f"{replay_url}/v1", pool=True, pool_supports_n=True)
        text = POLICIES_YAML.format(upstreams=upstreams)
        predictor = HashPredictor(overrides={"": {"p_weak": 0.5, "p_strong": 0.5}})
        config = load_config_text(text, env={})
        app = create_app(config, predictor=predictor, warn_if_open=False)
        proxy_url = await self._exit.enter_async_context(running(app))
        return f"{proxy_url}/v1"

    def close(self) -> None:
        """Stop both servers and the loop."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._exit.aclose(), self._loop).result(60)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(60)
        self._loop.close()

    @property
    def prompt(self) -> str:
        """The question as one string (for clients that take a string, the Responses input)."""
        users = [m for m in self.messages if m.get("role") == "user"]
        assert len(users) == 1 and isinstance(users[0]["content"], str)
        return users[0]["content"]

    def check_headers(self, headers: Mapping[str, str], policy: str) -> None:
        """The decision headers ``policy``'s answer carries, as a client exposes them."""
        assert headers["x-adaptive-policy"] == policy
        assert headers["x-adaptive-arm"] == self.expect(policy).arm
        assert int(headers["x-adaptive-n"]) >= 1 and headers["x-request-id"]

    def expect(self, policy: str) -> Expected:
        """What ``policy`` answers on :attr:`messages` (the passthrough upstream too)."""
        weak = self.record.responses["weak"]
        pool = policy in ("best-of-k", "sequential")
        texts = frozenset(self.record.responses[a] for a in POOL_ARMS) if pool else {weak}
        return Expected(
            arm=ARMS[policy],
            texts=frozenset(texts),
            prompt_tokens=count_message_tokens(self.messages),
            completion_tokens=min(count_tokens(t) for t in texts),
            exact=policy in SINGLE_CALL,
        )
