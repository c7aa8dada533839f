"""Learner settings are never chosen on the suite they are reported on."""

from __future__ import annotations

from bench.online.choice import CANDIDATES, CHOSEN, FOLDS, SERVED_BY, learner_for
from bench.online.prepare import ONLINE_SUITES


def test_every_suite_is_served_by_the_fold_without_it() -> None:
    assert set(SERVED_BY) == set(ONLINE_SUITES)
    assert sorted(s for fold in FOLDS.values() for s in fold) == sorted(ONLINE_SUITES)
    for suite in ONLINE_SUITES:
        settings, how = learner_for(suite)
        assert suite not in how["chosen_on"]
        assert settings == CANDIDATES[CHOSEN[SERVED_BY[suite]]]


def test_a_named_candidate_or_the_default_elsewhere() -> None:
    assert learner_for("routellm-mmlu", "early")[0] == CANDIDATES["early"]
    settings, how = learner_for("my-traffic")
    assert settings == CANDIDATES["default"] and how["chosen_on"] is None
