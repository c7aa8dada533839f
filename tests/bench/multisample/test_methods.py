"""Methods and the savings measure on small hand-made suites."""

from __future__ import annotations

import numpy as np
import pytest

from bench.multisample import methods as mm
from bench.multisample.expected import (
    VerifierCounts,
    best_of_k_quality,
    no_accept_probability,
    schedule_expectation,
)
from bench.multisample.measure import quality_at_samples, samples_to_reach, savings_table

COUNTS = [VerifierCounts(20, a, a, 0) for a in (0, 1, 5, 20)]


def test_samples_to_reach_interpolates_on_the_frontier() -> None:
    s = np.asarray([1.0, 2.0, 4.0, 3.0])
    q = np.asarray([0.2, 0.4, 0.8, 0.3])  # the point at 3 samples is dominated
    assert samples_to_reach(s, q, 0.6) == pytest.approx(3.0)
    assert samples_to_reach(s, q, 0.1) == pytest.approx(1.0)
    assert samples_to_reach(s, q, 0.9) is None
    assert quality_at_samples(s, q, 3.0) == pytest.approx(0.6)
    assert quality_at_samples(s, q, 0.5) is None


def test_sequential_uses_the_exact_schedule_expectation() -> None:
    tables = mm.PromptTables.from_counts(COUNTS, cap=12)
    for step in (1, 3, "double"):
        pts = mm.sequential(tables, [step] * len(COUNTS), [5, 12])
        for i, counts in enumerate(COUNTS):
            for j, cap in enumerate((5, 12)):
                first = step if isinstance(step, int) else 1
                want = schedule_expectation(counts, mm.schedule(first, step, cap))
                assert pts.samples[i, j] == pytest.approx(want[0])
                assert pts.quality[i, j] == pytest.approx(want[1])
    assert mm.schedule(1, "double", 12) == [1, 2, 4, 8, 12]


def test_plan_moments_match_drawing_rounds_at_random() -> None:
    """Mean and variance of samples drawn, and quality, against random draw orders."""
    tables = mm.PromptTables.from_counts(COUNTS, cap=12)
    plans: list[tuple[int, mm.Step, int]] = [(1, 1, 12), (2, 3, 11), (1, "double", 12), (4, 2, 4)]
    mean, var, quality = mm.plan_moments(tables, plans)
    rng = np.random.default_rng(0)
    for i, (counts, (first, step, cap)) in enumerate(zip(COUNTS, plans, strict=True)):
        accepted = np.arange(counts.n) < counts.accepted
        drawn = []
        for _ in range(4000):
            order = rng.permutation(counts.n)
            sizes = mm.schedule(first, step, cap)
            drawn.append(next((d for d in sizes if accepted[order[:d]].any()), sizes[-1]))
        assert mean[i] == pytest.approx(np.mean(drawn), abs=0.15)
        assert var[i] == pytest.approx(np.var(drawn), abs=0.1 + 0.1 * var[i])
        assert quality[i] == pytest.approx(tables.quality[i, mm.schedule(first, step, cap)[-1]])
    assert var[0] == var[3] == 0.0 < var[1]  # nothing accepted, or one round: a fixed count


def test_adaptive_and_greedy_spend_where_the_prediction_says() -> None:
    tables = mm.PromptTables.from_counts(COUNTS, cap=12)
    p_hat = np.asarray([0.0, 0.05, 0.25, 1.0])
    pts = mm.adaptive(tables, p_hat, [0.0, 0.1, 1.0])
    assert pts.samples[:, 2].tolist() == [1, 1, 1, 1]  # every sample costs more than it gains
    assert pts.samples[0, 1] == 1 and pts.samples[3, 1] == 1  # hopeless and sure: one sample
    # p(1 − p)^n > λ: the 0.25 prompt gets four samples, the 0.05 one is not worth a second
    assert pts.samples[1, 1] == 1 and pts.samples[2, 1] == 4
    assert pts.samples[:, 0].tolist() == [1, 12, 12, 1]
    n = mm.greedy_equal_budget(tables, p_hat, 4, cap=12)
    assert n.sum() == 4 * len(COUNTS) and n.min() >= 1


def test_savings_against_uniform_and_against_itself() -> None:
    tables = mm.PromptTables.from_counts(COUNTS, cap=12)
    ks = (2, 4)
    uniform = mm.uniform(tables, (1, 2, 3, 4, 6, 8))
    # An allocator that knows each prompt: hopeless and certain prompts get one sample.
    pts = mm.sequential(tables, [1] * len(COUNTS), [1, 2, 4, 8, 12])
    table = savings_table(
        {"uniform": uniform, "sequential": pts}, tables.quality[:, list(ks)], ks, n_boot=30, seed=0
    )
    assert table["uniform"]["saved_at_equal_quality"] == {"2": 0.0, "4": 0.0}
    saved = table["sequential"]["saved_at_equal_quality"]["4"]
    assert saved is not None and 0.0 < saved < 1.0
    lo, hi = table["sequential"]["saved_at_equal_quality_ci95"]["4"]
    assert lo is not None and hi is not None and lo <= hi


def test_a_method_needing_more_samples_than_uniform_saves_a_negative_share() -> None:
    # Every prompt gains from each extra sample, so every bootstrap resample's curve rises too.
    counts = [VerifierCounts(20, a, a, 0) for a in (1, 3, 5, 8)]
    tables = mm.PromptTables.from_counts(counts, cap=12)
    ks = (2, 4)
    uniform = mm.uniform(tables, (1, 2, 3, 4, 6, 8))
    # Uniform's qualities bought with 1.25 times its samples: 25% more samples, "−25% saved".
    costly = mm.MethodPoints(uniform.samples * 1.25, uniform.quality)
    # A method that stops at 2 samples never reaches best-of-4's quality.
    short = mm.MethodPoints(uniform.samples[:, :2], uniform.quality[:, :2])
    table = savings_table(
        {"costly": costly, "short": short}, tables.quality[:, list(ks)], ks, n_boot=50, seed=0
    )
    saved = table["costly"]["saved_at_equal_quality"]
    assert saved["2"] == pytest.approx(-0.25) and saved["4"] == pytest.approx(-0.25)
    lo, hi = table["costly"]["saved_at_equal_quality_ci95"]["4"]
    assert lo is not None and hi is not None
    assert lo == pytest.approx(-0.25) and hi == pytest.approx(-0.25)  # so in every resample
    assert table["costly"]["saved_up_to"] == pytest.approx(-0.25)
    assert table["short"]["saved_at_equal_quality"]["2"] == pytest.approx(0.0)
    assert table["short"]["saved_at_equal_quality"]["4"] is None  # never: no number invented


def test_split_sample_oracle_stays_within_the_cap() -> None:
    rng = np.random.default_rng(0)
    correct = rng.random((6, 20)) < np.linspace(0, 0.9, 6)[:, None]
    pts = mm.oracle(correct, correct, [0.0, 0.05, 1.0], splits=3, seed=0, cap=10)
    assert pts.samples.min() >= 1 and pts.samples.max() <= 10
    assert pts.samples[:, 2].tolist() == [1.0] * 6


def test_tables_equal_the_scalar_closed_forms() -> None:
    counts = [*COUNTS, VerifierCounts(20, 6, 4, 3), VerifierCounts(20, 0, 0, 5)]
    tables = mm.PromptTables.from_counts(counts, cap=20)
    for i, c in enumerate(counts):
        for k in range(1, 21):
            assert tables.quality[i, k] == pytest.approx(best_of_k_quality(c, k), abs=1e-12)
            assert tables.miss[i, k] == pytest.approx(
                no_accept_probability(c.n, c.accepted, k), abs=1e-12
            )
    with pytest.raises(ValueError):
        mm.PromptTables.from_counts(counts, cap=21)
