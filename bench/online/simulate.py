"""A deployment lived on a recorded suite: route, log, label, refit, swap, in one pass.

The suite's prompts arrive once, in one fixed shuffled order (``numpy.random.default_rng(seed)
.permutation``), one per simulated second. For each request:

1. The head in force (:class:`proxy.learn.live.LiveHeads`, the replicas' hot-swap) corrects the
   prior's ``p_weak`` / ``p_strong`` from the prompt's embedding; its ``gain`` is the request's
   score. The route is expensive iff the score reaches the threshold that sends
   ``expensive_share`` of the last ``calibration_requests`` requests (scored by the head now in
   force, re-solved on every swap, as a budget's λ is) to the expensive arm.
2. An :class:`~proxy.learn.records.OutcomeRecord` (decision, the prior's outputs, the float16
   embedding, route evidence, the answering arm's cost) goes to the real outcome log
   (:class:`~proxy.learn.log.OutcomeLog` → :class:`~proxy.learn.store_sqlite.SqliteOutcomeStore`).
3. Labels arrive as a deployment's would: ``feedback="arm_rewards"``: an evaluator scores both
   arms (both recorded rewards); ``"reward"``: the client rates the answer it got (the answering
   arm's recorded reward only); ``"none"``: nothing. With ``explore_fraction`` F, a seeded F of
   the requests also run the other arm (its cost counted as exploration spend) and are labelled
   ``explored`` from both arms' recorded rewards.
4. Each time ``refit_every`` more labels have arrived (from ``min_labels`` on), the outcome log is
   flushed and the real :meth:`proxy.learn.learner.Learner.refit` runs; a promotion is picked up
   by :meth:`LiveHeads.refresh` before the next request.

Alongside, the *static* prior's score of every request is kept: the same stream routed by the
predictor that never learns.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from bench.online.suite import OnlineSuite
from proxy.learn.export import HeadExporter
from proxy.learn.learner import Learner, LearnerSettings, RefitReport
from proxy.learn.live import LiveHeads
from proxy.learn.log import OutcomeLog, OutcomeLogCounters
from proxy.learn.records import (
    DecisionRecord,
    LabelRecord,
    OutcomeRecord,
    RouteEvidence,
    UsageRecord,
    pack_embedding,
)
from proxy.learn.store_sqlite import SqliteOutcomeStore
from proxy.learn.targets import route_spec

Feedback = Literal["arm_rewards", "reward", "none"]
FEEDBACK_MODES: tuple[Feedback, ...] = ("arm_rewards", "reward", "none")
POLICY = "router"
ARMS = ("cheap", "expensive")
PRIOR_VERSION = "prior"
#: The simulated clock's start (any fixed time: versions and retention read it).
T0_UNIX_S = 1_750_000_000.0
#: The stream spans hours of simulated time; nothing may expire during it.
RETENTION_DAYS = 365.0


@dataclass(frozen=True)
class OnlineSettings:
    """How the deployment is lived (everything but the learner's own settings)."""

    feedback: Feedback = "arm_rewards"
    explore_fraction: float = 0.0
    expensive_share: float = 0.5
    window: int = 200
    seed: int = 0
    calibration_requests: int = 200
    #: Requests between two flushes of the outcome log (the writer batches meanwhile).
    flush_every: int = 250

    def __post_init__(self) -> None:
        if self.feedback not in FEEDBACK_MODES:
            raise ValueError(f"feedback must be one of {FEEDBACK_MODES}")
        if not 0.0 <= self.explore_fraction <= 1.0:
            raise ValueError("explore_fraction must lie in [0, 1]")
        if not 0.0 < self.expensive_share < 1.0:
            raise ValueError("expensive_share must lie in (0, 1)")
        if self.window < 1 or self.calibration_requests < 1 or self.flush_every < 1:
            raise ValueError("window, calibration_requests and flush_every must be positive")


@dataclass(frozen=True)
class RefitEvent:
    """One call of the learner during the stream."""

    request: int
    labels: int
    report: RefitReport

    def to_json(self) -> dict[str, Any]:
        """Compact JSON: when, on how many labels, what happened and by what margin."""
        pre = self.report.prequential
        return {
            "request": self.request,
            "labels": self.labels,
            "status": self.report.status,
            "reason": self.report.reason,
            "train_rows": self.report.train_rows,
            "holdout_rows": self.report.holdout_rows,
            "version": self.report.version if self.report.status == "promoted" else None,
            "margin": pre.get("margin"),
            "z": pre.get("z"),
        }


@dataclass
class Trace:
    """Per request, in stream order: what was routed, with which score, at what cost."""

    order: npt.NDArray[np.intp]
    score: npt.NDArray[np.float64]
    static_score: npt.NDArray[np.float64]
    expensive: npt.NDArray[np.bool_]
    explored: npt.NDArray[np.bool_]
    explore_cost_usd: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]
    head_version: list[str]
    refits: list[RefitEvent] = field(default_factory=list)
    log_counters: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class _Clock:
    """The simulated wall clock every component reads (records, labels, versions, retention)."""

    def __init__(self) -> None:
        self.now = T0_UNIX_S

    def __call__(self) -> float:
        return self.now


def _threshold(gains: npt.NDArray[np.float64], share: float) -> float:
    """The score at or above which ``share`` of ``gains`` lies."""
    k = max(1, round(share * len(gains)))
    return float(np.partition(gains, len(gains) - k)[len(gains) - k])


def _labels(
    request_id: str,
    reward: npt.NDArray[np.float64],
    arm: int,
    explored: bool,
    settings: OnlineSettings,
    t: float,
) -> list[LabelRecord]:
    both = {ARMS[0]: float(reward[0]), ARMS[1]: float(reward[1])}
    out = []
    if settings.feedback == "arm_rewards":
        out.append(
            LabelRecord(
                request_id=request_id,
                unix_time_s=t,
                kind="feedback",
                source="evaluator",
                arm_rewards=both,
            )
        )
    elif settings.feedback == "reward":
        out.append(
            LabelRecord(
                request_id=request_id,
                unix_time_s=t,
                kind="feedback",
                source="feedback",
                reward=float(reward[arm]),
            )
        )
    if explored:
        out.append(
            LabelRecord(
                request_id=request_id,
                unix_time_s=t,
                kind="explored",
                source="explore:recorded",
                arm_rewards=both,
            )
        )
    return out


async def simulate(
    suite: OnlineSuite,
    settings: OnlineSettings,
    learner_settings: LearnerSettings,
    *,
    workdir: Path,
    progress: bool = True,
    on_request: Callable[[int, int, str], None] | None = None,
) -> Trace:
    """Live the deployment on ``suite`` with its outcome store and exported heads in
    ``workdir``; ``on_request(step, labels, head_version)`` is called after each request.

    BLAS runs on one thread meanwhile: the learner's many mid-sized fits are several times
    faster so than on a pool contended by the stream itself.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return await _simulate(suite, settings, learner_settings, workdir, progress, on_request)


async def _simulate(
    suite: OnlineSuite,
    settings: OnlineSettings,
    learner_settings: LearnerSettings,
    workdir: Path,
    progress: bool,
    on_request: Callable[[int, int, str], None] | None,
) -> Trace:
    from tqdm import tqdm

    started = time.monotonic()
    if learner_settings.embedding_dim != suite.embedding_dim:
        raise ValueError(
            f"learner embedding_dim {learner_settings.embedding_dim} ≠ suite's "
            f"{suite.embedding_dim}"
        )
    n = suite.n
    order = np.random.default_rng(settings.seed).permutation(n)
    explore_draw = np.random.default_rng(settings.seed + 1).random(n) < settings.explore_fraction
    clock = _Clock()
    store = SqliteOutcomeStore(
        workdir / "outcomes.sqlite3", retention_days=RETENTION_DAYS, clock=clock
    )
    counters = OutcomeLogCounters()
    outcome_log = OutcomeLog(store, metrics=counters, clock=clock)
    learner = Learner(
        store,
        HeadExporter(workdir / "models"),
        prior_version=PRIOR_VERSION,
        settings=learner_settings,
        clock=clock,
    )
    heads = LiveHeads(store, [POLICY], prior_version=PRIOR_VERSION)
    spec = route_spec(POLICY, cheap_output="p_weak", expensive_output="p_strong")
    trace = Trace(
        order=order,
        score=np.empty(n),
        static_score=suite.prior[order, 1] - suite.prior[order, 0],
        expensive=np.zeros(n, dtype=bool),
        explored=explore_draw,
        explore_cost_usd=np.zeros(n),
        labels=np.zeros(n, dtype=np.int64),
        head_version=[],
    )
    recent: collections.deque[int] = collections.deque(maxlen=settings.calibration_requests)
    recent_gain: collections.deque[float] = collections.deque(maxlen=settings.calibration_requests)
    n_labels = 0
    next_refit = max(learner_settings.min_labels, 1)
    bar = tqdm(
        total=n, desc=f"{suite.name} online", unit="req", disable=not progress, mininterval=1.0
    )
    try:
        for step, i in enumerate(order):
            clock.now = T0_UNIX_S + step
            p_weak, p_strong = float(suite.prior[i, 0]), float(suite.prior[i, 1])
            prior = {"p_weak": p_weak, "p_strong": p_strong, "gain": p_strong - p_weak}
            served = heads.apply(POLICY, prior, suite.embedding[i])
            gain = served["gain"]
            recent.append(int(i))
            recent_gain.append(gain)
            threshold = _threshold(np.fromiter(recent_gain, float), settings.expensive_share)
            arm = 1 if gain >= threshold else 0
            explored = bool(explore_draw[step])
            request_id = f"{suite.name}-{step}"
            outcome_log.record(
                OutcomeRecord(
                    request_id=request_id,
                    unix_time_s=clock.now,
                    policy=POLICY,
                    policy_version="bench-online",
                    model_version=heads.model_version(POLICY),
                    decision=DecisionRecord(
                        arm=ARMS[arm],
                        upstream=suite.arm_models[arm],
                        gain=gain,
                        threshold=threshold,
                    ),
                    predictions=prior,
                    embedding_f16=pack_embedding(suite.embedding[i]),
                    evidence=RouteEvidence(arm=ARMS[arm]),
                    usage=UsageRecord(cost_usd=float(suite.cost_usd[i, arm])),
                    explore=explored,
                )
            )
            for label in _labels(
                request_id, suite.reward[i], arm, explored, settings, clock.now + 0.5
            ):
                outcome_log.label(label)
                n_labels += 1
            trace.score[step] = gain
            trace.expensive[step] = bool(arm)
            trace.explore_cost_usd[step] = float(suite.cost_usd[i, 1 - arm]) if explored else 0.0
            trace.labels[step] = n_labels
            trace.head_version.append(heads.model_version(POLICY))
            if n_labels >= next_refit:
                clock.now += 0.9  # the labels of this request have arrived
                await outcome_log.flush()
                report = await learner.refit(spec)
                trace.refits.append(RefitEvent(step, n_labels, report))
                next_refit = n_labels + learner_settings.refit_every
                if await heads.refresh():
                    _rescore(heads, suite, recent, recent_gain)
            elif (step + 1) % settings.flush_every == 0:
                await outcome_log.flush()
            bar.update(1)
            if on_request is not None:
                on_request(step, n_labels, heads.model_version(POLICY))
            if trace.refits and step % 50 == 0:
                bar.set_postfix(labels=n_labels, promoted=_promotions(trace), refresh=False)
    finally:
        bar.close()
        await outcome_log.aclose()
    trace.log_counters = {
        "written": counters.written,
        "dropped": dict(counters.dropped),
        "store_errors": dict(counters.store_errors),
    }
    trace.seconds = time.monotonic() - started
    return trace


def _promotions(trace: Trace) -> int:
    return sum(e.report.status == "promoted" for e in trace.refits)


def _rescore(
    heads: LiveHeads,
    suite: OnlineSuite,
    recent: collections.deque[int],
    recent_gain: collections.deque[float],
) -> None:
    """The calibration window's gains under the head now in force (the threshold re-solved)."""
    head = heads.head(POLICY)
    rows = np.fromiter(recent, dtype=np.intp)
    probs = (
        suite.prior[rows]
        if head is None
        else head.probabilities(suite.prior[rows], suite.embedding[rows])
    )
    recent_gain.clear()
    recent_gain.extend((probs[:, 1] - probs[:, 0]).tolist())
