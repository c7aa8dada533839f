"""Latency, throughput and memory of the ONNX predictor: ``python -m
bench.latency.predictor_speed``.

* single prompt, one core (``threads=1``): p50/p99 of ``predict_sync([messages])`` on a prompt of
  exactly the model's token budget (``max_tokens``, the worst case) and on real benchmark prompts;
* batched, two cores, batches of 32 real prompts: prompts per second, both ways of using two
  cores — two concurrent single-thread encoder calls on one session (``workers=2``) and one
  two-thread session (``threads=2``);
* resident memory of a process holding the predictor and the proxy's app module, after load and
  after sustained batching (real prompts, then batches of 32 prompts at the token budget).
Prompts: the recorded ones (``--data-dir``, then ``$ADAPTIVE_DATA_DIR``, then the bundled copy;
none found is an error), ``--prompts FILE``, or made-up ones only with ``--synthetic``.
Budgets (issue): p50 ≤ 5 ms, ≥ 400 prompts/s, RSS ≤ 250 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class PromptsError(Exception):
    """No prompts to time: the recorded data is missing or holds none (the message says where)."""


def recorded_prompts(
    data_dir: str | None, env: Mapping[str, str] | None = None
) -> tuple[list[list[dict[str, Any]]], Path]:
    """Every recorded conversation, shuffled with a fixed seed, and the folder they came from.

    The folder is the project's one lookup (``--data-dir``, then ``$ADAPTIVE_DATA_DIR``, then
    the bundled copy); a missing or empty one is an error, never replaced by synthetic prompts.
    """
    import random

    from recorded_data import RecordedDataError, resolve_data_dir
    from recorded_data.records import load_records

    try:
        root = resolve_data_dir(data_dir, env=env)
        records = load_records(root)
    except (RecordedDataError, OSError) as exc:
        raise PromptsError(str(exc)) from exc
    if not records:
        raise PromptsError(f"no recorded prompts in {root}")
    random.Random(0).shuffle(records)
    return [list(r.messages) for r in records], root


def synthetic_prompts(n: int) -> list[list[dict[str, Any]]]:
    """``n`` made-up prompts of 3 to 112 words; only when asked for with ``--synthetic``."""
    words = "the quick brown fox jumps over the lazy dog while counting 17 sheep".split()
    return [
        [{"role": "user", "content": " ".join(words[: 3 + i % 12] * (1 + i % 8))}] for i in range(n)
    ]


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def measure(
    model_dir: Path | None,
    conversations: list[list[dict[str, Any]]],
    *,
    prompts_label: str,
    n_single: int = 200,
    n_batched: int = 1024,
) -> dict[str, Any]:
    """Time ``conversations`` and return the figures, ``prompts_label`` naming their source."""
    import proxy.http.app  # noqa: F401  (RSS should include the proxy's own imports)
    from predictor_onnx.runtime import OnnxPredictor

    single = OnnxPredictor.load(model_dir, threads=1, workers=2, max_batch_size=32)
    rss_loaded = _rss_mb()
    long_prompt = [{"role": "user", "content": "word " * 400}]
    ids = single._prompts.ids(long_prompt)
    real = list(conversations[: max(n_single, n_batched)])
    # Reading the data set leaves its (freed, partly reusable) memory in RSS; the proxy never
    # holds it, so it is reported next to the sustained figure, which includes it.
    gc.collect()
    prompts_mb = _rss_mb() - rss_loaded
    for messages in real[:20]:
        single.predict_sync([messages])

    def timed(predictor: OnnxPredictor, batch: list[Any]) -> float:
        started = time.perf_counter()
        predictor.predict_sync(batch)
        return (time.perf_counter() - started) * 1000.0

    long_ms = [timed(single, [long_prompt]) for _ in range(n_single)]
    real_ms = [timed(single, [m]) for m in real[:n_single]]
    workers_pps = n_batched / (timed(single, real[:n_batched]) / 1000.0)
    for _ in range(3):  # sustained: the largest batches the proxy can send
        single.predict_sync(real[:n_batched])
        single.predict_sync([long_prompt] * 32)
    gc.collect()
    rss_sustained = _rss_mb()
    asyncio.run(single.aclose())
    del single
    gc.collect()
    batched = OnnxPredictor.load(model_dir, threads=2, max_batch_size=32)
    batched.predict_sync(real[:32])
    threads_pps = n_batched / (timed(batched, real[:n_batched]) / 1000.0)
    asyncio.run(batched.aclose())
    return {
        "single longest (max_tokens) prompt, 1 thread: p50 ms": round(_percentile(long_ms, 0.5), 2),
        "single longest (max_tokens) prompt, 1 thread: p99 ms": round(
            _percentile(long_ms, 0.99), 2
        ),
        "tokens in that prompt": len(ids),
        "single real prompt, 1 thread: p50 ms": round(_percentile(real_ms, 0.5), 2),
        "single real prompt, 1 thread: p99 ms": round(_percentile(real_ms, 0.99), 2),
        "batched real prompts (32/batch), workers=2 x 1 thread: prompts/s": round(workers_pps, 1),
        "batched real prompts (32/batch), 1 session x 2 threads: prompts/s": round(threads_pps, 1),
        "RSS with proxy.http.app + predictor loaded, MB": round(rss_loaded, 1),
        "RSS after sustained batching (incl. 32 x max_tokens), MB": round(rss_sustained, 1),
        "of which the benchmark's own prompts (at most), MB": round(prompts_mb, 1),
        "cpu cores of this machine": os.cpu_count(),
        "load average at the end (shared machines skew every figure)": round(os.getloadavg()[0], 2),
        "prompts": prompts_label,
    }


def main(
    argv: Sequence[str] | None = None, *, prog: str = "python -m bench.latency.predictor_speed"
) -> int:
    """Print the figures (``--json`` for machine-readable output)."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--model", default=None, help="model folder (default: shipped)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--data-dir",
        default=None,
        help="recorded-data folder whose prompts are timed "
        "(default: $ADAPTIVE_DATA_DIR, then the bundled copy)",
    )
    source.add_argument("--prompts", default=None, help="JSONL of messages lists to time")
    source.add_argument(
        "--synthetic", action="store_true", help="time made-up prompts (labelled as such)"
    )
    parser.add_argument("--n-single", type=int, default=200)
    parser.add_argument("--n-batched", type=int, default=1024)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.synthetic:
        conversations = synthetic_prompts(max(args.n_single, args.n_batched))
        label = "synthetic (--synthetic), not recorded prompts"
    elif args.prompts:
        import random

        with open(args.prompts, encoding="utf-8") as fh:
            conversations = [json.loads(line) for line in fh if line.strip()]
        if not conversations:
            print(f"error: no prompts in {args.prompts}", file=sys.stderr)
            return 2
        random.Random(0).shuffle(conversations)
        label = f"from {args.prompts}"
    else:
        try:
            conversations, root = recorded_prompts(args.data_dir)
        except PromptsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        label = f"recorded prompts from {root}"
    figures = measure(
        Path(args.model) if args.model else None,
        conversations,
        prompts_label=label,
        n_single=args.n_single,
        n_batched=args.n_batched,
    )
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
