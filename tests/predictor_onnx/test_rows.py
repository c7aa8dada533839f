"""A prompt's prediction does not depend on its batch-mates: alone, in batches of 2, 3, 5 and 32
with random batch-mates, through the async micro-batcher, and through the embedding path that
training, evaluation and the benchmark use."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from predictor_onnx.embed import OnnxEncoder, embed_messages
from predictor_onnx.runtime import OnnxPredictor

#: The issue's bound; row-exact calls give exactly 0.
TOLERANCE = 1e-6
TARGET: list[dict[str, Any]] = [{"role": "user", "content": "What is 2+2?"}]


def _mates(seed: int, n: int) -> list[list[dict[str, Any]]]:
    """Batch-mates of very different lengths and content (large activations, long padding)."""
    rng = random.Random(seed)
    words = (
        "integral matrix Paris 1789 def foo(x): return x**2 ∑ ⟨ψ|φ⟩ HELLO!!! "
        "the of and 3.14159 Zürich 東京 print lorem ipsum qwertyuiop"
    ).split()
    out: list[list[dict[str, Any]]] = []
    for _ in range(n):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 300)))
        conversation: list[dict[str, Any]] = [{"role": "user", "content": text}]
        if rng.random() < 0.3:
            conversation = [{"role": "system", "content": "Be terse."}, *conversation]
        out.append(conversation)
    return out


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> Iterator[OnnxPredictor]:
    loaded = OnnxPredictor.load(model_dir, max_batch_size=32, batch_window_ms=5.0, workers=2)
    yield loaded
    asyncio.run(loaded.aclose())


def _max_diff(a: dict[str, float], b: dict[str, float]) -> float:
    assert set(a) == set(b)
    return max(abs(a[k] - b[k]) for k in a)


@pytest.mark.parametrize("size", [2, 3, 5, 32])
def test_same_prompt_alone_and_in_batches_with_random_mates(
    predictor: OnnxPredictor, size: int
) -> None:
    [alone] = predictor.predict_sync([TARGET])
    for seed in range(3):
        batch = _mates(seed * 100 + size, size - 1)
        position = random.Random(seed).randrange(size)
        batch.insert(position, TARGET)
        in_batch = predictor.predict_sync(batch)[position]
        assert _max_diff(alone, in_batch) <= TOLERANCE


async def test_concurrent_callers_get_their_alone_predictions(model_dir: Path) -> None:
    loaded = OnnxPredictor.load(model_dir, max_batch_size=32, batch_window_ms=20.0, workers=2)
    try:
        [alone] = await loaded.predict([TARGET])
        mates = _mates(7, 12)
        results = await asyncio.gather(
            loaded.predict(mates[:4]), loaded.predict([TARGET]), loaded.predict(mates[4:])
        )
        assert loaded.batches_run <= 3  # the three calls did share a batch
        assert _max_diff(alone, results[1][0]) <= TOLERANCE
    finally:
        await loaded.aclose()


def test_training_embeddings_equal_serving_embeddings(
    predictor: OnnxPredictor, model_dir: Path, tmp_path: Path
) -> None:
    conversations = [TARGET, *_mates(3, 9)]
    encoder = OnnxEncoder(
        model_dir / "encoder.int8.onnx",
        model_dir / "tokenizer.json",
        max_tokens=predictor.manifest.max_tokens,
        threads=2,
    )
    cached = embed_messages(
        encoder, conversations, cache_dir=tmp_path, batch_size=4, progress=False
    )
    alone = np.stack([encoder.embed([c])[0] for c in conversations])
    assert np.abs(cached - alone).max() <= TOLERANCE
    again = embed_messages(encoder, conversations[::-1], cache_dir=tmp_path, progress=False)
    assert np.abs(again[::-1] - cached).max() == 0.0  # served from the cache file


async def test_decide_and_allocate_agree_through_the_proxy(model_dir: Path) -> None:
    import aiohttp

    from proxy.config.schema import Config
    from proxy.http.app import create_app
    from tests.servers import running

    config = Config.model_validate(
        {
            "server": {"reload": False},
            "upstreams": {"pool": {"base_url": "http://127.0.0.1:9/v1", "model": "pool"}},
            "policies": {
                "bok": {
                    "type": "best_of_k",
                    "upstream": "pool",
                    "n_min": 1,
                    "n_max": 6,
                    "predictor_output": "p_weak",
                    "lambda": 0.01,
                },
            },
        }
    )
    loaded = OnnxPredictor.load(model_dir, max_batch_size=32, batch_window_ms=5.0, workers=2)
    target = {"messages": TARGET}
    try:
        async with (
            running(create_app(config, predictor=loaded)) as url,
            aiohttp.ClientSession() as session,
        ):
            in_batches: list[float] = []  # batched first: nothing cached yet
            for size, seed in ((3, 11), (5, 12)):
                mates = [{"messages": m} for m in _mates(seed, size - 1)]
                body = {"model": "bok", "budget": 6 * size, "requests": [*mates, target]}
                async with session.post(f"{url}/v1/adaptive/allocate", json=body) as response:
                    plan = await response.json()
                in_batches.append(plan["allocations"][-1]["p"])
            async with session.post(
                f"{url}/v1/adaptive/decide", json={"model": "bok", **target}
            ) as response:
                decided = (await response.json())["predictions"]["p_weak"]
    finally:
        await loaded.aclose()
    assert all(abs(p - decided) <= TOLERANCE for p in in_batches)
