"""``adaptive-proxy bench``: load, predict out of fold, run the live proxy, evaluate, write.

Per suite: the out-of-fold predictions (``cv`` and ``lodo``) go into a table-predictor file;
the live proxy serves a few operating points of each policy end to end (every prompt, OpenAI
SDK); the decisions, answers and usage it returns are checked against the offline computation
from the same predictions and recorded outcomes; the dense sweep (every operating point, for
APGR/CPT) is then computed offline. Routed suites take their per-prompt USD from the live
all-cheap and all-expensive runs (``usage`` × the YAML prices).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import live
from bench.routing import evaluate as ev
from bench.routing.runner_live import adopt_live_costs, live_ladder, live_pairs
from bench.routing.suites import SUITES, SuiteData, build_suite, subsample_records

QUICK_GROUPS = {"gsm8k": 150, "mmlu": 300, "mtbench": 40}
# Modules that may hold the shipped predictor's out-of-fold function, most likely first.
ONNX_OOF_MODULES = (
    "predictor_onnx.oof",
    "predictor_onnx.crossval",
    "predictor_onnx.evaluate",
    "predictor_onnx.train",
    "predictor_onnx.cv",
)

OofFn = Callable[..., dict[str, dict[str, float]]]


@dataclass
class BenchOptions:
    """What one benchmark run does."""

    data_dir: Path
    out_dir: Path
    suites: Sequence[str] = tuple(SUITES)
    quick: bool = False
    predictor: str = "auto"  # auto | onnx | features
    live: bool = True
    n_boot: int = 200
    concurrency: int = 32
    progress: bool = True
    seed: int = 0
    embed_cache_dir: Path | None = None
    log: Callable[[str], None] = field(default=print)


def resolve_predictor(name: str) -> tuple[str, OofFn]:
    """The out-of-fold function: the shipped predictor's (``onnx``), the stand-in
    (``features``), or the shipped one when installed else the stand-in (``auto``)."""
    if name in ("auto", "onnx"):
        for module_name in ONNX_OOF_MODULES:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            fn = getattr(module, "out_of_fold_predictions", None)
            if callable(fn):
                return f"onnx ({module_name})", fn
        if name == "onnx":
            raise RuntimeError("the shipped predictor's out_of_fold_predictions was not found")
    from bench.routing.standin import out_of_fold_predictions

    return "features (STAND-IN: logistic regression on text features)", out_of_fold_predictions


def _score_arrays(
    data: SuiteData, preds: Mapping[str, Mapping[str, Mapping[str, float]]], output: str
) -> dict[str, np.ndarray]:
    return {
        s: np.asarray([p[pid][output] for pid in data.prompt_ids], np.float64)
        for s, p in preds.items()
    }


async def run_suite(
    opts: BenchOptions,
    name: str,
    records: Sequence[Any],
    preds: Mapping[str, Mapping[str, Mapping[str, float]]],
    replay_url: str | None,
    workdir: Path,
) -> dict[str, Any]:
    """Evaluate one suite; returns its result document (not yet written)."""
    spec = SUITES[name]
    data = build_suite(spec, records)
    result: dict[str, Any] = {
        "suite": name,
        "description": spec.description,
        "quality": spec.quality_name,
        "n_prompts": data.n,
    }
    t0 = time.monotonic()
    live_checks: list[dict[str, Any]] = []
    live_error = None
    if replay_url is not None:
        try:
            if spec.pairs:
                scores = {p.name: _score_arrays(data, preds, p.score_output) for p in spec.pairs}
                live_checks = await live_pairs(opts, data, scores, preds["cv"], replay_url, workdir)
                if spec.cost_basis == "tokens":
                    result["costs_from_live_usage"] = adopt_live_costs(data, live_checks)
            else:
                live_checks = await live_ladder(opts, data, preds["cv"], replay_url, workdir)
        except Exception as exc:  # the offline figures still stand; the report says why
            live_error = f"{type(exc).__name__}: {exc}"
            opts.log(f"  live run failed for {name}: {live_error}")
    result["live"] = {
        "checks": [{k: v for k, v in c.items() if not k.startswith("_")} for c in live_checks],
        "error": live_error,
        "seconds": round(time.monotonic() - t0, 1),
    }
    loop = asyncio.get_running_loop()
    if spec.pairs:
        figures = await loop.run_in_executor(None, _evaluate_pairs, opts, data, preds)
    else:
        figures = await loop.run_in_executor(None, _evaluate_ladder, opts, data, preds)
    result.update(figures)
    return {"result": result, "data": data}


def _evaluate_pairs(
    opts: BenchOptions, data: SuiteData, preds: Mapping[str, Mapping[str, Mapping[str, float]]]
) -> dict[str, Any]:
    pairs = {}
    for pair in data.spec.pairs:
        scores = _score_arrays(data, preds, pair.score_output)
        pairs[pair.name] = ev.evaluate_pair(data, pair, scores, n_boot=opts.n_boot, seed=opts.seed)
    main = pairs[data.spec.pairs[0].name]
    top: dict[str, Any] = {"headline_pair": data.spec.pairs[0].name}
    for scheme in ev.SCHEMES:
        for key in ("apgr", "cpt50", "cpt80"):
            top[f"{key}_{scheme}"] = main[scheme][key]
        top[f"oracle_saving_captured_{scheme}"] = main[scheme]["oracle_saving_captured"]
        top[f"saved_at_equal_quality_{scheme}"] = main[scheme]["saved_at_equal_quality"]
        top[f"quality_gain_at_equal_cost_{scheme}"] = main[scheme]["quality_gain_at_equal_cost"]
    top["apgr_random"] = main["random"]["apgr"]
    top["apgr_random_ci95"] = main["random"]["apgr_ci95"]
    top["apgr_oracle"] = main["oracle"]["apgr"]
    if data.spec.name == "gsm8k-procedures":
        top["saved_at_equal_quality"] = main["cv"]["saved_at_equal_quality"]
        top["quality_gain_at_equal_cost"] = main["cv"]["quality_gain_at_equal_cost"]
    return {**top, "pairs": pairs}


def _evaluate_ladder(
    opts: BenchOptions, data: SuiteData, preds: Mapping[str, Mapping[str, Mapping[str, float]]]
) -> dict[str, Any]:
    arrays = {
        s: np.asarray([[p[pid][f"p_{k}"] for k in data.arm_keys] for pid in data.prompt_ids])
        for s, p in preds.items()
    }
    lad = ev.evaluate_ladder(data, arrays, n_boot=opts.n_boot, seed=opts.seed)
    top: dict[str, Any] = {}
    for scheme in ev.SCHEMES:
        for key in ("apgr", "cpt50", "cpt80"):
            top[f"{key}_{scheme}"] = lad[scheme][key]
        top[f"oracle_saving_captured_{scheme}"] = lad[scheme]["oracle_saving_captured"]
    top["apgr_random"] = lad["random"]["apgr"]
    top["apgr_random_ci95"] = lad["random"]["apgr_ci95"]
    top["apgr_oracle"] = lad["oracle"]["apgr"]
    return {**top, "ladder": lad}


async def _predict(
    opts: BenchOptions, records: Sequence[Any]
) -> tuple[str, dict[str, dict[str, dict[str, float]]]]:
    """Out-of-fold predictions of every scheme; ``auto`` falls back to the stand-in when the
    shipped predictor is missing or fails (and says so)."""
    loop = asyncio.get_running_loop()
    label, oof = resolve_predictor(opts.predictor)
    try:
        preds = {
            s: await loop.run_in_executor(
                None,
                functools.partial(
                    oof,
                    records,
                    scheme=s,
                    n_folds=5,
                    seed=opts.seed,
                    embed_cache_dir=opts.embed_cache_dir,
                    progress=opts.progress,
                ),
            )
            for s in ev.SCHEMES
        }
        return label, preds
    except Exception as exc:
        if opts.predictor != "auto" or label.startswith("features"):
            raise
        opts.log(
            f"shipped predictor unavailable ({type(exc).__name__}: {exc}); "
            "falling back to the stand-in"
        )
        return await _predict(_replace_predictor(opts, "features"), records)


def _replace_predictor(opts: BenchOptions, name: str) -> BenchOptions:
    from dataclasses import replace

    return replace(opts, predictor=name)


# Outputs no other dataset can teach a leave-one-suite-out predictor (only GSM8K records the
# decoding procedures); they transfer from the Mixtral/GPT-4 predictions.
LODO_TRANSFER = {
    "p_6b_finetuning": "p_weak",
    "p_6b_verification": "p_strong",
    "p_175b_finetuning": "p_weak",
    "p_175b_verification": "p_strong",
    "gain_6b": "gain",
    "gain_175b": "gain",
}


def fill_lodo_transfer(preds: dict[str, dict[str, float]]) -> int:
    """Fill missing procedure outputs from :data:`LODO_TRANSFER`; returns how many prompts."""
    filled = 0
    for row in preds.values():
        missing = [k for k in LODO_TRANSFER if k not in row and LODO_TRANSFER[k] in row]
        for key in missing:
            row[key] = row[LODO_TRANSFER[key]]
        filled += bool(missing)
    return filled


async def run_bench(opts: BenchOptions) -> dict[str, dict[str, Any]]:
    """The whole benchmark; writes the result files and returns each suite's result."""
    from bench import report
    from recorded_data.records import load_records

    loop = asyncio.get_running_loop()
    records = await loop.run_in_executor(None, load_records, opts.data_dir)
    if opts.quick:
        records = _cap_per_dataset(records, opts.seed)
    label, preds = await _predict(opts, records)
    transferred = fill_lodo_transfer(preds["lodo"])
    if transferred:
        label += f"; lodo transfer for {transferred} prompts (see report)"
    opts.log(f"predictor: {label}; {len(records)} prompts")
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    replay_runner = None
    replay_url = None
    with tempfile.TemporaryDirectory(prefix="adaptive-bench-") as tmp:
        try:
            if opts.live:
                replay_runner, replay_url = await live.start_replay(opts.data_dir)
            for name in opts.suites:
                opts.log(f"suite {name} …")
                out = await run_suite(opts, name, records, preds, replay_url, Path(tmp))
                res = out["result"]
                res["predictor"] = label
                res["mode"] = "quick" if opts.quick else "full"
                await loop.run_in_executor(
                    None, report.write_suite, opts.out_dir, res, out["data"], preds
                )
                results[name] = res
        finally:
            if replay_runner is not None:
                await replay_runner.cleanup()
    report.write_report(opts.out_dir)
    return results


def _cap_per_dataset(records: Sequence[Any], seed: int) -> list[Any]:
    by: dict[str, list[Any]] = {}
    for r in records:
        by.setdefault(r.dataset, []).append(r)
    out: list[Any] = []
    for ds, recs in by.items():
        out += subsample_records(recs, QUICK_GROUPS.get(ds, 100), seed)
    return out
