"""The learner: refit a policy's head on its logged labels, score it, promote it or not, roll back.

One refit (:meth:`Learner.refit`):

1. Due? Only when the policy has ``min_labels`` labels and ``refit_every`` new ones since the
   last refit (label totals are the store's; the count at the last refit is in the learner's
   state in the store).
2. Read every labelled record within retention; build rows (:mod:`proxy.learn.targets`); order
   them by the time of their newest label; the newest ``holdout_fraction`` are held out.
3. Fit each target on the older rows from the shipped prior (:mod:`proxy.learn.fit`, one ``l2``
   for all the head's targets), in an executor thread; the candidate is rounded as it will be
   exported, then scored on the held-out rows against the current head (the promoted one, or the
   prior) (:mod:`proxy.learn.score`).
4. If it passes the :class:`~proxy.learn.score.PromotionRule`: write its file, record the version
   in the store (what every replica follows), then name it current in the folder's manifest.
   The exported head is the one that was scored (fitted without the held-out rows); the next
   refit includes them.

Nothing is written before the decision, and the store's version changes in one call after the
head's file is whole, so a learner killed at any point leaves the serving head as it was and the
labels where they were (the next refit starts again). :meth:`Learner.rollback` returns a policy to
its previous version (or the prior). One learner per store is assumed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from proxy.learn.export import HeadExporter
from proxy.learn.fit import DEFAULT_L2_GRID, choose_shared_l2, fit_offset
from proxy.learn.head import (
    HeadDocumentError,
    HeadTarget,
    LearnedHead,
    canonical_bytes,
    document_sha256,
    logit,
    rounded,
)
from proxy.learn.records import LabelKind
from proxy.learn.score import Comparison, PromotionRule, Score, compare, score
from proxy.learn.store import (
    Labelled,
    LearnerState,
    ModelVersion,
    OutcomeStore,
    iter_labelled,
)
from proxy.learn.targets import Examples, HeadSpec, build_examples

log = logging.getLogger("proxy.learn")
RefitStatus = Literal["not_due", "too_few", "promoted", "rejected"]


@dataclass(frozen=True)
class LearnerSettings:
    """How often, on how much, and how strictly the learner refits."""

    min_labels: int = 200
    refit_every: int = 200
    holdout_fraction: float = 0.2
    #: Fewer training rows than this: no fit (the held-out rows come first).
    min_train: int = 50
    l2_grid: tuple[float, ...] = DEFAULT_L2_GRID
    rule: PromotionRule = field(default_factory=PromotionRule)
    embedding_dim: int = 384


@dataclass(frozen=True)
class RefitReport:
    """What one refit did, for logs, the learner's state and ``GET /v1/adaptive/learning``."""

    policy: str
    status: RefitStatus
    reason: str
    labels: dict[LabelKind, int]
    train_rows: int = 0
    holdout_rows: int = 0
    version: str | None = None
    prequential: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-able."""
        return {
            "policy": self.policy,
            "status": self.status,
            "reason": self.reason,
            "labels": dict(self.labels),
            "train_rows": self.train_rows,
            "holdout_rows": self.holdout_rows,
            "version": self.version,
            "prequential": self.prequential,
        }


@dataclass(frozen=True)
class _Fitted:
    head: LearnedHead | None
    comparison: Comparison | None
    prior: Score | None
    train_rows: int
    holdout_rows: int
    reason: str


def _iso(unix_s: float) -> str:
    return dt.datetime.fromtimestamp(unix_s, tz=dt.UTC).isoformat(timespec="seconds")


def _compatible(head: LearnedHead | None, spec: HeadSpec) -> LearnedHead | None:
    """The current head, if it corrects the outputs ``spec`` asks for (else: compare to prior)."""
    if head is None:
        return None
    if [(t.name, t.prior_output) for t in head.targets] != [
        (t.name, t.prior_output) for t in spec.targets
    ]:
        return None
    return head


class Learner:
    """Refits, promotes and rolls back the heads of the policies it is given."""

    def __init__(
        self,
        store: OutcomeStore,
        exporter: HeadExporter,
        *,
        prior_version: str,
        settings: LearnerSettings | None = None,
        clock: Callable[[], float] = time.time,
        executor: concurrent.futures.Executor | None = None,
    ) -> None:
        self.store = store
        self.exporter = exporter
        self.prior_version = prior_version
        self.settings = settings or LearnerSettings()
        self._clock = clock
        self._executor = executor

    async def _off_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def current_head(self, policy: str) -> LearnedHead | None:
        """The store's current head of ``policy`` (hash-checked), or ``None`` (the prior)."""
        model = await self.store.current_model(policy)
        if model is None:
            return None
        return LearnedHead.from_document(model.document, sha256=model.sha256)

    async def refit(self, spec: HeadSpec, *, force: bool = False) -> RefitReport:
        """One refit of ``spec.policy`` (``force``: even when not due)."""
        policy = spec.policy
        totals = await self.store.label_totals(policy)
        total = sum(totals.values())
        state = await self.store.learner_state(policy)
        s = self.settings
        if not force and total < s.min_labels:
            return RefitReport(
                policy, "too_few", f"{total} labels < min_labels {s.min_labels}", totals
            )
        if not force and total - state.labels_at_fit < s.refit_every:
            new = total - state.labels_at_fit
            return RefitReport(policy, "not_due", f"{new} new labels < refit_every", totals)
        log.info(
            "learner: refitting %s on %d labels (%d new)",
            policy,
            total,
            total - state.labels_at_fit,
        )
        items = [item async for item in iter_labelled(self.store, policy)]
        try:
            current = _compatible(await self.current_head(policy), spec)
        except HeadDocumentError as exc:
            log.warning(
                "learner: %s's current head is unreadable (%s); comparing to prior", policy, exc
            )
            current = None
        now = self._clock()
        fitted: _Fitted = await self._off_loop(self._fit_and_score, spec, items, current, now)
        report = self._report(spec, totals, fitted)
        if report.status == "promoted" and fitted.head is not None:
            await self._promote(fitted.head, report, now)
        if report.status in ("promoted", "rejected"):
            await self.store.put_learner_state(
                policy,
                LearnerState(
                    labels_at_fit=total, last_fit_unix_s=now, last_result=report.to_json()
                ),
            )
        log.info(
            "learner: %s %s (%s); train %d, held out %d",
            policy,
            report.status,
            report.reason,
            report.train_rows,
            report.holdout_rows,
        )
        return report

    def _report(self, spec: HeadSpec, totals: dict[LabelKind, int], fitted: _Fitted) -> RefitReport:
        if fitted.head is None or fitted.comparison is None:
            return RefitReport(spec.policy, "too_few", fitted.reason, totals, fitted.train_rows)
        ok, why = self.settings.rule.passes(fitted.comparison)
        prequential = fitted.comparison.to_json()
        if fitted.prior is not None:
            prequential["prior"] = fitted.prior.to_json()
        return RefitReport(
            spec.policy,
            "promoted" if ok else "rejected",
            why,
            totals,
            fitted.train_rows,
            fitted.holdout_rows,
            fitted.head.version,
            prequential,
        )

    def _fit_and_score(
        self,
        spec: HeadSpec,
        items: Sequence[Labelled],
        current: LearnedHead | None,
        now_unix_s: float,
    ) -> _Fitted:
        s = self.settings
        examples = build_examples(items, spec, embedding_dim=s.embedding_dim)
        ordered = examples.take(np.argsort(examples.label_time, kind="stable"))
        n_hold = round(len(ordered) * s.holdout_fraction)
        n_train = len(ordered) - n_hold
        if n_train < s.min_train or n_hold < 1:
            return _Fitted(None, None, None, n_train, n_hold, f"{len(ordered)} usable rows")
        train = ordered.take(np.arange(n_train))
        held = ordered.take(np.arange(n_train, len(ordered)))
        head = self._fit(spec, train, now_unix_s)
        candidate = head.probabilities(held.prior, held.embedding)
        baseline = current.probabilities(held.prior, held.embedding) if current else held.prior
        comparison = compare(baseline, candidate, held)
        prior = score(held.prior, held)
        return _Fitted(head, comparison, prior, n_train, n_hold, "")

    def _fit(self, spec: HeadSpec, train: Examples, now_unix_s: float) -> LearnedHead:
        targets = []
        l2s = {}
        e = train.embedding.astype(np.float64)
        l0s = logit(train.prior)
        l2 = choose_shared_l2(e, l0s, train.y, train.weight, grid=self.settings.l2_grid)
        for j, target in enumerate(spec.targets):
            fit = fit_offset(e, l0s[:, j], train.y[:, j], train.weight[:, j], l2=l2)
            l2s[target.name] = l2
            targets.append(
                HeadTarget(
                    target.name,
                    target.prior_output,
                    rounded(fit.weights),
                    rounded([fit.prior_scale])[0],
                    rounded([fit.bias])[0],
                )
            )
        digest = hashlib.sha256(
            canonical_bytes({t.name: [t.weights, t.prior_scale, t.bias] for t in targets})
        ).hexdigest()[:10]
        stamp = dt.datetime.fromtimestamp(now_unix_s, tz=dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        meta = {
            "prior_version": self.prior_version,
            "trained_at": _iso(now_unix_s),
            "train_rows": len(train),
            "l2": l2s,
        }
        return LearnedHead(
            spec.policy,
            f"learned-{stamp}-{digest}",
            self.settings.embedding_dim,
            tuple(targets),
            dict(spec.derived),
            meta,
        )

    async def _promote(self, head: LearnedHead, report: RefitReport, now_unix_s: float) -> None:
        document = head.to_document()
        document["meta"] = {**document["meta"], "prequential": report.prequential}
        head = LearnedHead.from_document(document)
        await self._off_loop(self.exporter.write_head, head)
        await self.store.put_model(
            ModelVersion(
                policy=head.policy,
                version=head.version,
                promoted_at_unix_s=now_unix_s,
                sha256=document_sha256(document),
                document=document,
                scores=report.prequential,
            )
        )
        await self._off_loop(self.exporter.set_current, head.policy, head.version)

    async def rollback(self, policy: str) -> ModelVersion | None:
        """Return ``policy`` to its previous version; ``None``: the shipped prior serves."""
        model = await self.store.rollback_model(policy)
        version = None if model is None else model.version
        if model is not None:
            # The folder may lack a version promoted by another learner's folder: rewrite it.
            await self._off_loop(
                self.exporter.write_head,
                LearnedHead.from_document(model.document, sha256=model.sha256),
            )
        await self._off_loop(self.exporter.set_current, policy, version)
        log.warning("learner: %s rolled back to %s", policy, version or self.prior_version)
        return model

    def model_version(self, model: ModelVersion | None) -> str:
        """The version name ``GET /v1/adaptive/learning`` reports: the prior's until a promotion."""
        return self.prior_version if model is None else model.version

    async def run(self, specs: Sequence[HeadSpec], *, poll_s: float, stop: asyncio.Event) -> None:
        """Refit each policy when due, every ``poll_s``, until ``stop`` is set."""
        waiting: dict[str, RefitStatus] = {}
        while not stop.is_set():
            for spec in specs:
                try:
                    report = await self.refit(spec)
                except Exception:  # one policy's failure must not stop the others' learning
                    log.exception("learner: refit of %s failed; will retry", spec.policy)
                    continue
                # A wait is said once when it begins (not on every poll); a refit says itself.
                if report.status in ("too_few", "not_due"):
                    if waiting.get(spec.policy) != report.status:
                        log.info("learner: %s %s (%s)", spec.policy, report.status, report.reason)
                    waiting[spec.policy] = report.status
                else:
                    waiting.pop(spec.policy, None)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_s):
                    await stop.wait()
