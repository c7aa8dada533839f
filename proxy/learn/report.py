"""One policy's entry of ``GET /v1/adaptive/learning``, read from the store.

``{"labels": {"free": n, "explored": n, "feedback": n}, "model_version": "...", "promoted_at":
null | "<ISO time>", "prequential": {...}, "explore_spend_usd": x}``: ``model_version`` names the
shipped prior until a learned head is promoted; ``prequential`` holds the scores of the last refit
(candidate, current and prior on the held-out labels, the margin and its z) and, once a head is
promoted, the scores it was promoted on.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from proxy.learn.store import OutcomeStore


async def policy_learning(
    store: OutcomeStore, policy: str, *, prior_version: str, explore_spend_usd: float = 0.0
) -> dict[str, Any]:
    """The report of ``policy`` (exploration spend is the caller's: it is not logged here)."""
    labels = await store.label_totals(policy)
    model = await store.current_model(policy)
    state = await store.learner_state(policy)
    prequential: dict[str, Any] = {}
    if state.last_result:
        prequential["last_refit"] = {
            "status": state.last_result.get("status"),
            "reason": state.last_result.get("reason"),
            "at": _iso(state.last_fit_unix_s),
            **dict(state.last_result.get("prequential") or {}),
        }
    if model is not None:
        prequential["promoted"] = dict(model.scores)
    return {
        "labels": dict(labels),
        "model_version": prior_version if model is None else model.version,
        "promoted_at": None if model is None else _iso(model.promoted_at_unix_s),
        "prequential": prequential,
        "explore_spend_usd": round(explore_spend_usd, 6),
    }


def _iso(unix_s: float | None) -> str | None:
    if unix_s is None:
        return None
    return dt.datetime.fromtimestamp(unix_s, tz=dt.UTC).isoformat(timespec="seconds")
