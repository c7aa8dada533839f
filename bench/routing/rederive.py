"""``adaptive-proxy bench --rederive``: recompute, from a results folder alone, every figure
that needs only the routing suites' per-prompt records and result files.

The random baselines (expectation and spread over random routings) depend only on each prompt's
recorded outcome per arm and each arm's mean cost, which ``<suite>.records.jsonl`` and
``<suite>.json`` hold, so they can be brought up to date without replaying any suite through the
live proxy; so can the matched-quality figures, the routing plots and ``REPORT.md``. Figures
that need predictions at full precision (APGR, CPT and their intervals) are left as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import json_safe, plot_suite
from bench.routing import evaluate as ev
from bench.routing import random_baseline as rb
from bench.routing.suites import SUITES

__all__ = ["rederive", "rederive_random_baselines"]


def _outcomes(records: list[dict[str, Any]], arm: str) -> np.ndarray:
    return np.asarray([r["outcome"][arm] for r in records], np.float64)


def rederive_random_baselines(out_dir: Path) -> list[str]:
    """Rewrite each routing suite's random baseline (its ``random`` blocks, ``sweep_random``,
    ``apgr_random`` and ``apgr_random_ci95``) and its plot; returns the suites updated."""
    done = []
    for name in SUITES:
        doc_path, rec_path = out_dir / f"{name}.json", out_dir / f"{name}.records.jsonl"
        if not (doc_path.is_file() and rec_path.is_file()):
            continue
        doc = json.loads(doc_path.read_text(encoding="utf-8"))
        with rec_path.open(encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh if line.strip()]
        if "pairs" in doc:
            for pair in doc["pairs"].values():
                qc, qe = _outcomes(records, pair["cheap"]), _outcomes(records, pair["expensive"])
                random, sweep = ev.random_pair(
                    qc,
                    qe,
                    pair["cost_usd_per_request_cheap"],
                    pair["cost_usd_per_request_expensive"],
                    seed=int(pair["random"].get("seed", 0)),
                )
                pair["random"] = random
                pair["sweep_random"] = ev.grid_points(sweep, qc, qe)
            block = doc["pairs"][doc["headline_pair"]]["random"]
        else:
            lad = doc["ladder"]
            lad["random"] = rb.random_apgr_interval(
                _outcomes(records, lad["reference_low"]),
                _outcomes(records, lad["reference_high"]),
                seed=int(lad["random"].get("seed", 0)),
            )
            block = lad["random"]
        doc["apgr_random"] = block["apgr"]
        doc["apgr_random_ci95"] = block["apgr_ci95"]
        doc = json_safe(doc)
        doc_path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        plot_suite(out_dir / f"{name}.png", doc)
        done.append(name)
    return done


def rederive(out_dir: Path) -> list[str]:
    """Random baselines, matched-quality figures, plots and ``REPORT.md`` of ``out_dir``."""
    from bench.report import write_report
    from bench.routing.matched_quality import add_matched_quality

    done = rederive_random_baselines(out_dir)
    add_matched_quality(out_dir)
    write_report(out_dir)
    return done
