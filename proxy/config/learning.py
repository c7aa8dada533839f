"""The ``learning:`` section: where the outcome log lives, how long it keeps, how the loop runs.

Only policies with ``learn: true`` are logged; without such a policy the section is inert. The
store defaults to a Redis Stream when ``cache.redis_url`` is set (every replica writes one log)
and to an embedded SQLite file under the user data dir otherwise.
"""

from __future__ import annotations

from pydantic import Field

from proxy.policies.spec import StrictModel


class LearningConfig(StrictModel):
    """Outcome log, exploration, learner and feedback settings (issue 18)."""

    #: ``redis://…`` / ``rediss://…`` for a Redis Stream, anything else is a SQLite file path;
    #: ``None``: Redis when ``cache.redis_url`` is set, else SQLite under the user data dir.
    store: str | None = None
    retention_days: float = Field(30.0, gt=0)
    #: Bound on the records kept per policy (Redis: the stream's approximate MAXLEN).
    max_entries: int = Field(1_000_000, ge=1)
    explore_fraction: float = Field(0.0, ge=0, le=1)
    explore_budget_usd_per_day: float = Field(1.0, ge=0)
    #: Upstream that judges explored pairs of policies without an answer pattern.
    judge: str | None = None
    refit_every: int = Field(200, ge=1)
    min_labels: int = Field(200, ge=1)
    poll_s: float = Field(30.0, gt=0)
    feedback_max_batch: int = Field(100, ge=1)

    def is_redis(self) -> bool:
        """``store`` names a Redis server."""
        return self.store is not None and self.store.startswith(
            ("redis://", "rediss://", "unix://")
        )
