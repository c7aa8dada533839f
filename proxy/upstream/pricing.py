"""Cost in USD of upstream calls.

Prices come from the YAML (``price_in_per_mtok_usd``, ``price_out_per_mtok_usd``); when the YAML
has none, from litellm's bundled price map, read straight from the JSON file inside the installed
litellm wheel — no import of litellm, no network call. Token counts come from upstream ``usage``,
or tiktoken (:mod:`proxy.wire.tokens`) when an upstream reports none.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from proxy.config.schema import UpstreamConfig
from proxy.policies.overrides import arm_key
from proxy.upstream.arm_usage import SharedArmUsage
from proxy.wire.tokens import count_message_tokens_async, count_tokens_async


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per million input and output tokens."""

    in_per_mtok_usd: float
    out_per_mtok_usd: float

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Cost of one call."""
        return (
            prompt_tokens * self.in_per_mtok_usd + completion_tokens * self.out_per_mtok_usd
        ) / 1e6


@functools.lru_cache(maxsize=1)
def _bundled_price_map() -> Mapping[str, Any]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = (
        Path(next(iter(spec.submodule_search_locations)))
        / "model_prices_and_context_window_backup.json"
    )
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def bundled_price(key: str) -> Prices | None:
    """The prices of one exact key of litellm's bundled price map (``None`` if absent or
    litellm is not installed)."""
    entry = _bundled_price_map().get(key)
    if isinstance(entry, dict):
        price_in = entry.get("input_cost_per_token")
        price_out = entry.get("output_cost_per_token")
        if isinstance(price_in, int | float) and isinstance(price_out, int | float):
            return Prices(price_in * 1e6, price_out * 1e6)
    return None


def bundled_price_map_version() -> str | None:
    """The installed litellm's version, which dates its bundled price map (``None`` without
    litellm); read from the package metadata, without importing litellm."""
    try:
        return importlib.metadata.version("litellm")
    except importlib.metadata.PackageNotFoundError:
        return None


def _lookup(model: str, provider: str) -> Prices | None:
    for key in (model, f"{provider}/{model}", model.split("/")[-1], f"together_ai/{model}"):
        found = bundled_price(key)
        if found is not None:
            return found
    return None


def prices_for(cfg: UpstreamConfig) -> Prices:
    """Prices of an upstream: the YAML's, else litellm's bundled map, else zero (and say so)."""
    if cfg.price_in_per_mtok_usd is not None and cfg.price_out_per_mtok_usd is not None:
        return Prices(cfg.price_in_per_mtok_usd, cfg.price_out_per_mtok_usd)
    found = _lookup(cfg.model, cfg.provider)
    if found is None:
        return Prices(cfg.price_in_per_mtok_usd or 0.0, cfg.price_out_per_mtok_usd or 0.0)
    return Prices(
        cfg.price_in_per_mtok_usd
        if cfg.price_in_per_mtok_usd is not None
        else found.in_per_mtok_usd,
        cfg.price_out_per_mtok_usd
        if cfg.price_out_per_mtok_usd is not None
        else found.out_per_mtok_usd,
    )


def reasoning_tokens_of(usage: Any) -> int | None:
    """Reasoning tokens an upstream reports: chat completions'
    ``completion_tokens_details.reasoning_tokens``, the Responses API's
    ``output_tokens_details.reasoning_tokens`` (``None``: not reported)."""
    if not isinstance(usage, Mapping):
        return None
    for key in ("completion_tokens_details", "output_tokens_details"):
        details = usage.get(key)
        value = details.get("reasoning_tokens") if isinstance(details, Mapping) else None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def billed_tokens(usage: Any) -> tuple[int, int] | None:
    """(prompt, output) tokens of a ``usage`` object, reasoning tokens counted once.

    OpenAI counts reasoning tokens inside ``completion_tokens`` (and ``output_tokens``); an
    upstream that reports more reasoning tokens than completion tokens counts them apart, so
    they are added. Both chat completions' and the Responses API's spellings are read.
    """
    if not isinstance(usage, Mapping):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    output = usage.get("completion_tokens", usage.get("output_tokens"))
    if not isinstance(prompt, int) or not isinstance(output, int):
        return None
    reasoning = reasoning_tokens_of(usage)
    if reasoning is not None and reasoning > output:
        output += reasoning
    return prompt, output


async def usage_of(response: Mapping[str, Any], messages: list[dict[str, Any]]) -> tuple[int, int]:
    """(prompt_tokens, completion_tokens) from ``usage`` (reasoning tokens included), or counted
    with tiktoken if absent."""
    billed = billed_tokens(response.get("usage"))
    if billed is not None:
        return billed
    completion_tokens = 0
    for choice in response.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            completion_tokens += await count_tokens_async(message["content"])
    return await count_message_tokens_async(messages), completion_tokens


class CostModel:
    """Expected USD cost of an arm before it runs: prompt tokens plus a running mean of answers.

    The mean completion length (reasoning tokens included) is kept per arm: per upstream, and per
    upstream and request overrides for an arm that sets them (one model at two reasoning efforts
    is two means). It starts at ``prior_completion_tokens`` (an arm with overrides starts from its
    upstream's mean) and follows the realised answers: a plain running mean while few answers are
    seen (so a wrong prior is forgotten within the first answers, and budget controllers are not
    misled during warm-up), then an exponential moving average that tracks drift. Shared through
    Redis (:meth:`share_through`), the fleet's pooled running mean replaces the local one.
    """

    def __init__(
        self,
        upstreams: Mapping[str, UpstreamConfig],
        *,
        prior_completion_tokens: float = 256.0,
        smoothing: float = 0.02,
    ) -> None:
        self._prices = {name: prices_for(cfg) for name, cfg in upstreams.items()}
        self._mean_completion = {name: prior_completion_tokens for name in upstreams}
        self._prior = prior_completion_tokens
        self._smoothing = smoothing
        self._seen: dict[str, int] = {}
        self._shared: SharedArmUsage | None = None
        self._pooled: dict[str, float] = {}

    async def share_through(self, redis: Any | None, *, timeout_s: float = 0.2) -> None:
        """Pool realised answer lengths with other replicas through ``redis`` (``None``: not).

        Returns once the pooled means are read (or Redis failed to answer within
        ``timeout_s``), so a replica prices its first request from the fleet's answers.
        """
        self._pooled = {}
        self._shared = None
        if redis is not None:
            self._shared = SharedArmUsage(redis, self._take_pooled, timeout_s=timeout_s)
            self._shared.load()
            await self._shared.flush()

    async def flush(self) -> None:
        """Wait for answers queued for Redis to be written (before its client closes)."""
        if self._shared is not None:
            await self._shared.flush()

    def _take_pooled(self, means: dict[str, float]) -> None:
        self._pooled = means

    def mean_completion_tokens(
        self, upstream: str, overrides: Mapping[str, Any] | None = None
    ) -> float:
        """The expected completion length of one answer of the arm (upstream, overrides)."""
        key = arm_key(upstream, overrides)
        mean = self._pooled.get(key)
        if mean is None:
            mean = self._mean_completion.get(key)
        if mean is None:
            mean = self._pooled.get(upstream, self._mean_completion[upstream])
        cap = overrides.get("max_completion_tokens") if overrides else None
        return min(mean, float(cap)) if isinstance(cap, int) else mean

    def update_upstreams(self, upstreams: Mapping[str, UpstreamConfig]) -> None:
        """Re-read prices after a config reload, keeping the learnt answer lengths."""
        self._prices = {name: prices_for(cfg) for name, cfg in upstreams.items()}
        for name in upstreams:
            self._mean_completion.setdefault(name, self._prior)

    def prices(self, upstream: str) -> Prices:
        """Prices of one upstream."""
        return self._prices[upstream]

    def expected_cost_usd(
        self,
        upstream: str,
        prompt_tokens: int,
        n: int = 1,
        *,
        overrides: Mapping[str, Any] | None = None,
    ) -> float:
        """Expected cost of n samples from ``upstream`` (called with ``overrides``) for a prompt
        of ``prompt_tokens``."""
        prices = self._prices[upstream]
        mean = self.mean_completion_tokens(upstream, overrides)
        return n * prices.cost_usd(prompt_tokens, int(mean))

    def observe(
        self,
        upstream: str,
        prompt_tokens: int,
        completion_tokens: int,
        n: int = 1,
        *,
        overrides: Mapping[str, Any] | None = None,
    ) -> float:
        """Record a realised call of the arm (upstream, overrides); returns its cost in USD.

        ``completion_tokens`` include reasoning tokens (see :func:`billed_tokens`).
        """
        if upstream in self._mean_completion and n > 0:
            key = arm_key(upstream, overrides)
            mean = self._mean_completion.get(key, self._mean_completion[upstream])
            seen = self._seen.get(key, 0) + 1
            self._seen[key] = seen
            weight = max(1.0 / seen, self._smoothing)
            self._mean_completion[key] = mean + weight * (completion_tokens / n - mean)
            if self._shared is not None:
                self._shared.add(key, float(completion_tokens), n)
        return self._prices[upstream].cost_usd(prompt_tokens, completion_tokens)


class UsageMetrics(Protocol):
    """Usage and cost accounting (implemented by :class:`proxy.observe.metrics.Metrics`)."""

    def record_usage(
        self, upstream: str, prompt_tokens: int, completion_tokens: int, cost_usd: float
    ) -> None: ...


def account_usage(
    costs: CostModel,
    metrics: UsageMetrics,
    upstream: str,
    prompt_tokens: int,
    completion_tokens: int,
    n: int = 1,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> float:
    """Record a call's tokens and cost in ``costs`` and ``metrics``; returns its cost in USD."""
    cost = costs.observe(upstream, prompt_tokens, completion_tokens, n, overrides=overrides)
    metrics.record_usage(upstream, prompt_tokens, completion_tokens, cost)
    return cost
