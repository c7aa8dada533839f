"""The YAML routing policy: pydantic models (``extra="forbid"``), loading, validation, versions.

Loading is three steps: parse YAML, expand ``${VAR}`` / ``${VAR:-default}`` in string values,
validate. Every problem is reported with its YAML path (``policies.auto.threshold: …``) in one
:class:`~proxy.errors.ConfigError`, so ``adaptive-proxy check`` can list them all at once.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from proxy.errors import ConfigError

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ServerConfig(_Strict):
    """Listener and request limits."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0)
    reload: bool = True
    reload_interval_s: float = Field(2.0, gt=0)
    keepalive_interval_s: float = Field(5.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class UpstreamConfig(_Strict):
    """One upstream model endpoint. The API key comes from ``api_key_env``, never the file."""

    provider: str = "openai"
    base_url: str | None = None
    model: str
    api_key_env: str | None = None
    price_in_per_mtok_usd: float | None = Field(None, ge=0)
    price_out_per_mtok_usd: float | None = Field(None, ge=0)
    timeout_s: float = Field(60.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)
    retries: int = Field(2, ge=0, le=10)
    retry_backoff_s: float = Field(0.25, ge=0)
    supports_n: bool = True
    stream_usage: bool = True
    max_connections: int = Field(256, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _openai_needs_base_url(self) -> UpstreamConfig:
        if self.provider == "openai" and not self.base_url:
            raise ValueError("provider 'openai' needs base_url (e.g. https://api.openai.com/v1)")
        if self.api_key_env is not None and not re.fullmatch(
            r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env
        ):
            raise ValueError("api_key_env must be the NAME of an environment variable, not a key")
        return self


class BudgetConfig(_Strict):
    """A target the proxy keeps by adjusting its price of compute λ online."""

    kind: Literal["fraction_expensive", "mean_samples", "usd_per_hour"]
    target: float = Field(gt=0)
    window: int = Field(1000, ge=10)


class RerankerConfig(_Strict):
    """How best-of-k picks its winner: ``judge``, ``reward``, ``vote`` or ``first``."""

    type: Literal["judge", "reward", "vote", "first"] = "vote"
    upstream: str | None = None
    template: str | None = None
    pattern: str | None = None
    url: str | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(30.0, gt=0)
    efficiency: float = Field(1.0, ge=0, le=1)
    request_format: Literal["simple", "vllm_score"] = "simple"
    scores_path: str | None = None
    model: str | None = None
    structured_output: bool = True

    @model_validator(mode="after")
    def _needs(self) -> RerankerConfig:
        if self.type == "judge" and not self.upstream:
            raise ValueError("reranker 'judge' needs 'upstream' (the judge model)")
        if self.type == "reward" and not self.url:
            raise ValueError("reranker 'reward' needs 'url' (the reward model endpoint)")
        return self


class _Adaptive(_Strict):
    threshold: float | None = None
    lambda_: float | None = Field(None, alias="lambda", ge=0)
    budget: BudgetConfig | None = None
    fallback: str | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> _Adaptive:
        given = [
            k
            for k, v in (
                ("threshold", self.threshold),
                ("lambda", self.lambda_),
                ("budget", self.budget),
            )
            if v is not None
        ]
        if len(given) > 1:
            raise ValueError(f"give only one of threshold, lambda, budget (got {', '.join(given)})")
        return self


class RoutePolicy(_Adaptive):
    """Two arms: go ``expensive`` iff the predicted gain clears the threshold (or λ · Δcost)."""

    type: Literal["route"]
    cheap: str
    expensive: str
    predictor_output: str = "gain"
    default_arm: Literal["cheap", "expensive"] = "cheap"

    @model_validator(mode="after")
    def _has_rule(self) -> RoutePolicy:
        if self.threshold is None and self.lambda_ is None and self.budget is None:
            raise ValueError("route needs one of threshold, lambda or budget")
        if self.budget is not None and self.budget.kind == "mean_samples":
            raise ValueError("budget kind 'mean_samples' applies to best_of_k and ladder policies")
        return self


class PassthroughPolicy(_Strict):
    """Forward every request to one upstream, no prediction."""

    type: Literal["passthrough"]
    upstream: str
    fallback: str | None = None


class BestOfKPolicy(_Adaptive):
    """Draw n samples from one upstream (n chosen per prompt) and keep the reranker's pick."""

    type: Literal["best_of_k"]
    upstream: str
    n_min: int = Field(1, ge=1)
    n_max: int = Field(8, ge=1, le=64)
    default_n: int | None = Field(None, ge=1)
    predictor_output: str = "p_weak"
    use_upstream_n: bool | None = None
    sampling: dict[str, Any] = Field(default_factory=lambda: {"temperature": 0.7})
    reranker: RerankerConfig = Field(default_factory=RerankerConfig)

    @model_validator(mode="after")
    def _bounds(self) -> BestOfKPolicy:
        if self.n_min > self.n_max:
            raise ValueError(f"n_min ({self.n_min}) must be ≤ n_max ({self.n_max})")
        if self.default_n is not None and not self.n_min <= self.default_n <= self.n_max:
            raise ValueError("default_n must lie in [n_min, n_max]")
        if self.budget is not None and self.budget.kind == "fraction_expensive":
            raise ValueError(
                "best_of_k has no expensive arm: use budget kind mean_samples or usd_per_hour"
            )
        return self


class LadderArm(_Strict):
    """One decoding procedure of a ladder: an upstream, a sample count, its predicted reward."""

    name: str
    upstream: str
    n: int = Field(1, ge=1, le=64)
    predictor_output: str
    cost_usd: float | None = Field(None, ge=0)
    reranker: RerankerConfig | None = None


class LadderPolicy(_Adaptive):
    """Many arms: choose the arm maximising expected reward − λ · cost."""

    type: Literal["ladder"]
    arms: list[LadderArm] = Field(min_length=2)
    default_arm: str | None = None
    expensive_arms: list[str] | None = None

    @model_validator(mode="after")
    def _arms(self) -> LadderPolicy:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError("arm names must be unique")
        if self.default_arm is not None and self.default_arm not in names:
            raise ValueError(f"default_arm {self.default_arm!r} is not one of {names}")
        for name in self.expensive_arms or []:
            if name not in names:
                raise ValueError(f"expensive_arms: {name!r} is not one of {names}")
        if self.threshold is not None:
            raise ValueError("ladder takes lambda or budget, not threshold")
        if self.lambda_ is None and self.budget is None:
            raise ValueError("ladder needs lambda or budget")
        return self


Policy = Annotated[
    RoutePolicy | PassthroughPolicy | BestOfKPolicy | LadderPolicy, Field(discriminator="type")
]


class PredictorConfig(_Strict):
    """Which predictor serves predictions: the shipped ONNX model, a table, or a hash stand-in."""

    type: Literal["onnx", "table", "hash", "none"] = "onnx"
    path: str | None = None
    max_batch_size: int = Field(32, ge=1)
    batch_window_ms: float = Field(2.0, ge=0)
    threads: int = Field(1, ge=1)
    workers: int = Field(1, ge=1)
    timeout_s: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _table_path(self) -> PredictorConfig:
        if self.type == "table" and not self.path:
            raise ValueError("predictor 'table' needs 'path' (a JSONL of messages + predictions)")
        return self


class CacheConfig(_Strict):
    """Decision cache: Redis when ``redis_url`` is set, else an in-process LRU."""

    redis_url: str | None = None
    ttl_s: float = Field(3600.0, gt=0)
    max_entries: int = Field(10_000, ge=1)
    timeout_s: float = Field(0.05, gt=0)


class Config(_Strict):
    """A whole policy file."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    upstreams: dict[str, UpstreamConfig] = Field(min_length=1)
    policies: dict[str, Policy] = Field(default_factory=dict)
    predictor: PredictorConfig = Field(default_factory=PredictorConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)

    def policy_version(self, name: str) -> str:
        """Hash of the policy's own section: editing one policy invalidates only its decisions."""
        dumped = self.policies[name].model_dump(mode="json", by_alias=True)
        return hashlib.sha256(orjson.dumps(dumped, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]

    def predictor_version(self) -> str:
        """Hash of the predictor section; a new predictor invalidates every cached decision."""
        dumped = self.predictor.model_dump(mode="json")
        return hashlib.sha256(orjson.dumps(dumped, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]

    def find_upstream(self, model: str) -> str | None:
        """Upstream name for a passthrough ``model``: an upstream's name or its model id."""
        if model in self.upstreams:
            return model
        for name, upstream in self.upstreams.items():
            if upstream.model == model:
                return name
        return None


def _upstream_refs(name: str, policy: Any) -> list[tuple[str, str]]:
    base = f"policies.{name}"
    refs: list[tuple[str, str]] = []
    if isinstance(policy, RoutePolicy):
        refs += [(f"{base}.cheap", policy.cheap), (f"{base}.expensive", policy.expensive)]
    elif isinstance(policy, PassthroughPolicy | BestOfKPolicy):
        refs.append((f"{base}.upstream", policy.upstream))
    elif isinstance(policy, LadderPolicy):
        refs += [(f"{base}.arms.{i}.upstream", a.upstream) for i, a in enumerate(policy.arms)]
        refs += [
            (f"{base}.arms.{i}.reranker.upstream", a.reranker.upstream)
            for i, a in enumerate(policy.arms)
            if a.reranker is not None and a.reranker.upstream
        ]
    if isinstance(policy, BestOfKPolicy) and policy.reranker.upstream:
        refs.append((f"{base}.reranker.upstream", policy.reranker.upstream))
    fallback = getattr(policy, "fallback", None)
    if fallback:
        refs.append((f"{base}.fallback", fallback))
    return refs


def reference_problems(config: Config) -> list[tuple[str, str]]:
    """Cross-references YAML cannot express: every named upstream exists, names do not clash."""
    problems: list[tuple[str, str]] = []
    for name, policy in config.policies.items():
        if name in config.upstreams:
            problems.append(
                (f"policies.{name}", "a policy may not share its name with an upstream")
            )
        for path, ref in _upstream_refs(name, policy):
            if ref not in config.upstreams:
                known = ", ".join(sorted(config.upstreams)) or "none"
                problems.append((path, f"unknown upstream {ref!r} (known: {known})"))
    return problems


def expand_env(
    value: Any, env: Mapping[str, str], path: str = ""
) -> tuple[Any, list[tuple[str, str]]]:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in every string; report unset variables."""
    problems: list[tuple[str, str]] = []
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            var, default = match.group(1), match.group(2)
            if var in env:
                return env[var]
            if default is not None:
                return default
            problems.append(
                (path, f"environment variable {var} is not set (use ${{{var}:-default}})")
            )
            return ""

        return _ENV_PATTERN.sub(sub, value), problems
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            out[key], sub_problems = expand_env(item, env, f"{path}.{key}" if path else str(key))
            problems += sub_problems
        return out, problems
    if isinstance(value, list):
        items = []
        for i, item in enumerate(value):
            expanded, sub_problems = expand_env(item, env, f"{path}.{i}")
            items.append(expanded)
            problems += sub_problems
        return items, problems
    return value, problems


def _loc_path(loc: tuple[int | str, ...]) -> str:
    # Discriminated unions add the tag ("route") to the location; it is not a YAML key.
    parts = [str(p) for p in loc if p not in ("route", "passthrough", "best_of_k", "ladder")]
    return ".".join(parts)


def yaml_error_message(exc: yaml.YAMLError, source: str | None) -> str:
    """``FILE:LINE:COLUMN: not valid YAML: …``, with 1-based positions, from PyYAML's error."""
    where = source or "<text>"
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f"{where}: not valid YAML: {exc}"
    mark = exc.problem_mark
    message = f"{where}:{mark.line + 1}:{mark.column + 1}: not valid YAML: {exc.problem}"
    if exc.context and exc.context_mark is not None:
        start = exc.context_mark
        message += f" ({exc.context} at line {start.line + 1}, column {start.column + 1})"
    return message


def load_config_text(
    text: str, *, env: Mapping[str, str] | None = None, source: str | None = None
) -> Config:
    """Parse, expand and validate a policy file's text; :class:`ConfigError` lists all problems."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([("", yaml_error_message(exc, source))], source=source) from None
    if not isinstance(raw, dict):
        raise ConfigError(
            [("", "the file must be a YAML mapping with 'upstreams' and 'policies'")], source=source
        )
    expanded, problems = expand_env(raw, os.environ if env is None else env)
    if problems:
        raise ConfigError(problems, source=source)
    try:
        config = Config.model_validate(expanded)
    except ValidationError as exc:
        found: list[tuple[str, str]] = []
        for err in exc.errors(include_url=False):
            message = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown key (check spelling; see config.example.yaml)"
            found.append((_loc_path(tuple(err["loc"])), message))
        raise ConfigError(found, source=source) from None
    problems = reference_problems(config)
    if problems:
        raise ConfigError(problems, source=source)
    return config


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a policy file from disk."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("", f"cannot read {file}: {exc.strerror}")], source=str(file)) from None
    return load_config_text(text, env=env, source=str(file))
