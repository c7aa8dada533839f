"""What the outcome log keeps: an :class:`OutcomeRecord` per request, its :class:`LabelRecord` s.

A record says what the proxy decided and what it saw: the decision (arm, n, cascade stages), the
shipped predictor's outputs, the prompt's embedding as the predictor computed it (float16, base64:
768 bytes for MiniLM's 384 dimensions; never the prompt text unless the access log's
``include_messages`` is on), the evidence the request produced and its usage and cost. Labels
arrive afterwards (free labels when the request ends, explored labels after a background run of the
other arm, feedback whenever the client sends it) and are joined to the record by request id.

The targets a label carries are explicit, one field each:

* ``arm_rewards``: the reward in [0, 1] of each named arm (the names ``x-adaptive-arm`` uses): the
  target of route policies (per-arm success → the gain of the expensive arm);
* ``reward``: the reward of the arm that answered (``decision.arm``); informs that arm only;
* ``sample_success``: how many of the drawn samples were good: the target of best-of-k policies
  (the success probability of one sample).

Documents are JSON with a ``schema_version``; readers skip a version they do not know and ignore
fields they do not know (a newer replica may write more).
"""

from __future__ import annotations

import base64
import math
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = 1
#: Extracted answers are short (a number, an option letter); longer ones are cut to this.
MAX_ANSWER_CHARS = 200
LabelKind = Literal["free", "explored", "feedback"]
LABEL_KINDS: tuple[LabelKind, ...] = ("free", "explored", "feedback")


class LogModel(BaseModel):
    """A logged document: frozen, unknown keys ignored (written by a newer replica)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


def _short(answer: str | None) -> str | None:
    return (
        answer if answer is None or len(answer) <= MAX_ANSWER_CHARS else answer[:MAX_ANSWER_CHARS]
    )


def pack_embedding(vector: Any) -> str:
    """A float vector as base64 of its little-endian float16 bytes."""
    array = np.asarray(vector, dtype="<f2").ravel()
    return base64.b64encode(array.tobytes()).decode("ascii")


def unpack_embedding(packed: str) -> npt.NDArray[np.float32]:
    """The float32 vector of :func:`pack_embedding`'s output."""
    return np.frombuffer(base64.b64decode(packed), dtype="<f2").astype(np.float32)


class DecisionRecord(LogModel):
    """What the policy decided for the request."""

    arm: str
    upstream: str | None = None
    n: int = Field(1, ge=0)
    #: Cascade: the stages' names in order (``[]`` otherwise).
    stages: list[str] = Field(default_factory=list)
    gain: float | None = None
    threshold: float | None = None
    lambda_: float | None = Field(None, alias="lambda")
    cache_hit: bool = False
    fallback_reason: str | None = None


class SampleOutcome(LogModel):
    """One drawn sample of a sequential best-of-k request."""

    index: int = Field(ge=0)
    answer: str | None = None
    #: The verifier's score, when the policy has one.
    verdict: float | None = None
    #: The verifier's accept (True) or reject (False) of this sample.
    accepted: bool | None = None

    _cut = field_validator("answer")(_short)


class SequentialEvidence(LogModel):
    """A sequential best-of-k request: every sample, how many rounds, why it stopped."""

    kind: Literal["sequential"] = "sequential"
    samples: list[SampleOutcome]
    rounds: int = Field(ge=0)
    stopped_by: str
    #: The answer the request settled on (the majority, or the verifier's pick).
    settled_answer: str | None = None

    _cut = field_validator("settled_answer")(_short)


class StageOutcome(LogModel):
    """One cascade stage that ran."""

    name: str
    upstream: str | None = None
    answer: str | None = None

    _cut = field_validator("answer")(_short)


class CascadeEvidence(LogModel):
    """A cascade request: each stage's answer, whether the cheap stages agreed, escalated or not."""

    kind: Literal["cascade"] = "cascade"
    stages: list[StageOutcome]
    agreement: bool | None = None
    escalated: bool


class RouteEvidence(LogModel):
    """A route request: the arm that answered."""

    kind: Literal["route"] = "route"
    arm: str


Evidence = Annotated[
    SequentialEvidence | CascadeEvidence | RouteEvidence, Field(discriminator="kind")
]


class UsageRecord(LogModel):
    """Tokens and spend of the request (every sample and stage together)."""

    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    cost_usd: float = Field(0.0, ge=0)


class OutcomeRecord(LogModel):
    """One chat request of a ``learn: true`` policy."""

    schema_version: int = SCHEMA_VERSION
    request_id: str = Field(min_length=1)
    unix_time_s: float
    policy: str
    policy_version: str
    #: The client key's name when ``server.auth`` is on: feedback is accepted from it alone.
    key: str | None = None
    #: The head the decision used: the shipped prior's version or a learned version.
    model_version: str | None = None
    decision: DecisionRecord
    #: The shipped predictor's outputs (before any learned head): the learner's offsets.
    predictions: dict[str, float] = Field(default_factory=dict)
    #: :func:`pack_embedding` of the prompt's embedding; ``None`` when none was computed.
    embedding_f16: str | None = None
    evidence: Evidence | None = None
    usage: UsageRecord = Field(default_factory=UsageRecord)
    #: A background exploration run of the arm not chosen is attached to this request.
    explore: bool = False
    #: The conversation, only with ``server.access_log.include_messages``.
    messages: list[dict[str, Any]] | None = None

    @field_validator("predictions")
    @classmethod
    def _finite(cls, values: dict[str, float]) -> dict[str, float]:
        # JSON has no NaN; a non-finite output is useless as an offset anyway.
        return {k: v for k, v in values.items() if math.isfinite(v)}

    def embedding(self) -> npt.NDArray[np.float32] | None:
        """The embedding as float32, or ``None``."""
        return None if self.embedding_f16 is None else unpack_embedding(self.embedding_f16)


class SampleSuccess(LogModel):
    """How many of a request's drawn samples were good (best-of-k's per-sample target)."""

    successes: float = Field(ge=0)
    samples: int = Field(ge=1)
    #: How a sample was judged: the verifier's accept, or agreement with the settled answer.
    judged_by: Literal["verifier", "vote"]

    @model_validator(mode="after")
    def _bounded(self) -> SampleSuccess:
        if self.successes > self.samples:
            raise ValueError("successes exceed samples")
        return self

    @property
    def share(self) -> float:
        """The share of good samples, in [0, 1]."""
        return self.successes / self.samples


Reward = Annotated[float, Field(ge=0.0, le=1.0)]


class LabelRecord(LogModel):
    """A label for a logged request, of one kind, carrying at least one target."""

    schema_version: int = SCHEMA_VERSION
    request_id: str = Field(min_length=1)
    unix_time_s: float
    kind: LabelKind
    #: Where it came from: ``sequential``, ``cascade``, ``explore:agreement``, ``explore:judge``,
    #: ``feedback``, an evaluator's name…
    source: str
    arm_rewards: dict[str, Reward] = Field(default_factory=dict)
    reward: Reward | None = None
    sample_success: SampleSuccess | None = None
    #: The client key that sent feedback (``server.auth``).
    key: str | None = None

    @model_validator(mode="after")
    def _has_target(self) -> LabelRecord:
        if not self.arm_rewards and self.reward is None and self.sample_success is None:
            raise ValueError("a label needs arm_rewards, reward or sample_success")
        return self


Entry = OutcomeRecord | LabelRecord


def encode_entry(entry: Entry) -> str:
    """The JSON document of a record or label (``by_alias``: ``lambda``, not ``lambda_``)."""
    return entry.model_dump_json(by_alias=True, exclude_none=True)


def decode_record(document: str | bytes) -> OutcomeRecord | None:
    """A record from its JSON, or ``None`` for a schema version this reader does not know."""
    record = OutcomeRecord.model_validate_json(document)
    return record if record.schema_version <= SCHEMA_VERSION else None


def decode_label(document: str | bytes) -> LabelRecord | None:
    """A label from its JSON, or ``None`` for an unknown schema version."""
    label = LabelRecord.model_validate_json(document)
    return label if label.schema_version <= SCHEMA_VERSION else None
