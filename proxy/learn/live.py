"""A replica's view of the promoted heads: poll the store, hot-swap, apply to predictions.

Every replica polls the shared store every ``learning.poll_s`` (:meth:`LiveHeads.refresh`); a
changed version is loaded from the store's document (hash-checked) and swapped in by replacing
one dict entry, so a request sees either the old head or the new one, never a mix. A store that
cannot be read keeps the heads in place (warned once per outage); a document that fails its hash
is refused (the previous head stays) and warned about.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from proxy.learn.head import HeadDocumentError, LearnedHead
from proxy.learn.records import pack_embedding
from proxy.learn.store import OutcomeStore

log = logging.getLogger("proxy.learn")
Messages = Sequence[Mapping[str, Any]]


@runtime_checkable
class EmbeddingPredictor(Protocol):
    """A predictor that also returns the embedding its head read (the ONNX predictor)."""

    async def predict_embedded(
        self, batch: Sequence[Messages]
    ) -> list[tuple[dict[str, float], Any]]:
        """Each prediction with its prompt's embedding."""
        ...


async def predict_with_embeddings(
    predictor: Any, batch: Sequence[Messages]
) -> list[tuple[dict[str, float], Any]]:
    """Predictions with embeddings; a predictor without them (a table, the hash stand-in) gives
    ``None`` embeddings, which :meth:`LiveHeads.apply` passes through and the log stores as none."""
    if isinstance(predictor, EmbeddingPredictor):
        return await predictor.predict_embedded(batch)
    return [(values, None) for values in await predictor.predict(batch)]


class LiveHeads:
    """The current learned head of each ``learn: true`` policy (``None``: the prior serves)."""

    def __init__(self, store: OutcomeStore, policies: Iterable[str], *, prior_version: str) -> None:
        self._store = store
        self._policies = tuple(policies)
        self.prior_version = prior_version
        self._heads: dict[str, LearnedHead | None] = dict.fromkeys(self._policies)
        self._outage = False

    @property
    def policies(self) -> tuple[str, ...]:
        """The policies followed."""
        return self._policies

    def set_policies(self, policies: Iterable[str]) -> None:
        """Follow these policies from now on (a reload turned ``learn`` on or off); the heads of
        policies still followed stay, a new one serves the prior until the next refresh."""
        self._policies = tuple(policies)
        self._heads = {p: self._heads.get(p) for p in self._policies}

    async def predict(
        self, policy: str, predictor: Any, messages: Messages
    ) -> tuple[dict[str, float], dict[str, float], str | None]:
        """The predictions of ``policy``'s head in force, the predictor's own, and the prompt's
        embedding packed for the outcome log (:func:`pack_embedding`), from one encoding."""
        ((prior, embedding),) = await predict_with_embeddings(predictor, [messages])
        packed = None if embedding is None else pack_embedding(embedding)
        return self.apply(policy, prior, embedding), prior, packed

    async def predict_many(
        self, policy: str, predictor: Any, batch: Sequence[Messages]
    ) -> list[dict[str, float]]:
        """The predictions of ``batch`` corrected by ``policy``'s head in force (the predictor's
        own, with no embedding computed, while the prior serves)."""
        if self._heads.get(policy) is None:
            return list(await predictor.predict(batch))
        pairs = await predict_with_embeddings(predictor, batch)
        return [self.apply(policy, values, embedding) for values, embedding in pairs]

    def head(self, policy: str) -> LearnedHead | None:
        """The head in force for ``policy``."""
        return self._heads.get(policy)

    def model_version(self, policy: str) -> str:
        """The version in force: a learned one, or the shipped prior's."""
        head = self._heads.get(policy)
        return self.prior_version if head is None else head.version

    def apply(
        self, policy: str, predictions: Mapping[str, float], embedding: Any
    ) -> dict[str, float]:
        """``predictions`` corrected by the policy's head (unchanged without one)."""
        head = self._heads.get(policy)
        if head is None or embedding is None:
            return dict(predictions)
        return head.apply(predictions, embedding)

    async def refresh(self) -> dict[str, str]:
        """Load every changed version; returns ``{policy: version now in force}`` of the swaps
        (a budgeted policy's λ should be re-solved for those)."""
        swapped: dict[str, str] = {}
        for policy in self._policies:
            try:
                model = await self._store.current_model(policy)
            except Exception as exc:
                if not self._outage:
                    self._outage = True
                    log.warning("learned heads: store unreadable (%s); keeping the heads", exc)
                return swapped
            if self._outage:
                self._outage = False
                log.warning("learned heads: store readable again")
            held = self._heads.get(policy)
            if model is None:
                if held is not None:
                    self._heads[policy] = None
                    swapped[policy] = self.prior_version
                continue
            if held is not None and held.version == model.version:
                continue
            try:
                head = LearnedHead.from_document(model.document, sha256=model.sha256)
            except HeadDocumentError as exc:
                log.warning("learned heads: %s version %s refused: %s", policy, model.version, exc)
                continue
            self._heads[policy] = head
            swapped[policy] = head.version
        return swapped

    async def poll(self, *, poll_s: float, stop: asyncio.Event) -> None:
        """:meth:`refresh` every ``poll_s`` until ``stop`` is set."""
        while not stop.is_set():
            swapped = await self.refresh()
            for policy, version in swapped.items():
                log.info("learned heads: %s now serves %s", policy, version)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_s):
                    await stop.wait()
