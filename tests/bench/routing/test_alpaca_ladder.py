"""``adaptive-proxy bench --suite alpaca-eval-ladder --quick``: the keys checks rely on, prices
read from litellm's bundled price map with its version and date, and a random mix of whole
models that matches each single model's own point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.cli import main
from bench.routing.alpaca_ladder import LADDER_MODELS, PRICE_KEYS, _hull
from proxy.upstream.pricing import bundled_price, bundled_price_map_version


@pytest.fixture(scope="module")
def doc(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("ladder")
    assert (
        main(
            [
                "--suite",
                "alpaca-eval-ladder",
                "--quick",
                "--data-dir",
                str(data_dir),
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "alpaca-eval-ladder" in (out / "REPORT.md").read_text()
    result: dict[str, Any] = json.loads((out / "alpaca-eval-ladder.json").read_text())
    return result


def test_keys_prices_and_baselines(doc: dict[str, Any]) -> None:
    for key in ("apgr_cv", "apgr_lodo", "apgr_random", "apgr_oracle"):
        assert isinstance(doc[key], float), key
    assert doc["apgr_oracle"] > max(doc["apgr_cv"], doc["apgr_lodo"], doc["apgr_random"])
    assert doc["apgr_random"] == pytest.approx(0.5, abs=1e-12)  # the expectation, not one draw
    lo, hi = doc["apgr_random_ci95"]
    assert 0.35 < lo < 0.5 < hi < 0.65  # what one random routing of 200 prompts scores
    assert list(doc["prices"]) == list(LADDER_MODELS)
    assert all(p["date"] and p["out_per_mtok_usd"] > 0 for p in doc["prices"].values())
    for model, price in doc["prices"].items():
        key = PRICE_KEYS[model]
        listed = bundled_price(key)
        assert listed is not None and price["price_map_key"] == key
        assert price["in_per_mtok_usd"] == pytest.approx(listed.in_per_mtok_usd)
        assert price["out_per_mtok_usd"] == pytest.approx(listed.out_per_mtok_usd)
        assert f"litellm {bundled_price_map_version()}" in price["source"]
    for row in doc["ladder"]["budgets"]:
        # Mixing whole models never does worse than the best single model within the budget.
        assert row["random_mix"] >= row["best_single_model"] - 1e-9


def test_hull_is_what_random_mixing_reaches() -> None:
    xs, ys = _hull(np.asarray([1.0, 2.0, 3.0, 4.0]), np.asarray([0.1, 0.2, 0.9, 0.5]))
    assert xs.tolist() == [1.0, 3.0] and ys.tolist() == [0.1, 0.9]  # (2, 0.2) lies under
