"""Rerankers against real HTTP servers on ephemeral ports, and vote on real GSM8K solutions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.execute.rerank import (
    ChatCaller,
    FirstReranker,
    JudgeReranker,
    RewardReranker,
    VoteReranker,
    extract_answer,
    parse_judge_answer,
)
from proxy.wire.errors import UpstreamError

MESSAGES = [
    {"role": "system", "content": "You are a careful math tutor."},
    {"role": "user", "content": "What is 6 * 7?"},
]
CANDIDATES = ["6 * 7 = 41\n#### 41", "6 * 7 = 42\n#### 42", "It is 43.\n#### 43"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[str, Handler], Awaitable[str]]]:
    """Start an aiohttp server on port 0 for one route; returns its URL."""
    runners: list[web.AppRunner] = []

    async def start(path: str, handler: Handler) -> str:
        app = web.Application()
        app.router.add_post(path, handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}{path}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def chat_caller(client: aiohttp.ClientSession, url: str) -> ChatCaller:
    """A ChatCaller posting to one OpenAI-compatible endpoint (what the proxy's upstream does)."""

    async def call(upstream: str, body: dict[str, Any]) -> dict[str, Any]:
        async with client.post(url, json=body) as response:
            if response.status >= 400:
                raise UpstreamError(f"{upstream}: HTTP {response.status}", upstream=upstream)
            result: dict[str, Any] = await response.json()
            return result

    return call


def judge_handler(reply: str | None, seen: list[dict[str, Any]]) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        if reply is None:
            return web.json_response({"error": {"message": "boom"}}, status=500)
        return web.json_response(
            {
                "id": "judge-1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": reply},
                    }
                ],
                "usage": {"prompt_tokens": 120, "completion_tokens": 8, "total_tokens": 128},
            }
        )

    return handle


async def test_first_keeps_the_order() -> None:
    result = await FirstReranker().rerank(MESSAGES, CANDIDATES)
    assert result.order == (0, 1, 2) and result.best == 0
    assert result.reranker == "first" and not result.failed


async def test_vote_picks_the_majority_and_ranks_unparseable_last() -> None:
    candidates = ["no idea", "#### 42", "The answer is 41", "so it is $42.", "Answer: 41", "42"]
    result = await VoteReranker().rerank(MESSAGES, candidates)
    assert result.best == 1
    assert result.order == (1, 3, 5, 2, 4, 0)
    assert result.scores == (0.0, 0.5, 2 / 6, 0.5, 2 / 6, 0.5)
    assert not result.failed and result.detail == "answer=42 votes=3/6"


async def test_vote_ties_go_to_the_answer_seen_first() -> None:
    result = await VoteReranker().rerank(MESSAGES, ["#### 7", "#### 9", "#### 9", "#### 7"])
    assert result.order == (0, 3, 1, 2)


async def test_vote_multiple_choice_and_custom_pattern() -> None:
    letters = ["The answer is (B).", "Answer: C", "I believe (B) is right, for 3 reasons."]
    assert (await VoteReranker().rerank(MESSAGES, letters)).best == 0
    custom = VoteReranker(pattern=r"FINAL=(\w+)")
    result = await custom.rerank(MESSAGES, ["FINAL=x", "FINAL=y 9", "FINAL=y"])
    assert result.best == 1
    nothing = await custom.rerank(MESSAGES, ["1", "2"])
    assert nothing.failed and nothing.order == (0, 1)


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("so 9 * 2 = $<<9*2=18>>18.\n#### 18", "18"),
        ("He makes $1,000.00 in total.", "1000"),
        ("The answer is 18.", "18"),
        ("The answer is 2.50", "2.5"),
        ("We get \\boxed{12}", "12"),
        ("Answer: (D)", "D"),
        ("the answer is a dog, 5 of them", "5"),
        ("A: 224", "224"),
        ("no digits here", None),
    ],
)
def test_extract_answer(text: str, answer: str | None) -> None:
    assert extract_answer(text) == answer


def test_vote_extracts_the_answers_of_real_gsm8k_solutions(data_dir: Path) -> None:
    path = data_dir / "gsm8k" / "example_model_solutions.jsonl"
    systems = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")
    rows = [json.loads(line) for line in path.read_text().splitlines()[:40]]
    checked = 0
    for row in rows:
        truth = extract_answer(row["ground_truth"])
        assert truth is not None
        for system in systems:
            solution = row[system]
            # The recorded correctness and our extraction agree on every solution.
            assert (extract_answer(solution["solution"]) == truth) == solution["is_correct"]
            checked += 1
    assert checked == 160


async def test_vote_on_real_gsm8k_picks_a_majority_solution(data_dir: Path) -> None:
    path = data_dir / "gsm8k" / "example_model_solutions.jsonl"
    systems = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")
    for line in path.read_text().splitlines()[:40]:
        row = json.loads(line)
        solutions = [row[s]["solution"] for s in systems]
        answers = [extract_answer(s) for s in solutions]
        result = await VoteReranker().rerank(
            [{"role": "user", "content": row["question"]}], solutions
        )
        top = max(answers.count(a) for a in answers)
        assert answers.count(answers[result.best]) == top
        assert result.best == min(i for i, a in enumerate(answers) if answers.count(a) == top)


@pytest.mark.parametrize(
    ("reply", "index"),
    [
        ('{"best_index": 2}', 2),
        ('```json\n{"best_index": 3}\n```', 3),
        ('I compared them. {"best_index": "1"} is my pick', 1),
        ("Candidate 2 is the best.", 2),
        ("2", 2),
        ("  3.\n", 3),
        ("They are all wrong", None),
        ('{"winner": 1}', None),
    ],
)
def test_parse_judge_answer(reply: str, index: int | None) -> None:
    assert parse_judge_answer(reply) == index


async def test_judge_picks_the_candidate_and_sees_the_whole_conversation(
    serve: Callable[[str, Handler], Awaitable[str]], session: aiohttp.ClientSession
) -> None:
    seen: list[dict[str, Any]] = []
    url = await serve("/v1/chat/completions", judge_handler('{"best_index": 2}', seen))
    judge = JudgeReranker(
        chat_caller(session, url), "judge-model", cost_fn=lambda usage: usage["total_tokens"] * 1e-6
    )
    result = await judge.rerank(MESSAGES, CANDIDATES)
    assert result.order == (1, 0, 2) and not result.failed
    assert result.usage == {"prompt_tokens": 120, "completion_tokens": 8, "total_tokens": 128}
    assert result.cost_usd == pytest.approx(128e-6)
    prompt = seen[0]["messages"][0]["content"]
    assert "careful math tutor" in prompt and "What is 6 * 7?" in prompt
    assert "[Candidate 3]\nIt is 43." in prompt
    assert seen[0]["response_format"]["json_schema"]["schema"]["required"] == ["best_index"]


async def test_judge_custom_template_and_truncation(
    serve: Callable[[str, Handler], Awaitable[str]], session: aiohttp.ClientSession
) -> None:
    seen: list[dict[str, Any]] = []
    url = await serve("/v1/chat/completions", judge_handler("Candidate 1", seen))
    template = 'Q: {question}\nC: {candidates}\nReply {"best_index": N}.'
    judge = JudgeReranker(
        chat_caller(session, url),
        "judge",
        template=template,
        max_candidate_chars=40,
        structured_output=False,
    )
    long_candidate = "start " + "x" * 500 + " end #### 42"
    result = await judge.rerank(MESSAGES, [long_candidate, "#### 41"])
    assert result.best == 0
    prompt = seen[0]["messages"][0]["content"]
    assert prompt.startswith("Q: system: You are a careful math tutor.")
    assert prompt.endswith('Reply {"best_index": N}.')
    assert "start" in prompt and "#### 42" in prompt and "x" * 100 not in prompt
    assert "response_format" not in seen[0]


@pytest.mark.parametrize("reply", [None, '{"best_index": 9}', '{"best_index": 0}', "no idea"])
async def test_judge_failure_or_nonsense_keeps_the_first_sample(
    serve: Callable[[str, Handler], Awaitable[str]],
    session: aiohttp.ClientSession,
    reply: str | None,
) -> None:
    url = await serve("/v1/chat/completions", judge_handler(reply, []))
    result = await JudgeReranker(chat_caller(session, url), "judge").rerank(MESSAGES, CANDIDATES)
    assert result.failed and result.order == (0, 1, 2)
    assert result.detail is not None


async def test_reward_orders_by_score(
    serve: Callable[[str, Handler], Awaitable[str]], session: aiohttp.ClientSession
) -> None:
    seen: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        return web.json_response({"scores": [0.1, 2.5, 2.5]})

    url = await serve("/score", handle)
    reranker = RewardReranker(session, url, headers={"Authorization": "Bearer t"})
    result = await reranker.rerank(MESSAGES, CANDIDATES)
    assert result.order == (1, 2, 0) and result.scores == (0.1, 2.5, 2.5)
    assert seen[0]["candidates"] == CANDIDATES and "What is 6 * 7?" in seen[0]["query"]


async def test_reward_vllm_score_shape(
    serve: Callable[[str, Handler], Awaitable[str]], session: aiohttp.ClientSession
) -> None:
    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        assert body["model"] == "rm" and len(body["text_2"]) == 3
        data = [{"index": i, "object": "score", "score": s} for i, s in enumerate((1, 0, 3))]
        return web.json_response({"data": data})

    url = await serve("/score", handle)
    reranker = RewardReranker(session, url, request_format="vllm_score", model="rm")
    assert (await reranker.rerank(MESSAGES, CANDIDATES)).order == (2, 0, 1)


@pytest.mark.parametrize("answer", ["error", "short", "nan", "garbage"])
async def test_reward_failure_keeps_the_first_sample(
    serve: Callable[[str, Handler], Awaitable[str]],
    session: aiohttp.ClientSession,
    answer: str,
) -> None:
    async def handle(request: web.Request) -> web.Response:
        if answer == "error":
            return web.json_response({"error": "down"}, status=503)
        if answer == "garbage":
            return web.Response(text="<html>", content_type="text/html")
        scores: list[Any] = [1.0] if answer == "short" else ["nan", 1, 2]
        return web.json_response({"scores": scores})

    url = await serve("/score", handle)
    result = await RewardReranker(session, url).rerank(MESSAGES, CANDIDATES)
    assert result.failed and result.order == (0, 1, 2) and result.detail
