"""The real suites as :class:`~bench.online.suite.OnlineSuite` s, cached per suite and predictor.

The prior is what a deployment starts from on traffic the predictor never saw:

* ``routellm-gsm8k``, ``routellm-mmlu``, ``routellm-mtbench``: the shipped file trains on these
  very prompts, so its own outputs would be in-sample. The prior is the shipped recipe (the
  model folder's encoder and head configuration) trained on the *other two* datasets only: the
  suites' leave-one-dataset-out predictions (``apgr_lodo`` in ``bench/results/<suite>.json``).
  Rewards and per-prompt costs are the suites' own (:func:`bench.suites.build_suite`: API prices
  × tokens of the prompt and of the recorded answer).
* ``alpaca-eval-ladder`` (pair llama-2-7b-chat → gpt-4-1106-preview): the shipped predictor's
  ``p_weak`` / ``p_strong`` as served (those outputs are trained on GSM8K, MMLU and MT-Bench
  only). Costs: litellm's bundled list prices × tokens, as :mod:`bench.routing.alpaca_ladder` prices
  them. The 5 prompts whose judge recorded no valid preference (−1) for either arm are left out
  (a reward must lie in [0, 1]).

Embeddings are the shipped encoder's (:func:`bench.multisample_predict.embed_prompts`, itself
cached per encoder hash). The prepared suite is cached as ``.npz`` under
``<user cache dir>/adaptive-proxy/online/``, keyed by the predictor's file hashes, its head
configuration, the records' ids and rewards, and this module's layout version, so a changed
model or data set is never served stale.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.online.suite import SUITE_FORMAT, OnlineSuite

ROUTELLM_SUITES = ("routellm-gsm8k", "routellm-mmlu", "routellm-mtbench")
LADDER_SUITE = "alpaca-eval-ladder"
ONLINE_SUITES = (*ROUTELLM_SUITES, LADDER_SUITE)
#: Where the committed suite results (the out-of-fold reference) live.
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/adaptive-proxy/online``, else ``~/.cache/adaptive-proxy/online``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "adaptive-proxy" / "online"


def committed_cv_apgr(suite: str, results_dir: Path = RESULTS_DIR) -> float | None:
    """The suite's committed out-of-fold APGR (``apgr_cv``), or ``None`` when not committed."""
    path = results_dir / f"{suite}.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text(encoding="utf-8")).get("apgr_cv")
    return None if value is None else float(value)


def predictor_fingerprint(model_dir: Path | None = None) -> dict[str, Any]:
    """The shipped predictor's version, file hashes and head configuration (its manifest)."""
    from predictor_onnx.evaluate import default_model_dir
    from predictor_onnx.manifest import read_manifest

    manifest = read_manifest(model_dir or default_model_dir())
    return {
        "version": manifest.raw.get("version"),
        "files": dict(manifest.raw.get("files", {})),
        "head_config": dict(manifest.raw.get("head_config", {})),
    }


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def prepare_suite(
    name: str,
    data_dir: Path,
    *,
    cache_dir: Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> OnlineSuite:
    """The suite ``name`` of :data:`ONLINE_SUITES`, from the cache when it is current."""
    if name not in ONLINE_SUITES:
        raise ValueError(f"unknown online suite {name!r}; expected one of {ONLINE_SUITES}")
    fingerprint = predictor_fingerprint()
    if name == LADDER_SUITE:
        rows = _ladder_rows(data_dir)
        data_key: Any = [[r["id"], _pair_wins(r)] for r in rows]
    else:
        from recorded_data.records import load_records

        records = load_records(data_dir)
        data_key = [[r.dataset, r.prompt_id, sorted(r.rewards.items())] for r in records]
    key = _digest(SUITE_FORMAT, name, fingerprint, data_key)
    path = (cache_dir or default_cache_dir()) / f"{name}-{key}.npz"
    if path.is_file():
        try:
            return OnlineSuite.load(path)
        except (OSError, ValueError, KeyError) as exc:
            log(f"  {name}: cache {path} unreadable ({exc}); rebuilding")
    log(f"  {name}: preparing embeddings and prior (cached in {path.parent}) …")
    if name == LADDER_SUITE:
        suite = _ladder_suite(rows, fingerprint, progress=progress)
    else:
        suite = _routellm_suite(name, records, fingerprint, progress=progress)
    suite.save(path)
    return suite


def _routellm_suite(
    name: str, records: Sequence[Any], fingerprint: dict[str, Any], *, progress: bool
) -> OnlineSuite:
    from bench.multisample.predict import embed_prompts
    from bench.routing.suites import ARMS, SUITES, build_suite
    from predictor_onnx.evaluate import out_of_fold_predictions

    spec = SUITES[name]
    pair = spec.pairs[0]
    data = build_suite(spec, records)
    lodo = out_of_fold_predictions(records, scheme="lodo", progress=progress)
    cols = [data.col(pair.cheap), data.col(pair.expensive)]
    prior = np.asarray(
        [[lodo[pid]["p_weak"], lodo[pid]["p_strong"]] for pid in data.prompt_ids], np.float64
    )
    embedding = embed_prompts(data.messages, progress=progress)
    return OnlineSuite(
        name=name,
        prompt_ids=tuple(data.prompt_ids),
        embedding=np.asarray(embedding, np.float32),
        prior=prior,
        reward=data.reward[:, cols],
        cost_usd=data.cost_usd[:, cols],
        arm_models=(ARMS[pair.cheap].model, ARMS[pair.expensive].model),
        cv_apgr=committed_cv_apgr(name),
        provenance={
            "prior": "the shipped predictor's recipe (encoder and head configuration of its "
            f"manifest, version {fingerprint['version']}) trained on the other RouteLLM "
            f"datasets only, not on {spec.dataset} (the suite's leave-one-dataset-out "
            "predictions); the shipped file itself trains on these prompts",
            "outcomes": spec.description,
            "cost": "API prices × tokens of the prompt and of the recorded answer "
            "(bench.routing.suites cost model)",
            "predictor": fingerprint,
        },
    )


def _ladder_rows(data_dir: Path) -> list[dict[str, Any]]:
    from bench.routing.alpaca_ladder import ladder_rows

    # The ladder suite's prompts (every ladder model judged), less a −1 ("no valid preference")
    # on either arm of the pair.
    rows = ladder_rows(data_dir)
    return [r for r in rows if all(0.0 <= w <= 1.0 for w in _pair_wins(r))]


def _pair_wins(row: dict[str, Any]) -> list[float]:
    from bench.routing.alpaca_ladder import PAIR

    return [float(row["models"][m]["win"]) for m in PAIR]


def _ladder_suite(
    rows: Sequence[dict[str, Any]], fingerprint: dict[str, Any], *, progress: bool
) -> OnlineSuite:
    from bench.multisample.predict import embed_prompts
    from bench.routing.alpaca_ladder import PAIR, ladder_costs, ladder_prices
    from predictor_onnx.runtime import OnnxPredictor

    prices = ladder_prices()
    messages = [r["messages"] for r in rows]
    cost = ladder_costs(rows, prices, PAIR)
    shipped = OnnxPredictor.load()
    try:
        served = shipped.predict_sync(messages)
    finally:
        asyncio.run(shipped.aclose())
    prior = np.asarray([[p["p_weak"], p["p_strong"]] for p in served], np.float64)
    return OnlineSuite(
        name=LADDER_SUITE,
        prompt_ids=tuple(str(r["id"]) for r in rows),
        embedding=np.asarray(embed_prompts(messages, progress=progress), np.float32),
        prior=prior,
        reward=np.asarray([_pair_wins(r) for r in rows], np.float64),
        cost_usd=cost,
        arm_models=(PAIR[0], PAIR[1]),
        cv_apgr=committed_cv_apgr(LADDER_SUITE),
        provenance={
            "prior": f"the shipped predictor (version {fingerprint['version']}) as served: "
            "p_weak / p_strong, outputs trained on GSM8K, MMLU and MT-Bench only",
            "outcomes": "AlpacaEval 1 GPT-4 judge wins over text-davinci-003; prompts with a "
            "-1 (no valid preference) on either arm left out",
            "cost": "; ".join(f"{m}: {prices[m].source}" for m in PAIR),
            "predictor": fingerprint,
        },
    )
