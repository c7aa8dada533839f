"""Wall time that sequential rounds and cascades add: ``python -m bench.cascade.evidence_latency``.

The replay upstream serves recorded GSM8K answers and HumanEval × CodeGen-16B's recorded samples
with its latency model switched on (``--ttft-ms`` before the first token, ``--per-token-ms`` per
token), the proxy runs as a real server, and the OpenAI SDK sends the same prompts to each
policy. Every request's wall time is paired with a direct single call of the same prompt to the
policy's first upstream; the table gives p50/p95 of the policy's latency and of the added
latency (policy − direct, per prompt). HumanEval requests carry a per-prompt ``seed``, so the
direct call draws the same first sample as the policy's first round. The replay's verifier
(``/v1/verify``, recorded test results) answers at once: a deployed verifier that runs the tests
adds its own time per round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from openai import AsyncOpenAI, omit

from bench.live import start_proxy, start_server
from proxy.config.schema import load_config_text
from proxy.decide.prediction import HashPredictor
from proxy.http.app import create_app
from recorded_data.multisample import load_multisample
from recorded_data.records import MODEL_STRONG, MODEL_WEAK
from replay.multisample import build_multisample_store
from replay.server import LatencyModel, create_replay_app
from replay.store import build_store

CODE_SUITE = "humaneval-codegen16b"

POLICIES = """
upstreams:
  mixtral: {{base_url: "{url}", model: "{weak}", price_in_per_mtok_usd: 0.6,
            price_out_per_mtok_usd: 0.6, supports_n: false}}
  checker: {{base_url: "{url}", model: gsm8k-6b-finetuning, price_in_per_mtok_usd: 0.28,
            price_out_per_mtok_usd: 0.28}}
  gpt-4: {{base_url: "{url}", model: "{strong}", price_in_per_mtok_usd: 10,
          price_out_per_mtok_usd: 30}}
  pool: {{base_url: "{url}", model: gsm8k-pool, supports_n: false, price_in_per_mtok_usd: 0.6,
         price_out_per_mtok_usd: 0.6}}
  code: {{base_url: "{url}", model: humaneval-codegen16b, price_in_per_mtok_usd: 0.6,
         price_out_per_mtok_usd: 0.6}}
policies:
  direct-code: {{type: passthrough, upstream: code}}
  code-best-of-8:
    type: best_of_k
    upstream: code
    n_min: 8
    n_max: 8
    reranker: {{type: reward, url: "{url}/verify"}}
  # Rounds of one sample: the round size chosen on training folds (bench/results/<suite>.json).
  code-sequential-c8:
    type: best_of_k
    upstream: code
    n_max: 8
    reranker: {{type: reward, url: "{url}/verify"}}
    sequential: {{first_n: 1, step_n: 1, stop: {{kind: verifier, accept_score: 0.5}}}}
  code-sequential-c16:
    type: best_of_k
    upstream: code
    n_max: 16
    reranker: {{type: reward, url: "{url}/verify"}}
    sequential: {{first_n: 1, step_n: 1, stop: {{kind: verifier, accept_score: 0.5}}}}
  direct-mixtral: {{type: passthrough, upstream: mixtral}}
  direct-pool: {{type: passthrough, upstream: pool}}
  cascade:
    type: cascade
    stages: [{{upstream: mixtral}}, {{upstream: checker}}, {{upstream: gpt-4}}]
  best-of-4:
    type: best_of_k
    upstream: pool
    n_min: 4
    n_max: 4
    reranker: {{type: vote}}
  sequential-vote:
    type: best_of_k
    upstream: pool
    n_max: 8
    reranker: {{type: vote}}
    sequential: {{first_n: 2, step_n: 2, stop: {{kind: vote, confidence: 0.9}}}}
"""
# Each policy, and the direct call its added latency is measured against.
PAIRS: Mapping[str, str] = {
    "cascade": "direct-mixtral",
    "best-of-4": "direct-pool",
    "sequential-vote": "direct-pool",
    "code-best-of-8": "direct-code",
    "code-sequential-c8": "direct-code",
    "code-sequential-c16": "direct-code",
}
CODE_POLICIES = frozenset(
    {"direct-code", "code-best-of-8", "code-sequential-c8", "code-sequential-c16"}
)


async def _times(
    client: AsyncOpenAI,
    policy: str,
    prompts: Sequence[list[dict[str, Any]]],
    concurrency: int,
    *,
    seeded: bool,
) -> tuple[list[float], list[dict[str, Any]]]:
    gate = asyncio.Semaphore(concurrency)
    seconds = [0.0] * len(prompts)
    adaptive: list[dict[str, Any]] = [{} for _ in prompts]

    async def one(i: int) -> None:
        async with gate:
            start = time.perf_counter()
            completion = await client.chat.completions.create(
                model=policy,
                messages=prompts[i],  # type: ignore[arg-type]
                seed=1000 + i if seeded else omit,
            )
            seconds[i] = time.perf_counter() - start
            adaptive[i] = (completion.model_extra or {}).get("adaptive") or {}

    await asyncio.gather(*(one(i) for i in range(len(prompts))))
    return seconds, adaptive


def _ms(values: Sequence[float], q: float) -> float:
    return round(float(np.quantile(np.asarray(values) * 1000.0, q)), 1)


async def measure(
    data_dir: Path, *, prompts: int, ttft_ms: float, per_token_ms: float, concurrency: int
) -> dict[str, Any]:
    """Latency of each policy and its added latency over the paired direct call."""
    store = build_store(data_dir)
    questions = [r for r in store.records() if r.dataset == "gsm8k"][:prompts]
    messages = [[dict(m) for m in r.messages] for r in questions]
    code = load_multisample(data_dir, CODE_SUITE).prompts
    spread = np.linspace(0, len(code) - 1, min(prompts, len(code))).astype(int)
    code_messages = [[dict(m) for m in code[int(i)].messages] for i in spread]
    latency = LatencyModel(ttft_ms=ttft_ms, per_token_ms=per_token_ms)
    replay_app = create_replay_app(
        store, latency=latency, multisample=build_multisample_store(data_dir)
    )
    replay, replay_url = await start_server(replay_app)
    config = load_config_text(
        POLICIES.format(url=f"{replay_url}/v1", weak=MODEL_WEAK, strong=MODEL_STRONG), env={}
    )
    proxy = await start_proxy(create_app(config, predictor=HashPredictor(), warn_if_open=False))
    try:
        async with AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="x", max_retries=0) as client:
            times: dict[str, list[float]] = {}
            extras: dict[str, list[dict[str, Any]]] = {}
            for policy in ("direct-mixtral", "direct-pool", "direct-code", *PAIRS):
                seeded = policy in CODE_POLICIES
                times[policy], extras[policy] = await _times(
                    client,
                    policy,
                    code_messages if seeded else messages,
                    concurrency,
                    seeded=seeded,
                )
    finally:
        await proxy.close()
        await replay.cleanup()
    rows = []
    for policy, reference in PAIRS.items():
        added = [a - b for a, b in zip(times[policy], times[reference], strict=True)]
        info = extras[policy]
        rows.append(
            {
                "policy": policy,
                "reference": reference,
                "latency_ms_p50": _ms(times[policy], 0.5),
                "latency_ms_p95": _ms(times[policy], 0.95),
                "added_ms_p50": _ms(added, 0.5),
                "added_ms_p95": _ms(added, 0.95),
                "mean_rounds": float(np.mean([a.get("rounds", 1) for a in info])),
                "mean_samples": float(
                    np.mean([a.get("samples_drawn", a.get("n", 1)) for a in info])
                ),
                "escalated": float(np.mean([bool(a.get("escalated")) for a in info])),
            }
        )
    direct = {
        p: {"p50": _ms(times[p], 0.5), "p95": _ms(times[p], 0.95)} for p in set(PAIRS.values())
    }
    return {
        "prompts": len(messages),
        "code_prompts": len(code_messages),
        "ttft_ms": ttft_ms,
        "per_token_ms": per_token_ms,
        "concurrency": concurrency,
        "direct_ms": direct,
        "rows": rows,
    }


# What each policy and each direct call is, for the table.
DESCRIPTIONS: Mapping[str, str] = {
    "cascade": "cascade (agreement rule, Mixtral + 6B → GPT-4)",
    "best-of-4": "best-of-4 (`gsm8k-pool`, vote)",
    "sequential-vote": "sequential (`gsm8k-pool`, vote 0.9, 2 + 2 per round, cap 8)",
    "code-best-of-8": f"best-of-8 (`{CODE_SUITE}`, verifier picks)",
    "code-sequential-c8": f"sequential (`{CODE_SUITE}`, verifier stop, rounds of 1, cap 8)",
    "code-sequential-c16": "sequential (same, cap 16)",
    "direct-mixtral": "one Mixtral call",
    "direct-pool": "one pool sample",
    "direct-code": "one sample",
}


def format_table(result: Mapping[str, Any]) -> str:
    """Markdown table of :func:`measure`'s rows (also the README's)."""
    lines = [
        f"{result['prompts']} GSM8K prompts and {result.get('code_prompts', 0)} HumanEval "
        f"prompts ({CODE_SUITE}), replay latency {result['ttft_ms']:g} ms to first token "
        f"+ {result['per_token_ms']:g} ms/token, concurrency {result['concurrency']}:",
        "",
        "| policy | vs (its p50 / p95, ms) | latency p50 / p95 (ms) | added p50 / p95 (ms) "
        "| mean rounds | mean samples | escalated |",
        "|---|---|---|---|---|---|---|",
    ]
    direct = result.get("direct_ms", {})
    for r in result["rows"]:
        ref = r["reference"]
        vs = DESCRIPTIONS.get(ref, ref)
        if ref in direct:
            vs += f" ({direct[ref]['p50']:.0f} / {direct[ref]['p95']:.0f})"
        escalated = f"{100 * r['escalated']:.0f}%" if r["policy"] == "cascade" else "—"
        lines.append(
            f"| {DESCRIPTIONS.get(r['policy'], r['policy'])} | {vs} | "
            f"{r['latency_ms_p50']:.0f} / {r['latency_ms_p95']:.0f} | "
            f"{r['added_ms_p50']:.0f} / {r['added_ms_p95']:.0f} | {r['mean_rounds']:.2f} | "
            f"{r['mean_samples']:.2f} | {escalated} |"
        )
    return "\n".join(lines)


def main(
    argv: Sequence[str] | None = None, *, prog: str = "python -m bench.cascade.evidence_latency"
) -> int:
    """Print the table; ``--json FILE`` also writes the figures."""
    from recorded_data import resolve_data_dir

    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--prompts", type=int, default=60)
    parser.add_argument("--ttft-ms", type=float, default=300.0)
    parser.add_argument("--per-token-ms", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    data_dir = resolve_data_dir(args.data_dir)
    result = asyncio.run(
        measure(
            data_dir,
            prompts=args.prompts,
            ttft_ms=args.ttft_ms,
            per_token_ms=args.per_token_ms,
            concurrency=args.concurrency,
        )
    )
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
