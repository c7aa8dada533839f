"""The outcome store interface, what its reads return, and where the embedded store lives.

Two implementations: :class:`proxy.learn.store_redis.RedisOutcomeStore` (a Redis Stream per
policy, shared by every replica) and :class:`proxy.learn.store_sqlite.SqliteOutcomeStore` (one
embedded file). Both keep, besides the log, the promoted head versions of each policy (with their
history, for rollback) and a small learner state per policy, so that a learner and every replica
agree on one store.

Retention: a record older than ``retention_days`` is gone; its request id is remembered for
``tombstone_days`` more, so that :meth:`OutcomeStore.get` can tell *expired* (the feedback
endpoint's 410) from *never logged* (404).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import Field

from proxy.learn.records import Entry, LabelKind, LabelRecord, LogModel, OutcomeRecord
from proxy.wire.errors import ServiceUnavailableError

APP_DIR_NAME = "adaptive-proxy"
SQLITE_NAME = "outcomes.sqlite3"
DEFAULT_TOMBSTONE_DAYS = 30.0
DAY_S = 86_400.0


class OutcomeStoreError(ServiceUnavailableError):
    """The outcome store could not be read or written (answered as 503 where a client asked)."""

    default_code = "outcome_store_unavailable"


LookupStatus = Literal["found", "missing", "expired"]


@dataclass(frozen=True)
class Lookup:
    """A request id looked up: its record and labels, or why there is none."""

    status: LookupStatus
    record: OutcomeRecord | None = None
    labels: tuple[LabelRecord, ...] = ()


@dataclass(frozen=True)
class Labelled:
    """A record with every label that has arrived for it (oldest first)."""

    record: OutcomeRecord
    labels: tuple[LabelRecord, ...]
    #: The record's position in its log; pass as ``after`` to continue past it.
    cursor: str


@dataclass(frozen=True)
class LabelledPage:
    """One page of :meth:`OutcomeStore.labelled`; ``cursor`` is ``None`` at the end of the log."""

    items: tuple[Labelled, ...]
    cursor: str | None


@dataclass(frozen=True)
class WriteResult:
    """What a batch write did: entries written, labels whose request id has no record."""

    written: int
    orphan_labels: int = 0


class ModelVersion(LogModel):
    """A promoted head of one policy, kept in the store so every replica can load it."""

    policy: str
    version: str
    promoted_at_unix_s: float
    #: sha256 of :attr:`document`'s canonical JSON (:func:`proxy.learn.head.canonical_bytes`).
    sha256: str
    document: dict[str, Any]
    #: Prequential scores at promotion (candidate, current, prior).
    scores: dict[str, Any] = Field(default_factory=dict)
    rolled_back: bool = False


@dataclass
class LearnerState:
    """What the learner remembers per policy between refits."""

    labels_at_fit: int = 0
    last_fit_unix_s: float | None = None
    last_result: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return {
            "labels_at_fit": self.labels_at_fit,
            "last_fit_unix_s": self.last_fit_unix_s,
            "last_result": self.last_result,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LearnerState:
        """Parse :meth:`to_json`'s output."""
        last = data.get("last_fit_unix_s")
        return cls(
            labels_at_fit=int(data.get("labels_at_fit", 0)),
            last_fit_unix_s=None if last is None else float(last),
            last_result=dict(data.get("last_result") or {}),
        )


class OutcomeStore(Protocol):
    """Where the outcome log, the head versions and the learner state live."""

    async def write(self, entries: Sequence[Entry]) -> WriteResult:
        """Write records and labels in order. A label whose request has no record is dropped
        (counted in the result); a record with a request id already logged replaces it and its
        labels. Raises on a store failure (the caller counts and retries)."""
        ...

    async def get(self, request_id: str) -> Lookup:
        """The record and labels of ``request_id``; raises :class:`OutcomeStoreError`."""
        ...

    async def labelled(
        self, policy: str, *, after: str | None = None, limit: int = 500
    ) -> LabelledPage:
        """Records of ``policy`` within retention that have a label, oldest first, each with
        all its labels, starting after the cursor ``after``."""
        ...

    async def label_totals(self, policy: str) -> dict[LabelKind, int]:
        """Labels ever written for ``policy``, by kind (monotonic: retention does not lower it)."""
        ...

    async def trim(self, now_unix_s: float) -> int:
        """Drop what is past retention; returns how many records went."""
        ...

    async def put_model(self, model: ModelVersion) -> None:
        """Append a promoted version to the policy's history; it becomes current."""
        ...

    async def models(self, policy: str) -> list[ModelVersion]:
        """The policy's version history, oldest first (rolled-back ones flagged)."""
        ...

    async def current_model(self, policy: str) -> ModelVersion | None:
        """The newest version not rolled back, or ``None`` (the shipped prior serves)."""
        ...

    async def rollback_model(self, policy: str) -> ModelVersion | None:
        """Flag the current version rolled back; returns the version now current (or ``None``)."""
        ...

    async def learner_state(self, policy: str) -> LearnerState:
        """The learner's state for ``policy`` (defaults when never written)."""
        ...

    async def put_learner_state(self, policy: str, state: LearnerState) -> None:
        """Replace the learner's state for ``policy``."""
        ...

    async def aclose(self) -> None:
        """Release connections or threads."""
        ...


async def iter_labelled(
    store: OutcomeStore, policy: str, *, after: str | None = None, page: int = 500
) -> AsyncIterator[Labelled]:
    """Every labelled record of ``policy`` after ``after``, page by page."""
    cursor = after
    while True:
        result = await store.labelled(policy, after=cursor, limit=page)
        for item in result.items:
            yield item
        if result.cursor is None:
            return
        cursor = result.cursor


def current_of(history: Sequence[ModelVersion]) -> ModelVersion | None:
    """The newest version of ``history`` (oldest first) that is not rolled back."""
    for model in reversed(history):
        if not model.rolled_back:
            return model
    return None


def user_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/adaptive-proxy``, else ``~/.local/share/adaptive-proxy``."""
    env = os.environ if env is None else env
    base = env.get("XDG_DATA_HOME") or ""
    root = (
        Path(base) if os.path.isabs(base) else Path(env.get("HOME") or Path.home()) / ".local/share"
    )
    return root / APP_DIR_NAME


def default_sqlite_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the embedded outcome store lives unless ``learning.store`` says otherwise."""
    return user_data_dir(env) / SQLITE_NAME


def retention_cutoff(now_unix_s: float, retention_days: float) -> float:
    """The time before which a record is past retention."""
    return now_unix_s - retention_days * DAY_S
