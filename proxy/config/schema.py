"""The YAML routing policy: pydantic models (``extra="forbid"``), loading, validation, versions.

Loading is three steps: parse YAML, expand ``${VAR}`` / ``${VAR:-default}`` in string values,
validate. Every problem is reported with its YAML path (``policies.auto.threshold: …``) in one
:class:`~proxy.wire.errors.ConfigError`, so ``adaptive-proxy check`` can list them all at once.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import Field, ValidationError, model_validator

from proxy.auth.spec import AuthConfig
from proxy.config.learning import LearningConfig
from proxy.config.otel import OtelConfig
from proxy.policies.overrides import ARM_REF_TAGS, OVERRIDE_KEYS
from proxy.policies.registry import POLICY_TYPES, AnyPolicy
from proxy.policies.spec import StrictModel
from proxy.wire.errors import ConfigError

#: ``(yaml path, message)``: one problem of a policy file.
Problem = tuple[str, str]

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class AccessLogConfig(StrictModel):
    """``server.access_log``: one JSON line per request on logger ``adaptive_proxy.access``."""

    enabled: bool = True
    # Message content is private; it is logged only when asked for.
    include_messages: bool = False


class ServerConfig(StrictModel):
    """Listener, request limits, authentication, access log."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0)
    reload: bool = True
    reload_interval_s: float = Field(2.0, gt=0)
    keepalive_interval_s: float = Field(5.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # A file must look the same (size, mtime, hash) for this long before it is reloaded, so a
    # file written in several steps is never loaded half-written.
    reload_settle_s: float = Field(1.0, ge=0)
    # A file with no policy at all is refused (check, serve, reload) unless this says it is meant.
    allow_empty_policies: bool = False
    header_timeout_s: float = Field(10.0, gt=0)
    body_timeout_s: float = Field(30.0, gt=0)
    idle_timeout_s: float = Field(75.0, gt=0)
    max_connections: int = Field(4096, ge=1)
    shutdown_timeout_s: float = Field(25.0, ge=0)
    allocate_max_requests: int = Field(10_000, ge=1, le=10_000)
    allocate_timeout_s: float = Field(60.0, gt=0)
    allocate_slice: int = Field(16, ge=1)
    auth: AuthConfig | None = None
    access_log: AccessLogConfig = Field(default_factory=AccessLogConfig)
    otel: OtelConfig | None = None
    # Where non-chat endpoints (embeddings, audio, ...) go when ``model`` names no upstream.
    default_upstream: str | None = None


class UpstreamConfig(StrictModel):
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
    # Serves ``POST /v1/responses`` itself: routed Responses requests are sent to it as they
    # are (else they are converted to chat completions); see proxy/http/responses_api.py.
    responses_api: bool = False
    max_connections: int = Field(256, gt=0)
    max_response_bytes: int = Field(32 * 1024 * 1024, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    # Names of ``headers`` whose values are credentials (redacted from everything the proxy
    # forwards or logs); Authorization, *api-key*, *token*, *secret* headers always are.
    secret_headers: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _openai_needs_base_url(self) -> UpstreamConfig:
        if self.provider == "openai" and not self.base_url:
            raise ValueError("provider 'openai' needs base_url (e.g. https://api.openai.com/v1)")
        if self.api_key_env is not None and not re.fullmatch(
            r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env
        ):
            raise ValueError("api_key_env must be the NAME of an environment variable, not a key")
        return self


class PredictorConfig(StrictModel):
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


class CacheConfig(StrictModel):
    """Decision cache: Redis when ``redis_url`` is set, else an in-process LRU."""

    redis_url: str | None = None
    ttl_s: float = Field(3600.0, gt=0)
    max_entries: int = Field(10_000, ge=1)
    timeout_s: float = Field(0.05, gt=0)
    max_connections: int = Field(64, ge=1)
    health_check_interval_s: float = Field(10.0, ge=0)
    # In-process L1 in front of Redis: a hot decision costs no round trip. Short-lived, so a
    # decision another replica replaced is picked up within this time.
    l1_ttl_s: float = Field(5.0, ge=0)
    l1_max_entries: int = Field(4096, ge=1)


class Config(StrictModel):
    """A whole policy file."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    upstreams: dict[str, UpstreamConfig] = Field(min_length=1)
    policies: dict[str, AnyPolicy] = Field(default_factory=dict)
    predictor: PredictorConfig = Field(default_factory=PredictorConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    learning: LearningConfig = Field(default_factory=LearningConfig)

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


def _as_written(raw: Any, path: str, expanded: str) -> str:
    """The value at ``path`` as the file spells it, if it used ``${VAR}``; else ``expanded``.

    Problems quote what the operator wrote, never an expanded environment variable: a mistaken
    ``cheap: ${SOME_KEY}`` must not print the key.
    """
    node = raw
    for part in path.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return expanded
    return node if isinstance(node, str) and _ENV_PATTERN.search(node) else expanded


def reference_problems(config: Config, raw: Any = None) -> list[tuple[str, str]]:
    """Cross-references YAML cannot express: every named upstream exists, names do not clash.

    ``raw`` is the file before ``${VAR}`` expansion, so that messages quote the variable names.
    """
    problems: list[tuple[str, str]] = []
    for name, policy in config.policies.items():
        if name in config.upstreams:
            problems.append(
                (f"policies.{name}", "a policy may not share its name with an upstream")
            )
        for path, ref in policy.references():
            if ref not in config.upstreams:
                known = ", ".join(sorted(config.upstreams)) or "none"
                where = f"policies.{name}.{path}"
                written = _as_written(raw, where, ref)
                problems.append((where, f"unknown upstream {written!r} (known: {known})"))
    problems += learning_problems(config)
    problems += override_problems(config)
    server = config.server
    if server.default_upstream is not None and server.default_upstream not in config.upstreams:
        known = ", ".join(sorted(config.upstreams))
        problems.append(
            (
                "server.default_upstream",
                f"unknown upstream {server.default_upstream!r} (known: {known})",
            )
        )
    if server.auth is not None:
        for key_name, key in server.auth.keys.items():
            for model in key.models or ():
                if model not in config.policies and config.find_upstream(model) is None:
                    problems.append(
                        (
                            f"server.auth.keys.{key_name}.models",
                            f"{model!r} is neither a policy nor an upstream model",
                        )
                    )
    return problems


def learning_problems(config: Config) -> list[Problem]:
    """``learning.judge`` names an upstream; ``learn: true`` only on a policy that decides."""
    problems: list[Problem] = []
    judge = config.learning.judge
    if judge is not None and judge not in config.upstreams:
        known = ", ".join(sorted(config.upstreams))
        problems.append(("learning.judge", f"unknown upstream {judge!r} (known: {known})"))
    for name, policy in config.policies.items():
        if policy.learn and policy.type == "passthrough":
            problems.append(
                (f"policies.{name}.learn", "a passthrough policy decides nothing to learn")
            )
    return problems


def override_problems(config: Config) -> list[Problem]:
    """Overrides an arm's upstream cannot take: a thinking budget needs a litellm provider."""
    problems: list[Problem] = []
    for name, policy in config.policies.items():
        for path, upstream, overrides in policy.override_refs():
            cfg = config.upstreams.get(upstream)
            if cfg is None or overrides.thinking_budget_tokens is None:
                continue
            if cfg.provider == "openai":
                problems.append(
                    (
                        f"policies.{name}.{path}.thinking_budget_tokens",
                        f"upstream {upstream!r} is OpenAI-compatible (provider 'openai'), which "
                        "takes no thinking budget: use reasoning_effort, or a provider reached "
                        "through litellm (anthropic, gemini, vertex_ai, ...)",
                    )
                )
    return problems


def empty_policies_problems(config: Config) -> list[Problem]:
    """A file that names no policy at all is refused unless it says that is intended.

    One rule for ``check``, ``serve`` and the hot reload, so that what ``check`` accepts is what
    a running proxy accepts: an edit that empties ``policies`` by mistake (a bad merge, a
    truncated ConfigMap) must not silently turn every policy model into a 404. The config is read
    by attribute, so the rule also applies to a file that does not validate.
    """
    if config.policies or config.server.allow_empty_policies is True:
        return []
    return [
        (
            "policies",
            "the file has no policy; if that is intended (only passthrough models), set "
            "server.allow_empty_policies: true",
        )
    ]


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
    # Discriminated unions add the tag ("route") to the location; it is not a YAML key. Only
    # the tag is dropped: a policy may itself be named "ladder".
    if len(loc) > 2 and loc[0] == "policies" and loc[2] in POLICY_TYPES:
        loc = loc[:2] + loc[3:]
    return ".".join(str(p) for p in loc if p not in ARM_REF_TAGS)


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


@dataclass(frozen=True, slots=True)
class ParsedConfig:
    """A policy file read as far as it goes: every problem found on the way, in one list.

    ``config`` is the validated file (also when only its cross-references are wrong) or None;
    ``expanded`` is the parsed mapping after ``${VAR}`` expansion (None when the text is not a
    YAML mapping), for checks that still apply to a file that does not validate;
    ``unset_paths`` are the YAML paths of the ``${VAR}`` that are not set.
    """

    problems: list[Problem]
    config: Config | None = None
    expanded: dict[str, Any] | None = None
    unset_paths: tuple[str, ...] = ()

    def beyond_unset(self, problems: list[Problem]) -> list[Problem]:
        """``problems`` less those at or under an unset ``${VAR}``'s path.

        An unset variable expands to "", and what that breaks at its own path (an unknown
        upstream '', a string too short) is no news after "VAR is not set".
        """
        return [
            (where, message)
            for where, message in problems
            if not any(where == path or where.startswith(f"{path}.") for path in self.unset_paths)
        ]


def parse_config_text(
    text: str, *, env: Mapping[str, str] | None = None, source: str | None = None
) -> ParsedConfig:
    """Parse, expand and validate a policy file's text, collecting every problem (no raise)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return ParsedConfig([("", yaml_error_message(exc, source))])
    if not isinstance(raw, dict):
        return ParsedConfig(
            [("", "the file must be a YAML mapping with 'upstreams' and 'policies'")]
        )
    expanded, unset = expand_env(raw, os.environ if env is None else env)
    unset_paths = tuple(path for path, _ in unset)
    found: list[Problem] = []
    config: Config | None = None
    try:
        valid = Config.model_validate(expanded)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            message = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown key (check spelling; see config.example.yaml)"
                if len(err["loc"]) >= 2 and err["loc"][-2] == "overrides":
                    message = f"unknown override (allowed: {', '.join(OVERRIDE_KEYS)})"
            found.append((_loc_path(tuple(err["loc"])), message))
        from proxy.config.unvalidated_refs import loose_reference_problems

        found += [p for p in loose_reference_problems(expanded) if p not in found]
    else:
        config, found = valid, reference_problems(valid, raw)
    parsed = ParsedConfig(unset, config, expanded, unset_paths)
    return replace(parsed, problems=unset + parsed.beyond_unset(found))


def load_config_text(
    text: str, *, env: Mapping[str, str] | None = None, source: str | None = None
) -> Config:
    """Parse, expand and validate a policy file's text; :class:`ConfigError` lists all problems."""
    parsed = parse_config_text(text, env=env, source=source)
    if parsed.problems or parsed.config is None:
        raise ConfigError(parsed.problems, source=source)
    return parsed.config


def read_config_text(path: str | Path) -> str:
    """The text of a policy file; :class:`ConfigError` when it cannot be read."""
    file = Path(path)
    try:
        return file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("", f"cannot read {file}: {exc.strerror}")], source=str(file)) from None


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a policy file from disk."""
    return load_config_text(read_config_text(path), env=env, source=str(Path(path)))
