"""Learner settings are never chosen on the suite they are reported on."""

from __future__ import annotations

from bench.online.choice import CANDIDATES, CHOSEN, TUNING_SUITES, learner_for
from bench.online.prepare import ONLINE_SUITES


def test_every_suite_is_served_by_a_choice_made_on_the_others() -> None:
    assert set(CHOSEN) == set(ONLINE_SUITES) >= set(TUNING_SUITES)
    for suite in ONLINE_SUITES:
        settings, how = learner_for(suite)
        assert suite not in how["chosen_on"]
        assert set(how["chosen_on"]) == set(TUNING_SUITES) - {suite}
        assert settings == CANDIDATES[CHOSEN[suite]]


def test_a_named_candidate_or_the_default_elsewhere() -> None:
    assert learner_for("routellm-mmlu", "early")[0] == CANDIDATES["early"]
    settings, how = learner_for("my-traffic")
    assert settings == CANDIDATES["default"] and how["chosen_on"] is None
