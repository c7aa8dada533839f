"""``alpaca-eval-ladder``: routing 805 AlpacaEval instructions among chat models of very
different cost; quality = the GPT-4 judge's win rate against text-davinci-003.

Cost of a model on a prompt = prompt tokens × its input price + its recorded output's tokens ×
its output price (public list prices, :data:`PRICES`, with their date; tokens counted with
tiktoken's cl100k_base for every model, an approximation for the Llama tokenizer).

Reported: the ``ladder`` policy (each prompt takes the model maximising predicted win
probability − λ · cost, λ swept) against the best single model at each budget and against
random mixing of whole models along the cost axis (the upper convex hull of the single models);
and RouteLLM's APGR/CPT for the pair llama-2-7b-chat → gpt4_1106_preview, with predictions out
of fold (``cv``: heads on the shipped predictor's frozen embeddings, grouped 5-fold, smooth labels)
and leave-one-dataset-out (``lodo``: the shipped predictor's ``gain``, trained only on GSM8K, MMLU
and MT-Bench), beside random and the realised-outcome oracle.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.metrics import apgr, cpt, threshold_sweep
from bench.multisample_predict import embed_prompts, oof_success_rate

__all__ = [
    "LADDER_MODELS",
    "PRICES",
    "evaluate_alpaca_ladder",
    "load_alpaca_result",
    "report_lines",
    "write_alpaca_ladder",
]

SUITE = "alpaca-eval-ladder"
PRICES_DATE = "2024-01-15"


@dataclass(frozen=True)
class Price:
    """A public list price in USD per million tokens, and where it was listed."""

    in_per_mtok_usd: float
    out_per_mtok_usd: float
    source: str


PRICES: Mapping[str, Price] = {
    "llama-2-7b-chat-hf": Price(0.20, 0.20, "Together AI serverless, 4.1B-8B tier"),
    "llama-2-70b-chat-hf": Price(0.90, 0.90, "Together AI serverless, 41B-80B tier"),
    "gpt-3.5-turbo-1106": Price(1.00, 2.00, "OpenAI API pricing"),
    "gpt4_1106_preview": Price(10.00, 30.00, "OpenAI API pricing (gpt-4-1106-preview)"),
}
LADDER_MODELS = tuple(PRICES)  # cheapest first
PAIR = ("llama-2-7b-chat-hf", "gpt4_1106_preview")


def _load(data_dir: Path, quick: bool, seed: int) -> list[dict[str, Any]]:
    with (data_dir / "alpaca_eval" / "ladder.jsonl").open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    # A prompt counts only if every ladder model's judged answer was recorded (all but one).
    rows = [r for r in rows if all(m in r["models"] for m in LADDER_MODELS)]
    if quick:
        keep = np.sort(np.random.default_rng(seed).permutation(len(rows))[:200])
        rows = [rows[int(i)] for i in keep]
    return rows


def _costs(rows: list[dict[str, Any]]) -> np.ndarray:
    from proxy.tokens import count_message_tokens, count_tokens

    cost = np.empty((len(rows), len(LADDER_MODELS)))
    for i, row in enumerate(rows):
        prompt_tokens = count_message_tokens(row["messages"])
        for j, model in enumerate(LADDER_MODELS):
            price = PRICES[model]
            out_tokens = count_tokens(row["models"][model]["output"])
            cost[i, j] = (
                prompt_tokens * price.in_per_mtok_usd + out_tokens * price.out_per_mtok_usd
            ) / 1e6
    return cost


def _hull(cost: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper-left convex hull of (cost, quality) points: what random mixing of them reaches."""
    pts = sorted(zip(cost.tolist(), quality.tolist(), strict=True))
    hull: list[tuple[float, float]] = []
    for p in pts:
        if hull and p[1] <= hull[-1][1]:
            continue  # costs more, no better
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (y2 - y1) * (p[0] - x1) <= (p[1] - y1) * (x2 - x1):
                hull.pop()  # the middle point lies under the chord
            else:
                break
        hull.append(p)
    xs, ys = zip(*hull, strict=True)
    return np.asarray(xs), np.asarray(ys)


def _ladder_curve(
    p_hat: np.ndarray, reward: np.ndarray, cost: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    mean_cost = cost.mean(0)
    top = float((p_hat.max(1) - p_hat.min(1)).max() / max(mean_cost.min(), 1e-12))
    lambdas = np.r_[0.0, np.geomspace(1e-3, 10 * top, 400)]
    rows = np.arange(len(p_hat))
    xs, ys = [], []
    for lam in lambdas:
        pick = np.argmax(p_hat - lam * mean_cost[None, :], axis=1)
        xs.append(float(cost[rows, pick].mean()))
        ys.append(float(reward[rows, pick].mean()))
    return np.asarray(xs), np.asarray(ys)


def _quality_within(xs: np.ndarray, ys: np.ndarray, budget: float) -> float | None:
    ok = xs <= budget * (1 + 1e-9)
    return float(ys[ok].max()) if ok.any() else None


def _pair(scores: Mapping[str, np.ndarray], reward: np.ndarray) -> dict[str, Any]:
    weak, strong = (LADDER_MODELS.index(m) for m in PAIR)
    qw, qs = reward[:, weak], reward[:, strong]
    out: dict[str, Any] = {
        "weak": PAIR[0],
        "strong": PAIR[1],
        "q_weak": float(qw.mean()),
        "q_strong": float(qs.mean()),
    }
    for name, s in scores.items():
        sweep = threshold_sweep(s, qw, qs, split_ties=name in ("random", "oracle"))
        out[f"apgr_{name}"] = apgr(sweep.frac_expensive, sweep.quality, qw.mean(), qs.mean())
        for target in (50, 80):
            out[f"cpt{target}_{name}"] = cpt(
                sweep.frac_expensive, sweep.quality, qw.mean(), qs.mean(), target / 100
            )
    return out


def evaluate_alpaca_ladder(
    data_dir: Path,
    *,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The suite's result document (``bench/results/alpaca-eval-ladder.json``)."""
    rows = _load(data_dir, quick, seed)
    reward = np.asarray([[r["models"][m]["win"] for m in LADDER_MODELS] for r in rows], float)
    log(f"  {SUITE}: {len(rows)} prompts; counting tokens …")
    cost = _costs(rows)
    messages = [r["messages"] for r in rows]
    embeddings = embed_prompts(messages, progress=progress)
    ids = [str(r["id"]) for r in rows]
    log(f"  {SUITE}: out-of-fold heads per model …")
    p_hat = np.stack(
        [
            oof_success_rate(embeddings, reward[:, j], ids, seed=seed).p_hat
            for j in range(len(LADDER_MODELS))
        ],
        1,
    )
    from predictor_onnx.runtime import OnnxPredictor

    shipped = OnnxPredictor.load()
    lodo_gain = np.asarray([p["gain"] for p in shipped.predict_sync(messages)])
    weak, strong = (LADDER_MODELS.index(m) for m in PAIR)
    scores = {
        "cv": p_hat[:, strong] - p_hat[:, weak],
        "lodo": lodo_gain,
        "random": np.random.default_rng(seed).permutation(len(rows)).astype(float),
        "oracle": reward[:, strong] - reward[:, weak],
    }
    pair = _pair(scores, reward)
    arm_cost, arm_q = cost.mean(0), reward.mean(0)
    hull_x, hull_y = _hull(arm_cost, arm_q)
    lad_x, lad_y = _ladder_curve(p_hat, reward, cost)
    budgets = []
    # Each model's own cost, plus budgets between the two dearest arms, where mixing matters.
    points = [(float(c), m) for c, m in zip(arm_cost, LADDER_MODELS, strict=True)]
    points += [(float(c), "") for c in np.geomspace(np.sort(arm_cost)[-2], arm_cost.max(), 5)[1:-1]]
    for b, model in sorted(points):
        best = max(float(arm_q[i]) for i in range(len(LADDER_MODELS)) if arm_cost[i] <= b)
        budgets.append(
            {
                "budget_usd": b,
                "at_model": model,
                "best_single_model": best,
                "random_mix": float(np.interp(b, hull_x, hull_y)),
                "ladder_cv": _quality_within(lad_x, lad_y, b),
            }
        )
    return {
        "suite": SUITE,
        "mode": "quick" if quick else "full",
        "n_prompts": len(rows),
        "quality": "GPT-4 judge win rate against text-davinci-003 (AlpacaEval 1)",
        "prices": {
            m: {
                "in_per_mtok_usd": p.in_per_mtok_usd,
                "out_per_mtok_usd": p.out_per_mtok_usd,
                "source": p.source,
                "date": PRICES_DATE,
            }
            for m, p in PRICES.items()
        },
        "token_counting": "tiktoken cl100k_base for every model (approximate for Llama)",
        "arms": {
            m: {"win_rate": float(arm_q[j]), "mean_cost_usd": float(arm_cost[j])}
            for j, m in enumerate(LADDER_MODELS)
        },
        **{k: v for k, v in pair.items() if k.startswith(("apgr_", "cpt"))},
        "pair": pair,
        "ladder": {
            "budgets": budgets,
            "curve_cv": [[float(x), float(y)] for x, y in zip(lad_x, lad_y, strict=True)],
            "random_mix_hull": [[float(x), float(y)] for x, y in zip(hull_x, hull_y, strict=True)],
        },
        "predictor": {
            "cv": "logistic heads on the shipped predictor's frozen embeddings, one "
            "per model, smooth labels (the judged win), grouped 5-fold",
            "lodo": "the shipped predictor's gain (trained on GSM8K, MMLU, MT-Bench; "
            "never saw AlpacaEval)",
        },
    }


def _f(x: Any, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "—"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def report_lines(doc: Mapping[str, Any]) -> list[str]:
    """The suite's section of ``REPORT.md``."""
    lines = [
        f"## {SUITE} (chat routing by cost, {doc['mode']}, n = {doc['n_prompts']})",
        "",
        f"Quality = {doc['quality']}. Prices (USD per Mtok in/out, listed {PRICES_DATE}): "
        + "; ".join(
            f"{m} {p['in_per_mtok_usd']}/{p['out_per_mtok_usd']} ({p['source']})"
            for m, p in doc["prices"].items()
        )
        + f". {doc['token_counting']}.",
        "",
        "| pair | APGR cv | APGR lodo | APGR random | APGR oracle | CPT50 cv / lodo | "
        "CPT80 cv / lodo |",
        "|---|---|---|---|---|---|---|",
        f"| {PAIR[0]} → {PAIR[1]} | {_f(doc['apgr_cv'])} | {_f(doc['apgr_lodo'])} | "
        f"{_f(doc['apgr_random'])} | {_f(doc['apgr_oracle'])} | "
        f"{_f(doc['cpt50_cv'], True)} / {_f(doc['cpt50_lodo'], True)} | "
        f"{_f(doc['cpt80_cv'], True)} / {_f(doc['cpt80_lodo'], True)} |",
        "",
        "| budget (USD/request) | = mean cost of | best single model | random mix of "
        "models | ladder cv |",
        "|---|---|---|---|---|",
    ]
    for b in doc["ladder"]["budgets"]:
        lines.append(
            f"| ${b['budget_usd']:.6f} | {b['at_model'] or '—'} | {_f(b['best_single_model'])}"
            f" | {_f(b['random_mix'])} | {_f(b['ladder_cv'])} |"
        )
    lines += [
        "",
        "The oracle knows each model's one judged outcome (RouteLLM's oracle), so it "
        "includes judge noise, not only difficulty. Random mixing of whole models along "
        "the cost axis is the fair baseline for a ladder.",
        "",
    ]
    return lines


def write_alpaca_ladder(
    data_dir: Path, out_dir: Path, *, quick: bool = False, progress: bool = True
) -> Path:
    """Evaluate the suite and write ``<out_dir>/alpaca-eval-ladder.json``."""
    doc = evaluate_alpaca_ladder(data_dir, quick=quick, progress=progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{SUITE}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return path


def load_alpaca_result(out_dir: Path) -> dict[str, Any] | None:
    """The suite's result in ``out_dir``, if it was run there."""
    path = out_dir / f"{SUITE}.json"
    if not path.is_file():
        return None
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc
