"""Sequential best-of-k rounds with scripted samples and verifier scores."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from proxy.execute.rerank import RerankResult
from proxy.execute.rerank_text import extract_answer
from proxy.execute.sequential_rounds import RoundsResult, run_rounds
from proxy.policies.stopping import VerifierStop, VoteStop


class Script:
    """Serves scripted samples in order and records the round sizes asked for."""

    def __init__(self, texts: Sequence[str | None], scores: dict[str, float] | None = None) -> None:
        self.texts = list(texts)
        self.scores = scores or {}
        self.rounds: list[int] = []
        self.scored: list[list[str]] = []
        self.verifier_down = False

    async def draw(self, n: int) -> list[str | None]:
        self.rounds.append(n)
        out, self.texts = self.texts[:n], self.texts[n:]
        return out + [None] * (n - len(out))

    async def score(self, texts: Sequence[str]) -> RerankResult:
        self.scored.append(list(texts))
        if self.verifier_down:
            return RerankResult((0,), (), "reward", 1.0, failed=True, detail="503")
        scores = tuple(self.scores.get(t, 0.0) for t in texts)
        order = tuple(sorted(range(len(texts)), key=lambda i: -scores[i]))
        return RerankResult(order, scores, "reward", 1.0, cost_usd=0.001)


async def test_vote_stops_when_the_leader_is_settled() -> None:
    # Posterior that the leader is the majority: 7/8, 11/16 (after "20"), 26/32, 57/64, 120/128.
    script = Script(["#### 18", "#### 18", "#### 20", "#### 18", "#### 18", "#### 18", "#### 9"])
    result = await run_rounds(
        first_n=2,
        step_n=1,
        cap=16,
        n_max=16,
        stop=VoteStop(confidence=0.9),
        draw=script.draw,
        extract=extract_answer,
    )
    assert script.rounds == [2, 1, 1, 1, 1]
    assert result.stopped_by == "vote"
    assert result.samples_drawn == 6
    assert result.answers == ["18", "18", "20", "18", "18", "18"]
    assert result.rounds == 5


async def test_verifier_stops_at_the_first_accepted_sample_and_scores_only_new_ones() -> None:
    script = Script(["a 1", "b 2", "c 3", "d 4", "e 5"], {"d 4": 0.9, "e 5": 0.7})
    result = await run_rounds(
        first_n=1,
        step_n="double",
        cap=8,
        n_max=8,
        stop=VerifierStop(accept_score=0.5),
        draw=script.draw,
        extract=extract_answer,
        score=script.score,
    )
    assert script.rounds == [1, 1, 2]  # 1, doubled to 2, doubled to 4 drawn
    assert script.scored == [["a 1"], ["b 2"], ["c 3", "d 4"]]
    assert result.stopped_by == "verifier"
    assert result.accepted == 3
    assert result.scores == [0.0, 0.0, 0.0, 0.9]


async def test_cap_and_budget_end_unsettled_rounds() -> None:
    texts = [f"#### {i}" for i in range(20)]  # every answer different: never settled
    for cap, reason in ((6, "cap"), (4, "budget")):
        script = Script(texts)
        result = await run_rounds(
            first_n=2,
            step_n=3,
            cap=cap,
            n_max=6,
            stop=VoteStop(0.9),
            draw=script.draw,
            extract=extract_answer,
        )
        assert result.stopped_by == reason
        assert result.attempted == cap == sum(script.rounds)


async def test_failed_samples_are_no_evidence_but_count_toward_the_cap() -> None:
    script = Script(["#### 7", None, None, "#### 7", None, None, None, None])
    seen: list[int] = []

    def on_round(state: RoundsResult) -> None:
        seen.append(state.samples_drawn)

    result = await run_rounds(
        first_n=2,
        step_n=2,
        cap=8,
        n_max=8,
        stop=VoteStop(0.7),
        draw=script.draw,
        extract=extract_answer,
        on_round=on_round,
    )
    assert result.stopped_by == "vote"  # two votes for 7: posterior 7/8
    assert result.samples_drawn == 2 and result.samples_failed == 2
    assert seen == [1, 2]


async def test_a_failing_verifier_falls_back_to_vote_and_is_counted() -> None:
    script = Script(["#### 5", "#### 5", "#### 5", "#### 5"])
    script.verifier_down = True
    result = await run_rounds(
        first_n=2,
        step_n=2,
        cap=8,
        n_max=8,
        stop=VerifierStop(0.5),
        draw=script.draw,
        extract=extract_answer,
        score=script.score,
    )
    assert result.verifier_failures == 1
    assert len(script.scored) == 1  # the vote rule does not call the verifier again
    assert result.stopped_by == "vote"  # four votes: 31/32 ≥ 0.9
    assert result.samples_drawn == 4
    assert result.accepted is None


async def test_a_verifier_needs_a_score_function() -> None:
    with pytest.raises(ValueError, match="score"):
        await run_rounds(
            first_n=1,
            step_n=1,
            cap=2,
            n_max=2,
            stop=VerifierStop(0.5),
            draw=Script([]).draw,
            extract=extract_answer,
        )


async def test_cancelling_the_request_cancels_the_round_in_flight() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow_draw(n: int) -> list[str | None]:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return []

    task = asyncio.ensure_future(
        run_rounds(
            first_n=2,
            step_n=2,
            cap=8,
            n_max=8,
            stop=VoteStop(0.9),
            draw=slow_draw,
            extract=extract_answer,
        )
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()
