"""Replicas on one Redis follow the learner: the same version, swapped on refresh, hash-checked."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from proxy.learn.export import HeadExporter
from proxy.learn.learner import Learner
from proxy.learn.live import LiveHeads
from proxy.learn.targets import route_spec
from tests.proxy.learn.builders import redis_store
from tests.proxy.learn.traffic import T0, traffic
from tests.redis_server import RedisServer

SPEC = route_spec("router", cheap_output="p_weak", expensive_output="p_strong")
PRIOR = "shipped-prior-1"


async def test_two_replicas_swap_to_the_promoted_version_and_back(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    learner_store = redis_store(redis_server.url, retention_days=100_000)
    replicas = [redis_store(redis_server.url, retention_days=100_000) for _ in range(2)]
    heads = [LiveHeads(s, ["router"], prior_version=PRIOR) for s in replicas]
    try:
        data = traffic(500, kind="informative")
        await replicas[0].write(data.entries[:500])
        await replicas[1].write(data.entries[500:])
        assert [await h.refresh() for h in heads] == [{}, {}]
        assert {h.model_version("router") for h in heads} == {PRIOR}

        learner = Learner(
            learner_store,
            HeadExporter(tmp_path / "models"),
            prior_version=PRIOR,
            clock=lambda: T0 + 100_000,
        )
        report = await learner.refit(SPEC)
        assert report.status == "promoted", report.reason
        assert [await h.refresh() for h in heads] == [{"router": report.version}] * 2
        assert {h.model_version("router") for h in heads} == {report.version}
        embedding = data.centres[0]
        prior = {"p_weak": 0.3, "p_strong": 0.6, "gain": 0.3}
        first, second = (h.apply("router", prior, embedding) for h in heads)
        assert first == second != prior
        assert [await h.refresh() for h in heads] == [{}, {}]  # nothing new: no swap

        await learner.rollback("router")
        assert [await h.refresh() for h in heads] == [{"router": PRIOR}] * 2
        assert heads[0].apply("router", prior, embedding) == prior

        # A version whose document does not match its hash is refused; the prior stays.
        model = (await learner_store.models("router"))[0]
        document = dict(model.document, version="tampered")
        await learner_store.put_model(
            model.model_copy(update={"version": "v-bad", "document": document})
        )
        caplog.set_level(logging.WARNING, logger="proxy.learn")
        assert await heads[0].refresh() == {}
        assert heads[0].model_version("router") == PRIOR
        assert any("refused" in r.getMessage() for r in caplog.records)
        assert np.all(np.isfinite(list(heads[0].apply("router", prior, embedding).values())))
    finally:
        for s in (learner_store, *replicas):
            await s.aclose()


async def test_an_unreadable_store_keeps_the_heads(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = redis_store(redis_server.url, retention_days=100_000)
    live = LiveHeads(store, ["router"], prior_version=PRIOR)
    try:
        await store.write(traffic(500, kind="informative").entries)
        learner = Learner(
            store, HeadExporter(tmp_path / "m"), prior_version=PRIOR, clock=lambda: T0 + 1e5
        )
        report = await learner.refit(SPEC)
        await live.refresh()
        caplog.set_level(logging.WARNING, logger="proxy.learn")
        redis_server.kill()
        assert await live.refresh() == {}
        assert await live.refresh() == {}
        assert live.model_version("router") == report.version
        assert len([r for r in caplog.records if "unreadable" in r.getMessage()]) == 1
    finally:
        await store.aclose()


async def test_predictions_come_with_embeddings_where_the_predictor_has_them() -> None:
    from predictor_onnx.runtime import OnnxPredictor
    from proxy.decide.prediction import HashPredictor
    from proxy.learn.live import predict_with_embeddings

    messages = [{"role": "user", "content": "What is 6 * 7?"}]
    [(values, embedding)] = await predict_with_embeddings(HashPredictor(), [messages])
    assert embedding is None and "gain" in values
    onnx = await OnnxPredictor.load_async()
    try:
        [(values, embedding)] = await predict_with_embeddings(onnx, [messages])
        assert embedding.shape == (onnx.manifest.embedding_dim,)
        assert values == (await onnx.predict([messages]))[0]
    finally:
        await onnx.aclose()
