"""Records, labels and stores for the learning tests (real SQLite files, real redis-server)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from proxy.learn.records import (
    DecisionRecord,
    LabelKind,
    LabelRecord,
    OutcomeRecord,
    RouteEvidence,
    SampleSuccess,
    UsageRecord,
    pack_embedding,
)
from proxy.learn.store import OutcomeStore
from proxy.learn.store_redis import RedisOutcomeStore
from proxy.learn.store_sqlite import SqliteOutcomeStore
from proxy.wire.redis_client import make_redis

DIM = 384


def keyed_server(keys: Mapping[str, str], *, master_key_env: str = "MASTER_KEY") -> str:
    """A ``server:`` section with auth on: a master key in ``master_key_env`` and the YAML
    clients ``keys`` (name: key), looked up afresh on every request (no key cache)."""
    lines = [
        "server:",
        "  reload: false",
        "  auth:",
        f"    master_key_envs: [{master_key_env}]",
        "    key_cache_ttl_s: 0",
        "    keys:",
    ]
    for name, key in keys.items():
        lines.append(f'      {name}: {{key_sha256: "{hashlib.sha256(key.encode()).hexdigest()}"}}')
    return "\n".join(lines)


def unit(vector: Any) -> Any:
    """``vector`` scaled to length 1."""
    v = np.asarray(vector, dtype=np.float64)
    return v / np.linalg.norm(v)


def make_record(
    request_id: str,
    *,
    policy: str = "router",
    unix_time_s: float | None = None,
    arm: str = "cheap",
    embedding: Any = None,
    predictions: Mapping[str, float] | None = None,
    key: str | None = None,
) -> OutcomeRecord:
    """A route request's record with a deterministic embedding unless one is given."""
    if embedding is None:
        seed = sum(request_id.encode())
        embedding = unit(np.random.default_rng(seed).standard_normal(DIM))
    return OutcomeRecord(
        request_id=request_id,
        unix_time_s=time.time() if unix_time_s is None else unix_time_s,
        policy=policy,
        policy_version="v1",
        key=key,
        model_version="prior-1",
        decision=DecisionRecord(arm=arm, upstream=f"{arm}-model", gain=0.1, threshold=0.2),
        predictions=dict(predictions or {"p_weak": 0.4, "p_strong": 0.7, "gain": 0.3}),
        embedding_f16=pack_embedding(embedding),
        evidence=RouteEvidence(arm=arm),
        usage=UsageRecord(prompt_tokens=12, completion_tokens=30, cost_usd=0.0004),
    )


def make_label(
    request_id: str,
    *,
    kind: LabelKind = "feedback",
    unix_time_s: float | None = None,
    arm_rewards: Mapping[str, float] | None = None,
    reward: float | None = None,
    sample_success: tuple[float, int] | None = None,
    source: str | None = None,
) -> LabelRecord:
    """A label; with no target given, ``arm_rewards`` of both arms."""
    if arm_rewards is None and reward is None and sample_success is None:
        arm_rewards = {"cheap": 0.0, "expensive": 1.0}
    return LabelRecord(
        request_id=request_id,
        unix_time_s=time.time() if unix_time_s is None else unix_time_s,
        kind=kind,
        source=source or kind,
        arm_rewards=dict(arm_rewards or {}),
        reward=reward,
        sample_success=(
            None
            if sample_success is None
            else SampleSuccess(
                successes=sample_success[0], samples=sample_success[1], judged_by="vote"
            )
        ),
    )


def sqlite_store(path: Path, **kwargs: Any) -> SqliteOutcomeStore:
    """The embedded store on a file under the test's tmp_path."""
    kwargs.setdefault("retention_days", 30.0)
    return SqliteOutcomeStore(path, **kwargs)


def redis_store(url: str, **kwargs: Any) -> RedisOutcomeStore:
    """The Redis store on the test's redis-server, with the proxy's client settings."""
    kwargs.setdefault("retention_days", 30.0)
    client = make_redis(url, timeout_s=1.0, max_connections=8, health_check_interval_s=5.0)
    return RedisOutcomeStore(client, timeout_s=1.0, **kwargs)


async def collect(store: OutcomeStore, policy: str, *, page: int = 500) -> list[Any]:
    """Every labelled record of ``policy``."""
    from proxy.learn.store import iter_labelled

    return [item async for item in iter_labelled(store, policy, page=page)]


async def closing(store: OutcomeStore) -> AsyncIterator[OutcomeStore]:
    """Yield ``store`` and close it afterwards (for fixtures)."""
    try:
        yield store
    finally:
        await store.aclose()
