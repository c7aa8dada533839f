"""The Markdown of ``bench/results/REPORT.md``: headline, targets, per-suite detail, method."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

# RouteLLM's best published router per benchmark (their paper, Table: APGR and CPT(50%)).
ROUTELLM_PUBLISHED = {
    "routellm-mtbench": {"apgr": 0.802, "cpt50": 0.1340},
    "routellm-mmlu": {"apgr": 0.603, "cpt50": 0.3540},
    "routellm-gsm8k": {"apgr": 0.622, "cpt50": 0.3364},
}
# Issue 11's goal: samples saved at equal quality versus uniform best-of-8 on this suite.
GOAL_SUITE = "humaneval-codegen16b"
MULTISAMPLE_GOAL = 0.50
# The routing counterpart of the old "60% of the oracle's saving", against a sound limit.
EV_LIMIT_SHARE_TARGET = 0.60

Results = Mapping[str, Mapping[str, Any]]

METHOD = """\
## How these numbers are produced

- **Data**: real recorded outcomes, bundled in `recorded_data/` (RouteLLM's Mixtral/GPT-4
  evaluations of GSM8K, MMLU and MT-Bench; OpenAI's GSM8K solutions of the 6B/175B models, one
  sample and best-of-100 with a verifier). Prompts RouteLLM lists as contaminated are dropped
  (also from the GSM8K procedure suites, which therefore have 1,307 of the 1,319 questions).
  MT-Bench: each of the two turns is a separate request, routed on its own (quality = mean
  normalised judge score, (score − 1)/9; PGR is unchanged by that rescaling).
- **Predictions never come from a predictor that saw the prompt**: `cv` = 5-fold out-of-fold,
  folds grouped by prompt (the two turns of an MT-Bench question share a group); `lodo` =
  leave-one-suite-out (a dataset is predicted by a model fitted on the other datasets only).
  Every table says which. Only GSM8K records the decoding procedures (6B/175B, one sample or
  best-of-100), so no other suite can teach a `lodo` predictor those arms: under `lodo` the
  procedure suites rank prompts by the predicted Mixtral→GPT-4 gain and the ladder takes
  `p_weak` for the single-sample arms and `p_strong` for the verified arms (a transfer, stated
  here because it caps the `lodo` figures of `gsm8k-procedures` and `gsm8k-ladder`).
- **Live, end to end**: the replay upstream and the proxy run as real HTTP servers on free
  ports; the benchmark writes the out-of-fold predictions as the proxy's table predictor and a
  policy YAML per suite (one `route` policy per operating point, or `ladder` policies at several
  λ), and sends every prompt to each policy with the official OpenAI SDK. The decision
  (`x-adaptive-arm`), the answering model and the replay's `prompt_id`/`arm` tag are read
  from the responses. These live runs cover a few operating points (0/25/50/75/100 % of the
  out-of-fold thresholds; 0/50/100 % with `--quick`); the table "live checks" shows that the
  live decisions and outcomes equal what the offline computation gives for the same
  predictions. The dense sweep (every distinct threshold, for APGR/CPT) is then computed
  offline from the same per-prompt predictions and recorded outcomes.
- **Costs are realised, never nominal**: the x-axis of APGR/CPT is the realised fraction of
  requests sent to the expensive arm (RouteLLM's axis). USD for the Mixtral/GPT-4 suites comes
  from the `usage` the proxy returned in the live all-cheap and all-expensive runs × the YAML
  prices ($0.60/$0.60 and $10/$30 per Mtok). The GSM8K procedures have documented per-request
  costs (see `bench/routing/suites.py`): priced per parameter like Mixtral per active parameter;
  best-of-100 = 100 samples + a same-size verifier reading each of the 100 candidates.
- **Metrics** (RouteLLM's definitions): PGR(c) = (q(c) − q_cheap)/(q_expensive − q_cheap);
  APGR = trapezoidal area under PGR over cost 0→1 (random = 0.5); CPT(x%) = the smallest
  cost at which PGR first reaches x (linear interpolation between operating points). *Saved
  at equal quality* = 1 − USD needed to first reach the all-expensive quality / USD of
  all-expensive. *Quality gain at equal cost* = relative quality gain over random allocation
  at the USD half-way between all-cheap and all-expensive. *Saved against random mixing at
  matched quality* and the *expected-value limit* are explained in *Reading the routing
  suites* above; the realised-outcome oracle (APGR oracle) is shown for reference only, never
  as a ceiling. 95 % intervals: percentile bootstrap over prompts (predictions held fixed).
- **Ladder** (`gsm8k-ladder`): each prompt takes the arm maximising predicted reward − λ ·
  documented cost; λ swept over 402 values. Cost axis normalised between the cheapest arm (0)
  and the highest-quality arm (1); the policy is compared with the best single arm whose cost
  fits each budget.
"""


def _f(x: Any, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def _saved_vs_random(x: Any) -> str:
    """A saving against random mixing; far below zero reads better as a cost multiple."""
    if isinstance(x, float) and x < -1.0:
        return f"{1.0 - x:.0f}× random's cost"
    return f"{_f(x, True)} saved"


def _multisample_targets(multisample: Results) -> list[str]:
    lines = []
    doc = multisample.get(GOAL_SUITE)
    if doc is not None:
        methods = {**doc["methods"], **doc.get("extra_methods", {})}
        saved = {m: methods[m]["saved_at_equal_quality"].get("8") for m in methods}
        deployable = [saved.get(m) for m in ("adaptive", "sequential", "adaptive_sequential")]
        best = max((v for v in deployable if v is not None), default=None)
        lines.append(
            f"| {GOAL_SUITE}: ≥ 50% of samples saved at equal quality vs uniform best-of-8 "
            f"(issue 11's goal; oracle verifier) | adaptive {_f(saved.get('adaptive'), True)}, "
            f"sequential {_f(saved.get('sequential'), True)}, adaptive + sequential "
            f"{_f(saved.get('adaptive_sequential'), True)} (ceilings: split-sample oracle "
            f"{_f(saved.get('oracle'), True)}, oracle prior + stop "
            f"{_f(saved.get('oracle_sequential'), True)}) | "
            f"{'yes' if (best or 0) >= MULTISAMPLE_GOAL else 'NO'} |"
        )
    checks = [c for d in multisample.values() for c in d.get("live", {}).get("checks", [])]
    if checks:
        within = sum(bool(c["within_2se"] and c.get("samples_within_2se", True)) for c in checks)
        lines.append(
            "| multi-sample suites: live points through the proxy agree with the exact offline "
            f"expectation (mean samples and quality within 2 SE) | {within} of {len(checks)} "
            f"points | {'yes' if within == len(checks) else 'NO'} |"
        )
    return lines


def _targets(results: Results, multisample: Results) -> list[str]:
    lines = ["## Targets", "", "| target | measured (cv / lodo) | met? |", "|---|---|---|"]
    lines += _multisample_targets(multisample)
    for name, pub in ROUTELLM_PUBLISHED.items():
        r = results.get(name)
        if r is None:
            continue
        for key, better in (("apgr", "higher"), ("cpt50", "lower")):
            vals = [r.get(f"{key}_{s}") for s in ("cv", "lodo")]
            ok = [
                v is not None and (v > pub[key] if better == "higher" else v < pub[key])
                for v in vals
            ]
            pct = key == "cpt50"
            lines.append(
                f"| {name}: {key.upper()} {'>' if better == 'higher' else '<'} "
                f"{_f(pub[key], pct)} (RouteLLM's best, theirs) | {_f(vals[0], pct)} / "
                f"{_f(vals[1], pct)} | {'yes' if ok[0] else 'NO'} / {'yes' if ok[1] else 'NO'} |"
            )
    for name, r in results.items():
        for t in (50, 80):
            vals = [r.get(f"saved_vs_random_pgr{t}_{s}") for s in ("cv", "lodo")]
            if all(v is None for v in vals):
                continue
            ok = ["yes" if v is not None and v > 0 else "NO" for v in vals]
            lines.append(
                f"| {name}: cheaper than random mixing at matched quality (PGR 0.{t // 10}) "
                f"| {_saved_vs_random(vals[0])} / {_saved_vs_random(vals[1])} | {ok[0]} / {ok[1]} |"
            )
    for name, r in results.items():
        limit, expected = r.get("apgr_ev_limit"), r.get("apgr_cv_expected")
        if limit is None or expected is None or limit <= 0.5:
            continue
        share = (expected - 0.5) / (limit - 0.5)
        lines.append(
            f"| {name}: ≥ 60% of the expected-value limit's APGR gain over random "
            f"(prompt-only routing, in expectation) | {_f(share, True)} / — | "
            f"{'yes' if share >= EV_LIMIT_SHARE_TARGET else 'NO'} / — |"
        )
    lines += [
        "",
        "The realised-outcome oracle's saving is no longer a target: with one recorded outcome "
        "per arm it mostly knows which single draw failed, which no predictor can learn. The "
        "routing targets are RouteLLM's own figures (for comparison), random mixing at matched "
        "quality, and the expected-value limit of prompt-only prediction (see *Reading the "
        "routing suites*). A missed target is reported as measured; nothing was tuned on test "
        "folds.",
    ]
    return lines


def _pair_detail(name: str, r: Mapping[str, Any]) -> list[str]:
    out = [
        f"### {name}",
        "",
        f"{r['description']}; quality = {r['quality']}; "
        f"n = {r['n_prompts']}; predictor: {r.get('predictor', '?')}.",
        "",
        "| pair | q cheap | q expensive | USD/req cheap / expensive | scheme | APGR | CPT50 | "
        "CPT80 | saved at equal quality [95% CI] | quality gain at equal cost [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for pname, p in r["pairs"].items():
        for scheme in ("cv", "lodo"):
            s = p[scheme]
            ci = s.get("ci95", {})
            sv = ci.get("saved_at_equal_quality", [None, None])
            qg = ci.get("quality_gain_at_equal_cost", [None, None])
            out.append(
                f"| {pname} ({p['cheap']} → {p['expensive']}) | {_f(p['quality_cheap'])} | "
                f"{_f(p['quality_expensive'])} | ${p['cost_usd_per_request_cheap']:.5f} / "
                f"${p['cost_usd_per_request_expensive']:.5f} | {scheme} | {_f(s['apgr'])} | "
                f"{_f(s['cpt50'], True)} | {_f(s['cpt80'], True)} | "
                f"{_f(s['saved_at_equal_quality'], True)} [{_f(sv[0], True)}, {_f(sv[1], True)}]"
                f" | {_f(s['quality_gain_at_equal_cost'], True)} [{_f(qg[0], True)}, "
                f"{_f(qg[1], True)}] |"
            )
    out.append("")
    return out


def _ladder_detail(name: str, r: Mapping[str, Any]) -> list[str]:
    lad = r["ladder"]
    out = [
        f"### {name}",
        "",
        f"{r['description']}; n = {r['n_prompts']}; predictor: {r.get('predictor', '?')}.",
        "",
        "| arm | accuracy | documented USD/request |",
        "|---|---|---|",
    ]
    out += [
        f"| {a['label']} | {_f(a['quality'])} | ${a['cost_usd_per_request']:.6f} |"
        for a in lad["arms"]
    ]
    out += [
        "",
        "| budget (USD/request) | best single arm | ladder cv | ladder lodo |",
        "|---|---|---|---|",
    ]
    for b_cv, b_lo in zip(
        lad["cv"]["vs_best_single_arm"], lad["lodo"]["vs_best_single_arm"], strict=True
    ):
        out.append(
            f"| ${b_cv['budget_usd_per_request']:.6f} | "
            f"{_f(b_cv['best_single_arm_quality'])} | {_f(b_cv['ladder_quality'])} | "
            f"{_f(b_lo['ladder_quality'])} |"
        )
    out.append("")
    return out


def _live_detail(results: Results) -> list[str]:
    out = [
        "## Live checks (proxy end to end vs offline computation)",
        "",
        "| suite | policy | requests | expensive % live / offline | quality live / offline "
        "| decision mismatches | answer mismatches |",
        "|---|---|---|---|---|---|---|",
    ]
    note = (
        "MMLU repeats some questions verbatim; the replay upstream serves the first "
        "recording of a repeated question, which the replay tag shows "
        "(`replayed_other_prompt_id` in the JSON)."
    )
    for name, r in results.items():
        lv = r.get("live", {})
        if lv.get("error"):
            out.append(f"| {name} | live run FAILED: {lv['error']} | | | | | |")
        for c in lv.get("checks", []):
            fe = (
                f"{_f(c.get('frac_expensive_live'), True)} / "
                f"{_f(c.get('frac_expensive_offline'), True)}"
                if "frac_expensive_live" in c
                else f"λ = {c.get('lambda')}"
            )
            out.append(
                f"| {name} | {c['policy']} | {c['requests']} | {fe} | "
                f"{_f(c['quality_live'])} / {_f(c['quality_offline'])} | "
                f"{c['decision_mismatches']} | {c['answer_mismatches']} |"
            )
    out += ["", note, ""]
    return out


def report_markdown(
    results: Results, summary: Callable[[Results], str], multisample: Results | None = None
) -> str:
    """The routing suites' report; the targets also cover the multi-sample suites' goal."""
    modes = sorted({str(r.get("mode", "?")) for r in results.values()})
    preds = sorted({str(r.get("predictor", "?")) for r in results.values()})
    lines = [
        "# adaptive-proxy cost/quality benchmark",
        "",
        f"Run mode: {', '.join(modes)}. Predictor: {'; '.join(preds)}.",
        "",
        "## Headline (RouteLLM's published figures are theirs, labelled as such)",
        "",
        summary(results),
        "",
        "CPT = share of requests sent to the expensive arm "
        "(for gsm8k-ladder: normalised realised cost). cv = 5-fold out-of-fold; lodo = "
        "leave-one-suite-out.",
        "",
    ]
    lines += [*_targets(results, multisample or {}), ""]
    lines += ["## Per suite", ""]
    for name, r in results.items():
        lines += _pair_detail(name, r) if "pairs" in r else _ladder_detail(name, r)
        lines += [f"![{name}]({name}.png)", ""]
    lines += _live_detail(results)
    lines.append(METHOD)
    return "\n".join(lines)
