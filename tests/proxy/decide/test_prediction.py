"""The table predictor's rows may carry the prompt's embedding, which the learning loop reads."""

from __future__ import annotations

import json
from pathlib import Path

from proxy.decide.prediction import TablePredictor
from proxy.learn.live import predict_with_embeddings


async def test_a_table_row_gives_its_embedding_and_a_row_without_gives_none(
    tmp_path: Path,
) -> None:
    with_embedding = [{"role": "user", "content": "What is 2 + 2?"}]
    without = [{"role": "user", "content": "Name a prime."}]
    table = tmp_path / "table.jsonl"
    table.write_text(
        json.dumps(
            {
                "messages": with_embedding,
                "predictions": {"p_weak": 0.4, "p_strong": 0.9},
                "embedding": [0.25, -0.5, 1.0],
            }
        )
        + "\n"
        + json.dumps({"messages": without, "predictions": {"p_weak": 0.7, "p_strong": 0.8}})
        + "\n"
    )
    predictor = TablePredictor.from_jsonl(str(table))
    (first, embedding), (second, none) = await predict_with_embeddings(
        predictor, [with_embedding, without]
    )
    assert first == {"p_weak": 0.4, "p_strong": 0.9}
    assert list(embedding) == [0.25, -0.5, 1.0]
    assert second == {"p_weak": 0.7, "p_strong": 0.8} and none is None
