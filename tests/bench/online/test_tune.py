"""Leave-one-suite-out: a suite's winner is the candidate best on the other suites' runs."""

from __future__ import annotations

from typing import Any

from bench.online.tune import choose


def _cand(name: str, lifts: dict[str, float | None]) -> dict[str, Any]:
    runs = [{"suite": s, "feedback": "arm_rewards", "lift": v} for s, v in lifts.items()]
    return {"candidate": name, "runs": runs}


def test_the_suite_reported_never_votes_for_its_own_settings() -> None:
    scored = [
        # Best by far on "a" alone; worse elsewhere.
        _cand("default", {"a": 0.50, "b": 0.00, "c": 0.00}),
        _cand("early", {"a": -0.50, "b": 0.02, "c": 0.02}),
    ]
    chosen = choose(scored, ["a", "b", "c"])
    assert chosen["a"]["winner"] == "early"  # chosen on b and c only
    assert chosen["a"]["chosen_on"] == ["b", "c"]
    assert chosen["b"]["winner"] == "default"  # a's +0.5 counts for b
    assert chosen["b"]["mean_lift_on_others"] == {"default": 0.25, "early": -0.24}


def test_ties_and_missing_lifts_go_to_the_earlier_candidate() -> None:
    scored = [_cand("default", {"a": 0.1, "b": None}), _cand("early", {"a": 0.1, "b": 0.3})]
    chosen = choose(scored, ["a", "b"])
    assert chosen["b"]["winner"] == "default"  # tie on a
    assert chosen["a"]["winner"] == "early"  # default has no lift on b
    assert chosen["a"]["mean_lift_on_others"]["default"] is None


def test_a_suite_not_tuned_on_is_chosen_on_all_that_were() -> None:
    scored = [_cand("default", {"a": 0.0, "b": 0.1}), _cand("early", {"a": 0.2, "b": 0.0})]
    chosen = choose(scored, ["a", "b"], ["a", "b", "big"])
    assert chosen["big"]["chosen_on"] == ["a", "b"]
    assert chosen["big"]["winner"] == "early"
