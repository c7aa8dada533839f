"""Result files: ``<suite>.json``, ``<suite>.records.jsonl``, ``<suite>.png`` and ``REPORT.md``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.routing import evaluate as ev
from bench.routing.report_text import ROUTELLM_PUBLISHED as ROUTELLM_PUBLISHED
from bench.routing.suites import SUITES, SuiteData


def json_safe(obj: Any) -> Any:
    """JSON-safe: NaN/inf → null, numpy scalars → Python numbers."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_suite(
    out_dir: Path,
    result: Mapping[str, Any],
    data: SuiteData,
    preds: Mapping[str, Mapping[str, Mapping[str, float]]],
) -> None:
    """The suite's JSON, its per-prompt records and its plot."""
    name = result["suite"]
    result = {
        **result,
        "records_fields": {
            "decisions": "per pair and scheme, 1 = expensive at each threshold of "
            "decision_grid_frac_expensive",
            "decision_grid_frac_expensive": [float(x) for x in ev.DECISION_GRID],
            "live_arm": "arm chosen by the live proxy for each of live_policies",
            "live_policies": list(data.meta.get("live", {})),
        },
    }
    (out_dir / f"{name}.json").write_text(
        json.dumps(json_safe(dict(result)), indent=1) + "\n", encoding="utf-8"
    )
    outputs = (
        [p.score_output for p in data.spec.pairs] + [f"p_{k}" for k in data.arm_keys]
        if data.spec.pairs
        else [f"p_{k}" for k in data.arm_keys]
    )
    outputs = list(dict.fromkeys(outputs))
    decisions: dict[str, dict[str, list[str]]] = {}
    for pair in data.spec.pairs:
        decisions[pair.name] = {
            s: ev.decisions_bits(
                np.asarray([preds[s][pid][pair.score_output] for pid in data.prompt_ids])
            )
            for s in preds
        }
    live_arms: Mapping[str, list[str]] = data.meta.get("live", {})
    with (out_dir / f"{name}.records.jsonl").open("w", encoding="utf-8") as fh:
        for i, pid in enumerate(data.prompt_ids):
            row: dict[str, Any] = {
                "prompt_id": pid,
                "predictions": {s: {o: round(preds[s][pid][o], 4) for o in outputs} for s in preds},
                "outcome": {k: float(data.reward[i, j]) for j, k in enumerate(data.arm_keys)},
                "cost_usd": {
                    k: float(f"{data.cost_usd[i, j]:.4g}") for j, k in enumerate(data.arm_keys)
                },
            }
            if decisions:
                row["decisions"] = {
                    p: {s: bits[i] for s, bits in d.items()} for p, d in decisions.items()
                }
            if live_arms:
                # The arm the live proxy chose, one entry per live policy (in policy order).
                row["live_arm"] = [arms[i] for arms in live_arms.values()]
            fh.write(json.dumps(row) + "\n")
    plot_suite(out_dir / f"{name}.png", result)


def plot_suite(path: Path, result: Mapping[str, Any]) -> None:
    """Quality vs realised cost: the policy (cv, lodo), random, the uniform arms, the oracle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    if "pairs" in result:
        main = result["pairs"][result["headline_pair"]]
        for key, label, style in (
            ("cv", "adaptive (out-of-fold)", "-"),
            ("lodo", "adaptive (leave-one-suite-out)", "--"),
        ):
            pts = main[key]["sweep"]
            ax.plot(
                [100 * p["frac_expensive"] for p in pts],
                [p["quality"] for p in pts],
                style,
                label=label,
            )
        for key, label, style in (
            ("sweep_random", "random (expected)", ":"),
            ("sweep_oracle", "oracle", "-."),
        ):
            pts = main[key]
            ax.plot(
                [100 * p["frac_expensive"] for p in pts],
                [p["quality"] for p in pts],
                style,
                label=label,
            )
        ax.scatter(
            [0, 100],
            [main["quality_cheap"], main["quality_expensive"]],
            color="k",
            zorder=5,
            label=f"uniform: all {main['cheap']} / all {main['expensive']}",
        )
        ax.set_xlabel(f"requests sent to {main['expensive']} (%)")
    else:
        lad = result["ladder"]
        for key, label, style in (
            ("cv", "ladder (out-of-fold)", "-"),
            ("lodo", "ladder (leave-one-suite-out)", "--"),
        ):
            pts = sorted(lad[key]["curve"], key=lambda p: p["cost_usd_per_request"])
            ax.plot(
                [p["cost_usd_per_request"] for p in pts],
                [p["quality"] for p in pts],
                style,
                label=label,
            )
        pts = sorted(lad["oracle"]["curve"], key=lambda p: p["cost_usd_per_request"])
        ax.plot(
            [p["cost_usd_per_request"] for p in pts],
            [p["quality"] for p in pts],
            "-.",
            label="oracle",
        )
        for a in lad["arms"]:
            ax.scatter([a["cost_usd_per_request"]], [a["quality"]], zorder=5)
            ax.annotate(a["label"], (a["cost_usd_per_request"], a["quality"]), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("realised cost per request (USD, log scale)")
    ax.set_ylabel(result.get("quality", "quality"))
    ax.set_title(f"{result['suite']} (n={result['n_prompts']}, {result.get('mode', '')})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _f(x: Any, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def _ci(res: Mapping[str, Any], scheme: str, key: str, pct: bool = False) -> str:
    block = (res["pairs"][res["headline_pair"]] if "pairs" in res else res["ladder"])[scheme]
    lo, hi = block.get("ci95", {}).get(key, [None, None])
    return f"[{_f(lo, pct)}, {_f(hi, pct)}]"


def _saved(x: Any) -> str:
    """A saving against random mixing; far below zero reads better as a cost multiple."""
    if isinstance(x, float) and x < -1.0:
        return f"{1.0 - x:.0f}× its cost"
    return _f(x, True)


def summary_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """The headline table (Markdown) of the given suite results."""
    lines = [
        "| suite | n | APGR cv [95% CI] | APGR lodo [95% CI] | CPT50 cv | CPT50 lodo | "
        "CPT80 cv | CPT80 lodo | APGR random: expected [95% range of draws] | "
        "saved vs random at PGR 0.5 cv / lodo | "
        "at PGR 0.8 cv / lodo | APGR in expectation: cv / EV limit | APGR oracle (realised) | "
        "RouteLLM best (theirs) APGR / CPT50 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        pub = ROUTELLM_PUBLISHED.get(name)
        pub_s = f"{pub['apgr']:.3f} / {100 * pub['cpt50']:.2f}%" if pub else "—"
        whole = "apgr_random_whole_arms" in r
        key = "apgr_random_whole_arms" if whole else "apgr_random"
        lo, hi = r.get(f"{key}_ci95") or [None, None]
        spread = "" if lo is None or hi is None else f" [{_f(lo)}, {_f(hi)}]"
        rnd_s = f"{_f(r[key])}{spread}{' (whole arms)' if whole else ''}"
        ev = (
            f"{_f(r['apgr_cv_expected'])} / {_f(r['apgr_ev_limit'])}"
            if "apgr_ev_limit" in r
            else "—"
        )
        lines.append(
            f"| {name} | {r['n_prompts']} | {_f(r['apgr_cv'])} {_ci(r, 'cv', 'apgr')} | "
            f"{_f(r['apgr_lodo'])} {_ci(r, 'lodo', 'apgr')} | {_f(r['cpt50_cv'], True)} | "
            f"{_f(r['cpt50_lodo'], True)} | {_f(r['cpt80_cv'], True)} | "
            f"{_f(r['cpt80_lodo'], True)} | {rnd_s} | "
            f"{_saved(r.get('saved_vs_random_pgr50_cv'))} / "
            f"{_saved(r.get('saved_vs_random_pgr50_lodo'))} | "
            f"{_saved(r.get('saved_vs_random_pgr80_cv'))} / "
            f"{_saved(r.get('saved_vs_random_pgr80_lodo'))} | {ev} | "
            f"{_f(r['apgr_oracle'])} | {pub_s} |"
        )
    return "\n".join(lines)


def load_results(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Every suite result present in ``out_dir``, in suite order."""
    out = {}
    for name in SUITES:
        path = out_dir / f"{name}.json"
        if path.is_file():
            out[name] = json.loads(path.read_text(encoding="utf-8"))
    return out


def render_report(out_dir: Path) -> str:
    """The text of ``REPORT.md`` from every suite result in ``out_dir``."""
    from bench.multisample.report import load_multisample_results, multisample_section
    from bench.routing.alpaca_ladder import load_alpaca_result, report_lines
    from bench.routing.matched_quality import explanation_lines
    from bench.routing.report_text import report_markdown

    head = multisample_section(out_dir)
    ladder = load_alpaca_result(out_dir)
    if ladder is not None:
        head += report_lines(ladder)
    routed = load_results(out_dir)
    if routed:
        head += explanation_lines()
    multisample = load_multisample_results(out_dir)
    body = report_markdown(routed, summary_table, multisample) if routed else ""
    if head:
        # The multi-sample headline leads; the routing suites follow under their own heading.
        body = body.replace(
            "# adaptive-proxy cost/quality benchmark",
            "## Routing suites (RouteLLM's APGR/CPT measure)",
            1,
        )
        body = "\n".join(["# adaptive-proxy cost/quality benchmark", "", *head, body])
    return body


def write_report(out_dir: Path) -> Path:
    """``REPORT.md`` from every suite result in ``out_dir``."""
    path = out_dir / "REPORT.md"
    path.write_text(render_report(out_dir), encoding="utf-8")
    return path
