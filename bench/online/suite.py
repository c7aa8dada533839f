"""What the online benchmark streams: one routing pair's prompts, embeddings, prior and outcomes.

An :class:`OnlineSuite` holds, per prompt, the embedding the shipped encoder computes (what the
outcome log keeps), the *prior*'s success probabilities of the cheap and the expensive arm (the
predictor a deployment starts from, before it has seen any of this traffic), both arms' recorded
rewards and the cost of each arm on that prompt. It is saved as one ``.npz`` (the per-suite cache
of :mod:`bench.online.prepare`, or a file a user prepares from their own recorded traffic for
``--suite-file``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

#: The ``.npz`` layout's version: a cache file of another layout is rebuilt, never misread.
SUITE_FORMAT = "adaptive-online-suite/1"


@dataclass(frozen=True)
class OnlineSuite:
    """Per-prompt arrays of one two-arm routing suite (column 0: cheap arm, 1: expensive)."""

    name: str
    prompt_ids: tuple[str, ...]
    embedding: npt.NDArray[np.float32]
    prior: npt.NDArray[np.float64]
    reward: npt.NDArray[np.float64]
    cost_usd: npt.NDArray[np.float64]
    #: The model each arm stands for (cheap, expensive).
    arm_models: tuple[str, str]
    #: The suite's committed out-of-fold APGR (the learner's reference), when there is one.
    cv_apgr: float | None
    #: Where the prior, the outcomes and the costs come from.
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.prompt_ids)
        if self.embedding.ndim != 2 or len(self.embedding) != n:
            raise ValueError("embedding must be (prompts, dim)")
        for name in ("prior", "reward", "cost_usd"):
            if getattr(self, name).shape != (n, 2):
                raise ValueError(f"{name} must be (prompts, 2)")
        if not ((self.reward >= 0) & (self.reward <= 1)).all():
            raise ValueError("rewards must lie in [0, 1]")

    @property
    def n(self) -> int:
        """Number of prompts."""
        return len(self.prompt_ids)

    @property
    def embedding_dim(self) -> int:
        """Length of one embedding."""
        return int(self.embedding.shape[1])

    def save(self, path: Path) -> None:
        """Write the suite as ``.npz`` (through a temporary file, so a reader never sees half)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": SUITE_FORMAT,
            "name": self.name,
            "arm_models": list(self.arm_models),
            "cv_apgr": self.cv_apgr,
            "provenance": dict(self.provenance),
        }
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(
            tmp,
            meta=np.asarray(json.dumps(meta)),
            prompt_ids=np.asarray(self.prompt_ids),
            embedding=self.embedding.astype(np.float32),
            prior=self.prior.astype(np.float64),
            reward=self.reward.astype(np.float64),
            cost_usd=self.cost_usd.astype(np.float64),
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> OnlineSuite:
        """Read :meth:`save`'s file; ``ValueError`` when it is of another format."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != SUITE_FORMAT:
                raise ValueError(f"{path}: not an online suite ({meta.get('format')!r})")
            return cls(
                name=str(meta["name"]),
                prompt_ids=tuple(str(p) for p in data["prompt_ids"]),
                embedding=np.asarray(data["embedding"], np.float32),
                prior=np.asarray(data["prior"], np.float64),
                reward=np.asarray(data["reward"], np.float64),
                cost_usd=np.asarray(data["cost_usd"], np.float64),
                arm_models=(str(meta["arm_models"][0]), str(meta["arm_models"][1])),
                cv_apgr=None if meta.get("cv_apgr") is None else float(meta["cv_apgr"]),
                provenance=dict(meta.get("provenance") or {}),
            )
