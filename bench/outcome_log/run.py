"""``python -m bench.outcome_log [--records N] [--redis]``: what logging outcomes costs.

For a route request of a ``learn: true`` policy, with the shipped ONNX predictor's outputs and the
float16 embedding of a real prompt:

* the record's size as stored (its JSON document, embedding included), and a free label's;
* the request path's share: building the :class:`~proxy.learn.records.OutcomeRecord` and queueing
  it on the :class:`~proxy.learn.log.OutcomeLog` (median and p99 over ``N`` requests, µs);
* the background writer's throughput into a real SQLite file (and, with ``--redis``, a real
  redis-server started for the run), records per second, in batches as the log writes them.

The proxy's end-to-end overhead with learning off is ``python -m bench.latency``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from proxy.learn.log import OutcomeLog, OutcomeLogCounters
from proxy.learn.records import (
    DecisionRecord,
    LabelRecord,
    OutcomeRecord,
    RouteEvidence,
    UsageRecord,
    encode_entry,
    pack_embedding,
)
from proxy.learn.store import OutcomeStore
from proxy.learn.store_sqlite import SqliteOutcomeStore

PROMPT = [
    {"role": "user", "content": "Natalia sold clips to 48 of her friends in April. How many?"}
]


def _record(request_id: str, predictions: dict[str, float], embedding: Any) -> OutcomeRecord:
    """A route request's record as :func:`proxy.http.outcomes.record_outcome` builds it."""
    return OutcomeRecord(
        request_id=request_id,
        unix_time_s=time.time(),
        policy="router",
        policy_version="0123456789abcdef",
        model_version="shipped-onnx-2.0.0",
        decision=DecisionRecord(arm="cheap", upstream="mixtral", n=1, gain=0.08, threshold=0.3),
        predictions=predictions,
        embedding_f16=pack_embedding(embedding),
        evidence=RouteEvidence(arm="cheap"),
        usage=UsageRecord(prompt_tokens=64, completion_tokens=180, cost_usd=0.000146),
    )


async def _predict() -> tuple[dict[str, float], Any]:
    from predictor_onnx.runtime import OnnxPredictor

    predictor = await OnnxPredictor.load_async()
    try:
        ((values, embedding),) = await predictor.predict_embedded([PROMPT])
    finally:
        await predictor.aclose()
    return values, embedding


async def _enqueue_us(predictions: dict[str, float], embedding: Any, n: int) -> tuple[float, float]:
    """Median and p99 µs of building one record (embedding packed) and queueing it."""
    with tempfile.TemporaryDirectory() as folder:
        log = OutcomeLog(
            SqliteOutcomeStore(Path(folder) / "o.sqlite3", retention_days=30),
            max_queue=n + 1,
            metrics=OutcomeLogCounters(),
        )
        times = []
        for i in range(n):
            start = time.perf_counter()
            log.record(_record(f"r{i}", predictions, embedding))
            times.append((time.perf_counter() - start) * 1e6)
        await log.aclose(timeout_s=60)
    times.sort()
    return statistics.median(times), times[int(0.99 * (len(times) - 1))]


async def _write_rate(store: OutcomeStore, records: list[OutcomeRecord], batch: int) -> float:
    """Records per second written by :meth:`OutcomeStore.write` in batches of ``batch``."""
    start = time.perf_counter()
    for i in range(0, len(records), batch):
        await store.write(records[i : i + batch])
    elapsed = time.perf_counter() - start
    await store.aclose()
    return len(records) / elapsed


async def measure(n: int, *, redis: bool) -> dict[str, Any]:
    """Every figure of the benchmark."""
    predictions, embedding = await _predict()
    record = _record("r-size", predictions, embedding)
    label = LabelRecord(
        request_id="r-size",
        unix_time_s=time.time(),
        kind="feedback",
        source="feedback",
        arm_rewards={"cheap": 0.0, "expensive": 1.0},
    )
    median_us, p99_us = await _enqueue_us(predictions, embedding, n)
    records = [_record(f"w{i}", predictions, embedding) for i in range(n)]
    out: dict[str, Any] = {
        "embedding_dim": int(np.asarray(embedding).size),
        "predictions": len(predictions),
        "record_bytes": len(encode_entry(record).encode()),
        "label_bytes": len(encode_entry(label).encode()),
        "enqueue_us_median": round(median_us, 1),
        "enqueue_us_p99": round(p99_us, 1),
    }
    with tempfile.TemporaryDirectory() as folder:
        sqlite = SqliteOutcomeStore(Path(folder) / "o.sqlite3", retention_days=30)
        out["sqlite_records_per_s"] = round(await _write_rate(sqlite, records, 500))
    if redis:
        from bench.redis_server import RedisServer
        from proxy.learn.store_redis import RedisOutcomeStore
        from proxy.wire.redis_client import make_redis

        server = RedisServer()
        server.start()
        try:
            client = make_redis(
                server.url, timeout_s=2.0, max_connections=4, health_check_interval_s=10
            )
            store = RedisOutcomeStore(client, retention_days=30)
            out["redis_records_per_s"] = round(await _write_rate(store, records, 500))
        finally:
            server.close()
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the figures, one per line."""
    parser = argparse.ArgumentParser(prog="python -m bench.outcome_log")
    parser.add_argument("--records", type=int, default=5000, help="records per figure")
    parser.add_argument("--redis", action="store_true", help="also write to a redis-server")
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args.records, redis=args.redis))
    width = max(len(k) for k in figures)
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    return 0
