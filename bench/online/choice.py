"""Which learner settings serve which suite, and on which other suites they were chosen.

The learner's settings (how early and how often it refits, how strictly it promotes, its ``l2``
grid) are chosen by :mod:`bench.online.tune` leave-one-suite-out: every candidate runs on every
suite of :data:`TUNING_SUITES`, and the settings reported on a suite are those that did best on
the *other* suites, never on the suite being reported.

The objective is the mean, over the other suites and both feedback settings the issue measures
(``arm_rewards``; ``none`` with 5% exploration), of the last-half APGR lift over the static
prior; ties go to the earlier candidate of :data:`CANDIDATES` (the production default first).
:data:`CHOSEN` records the tuning's outcome (``bench/results/online-tuning.json``, rerun with
``python -m bench.online.tune --out bench/results``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.learn.fit import DEFAULT_L2_GRID
from proxy.learn.learner import LearnerSettings
from proxy.learn.score import PromotionRule

WIDE_L2_GRID = (*DEFAULT_L2_GRID, 1000.0)

#: The settings tried, production's default first.
CANDIDATES: Mapping[str, LearnerSettings] = {
    "default": LearnerSettings(),
    "early": LearnerSettings(min_labels=100, refit_every=100, rule=PromotionRule(min_holdout=20)),
    "early-lenient": LearnerSettings(
        min_labels=100, refit_every=100, rule=PromotionRule(min_z=1.0, min_holdout=20)
    ),
    "lenient": LearnerSettings(rule=PromotionRule(min_z=1.0)),
    "sparse": LearnerSettings(refit_every=400),
    "wide-l2": LearnerSettings(l2_grid=WIDE_L2_GRID),
}

#: The suites tuned on (each reported suite's choice is made on the others). routellm-mmlu
#: (14,037 prompts, a refit every 100-400 labels) is left out: six candidates × two runs there
#: cost hours; its own choice is made on all three.
TUNING_SUITES: tuple[str, ...] = ("routellm-gsm8k", "routellm-mtbench", "alpaca-eval-ladder")
#: Per reported suite, the candidate that won on the others (bench/results/online-tuning.json).
CHOSEN: Mapping[str, str] = {
    "routellm-gsm8k": "early-lenient",
    "routellm-mmlu": "early-lenient",
    "routellm-mtbench": "lenient",
    "alpaca-eval-ladder": "early-lenient",
}


def others(suite: str) -> list[str]:
    """The tuning suites a choice reported on ``suite`` is made on."""
    return [s for s in TUNING_SUITES if s != suite]


def learner_for(suite: str, name: str | None = None) -> tuple[LearnerSettings, dict[str, Any]]:
    """The learner settings for ``suite``: ``name``'s when given, else the candidate chosen on
    the other suites (the production default for a suite never tuned on); and how."""
    if name is not None:
        return CANDIDATES[name], {"candidate": name, "chosen_on": None, "how": "given"}
    chosen = CHOSEN.get(suite)
    if chosen is None:
        return CANDIDATES["default"], {
            "candidate": "default",
            "chosen_on": None,
            "how": "production default (the suite was not tuned on)",
        }
    return CANDIDATES[chosen], {
        "candidate": chosen,
        "chosen_on": others(suite),
        "how": "leave-one-suite-out: the best of the candidates tried on the other suites by "
        "mean last-half lift over the static prior (arm_rewards; none with explore 0.05), "
        "bench/results/online-tuning.json",
    }
