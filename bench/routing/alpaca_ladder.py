"""``alpaca-eval-ladder``: routing 805 AlpacaEval instructions among chat models of very
different cost; quality = the GPT-4 judge's win rate against text-davinci-003.

Cost of a model on a prompt = prompt tokens × its input price + its recorded output's tokens ×
its output price (list prices from litellm's bundled price map, :func:`ladder_prices`, each
model's key and the litellm version written into the result; tokens counted with
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

import datetime
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.multisample.predict import embed_prompts, oof_success_rate
from bench.routing.metrics import apgr, cpt, threshold_sweep
from bench.routing.random_baseline import expected_random_sweep, random_apgr_interval
from recorded_data.every_dataset import load_alpaca_ladder_rows

__all__ = [
    "LADDER_MODELS",
    "PRICE_KEYS",
    "evaluate_alpaca_ladder",
    "ladder_costs",
    "ladder_prices",
    "ladder_rows",
    "load_alpaca_result",
    "report_lines",
    "write_alpaca_ladder",
]

SUITE = "alpaca-eval-ladder"

# Each ladder model's key in litellm's bundled price map (public list prices: Replicate's for
# the Llama 2 chat models, OpenAI's for the GPT models), in the order of the suite's issue.
PRICE_KEYS: Mapping[str, str] = {
    "llama-2-7b-chat-hf": "replicate/meta/llama-2-7b-chat",
    "llama-2-70b-chat-hf": "replicate/meta/llama-2-70b-chat",
    "gpt-3.5-turbo-1106": "gpt-3.5-turbo-1106",
    "gpt4_1106_preview": "gpt-4-1106-preview",
}
LADDER_MODELS = tuple(PRICE_KEYS)


@dataclass(frozen=True)
class Price:
    """A list price in USD per million tokens, and where it was read."""

    in_per_mtok_usd: float
    out_per_mtok_usd: float
    source: str


def ladder_prices() -> dict[str, Price]:
    """Every ladder model's price from litellm's bundled price map (read as JSON from the
    installed wheel: no import of litellm, no network); the source names the key and the
    litellm version, which dates the map."""
    from proxy.upstream.pricing import bundled_price, bundled_price_map_version

    version = bundled_price_map_version()
    if version is None:
        raise RuntimeError(
            f"{SUITE} prices come from litellm's bundled price map: pip install litellm"
        )
    prices = {}
    for model, key in PRICE_KEYS.items():
        found = bundled_price(key)
        if found is None:
            raise RuntimeError(f"litellm {version}'s bundled price map has no {key!r}")
        prices[model] = Price(
            round(found.in_per_mtok_usd, 9),  # per-token floats × 1e6: drop the float noise
            round(found.out_per_mtok_usd, 9),
            f"litellm {version} model_prices_and_context_window_backup.json, key {key}",
        )
    return prices


PAIR = ("llama-2-7b-chat-hf", "gpt4_1106_preview")


def ladder_rows(data_dir: Path) -> list[dict[str, Any]]:
    """The recorded ladder rows on which every ladder model's judged answer was recorded.

    All prompts but one; the online benchmark's ladder suite starts from the same rows.
    """
    rows = load_alpaca_ladder_rows(data_dir)
    return [r for r in rows if all(m in r["models"] for m in LADDER_MODELS)]


def _load(data_dir: Path, quick: bool, seed: int) -> list[dict[str, Any]]:
    rows = ladder_rows(data_dir)
    if quick:
        keep = np.sort(np.random.default_rng(seed).permutation(len(rows))[:200])
        rows = [rows[int(i)] for i in keep]
    return rows


def ladder_costs(
    rows: Sequence[dict[str, Any]],
    prices: Mapping[str, Price],
    models: Sequence[str] = LADDER_MODELS,
) -> np.ndarray:
    """USD of each row's answer by each of ``models``: its prompt's and recorded answer's tokens
    at the model's list prices (rows × models)."""
    from proxy.wire.tokens import count_message_tokens, count_tokens

    cost = np.empty((len(rows), len(models)))
    for i, row in enumerate(rows):
        prompt_tokens = count_message_tokens(row["messages"])
        for j, model in enumerate(models):
            price = prices[model]
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
    sweeps = {
        name: threshold_sweep(s, qw, qs, split_ties=name == "oracle") for name, s in scores.items()
    }
    # Random routing: its expectation in closed form, its spread over random routings.
    sweeps["random"] = expected_random_sweep(len(qw), float(qw.mean()), float(qs.mean()))
    for name, sweep in sweeps.items():
        out[f"apgr_{name}"] = apgr(sweep.frac_expensive, sweep.quality, qw.mean(), qs.mean())
        for target in (50, 80):
            out[f"cpt{target}_{name}"] = cpt(
                sweep.frac_expensive, sweep.quality, qw.mean(), qs.mean(), target / 100
            )
    spread = random_apgr_interval(qw, qs)
    out["apgr_random_ci95"] = spread["apgr_ci95"]
    out["random_note"] = spread["note"]
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
    prices = ladder_prices()
    read_on = datetime.datetime.now(datetime.UTC).date().isoformat()
    cost = ladder_costs(rows, prices)
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
                "price_map_key": PRICE_KEYS[m],
                "source": p.source,
                "date": read_on,
            }
            for m, p in prices.items()
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


def _spread(ci: Any) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    return f" [{_f(ci[0])}, {_f(ci[1])}]"


def report_lines(doc: Mapping[str, Any]) -> list[str]:
    """The suite's section of ``REPORT.md``."""
    lines = [
        f"## {SUITE} (chat routing by cost, {doc['mode']}, n = {doc['n_prompts']})",
        "",
        f"Quality = {doc['quality']}. Prices (USD per Mtok in/out, read on "
        f"{next(iter(doc['prices'].values()))['date']}): "
        + "; ".join(
            f"{m} {p['in_per_mtok_usd']:g}/{p['out_per_mtok_usd']:g} ({p['source']})"
            for m, p in doc["prices"].items()
        )
        + f". {doc['token_counting']}.",
        "",
        "| pair | APGR cv | APGR lodo | APGR random: expected [95% range of draws] | "
        "APGR oracle | CPT50 cv / lodo | CPT80 cv / lodo |",
        "|---|---|---|---|---|---|---|",
        f"| {PAIR[0]} → {PAIR[1]} | {_f(doc['apgr_cv'])} | {_f(doc['apgr_lodo'])} | "
        f"{_f(doc['apgr_random'])}{_spread(doc.get('apgr_random_ci95'))} | "
        f"{_f(doc['apgr_oracle'])} | "
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
        "APGR random is random routing's expectation (0.5 by construction: its expected "
        "quality is linear in the share sent to GPT-4); the interval is the 2.5–97.5 "
        "percentile range of what one random routing of these prompts scores. "
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
