"""Which learner settings serve which suite, and on which other suites they were chosen.

The learner's settings (how early and how often it refits, how strictly it promotes, its ``l2``
grid) are chosen by :mod:`bench.online.tune` on one fold of suites and reported on the other,
never on the suite being reported:

* fold ``A`` = routellm-gsm8k + routellm-mtbench → its choice serves mmlu and alpaca-eval-ladder;
* fold ``B`` = routellm-mmlu + alpaca-eval-ladder → its choice serves gsm8k and mtbench.

The objective is the mean, over the fold's suites and both feedback settings the issue measures
(``arm_rewards``; ``none`` with 5% exploration), of the last-half APGR lift over the static
prior; ties go to the earlier candidate of :data:`CANDIDATES` (the production default first).
:data:`CHOSEN` records the tuning's outcome (``bench/results/online-tuning.json``, rerun with
``python -m bench.online.tune --fold A`` / ``--fold B``).
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

FOLDS: Mapping[str, tuple[str, ...]] = {
    "A": ("routellm-gsm8k", "routellm-mtbench"),
    "B": ("routellm-mmlu", "alpaca-eval-ladder"),
}
#: The fold whose choice serves each reported suite (the other fold).
SERVED_BY: Mapping[str, str] = {
    "routellm-mmlu": "A",
    "alpaca-eval-ladder": "A",
    "routellm-gsm8k": "B",
    "routellm-mtbench": "B",
}
#: Each fold's winning candidate (bench/results/online-tuning.json).
CHOSEN: Mapping[str, str] = {"A": "default", "B": "default"}


def learner_for(suite: str, name: str | None = None) -> tuple[LearnerSettings, dict[str, Any]]:
    """The learner settings for ``suite``: ``name``'s when given, else the candidate chosen on
    the other fold (the production default for a suite of no fold); and how they were chosen."""
    if name is not None:
        return CANDIDATES[name], {"candidate": name, "chosen_on": None, "how": "given"}
    fold = SERVED_BY.get(suite)
    if fold is None:
        return CANDIDATES["default"], {
            "candidate": "default",
            "chosen_on": None,
            "how": "production default (the suite is in no tuning fold)",
        }
    chosen = CHOSEN[fold]
    return CANDIDATES[chosen], {
        "candidate": chosen,
        "chosen_on": list(FOLDS[fold]),
        "how": f"fold {fold}'s best of {len(CANDIDATES)} candidates by mean last-half lift "
        "over the static prior (arm_rewards; none with explore 0.05), "
        "bench/results/online-tuning.json",
    }
