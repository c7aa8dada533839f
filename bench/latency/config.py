"""What the latency benchmark's proxy serves: its YAML config, auth section, prompts and argv.

The proxy under test runs a ``route`` policy (:data:`POLICY`) over two upstream names that both
point at the benchmark's fast upstream, so only the proxy's own work differs between modes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
POLICY = "auto"
# The upstream model a passthrough request names (no policy, no decision).
PASSTHROUGH_MODEL = "bench-cheap"
BENCH_MASTER_ENV = "ADAPTIVE_BENCH_MASTER_KEY"


def default_onnx_model() -> Path:
    """The shipped predictor folder (``predictor_onnx/model/``)."""
    return REPO_ROOT / "predictor_onnx" / "model"


def proxy_config(
    upstream_url: str,
    predictor: dict[str, Any],
    *,
    redis_url: str | None = None,
    budget: bool = False,
) -> dict[str, Any]:
    """A route policy over two upstream names that both point at the fast upstream.

    ``budget`` steers the policy to a target share of expensive calls instead of a threshold
    (the online controller runs on every request); ``redis_url`` puts the decision cache and
    the controller's state in Redis.
    """
    rule: dict[str, Any] = (
        {"budget": {"kind": "fraction_expensive", "target": 0.3}} if budget else {"threshold": 0.1}
    )
    cache: dict[str, Any] = {"max_entries": 10_000}
    if redis_url:
        cache["redis_url"] = redis_url
    upstream = {
        "base_url": upstream_url,
        "price_in_per_mtok_usd": 0.5,
        "price_out_per_mtok_usd": 1.5,
        "retries": 0,
        "max_connections": 256,
    }
    return {
        # ``info``: the access log is on, as it is by default (its lines go to the child's log).
        "server": {"host": "127.0.0.1", "reload": False, "log_level": "info"},
        "upstreams": {
            "cheap": {**upstream, "model": "bench-cheap"},
            "expensive": {**upstream, "model": "bench-expensive", "price_out_per_mtok_usd": 15.0},
        },
        "policies": {
            POLICY: {
                "type": "route",
                "cheap": "cheap",
                "expensive": "expensive",
                "predictor_output": "gain",
                "fallback": "cheap",
                **rule,
            },
        },
        "predictor": predictor,
        "cache": cache,
    }


def prompts(count: int) -> list[str]:
    """Distinct short prompts (GSM8K-sized)."""
    return [
        f"Question {i}: a baker sells {i + 3} loaves an hour for {i % 7 + 2} hours. "
        "How many loaves does she sell? Answer with a number."
        for i in range(count)
    ]


def auth_section(client_key: str) -> dict[str, Any]:
    """``server.auth`` with one metered client key (limits far above what the run sends)."""
    return {
        "master_key_envs": [BENCH_MASTER_ENV],
        "keys": {
            "bench": {
                "key_sha256": hashlib.sha256(client_key.encode()).hexdigest(),
                "requests_per_minute": 10**9,
                "spend_limit_usd_per_day": 10**6,
            }
        },
    }


def proxy_args(
    mode: str,
    predictor: dict[str, Any],
    upstream_url: str,
    workdir: Path,
    port: int,
    *,
    redis_url: str | None = None,
    budget: bool = False,
    client_key: str | None = None,
) -> list[str]:
    """Write the config of ``mode`` under ``workdir``; the argv serving it on ``port``."""
    config_path = workdir / f"proxy-{mode}.yaml"
    config = proxy_config(upstream_url, predictor, redis_url=redis_url, budget=budget)
    if client_key is not None:
        config["server"]["auth"] = auth_section(client_key)
    config_path.write_text(yaml.safe_dump(config))
    return ["-m", "proxy.cli", "serve", "--config", str(config_path), "--port", str(port)]
