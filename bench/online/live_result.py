"""The live run's result document and the simulator run beside it on the very same stream.

:func:`live_result` is :func:`bench.online.result.build_result` of the live trace with
``"mode": "live"``, the promotions the learning report showed and a ``live`` section of what
differs from the simulator; :func:`simulate_beside` runs the simulator on the live run's stream
with the settings the learner process runs with (production's promotion rule), so what is left
between the two is the decision rule and the asynchronous promotions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.online.live import EXPLORE_NOTE, LiveOnlineOptions, LiveRun, streamed_suite
from bench.online.simulate import OnlineSettings
from bench.online.suite import OnlineSuite
from proxy.learn.learner import LearnerSettings


def live_result(
    run: LiveRun,
    settings: OnlineSettings,
    learner: LearnerSettings,
    choice: Mapping[str, Any],
    options: LiveOnlineOptions,
) -> dict[str, Any]:
    """The simulator's result document (:func:`bench.online.result.build_result`) of the live
    run, with ``"mode": "live"``, the promotions the learning report showed, and a ``live``
    section of what differs from the simulator."""
    from bench.online.metrics import rounded
    from bench.online.result import build_result

    doc = build_result(run.suite, run.trace, settings, learner, learner_choice=choice)
    info = run.info
    doc = {"mode": "live", **doc}
    doc["promotions"] = len(info["promotions"])
    doc["refits"] = info["promotions"]
    doc["settings"]["limit"] = options.limit
    doc["settings"]["decision"] = (
        f"the proxy's route policy with budget fraction_expensive {settings.expensive_share:g}, "
        f"window {settings.calibration_requests}: expensive iff the served gain ≥ λ · (expected "
        "cost_expensive − expected cost_cheap), λ re-solved on the window (and on a swap)"
    )
    doc["learner"]["process"] = (
        "adaptive-proxy learn --config (learning.refit_every / min_labels from these settings; "
        "its promotion rule and l2 grid are the production defaults)"
    )
    doc["provenance"]["store"] = (
        "learning.store: an SQLite file in a temporary folder, written by the proxy's outcome "
        "log, read by the learner process"
    )
    if settings.explore_fraction > 0:
        info = dict(info) | {"explore": EXPLORE_NOTE}
    doc["live"] = rounded(
        {k: v for k, v in info.items() if k != "config_yaml"} | {"poll_s": options.poll_s}
    )
    return doc


def simulation_order_suite(streamed: OnlineSuite, seed: int) -> OnlineSuite:
    """The suite whose simulated stream (:func:`bench.online.simulate.simulate`, which permutes
    with ``seed``) is exactly ``streamed``'s order."""
    inverse = np.argsort(np.random.default_rng(seed).permutation(streamed.n))
    return streamed_suite(streamed, inverse)


def process_learner_settings(config_yaml: str, embedding_dim: int) -> LearnerSettings:
    """The settings the learner process runs with (``learning:`` and the defaults)."""
    from proxy.config.schema import load_config_text
    from proxy.learn.wiring import learner_settings

    return replace(learner_settings(load_config_text(config_yaml)), embedding_dim=embedding_dim)


async def simulate_beside(
    run: LiveRun, settings: OnlineSettings, learner: LearnerSettings, *, workdir: Path
) -> dict[str, Any]:
    """The simulator on the live run's very stream with the learner process's own settings:
    what is left between the two is the decision rule and the asynchronous promotions."""
    from bench.online.metrics import rounded
    from bench.online.result import build_result
    from bench.online.simulate import simulate

    suite = simulation_order_suite(run.suite, settings.seed)
    trace = await simulate(suite, settings, learner, workdir=workdir, progress=False)
    doc = build_result(suite, trace, settings, learner, learner_choice={})
    return dict(
        rounded(
            {
                "final_half_apgr": doc["final_half_apgr"],
                "static_apgr": doc["static_apgr"],
                "promotions": doc["promotions"],
                "promoted_at_requests": [
                    r["request"] for r in doc["refits"] if r["status"] == "promoted"
                ],
                "learner": doc["learner"]["settings"],
            }
        )
    )
