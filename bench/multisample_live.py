"""Live operating points of the multi-sample methods, end to end through the proxy.

The replay upstream serves the suite's recorded samples and its verifier (``POST /v1/verify``);
the proxy runs ``best_of_k`` policies whose ``reward`` reranker points at that verifier; the
official OpenAI SDK sends every prompt once per policy (with a per-prompt ``seed``, so a rerun
draws the same samples). Realised mean samples (``x-adaptive-n``) and quality (the recorded
correctness of the returned text) are compared with the offline expectation of the same
decisions; a live run is one random draw per prompt, so the quality's standard error is
``sqrt(Σ q_i (1 − q_i)) / n`` with q_i the prompt's exact expected quality.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import live
from bench.multisample_methods import PromptTables, policy_n
from replay.multisample_data import MultiSampleSuite

__all__ = ["live_operating_points"]

LIVE_KS = (1, 4, 8)
LIVE_LAMBDAS = (0.002, 0.02)


def _policy_yaml(
    replay_url: str, model: str, table: Path, policies: Mapping[str, Any], n_prompts: int
) -> str:
    import yaml

    doc = {
        "upstreams": {
            "sampler": {
                "provider": "openai",
                "base_url": f"{replay_url}/v1",
                "model": model,
                "timeout_s": 60,
                "retries": 1,
            },
        },
        "policies": dict(policies),
        "predictor": {"type": "table", "path": str(table)},
        "cache": {"max_entries": max(1000, 2 * n_prompts), "ttl_s": 3600},
    }
    return str(yaml.safe_dump(doc, sort_keys=False))


def _best_of_k(replay_url: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "best_of_k",
        "upstream": "sampler",
        "use_upstream_n": True,
        "reranker": {"type": "reward", "url": f"{replay_url}/v1/verify"},
        "predictor_output": "p_success",
        **fields,
    }


async def _send(
    proxy_url: str, policies: Sequence[str], suite: MultiSampleSuite, concurrency: int
) -> dict[str, list[tuple[int, str]]]:
    from openai import AsyncOpenAI

    gate = asyncio.Semaphore(concurrency)
    out: dict[str, list[tuple[int, str]]] = {p: [(0, "")] * len(suite.prompts) for p in policies}
    async with AsyncOpenAI(
        base_url=f"{proxy_url}/v1", api_key="bench", max_retries=2, timeout=120.0
    ) as client:

        async def one(policy: str, i: int) -> None:
            async with gate:
                raw = await client.chat.completions.with_raw_response.create(
                    model=policy,
                    messages=[dict(m) for m in suite.prompts[i].messages],  # type: ignore[misc]
                    seed=1000 + i,
                )
            completion = raw.parse()
            out[policy][i] = (
                int(raw.headers.get("x-adaptive-n", "0")),
                completion.choices[0].message.content or "",
            )

        for policy in policies:
            await asyncio.gather(*(one(policy, i) for i in range(len(suite.prompts))))
    return out


async def live_operating_points(
    suite: MultiSampleSuite,
    tables: PromptTables,
    p_hat: np.ndarray,
    replay_url: str,
    workdir: Path,
    *,
    concurrency: int = 16,
) -> list[dict[str, Any]]:
    """Run uniform best-of-k and adaptive best-of-k (λ) live; one row per operating point."""
    table = workdir / f"{suite.spec.name}.oof.jsonl"
    live.write_table(
        table, [p.messages for p in suite.prompts], [{"p_success": float(p)} for p in p_hat]
    )
    policies: dict[str, Any] = {}
    offline_n: dict[str, np.ndarray] = {}
    for k in LIVE_KS:
        policies[f"uniform-{k}"] = _best_of_k(replay_url, n_min=k, n_max=k, **{"lambda": 0.0})
        offline_n[f"uniform-{k}"] = np.full(len(p_hat), k)
    for lam in LIVE_LAMBDAS:
        name = f"adaptive-l{lam:g}"
        policies[name] = _best_of_k(replay_url, n_min=1, n_max=tables.cap, **{"lambda": lam})
        offline_n[name] = policy_n(p_hat, lam, tables.cap)
    yaml_text = _policy_yaml(replay_url, suite.spec.name, table, policies, len(p_hat))
    (workdir / f"{suite.spec.name}.policy.yaml").write_text(yaml_text, encoding="utf-8")

    from proxy.app import create_app
    from proxy.config import load_config_text

    runner, proxy_url = await live.start_server(create_app(load_config_text(yaml_text)))
    try:
        results = await _send(proxy_url, list(policies), suite, concurrency)
    finally:
        await runner.cleanup()
    rows = np.arange(len(p_hat))
    checks = []
    for name, answers in results.items():
        n_live = np.asarray([n for n, _ in answers])
        correct_of = [dict(zip(p.texts, p.correct, strict=True)) for p in suite.prompts]
        q_live = np.asarray(
            [correct_of[i].get(text, False) for i, (_, text) in enumerate(answers)], float
        )
        q_exp = tables.quality[rows, offline_n[name]]
        se = float(np.sqrt(np.sum(q_exp * (1 - q_exp))) / len(q_exp))
        diff = float(q_live.mean() - q_exp.mean())
        checks.append(
            {
                "policy": name,
                "requests": len(answers),
                "mean_samples_live": float(n_live.mean()),
                "mean_samples_offline": float(offline_n[name].mean()),
                "n_mismatches": int((n_live != offline_n[name]).sum()),
                "quality_live": float(q_live.mean()),
                "quality_offline": float(q_exp.mean()),
                "quality_se": se,
                "z": diff / se if se > 0 else 0.0,
                "within_2se": abs(diff) <= 2 * se + 1e-12,
            }
        )
    (workdir / f"{suite.spec.name}.live.json").write_text(json.dumps(checks), encoding="utf-8")
    return checks
