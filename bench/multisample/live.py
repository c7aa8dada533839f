"""Live operating points of the multi-sample methods, end to end through the proxy.

The replay upstream serves the suite's recorded samples and its verifier (``POST /v1/verify``);
the proxy runs ``best_of_k`` policies whose ``reward`` reranker points at that verifier; the
official OpenAI SDK sends every prompt once per operating point (with a per-prompt ``seed``, so a
rerun draws the same samples). Methods: ``uniform`` (k), ``adaptive`` (λ), and ``sequential``
(cap) and ``adaptive_sequential`` (λ, cap) as the proxy's ``sequential:`` mode with the
``verifier`` stop rule, each prompt's round size (and whether its prior sizes round one) as
chosen on its fold's training prompts, so a point may use several policies, one per plan.

Realised mean samples (``x-adaptive-n``: samples drawn) and quality (the recorded correctness of
the returned text) are compared with the exact offline expectation of the same plans. A live run
is one random draw per prompt, so the errors are ``sqrt(Σ q_i (1 − q_i)) / n`` for quality and
``sqrt(Σ Var_i[samples]) / n`` for samples, both exact per prompt (:func:`plan_moments`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import live
from bench.multisample.methods import PromptTables, Step, first_of, plan_moments, policy_n
from proxy.policies.stopping import first_round_n
from recorded_data.multisample import MultiSampleSuite

__all__ = ["live_operating_points"]

LIVE_KS = (1, 4, 8)
LIVE_LAMBDAS = (0.002, 0.02)
LIVE_SEQ_CAPS = (4, 8, 16)
LIVE_ADAPTIVE_SEQ = ((0.02, 8), (0.02, 16))  # (λ, cap)
ACCEPT_SCORE = 0.5


@dataclass
class _Point:
    """One operating point: the policy each prompt is sent to, and its exact expectation."""

    method: str
    policy_of: list[str]
    samples: np.ndarray
    samples_var: np.ndarray
    quality: np.ndarray
    fixed_n: bool


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
    proxy_url: str, points: Mapping[str, _Point], suite: MultiSampleSuite, concurrency: int
) -> dict[str, list[tuple[int, str]]]:
    from openai import AsyncOpenAI

    gate = asyncio.Semaphore(concurrency)
    out: dict[str, list[tuple[int, str]]] = {p: [(0, "")] * len(suite.prompts) for p in points}
    async with AsyncOpenAI(
        base_url=f"{proxy_url}/v1", api_key="bench", max_retries=2, timeout=120.0
    ) as client:

        async def one(point: str, i: int) -> None:
            async with gate:
                raw = await client.chat.completions.with_raw_response.create(
                    model=points[point].policy_of[i],
                    messages=[dict(m) for m in suite.prompts[i].messages],  # type: ignore[misc]
                    seed=1000 + i,
                )
            completion = raw.parse()
            out[point][i] = (
                int(raw.headers.get("x-adaptive-n", "0")),
                completion.choices[0].message.content or "",
            )

        for point in points:
            await asyncio.gather(*(one(point, i) for i in range(len(suite.prompts))))
    return out


def _sequential(
    replay_url: str, step: Step, first_n: int | str, n_max: int, **fields: Any
) -> dict[str, Any]:
    return _best_of_k(
        replay_url,
        n_min=1,
        n_max=n_max,
        sequential={
            "first_n": first_n,
            "step_n": step,
            "stop": {"kind": "verifier", "accept_score": ACCEPT_SCORE},
        },
        **fields,
    )


def _fixed_point(method: str, name: str, n: np.ndarray, tables: PromptTables) -> _Point:
    rows = np.arange(len(n))
    return _Point(
        method,
        [name] * len(n),
        n.astype(float),
        np.zeros(len(n)),
        tables.quality[rows, n],
        fixed_n=True,
    )


def _operating_points(
    replay_url: str,
    tables: PromptTables,
    p_hat: np.ndarray,
    steps: Sequence[Step],
    prior_first: Sequence[bool],
) -> tuple[dict[str, Any], dict[str, _Point]]:
    """The proxy policies to configure and the operating points that send prompts to them."""
    policies: dict[str, Any] = {}
    points: dict[str, _Point] = {}
    for k in LIVE_KS:
        name = f"uniform-{k}"
        policies[name] = _best_of_k(replay_url, n_min=k, n_max=k, **{"lambda": 0.0})
        points[name] = _fixed_point("uniform", name, np.full(len(p_hat), k), tables)
    for lam in LIVE_LAMBDAS:
        name = f"adaptive-l{lam:g}"
        policies[name] = _best_of_k(replay_url, n_min=1, n_max=tables.cap, **{"lambda": lam})
        points[name] = _fixed_point("adaptive", name, policy_n(p_hat, lam, tables.cap), tables)
    seq: list[tuple[str, str, float | None, int]] = [
        ("sequential", f"sequential-c{cap}", None, cap) for cap in LIVE_SEQ_CAPS
    ]
    seq += [
        ("adaptive_sequential", f"adaptive_sequential-l{lam:g}-c{cap}", lam, cap)
        for lam, cap in LIVE_ADAPTIVE_SEQ
    ]
    for method, point, price, cap in seq:
        policy_of, plans = [], []
        for p, step, prior in zip(p_hat, steps, prior_first, strict=True):
            use_prior = prior and price is not None
            name = f"{point}-s{step}{'-prior' if use_prior else ''}"
            if name not in policies:
                first: int | str = "auto" if use_prior else first_of(step)
                fields = {} if price is None else {"lambda": price}
                policies[name] = _sequential(replay_url, step, first, cap, **fields)
            policy_of.append(name)
            # The offline method's plan of this prompt (bench.multisample.methods).
            if price is None:
                plans.append((first_of(step), step, cap))
            else:
                n1 = first_round_n(float(p), price, 1, cap, 1.0) if use_prior else first_of(step)
                plans.append((n1, step, cap if p >= price else min(n1, cap)))
        mean, var, quality = plan_moments(tables, plans)
        points[point] = _Point(method, policy_of, mean, var, quality, fixed_n=False)
    return policies, points


async def live_operating_points(
    suite: MultiSampleSuite,
    tables: PromptTables,
    p_hat: np.ndarray,
    steps: Sequence[Step],
    prior_first: Sequence[bool],
    replay_url: str,
    workdir: Path,
    *,
    concurrency: int = 16,
) -> list[dict[str, Any]]:
    """Run uniform, adaptive, sequential and adaptive + sequential best-of-k live; one row per
    operating point."""
    table = workdir / f"{suite.spec.name}.oof.jsonl"
    live.write_table(
        table, [p.messages for p in suite.prompts], [{"p_success": float(p)} for p in p_hat]
    )
    policies, points = _operating_points(replay_url, tables, p_hat, steps, prior_first)
    yaml_text = _policy_yaml(replay_url, suite.spec.name, table, policies, len(p_hat))
    (workdir / f"{suite.spec.name}.policy.yaml").write_text(yaml_text, encoding="utf-8")

    from proxy.config.schema import load_config_text
    from proxy.http.app import create_app

    # Open by design: the benchmark is this loopback proxy's only client.
    proxy = await live.start_proxy(create_app(load_config_text(yaml_text), warn_if_open=False))
    try:
        results = await _send(proxy.url, points, suite, concurrency)
    finally:
        await proxy.close()
    correct_of = [dict(zip(p.texts, p.correct, strict=True)) for p in suite.prompts]
    checks = []
    for name, answers in results.items():
        point = points[name]
        n_live = np.asarray([n for n, _ in answers], float)
        q_live = np.asarray(
            [correct_of[i].get(text, False) for i, (_, text) in enumerate(answers)], float
        )
        n = len(answers)
        q_se = float(np.sqrt(np.sum(point.quality * (1 - point.quality))) / n)
        s_se = float(np.sqrt(np.sum(point.samples_var)) / n)
        q_diff = float(q_live.mean() - point.quality.mean())
        s_diff = float(n_live.mean() - point.samples.mean())
        checks.append(
            {
                "policy": name,
                "method": point.method,
                "requests": n,
                "mean_samples_live": float(n_live.mean()),
                "mean_samples_offline": float(point.samples.mean()),
                "mean_samples_se": s_se,
                "n_mismatches": int((n_live != point.samples).sum()) if point.fixed_n else None,
                "samples_within_2se": abs(s_diff) <= 2 * s_se + 1e-9,
                "quality_live": float(q_live.mean()),
                "quality_offline": float(point.quality.mean()),
                "quality_se": q_se,
                "z": q_diff / q_se if q_se > 0 else 0.0,
                "within_2se": abs(q_diff) <= 2 * q_se + 1e-12,
            }
        )
    (workdir / f"{suite.spec.name}.live.json").write_text(json.dumps(checks), encoding="utf-8")
    return checks
