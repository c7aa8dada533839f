"""The head of ``REPORT.md``: samples saved at equal quality versus uniform best-of-k."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.docs.format import num, pct_ci
from recorded_data.multisample import MULTISAMPLE_SUITES

__all__ = [
    "headline_table",
    "live_points_table",
    "load_multisample_results",
    "multisample_section",
    "point_label",
    "saved_at_k_table",
]

PAPER_CLAIM = "up to 50%"  # Damani et al., ICLR 2025: compute saved at equal quality
METHOD_ORDER = ("adaptive", "sequential", "adaptive_sequential", "oracle")
EXTRA_ORDER = ("oracle_sequential",)


def _pct(x: Any) -> str:
    return "never" if x is None else f"{100 * x:.1f}%"


def _cell(m: Mapping[str, Any], k: str) -> str:
    value = m["saved_at_equal_quality"].get(k)
    lo, hi = m.get("saved_at_equal_quality_ci95", {}).get(k, [None, None])
    if value is None:
        return "never"
    if lo is None or hi is None:
        return _pct(value)
    return f"{_pct(value)} [{_pct(lo)}, {_pct(hi)}]"


def _gain(m: Mapping[str, Any], k: str) -> str:
    g = m["quality_gain_at_equal_mean_samples"].get(k)
    return "—" if g is None else f"{100 * g:+.1f} pp"


def load_multisample_results(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Every multi-sample suite result present in ``out_dir``, in suite order."""
    return {
        n: json.loads((out_dir / f"{n}.json").read_text(encoding="utf-8"))
        for n in MULTISAMPLE_SUITES
        if (out_dir / f"{n}.json").is_file()
    }


def _live_rows(docs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    out = [
        "| suite | policy | requests | mean samples live / offline | SE | n mismatches | "
        "quality live / offline | SE | both within 2 SE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, doc in docs.items():
        live = doc.get("live", {})
        if live.get("error"):
            out.append(f"| {name} | live run failed: {live['error']} | | | | | | | |")
        for c in live.get("checks", []):
            mismatches = "—" if c.get("n_mismatches") is None else str(c["n_mismatches"])
            within = c["within_2se"] and c.get("samples_within_2se", True)
            out.append(
                f"| {name} | {c['policy']} | {c['requests']} | {c['mean_samples_live']:.2f} / "
                f"{c['mean_samples_offline']:.2f} | {c.get('mean_samples_se', 0.0):.2f} | "
                f"{mismatches} | {c['quality_live']:.3f} / {c['quality_offline']:.3f} | "
                f"{c['quality_se']:.3f} | {'yes' if within else 'NO'} |"
            )
    return out


def headline_table(docs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The headline's Markdown table: per suite and method, samples saved versus uniform
    best-of-k at equal quality (also printed at the end of a ``bench`` run)."""
    lines = [
        "| suite | method | saved vs uniform k=4 | k=8 | k=16 | up to (k=2..16) | "
        "quality gain at 8 samples/prompt | paper |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, doc in docs.items():
        label = f"{name}{' (oracle verifier)' if doc.get('oracle_verifier') else ''}"
        methods = {**doc["methods"], **doc.get("extra_methods", {})}
        for key in (*METHOD_ORDER, *EXTRA_ORDER):
            if key not in methods:
                continue
            m = methods[key]
            lines.append(
                f"| {label} | {key} | {_cell(m, '4')} | {_cell(m, '8')} | {_cell(m, '16')} | "
                f"{_pct(m.get('saved_up_to'))} | {_gain(m, '8')} | {PAPER_CLAIM} |"
            )
    return lines


# The README's headline columns: each method against uniform best-of-k at one k.
SAVED_COLUMNS = (
    ("adaptive", "adaptive (prompt predictor)"),
    ("sequential", "sequential (verifier stop)"),
    ("adaptive_sequential", "adaptive + sequential"),
    ("oracle", "oracle, prompt-only (ceiling)"),
    ("oracle_sequential", "oracle prior + stop (ceiling)"),
)
_POINT = re.compile(
    r"(?P<method>uniform|adaptive_sequential|adaptive|sequential)"
    r"(?:-(?P<k>\d+))?(?:-l(?P<lam>[^-]+))?(?:-c(?P<cap>\d+))?"
)


def saved_at_k_table(docs: Mapping[str, Mapping[str, Any]], k: str = "8") -> list[str]:
    """Per suite, each method's samples saved versus uniform best-of-``k`` at equal quality
    [95% interval]: the README's headline table (one k of :func:`headline_table`)."""
    lines = [
        "| suite | prompts | " + " | ".join(label for _, label in SAVED_COLUMNS) + " |",
        "|---|---|" + "---|" * len(SAVED_COLUMNS),
    ]
    for name, doc in docs.items():
        label = f"{name}{' (oracle verifier)' if doc.get('oracle_verifier') else ''}"
        methods = {**doc["methods"], **doc.get("extra_methods", {})}
        cells = [
            pct_ci(
                methods[key]["saved_at_equal_quality"].get(k),
                methods[key].get("saved_at_equal_quality_ci95", {}).get(k),
            )
            for key, _ in SAVED_COLUMNS
        ]
        lines.append(f"| {label} | {doc['n_prompts']} | " + " | ".join(cells) + " |")
    return lines


def point_label(policy: str) -> str:
    """A live point's policy name in words: ``sequential-c8`` → ``sequential, cap 8``."""
    m = _POINT.fullmatch(policy)
    if m is None:
        return policy
    method = m["method"]
    if method == "uniform":
        return f"uniform best-of-{m['k']}"
    parts = [method.replace("_", " + ")]
    if m["lam"]:
        parts.append(f"λ {m['lam']}")
    if m["cap"]:
        parts.append(f"cap {m['cap']}")
    return ", ".join(parts)


def _live_cell(live: float, exact: float, se: float, digits: int) -> str:
    exact_s = f"{num(exact, digits)} ± {num(se, digits)}" if se > 0 else num(exact, digits)
    return f"{num(live, digits)} / {exact_s}"


def live_points_table(doc: Mapping[str, Any], policies: Sequence[str]) -> list[str]:
    """Some live points of one suite: live against the exact expectation ± its SE."""
    checks = {c["policy"]: c for c in doc.get("live", {}).get("checks", [])}
    missing = [p for p in policies if p not in checks]
    if missing:
        raise KeyError(f"{doc['suite']} has no live point {', '.join(missing)}")
    lines = [
        f"| point ({doc['n_prompts']} prompts) | mean samples live / exact ± SE | "
        "quality live / exact ± SE |",
        "|---|---|---|",
    ]
    for p in policies:
        c = checks[p]
        samples = _live_cell(
            c["mean_samples_live"], c["mean_samples_offline"], c.get("mean_samples_se", 0.0), 2
        )
        quality = _live_cell(c["quality_live"], c["quality_offline"], c["quality_se"], 3)
        lines.append(f"| {point_label(p)} | {samples} | {quality} |")
    return lines


def multisample_section(out_dir: Path) -> list[str]:
    """The headline table, the plot and the live table (empty when no suite result exists)."""
    docs = load_multisample_results(out_dir)
    if not docs:
        return []
    lines = [
        "## Headline: samples saved at equal quality versus uniform best-of-k",
        "",
        "Multi-sample suites, measured the paper's way: each prompt's expected quality for k "
        "samples is computed exactly from its 100 recorded samples (no sampling noise), and each "
        "method is compared with **uniform** best-of-k at equal quality. Cells: share of samples "
        "saved [95% bootstrap interval over prompts], signed: below 0 the method needs more "
        "samples than uniform best-of-k to match its quality; `never` = the method does not "
        "reach that quality within 50 samples per prompt. Predictions come from heads that "
        "never saw the prompt (grouped 5-fold); stop-rule parameters were chosen on training "
        "folds.",
        "",
        *headline_table(docs),
    ]
    lines += [
        "",
        "![quality against mean samples per prompt](multisample.png)",
        "",
        "- `adaptive`: the prompt predictor's p̂ sets n per prompt as the online `best_of_k` "
        "policy does (λ swept). `sequential`: rounds until the verifier accepts a sample, up to "
        "a cap (the proxy's `VerifierStop`). `adaptive_sequential`: the prior lowers the cap of "
        "prompts it thinks hopeless. `oracle`: split-sample oracle of prompt-only allocation "
        "(n chosen on half of each prompt's samples, scored on the other half): the ceiling of "
        "any prompt predictor. `oracle_sequential`: the same with a perfect prior plus the stop "
        "rule: the ceiling of prior + stop rule.",
        "- HumanEval's verifier is the benchmark's own tests (the recorded execution): an "
        "**oracle verifier**, so its sequential figures are upper bounds for a deployable "
        "verifier. Game of 24's verifier is a real checker anyone can deploy "
        "(`replay/game24.py`; it agrees with every recorded verdict).",
        "",
    ]
    for name, doc in docs.items():
        uq = ", ".join(f"k={k}: {v:.3f}" for k, v in doc["uniform_quality"].items())
        st = doc["stop_rule"]
        mc = st["monte_carlo_check"]
        pr = doc["predictor"]
        lines.append(
            f"- **{name}** ({doc['mode']}, n={doc['n_prompts']}): uniform quality {uq}. "
            f"Predictor (out of fold) Pearson {pr['pearson']:.2f} / Spearman "
            f"{pr['spearman']:.2f} with the prompt's success rate. Round size per fold "
            f"{st['step_per_fold']}, prior-sized first round per fold "
            f"{st.get('prior_sized_first_round_per_fold')} (chosen on training folds). The "
            f"proxy's `VerifierStop` run on {mc['draws_per_prompt']} random draw orders per "
            f"prompt (cap {mc['cap']}): mean samples {mc['mean_samples']:.3f} ± "
            f"{mc['mean_samples_se']:.3f}, quality {mc['quality']:.4f} ± {mc['quality_se']:.4f} "
            f"(SE), against the exact {mc['exact_mean_samples']:.3f} / {mc['exact_quality']:.4f}."
        )
    greedy = "; ".join(
        f"{name} "
        + ", ".join(
            f"k={k}: {q:.3f} (uniform {doc['uniform_quality'][k]:.3f})"
            for k, q in doc["adaptive_greedy_equal_budget_quality"].items()
            if k in doc["uniform_quality"]
        )
        for name, doc in docs.items()
    )
    lines += [
        "",
        "- The prompt predictor's greedy allocation of a fixed total budget (the paper's batch "
        f"allocation), quality at k samples per prompt on average: {greedy}.",
        "- `vote` reranking and the `VoteStop` rule need comparable final answers; these "
        "suites' answers are programs and arithmetic expressions, so only the verifier rules "
        "apply here (`bench/multisample/expected.py` also has the Monte Carlo expectation of "
        "vote).",
        "",
        "### Live operating points (proxy + OpenAI SDK + replay upstream + /v1/verify)",
        "",
        *_live_rows(docs),
        "",
        "Every point runs through the proxy's `best_of_k` policy with the `reward` reranker on "
        "the replay's `/v1/verify`: `uniform-k` and `adaptive-lλ` decide n up to front (n "
        "mismatches = requests whose n differs from the offline decision); `sequential-cN` "
        "(verifier stop, cap N) and `adaptive_sequential-lλ-cN` (the prior's price λ also ends "
        "a prompt after round one when p̂ ≤ λ) run the proxy's `sequential:` mode, each prompt "
        "with the round size (and prior-sized first round) chosen on its fold's training "
        "prompts, so their samples drawn are decided round by round. Each live run is one "
        "random draw of samples per prompt (seeded per request), so it differs from the exact "
        "expectation of the same plans by sampling noise: SE = sqrt(Σ q_i(1 − q_i))/n for "
        "quality and sqrt(Σ Var_i[samples])/n for mean samples, both exact per prompt.",
        "",
    ]
    return lines
