"""The live half of ``adaptive-proxy bench``: a suite's policies served by the proxy, checked.

Each routed pair runs at a few threshold operating points and the ladder at a few prices λ, every
prompt through the proxy and the replay upstream (:mod:`bench.live`); each request's decision,
answer and usage are compared with the offline computation from the same out-of-fold predictions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bench import live
from bench.routing import evaluate as ev
from bench.routing.suites import SuiteData

LIVE_FRACTIONS_FULL = (0.0, 0.25, 0.5, 0.75, 1.0)
LIVE_FRACTIONS_QUICK = (0.0, 0.5, 1.0)
# Prices of compute (accuracy per USD) spread over the ladder's range; 1e30 = cheapest arm.
LADDER_LIVE_LAMBDAS = (0.0, 30.0, 300.0, 3000.0, 1e30)


class LiveOptions(Protocol):
    """What the live runs read of a benchmark run's options
    (``bench.routing.runner.BenchOptions``)."""

    @property
    def quick(self) -> bool: ...

    @property
    def concurrency(self) -> int: ...

    @property
    def progress(self) -> bool: ...


def live_usd(result: live.LiveResult) -> float:
    """What one live request cost: its usage at its replayed arm's YAML prices (NaN if unknown)."""
    from bench.routing.suites import ARMS

    arm = ARMS.get(result.replay_arm or "")
    if arm is None:
        return float("nan")
    return (
        result.prompt_tokens * arm.price_in_per_mtok_usd
        + result.completion_tokens * arm.price_out_per_mtok_usd
    ) / 1e6


async def live_pairs(
    opts: LiveOptions,
    data: SuiteData,
    scores: Mapping[str, Any],
    preds_cv: Mapping[str, Mapping[str, float]],
    replay_url: str,
    workdir: Path,
) -> list[dict[str, Any]]:
    """Run each pair's threshold policies live; check them against the offline computation."""
    table = workdir / f"{data.spec.name}.oof.jsonl"
    live.write_table(table, data.messages, [preds_cv[p] for p in data.prompt_ids])
    fractions = LIVE_FRACTIONS_QUICK if opts.quick else LIVE_FRACTIONS_FULL
    policies: dict[str, Any] = {}
    meta: dict[str, tuple[Any, float, float]] = {}
    for pair in data.spec.pairs:
        s = scores[pair.name]["cv"]
        for f, t in zip(
            fractions, ev.thresholds_for_fractions(s, np.asarray(fractions)), strict=True
        ):
            name = f"{pair.name}-t{round(f * 100):03d}"
            policies[name] = {
                "type": "route",
                "cheap": live.upstream_name(pair.cheap),
                "expensive": live.upstream_name(pair.expensive),
                "predictor_output": pair.score_output,
                "threshold": t,
            }
            meta[name] = (pair, f, t)
    yaml_text = live.policy_yaml(replay_url, data.arm_keys, policies, table, n_entries=data.n)
    (workdir / f"{data.spec.name}.policy.yaml").write_text(yaml_text, encoding="utf-8")
    results = await live.run_live(
        replay_url,
        yaml_text,
        list(policies),
        data.prompt_ids,
        data.messages,
        concurrency=opts.concurrency,
        progress=opts.progress,
        desc=data.spec.name,
    )
    data.meta["live"] = {name: [r.arm for r in rows] for name, rows in results.items()}
    checks = []
    for name, rows in results.items():
        pair, f, t = meta[name]
        s = scores[pair.name]["cv"]
        want_exp = s >= t
        got_exp = np.asarray([r.arm == "expensive" for r in rows])
        want_arm = np.where(want_exp, pair.expensive, pair.cheap)
        cols = [data.col(r.replay_arm) if r.replay_arm in data.arm_keys else -1 for r in rows]
        q_live = np.asarray([data.reward[i, c] if c >= 0 else np.nan for i, c in enumerate(cols)])
        q_off = np.where(
            want_exp, data.reward[:, data.col(pair.expensive)], data.reward[:, data.col(pair.cheap)]
        )
        usd = np.asarray([live_usd(r) for r in rows])
        checks.append(
            {
                "policy": name,
                "pair": pair.name,
                "threshold": t,
                "target_frac": f,
                "requests": len(rows),
                "frac_expensive_live": float(got_exp.mean()),
                "frac_expensive_offline": float(want_exp.mean()),
                "quality_live": float(np.nanmean(q_live)),
                "quality_offline": float(q_off.mean()),
                "decision_mismatches": int((got_exp != want_exp).sum()),
                "answer_mismatches": int(
                    sum(r.replay_arm != a for r, a in zip(rows, want_arm, strict=True))
                ),
                # MMLU repeats a few questions verbatim; the replay serves the first recording.
                "replayed_other_prompt_id": int(
                    sum(
                        r.replay_prompt_id != pid
                        for r, pid in zip(rows, data.prompt_ids, strict=True)
                    )
                ),
                "cost_usd_per_request_live": float(np.nanmean(usd)),
                "_usd": usd,
                "_arms": [r.replay_arm for r in rows],
            }
        )
    return checks


def adopt_live_costs(data: SuiteData, checks: Sequence[dict[str, Any]]) -> bool:
    """Per-prompt realised USD of each arm from the live all-cheap/all-expensive runs."""
    adopted = False
    for c in checks:
        if c["target_frac"] not in (0.0, 1.0) or c["decision_mismatches"]:
            continue
        for i, arm in enumerate(c["_arms"]):
            if arm in data.arm_keys and np.isfinite(c["_usd"][i]):
                data.cost_usd[i, data.col(arm)] = c["_usd"][i]
                adopted = True
    return adopted


async def live_ladder(
    opts: LiveOptions, data: SuiteData, preds_cv: Mapping[str, Any], replay_url: str, workdir: Path
) -> list[dict[str, Any]]:
    """Run the ladder live at a few λ; check decisions against the offline argmax."""
    table = workdir / f"{data.spec.name}.oof.jsonl"
    live.write_table(table, data.messages, [preds_cv[p] for p in data.prompt_ids])
    est = data.cost_usd.mean(axis=0)
    arms = [
        {
            "name": k,
            "upstream": live.upstream_name(k),
            "n": 1,
            "predictor_output": f"p_{k}",
            "cost_usd": float(est[j]),
        }
        for j, k in enumerate(data.arm_keys)
    ]
    lams = LADDER_LIVE_LAMBDAS[::2] if opts.quick else LADDER_LIVE_LAMBDAS
    policies = {
        f"ladder-{i}": {"type": "ladder", "arms": arms, "lambda": lam} for i, lam in enumerate(lams)
    }
    yaml_text = live.policy_yaml(replay_url, data.arm_keys, policies, table, n_entries=data.n)
    results = await live.run_live(
        replay_url,
        yaml_text,
        list(policies),
        data.prompt_ids,
        data.messages,
        concurrency=opts.concurrency,
        progress=opts.progress,
        desc=data.spec.name,
    )
    data.meta["live"] = {name: [r.arm for r in rows] for name, rows in results.items()}
    p = np.asarray([[preds_cv[pid][f"p_{k}"] for k in data.arm_keys] for pid in data.prompt_ids])
    checks = []
    for (name, rows), lam in zip(results.items(), lams, strict=True):
        want = np.argmax(p - lam * est[None, :], axis=1)
        got = np.asarray(
            [data.arm_keys.index(r.arm) if r.arm in data.arm_keys else -1 for r in rows]
        )
        rows_i = np.arange(data.n)
        checks.append(
            {
                "policy": name,
                "lambda": lam,
                "requests": len(rows),
                "decision_mismatches": int((got != want).sum()),
                "answer_mismatches": int(
                    sum(r.replay_arm != data.arm_keys[w] for r, w in zip(rows, want, strict=True))
                ),
                "quality_offline": float(data.reward[rows_i, want].mean()),
                "quality_live": float(
                    np.mean(
                        [
                            data.reward[i, data.col(r.replay_arm)]
                            if r.replay_arm in data.arm_keys
                            else np.nan
                            for i, r in enumerate(rows)
                        ]
                    )
                ),
            }
        )
    return checks
