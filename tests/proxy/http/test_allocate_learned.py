"""``POST /v1/adaptive/allocate`` for a ``learn: true`` policy plans on its learned head's
predictions, as its decisions are made (the shipped ONNX predictor, a head promoted in a real
SQLite outcome store, the proxy on an ephemeral port)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.config.schema import load_config_text
from proxy.http.app import create_app
from proxy.learn.head import LearnedHead, document_sha256
from proxy.learn.store import ModelVersion
from recorded_data.records import MODEL_STRONG, MODEL_WEAK
from replay.store import ReplayStore
from tests.proxy.learn.builders import sqlite_store
from tests.servers import running

CONFIG = """
server: {{reload: false}}
upstreams:
  mixtral: {{base_url: "{url}", model: "{weak}", price_in_per_mtok_usd: 0.6,
            price_out_per_mtok_usd: 0.6}}
  gpt-4: {{base_url: "{url}", model: "{strong}", price_in_per_mtok_usd: 10,
          price_out_per_mtok_usd: 30}}
policies:
  router: {{type: route, cheap: mixtral, expensive: gpt-4, threshold: 0.5, learn: true}}
  plain: {{type: route, cheap: mixtral, expensive: gpt-4, threshold: 0.5}}
learning: {{store: "{store}"}}
"""
EMBEDDING_DIM = 384  # the shipped predictor's


def confident_head() -> dict[str, Any]:
    """A head sure that the cheap arm fails and the expensive one succeeds on every prompt."""
    zeros = [0.0] * EMBEDDING_DIM
    head = LearnedHead.from_document(
        {
            "format": "adaptive-learned-head/1",
            "policy": "router",
            "version": "v-sure",
            "embedding_dim": EMBEDDING_DIM,
            "targets": {
                "cheap": {"prior_output": "p_weak", "weights": zeros, "prior_scale": 0, "bias": -9},
                "expensive": {
                    "prior_output": "p_strong",
                    "weights": zeros,
                    "prior_scale": 0,
                    "bias": 9,
                },
            },
            "target_order": ["cheap", "expensive"],
            "derived": {"gain": ["p_strong", "p_weak"]},
            "meta": {},
        }
    )
    return head.to_document()


async def test_allocation_uses_the_learned_head_of_a_learning_policy(
    tmp_path: Path, replay_base_url: str, replay_store: ReplayStore, onnx_predictor: Any
) -> None:
    path = tmp_path / "outcomes.sqlite3"
    store = sqlite_store(path)
    document = confident_head()
    try:
        await store.put_model(
            ModelVersion(
                policy="router",
                version="v-sure",
                promoted_at_unix_s=1.0,
                sha256=document_sha256(document),
                document=document,
            )
        )
    finally:
        await store.aclose()
    text = CONFIG.format(url=replay_base_url, weak=MODEL_WEAK, strong=MODEL_STRONG, store=path)
    app = create_app(load_config_text(text, env={}), predictor=onnx_predictor)
    prompts = [
        [dict(m) for m in r.messages]
        for r in replay_store.records()
        if r.dataset in ("gsm8k", "mtbench")
    ][:6]
    requests = [{"messages": m} for m in prompts]
    async with running(app) as url, aiohttp.ClientSession() as http:

        async def gains(model: str) -> list[float]:
            body = {"model": model, "budget": 2, "requests": requests}
            async with http.post(f"{url}/v1/adaptive/allocate", json=body) as resp:
                assert resp.status == 200, await resp.text()
                return [a["gain"] for a in (await resp.json())["allocations"]]

        learned, prior = await gains("router"), await gains("plain")
        async with http.post(
            f"{url}/v1/adaptive/decide", json={"model": "router", "messages": prompts[0]}
        ) as resp:
            decided = await resp.json()
    # The head's gain, ~1 for every prompt; the prior's own gains are the shipped predictor's.
    assert all(g > 0.99 for g in learned)
    assert all(g < 0.99 for g in prior) and len(set(prior)) > 1
    assert decided["gain"] == pytest.approx(learned[0], abs=1e-6)  # as the decision sees it
