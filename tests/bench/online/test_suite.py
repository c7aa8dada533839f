"""A prepared suite's file round-trips; another format is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.online.prepare import committed_cv_apgr
from bench.online.suite import OnlineSuite
from tests.bench.online.synthetic import synthetic_suite


def test_round_trip(tmp_path: Path) -> None:
    suite = synthetic_suite(50)
    suite.save(tmp_path / "s.npz")
    back = OnlineSuite.load(tmp_path / "s.npz")
    assert back.prompt_ids == suite.prompt_ids and back.arm_models == suite.arm_models
    for name in ("embedding", "prior", "reward", "cost_usd"):
        assert np.array_equal(getattr(back, name), getattr(suite, name))
    assert (back.cv_apgr, dict(back.provenance)) == (suite.cv_apgr, dict(suite.provenance))
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]


def test_another_format_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", meta=np.asarray('{"format": "other/1"}'))
    with pytest.raises(ValueError, match="not an online suite"):
        OnlineSuite.load(tmp_path / "x.npz")


def test_rewards_outside_the_unit_interval_are_refused() -> None:
    suite = synthetic_suite(10)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        OnlineSuite(**{**suite.__dict__, "reward": suite.reward - 1.0})


def test_the_reference_is_the_committed_out_of_fold_apgr(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text('{"apgr_cv": 0.61}')
    assert committed_cv_apgr("s", tmp_path) == 0.61
    assert committed_cv_apgr("missing", tmp_path) is None
