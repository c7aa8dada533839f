"""The budget controller meets its target on synthetic streams, alone and shared via Redis."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from proxy.policies.allocation import DecisionProblem
from proxy.policies.budget.controller import BudgetController
from proxy.policies.budget.solve import solve_lambda
from tests.redis_server import RedisServer

COST_CHEAP, COST_STRONG = 0.001, 0.01


REQUEST_GAP_S = 0.0002


class FakeClock:
    """Wall clock of the stream: one request per second."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def drifting_stream(count: int, seed: int = 0, *, drift: bool = True) -> Iterator[DecisionProblem]:
    """Route problems whose gain distribution shifts halfway (easy traffic, then hard)."""
    rng = random.Random(seed)
    for i in range(count):
        p_cheap = rng.uniform(0.2, 0.9)
        hard = drift and i >= count // 2
        gain = rng.betavariate(6, 3) * 0.6 if hard else rng.betavariate(2, 8)
        yield DecisionProblem.route(
            p_cheap, min(1.0, p_cheap + gain), cost_cheap=COST_CHEAP, cost_expensive=COST_STRONG
        )


async def run_route_stream(
    controllers: list[BudgetController],
    count: int,
    clock: FakeClock,
    seed: int = 0,
    *,
    drift: bool = True,
) -> list[bool]:
    """Decide each request with λ from a controller (round robin) and report back."""
    expensive: list[bool] = []
    # Requests take time when served: with Redis, shared-state writes and λ re-solves run in
    # the background meanwhile (a bare loop turn would let thousands of requests pass first).
    gap_s = REQUEST_GAP_S if any([(await c.snapshot())["shared"] for c in controllers]) else 0.0
    for i, problem in enumerate(drifting_stream(count, seed, drift=drift)):
        controller = controllers[i % len(controllers)]
        arm = problem.choose(await controller.current_lambda())
        await controller.observe(
            problem, arm, cost_usd=problem.costs[arm], n_samples=1, expensive=problem.expensive[arm]
        )
        expensive.append(problem.expensive[arm])
        clock.now += 1.0
        await asyncio.sleep(gap_s)
    for controller in controllers:
        await controller.flush()
    return expensive


def share(flags: list[bool]) -> float:
    return sum(flags) / len(flags)


def test_solve_lambda_meets_the_target_on_the_window() -> None:
    problems = list(drifting_stream(1000))[:500]
    for target in (0.1, 0.3, 0.6):
        lambda_ = solve_lambda(problems, "fraction_expensive", target)
        realised = share([p.expensive[p.choose(lambda_)] for p in problems])
        assert target - 0.01 <= realised <= target
    assert solve_lambda(problems, "fraction_expensive", 1.0) == 0.0
    cheapest = solve_lambda(problems, "fraction_expensive", 0.0)
    assert not any(p.expensive[p.choose(cheapest)] for p in problems)


async def test_fraction_expensive_converges_through_a_drift() -> None:
    clock = FakeClock()
    controller = BudgetController("fraction_expensive", 0.3, window=800, clock=clock)
    flags = await run_route_stream([controller], 6000, clock)
    # After warm-up (the window refilling) in each half, within ±2 points of the target.
    assert abs(share(flags[1000:3000]) - 0.3) <= 0.02
    assert abs(share(flags[4000:6000]) - 0.3) <= 0.02
    snapshot = await controller.snapshot()
    assert snapshot["target"] == 0.3 and snapshot["target_kind"] == "fraction_expensive"
    assert snapshot["window"] == 800 and snapshot["lambda"] > 0
    assert abs(snapshot["realised"] - 0.3) <= 0.03
    assert snapshot["shared"] is False


async def test_mean_samples_target() -> None:
    clock = FakeClock()
    controller = BudgetController("mean_samples", 3.0, window=500, clock=clock)
    rng = random.Random(1)
    samples: list[int] = []
    for i in range(3000):
        p = rng.betavariate(1, 3) if i < 1500 else rng.betavariate(3, 1)
        problem = DecisionProblem.best_of_k(
            p, n_min=1, n_max=8, cost_per_sample=0.002, efficiency=0.8
        )
        arm = problem.choose(await controller.current_lambda())
        await controller.observe(
            problem,
            arm,
            cost_usd=problem.costs[arm],
            n_samples=problem.samples[arm],
            expensive=False,
        )
        samples.append(problem.samples[arm])
        clock.now += 1.0
    for part in (samples[600:1500], samples[2100:]):
        assert abs(sum(part) / len(part) - 3.0) <= 0.15


async def test_usd_per_hour_target() -> None:
    clock = FakeClock()  # one request per second: 3,600 requests per hour
    target_usd_per_hour = 3600 * (0.7 * COST_CHEAP + 0.3 * COST_STRONG)
    controller = BudgetController("usd_per_hour", target_usd_per_hour, window=800, clock=clock)
    flags = await run_route_stream([controller], 4000, clock, seed=3)
    spend = [COST_STRONG if f else COST_CHEAP for f in flags[1000:2000] + flags[3000:]]
    assert abs(3600 * sum(spend) / len(spend) / target_usd_per_hour - 1) <= 0.05
    snapshot = await controller.snapshot()
    assert snapshot["requests_per_hour"] == pytest.approx(3600, rel=0.05)


async def test_before_warm_up_the_initial_lambda_is_used() -> None:
    controller = BudgetController("fraction_expensive", 0.3, initial_lambda=7.0, min_window=50)
    assert await controller.current_lambda() == 7.0
    with pytest.raises(ValueError):
        BudgetController("percent", 0.3)  # type: ignore[arg-type]


async def test_lambda_is_solved_as_soon_as_the_window_is_long_enough() -> None:
    # Until the first solve every request gets the initial λ (0: the best-reward arm), so the
    # first solve must not wait for the next periodic re-solve.
    controller = BudgetController("fraction_expensive", 0.3, min_window=20, recompute_every=16)
    for i, problem in enumerate(drifting_stream(21, drift=False)):
        lambda_ = await controller.current_lambda()
        assert (lambda_ > 0) == (i == 20), (i, lambda_)
        arm = problem.choose(lambda_)
        await controller.observe(
            problem, arm, cost_usd=problem.costs[arm], n_samples=1, expensive=problem.expensive[arm]
        )


@pytest.fixture
async def redis_clients(redis_server: RedisServer) -> AsyncIterator[list[aioredis.Redis]]:
    clients = [
        aioredis.Redis.from_url(
            redis_server.url,
            socket_connect_timeout=1,
            socket_timeout=1,
            retry=Retry(NoBackoff(), 0),
        )
        for _ in range(2)
    ]
    yield clients
    for client in clients:
        await client.aclose()


async def test_two_replicas_share_one_budget(redis_clients: list[aioredis.Redis]) -> None:
    clock = FakeClock()
    replicas = [
        BudgetController(
            "fraction_expensive",
            0.3,
            redis=client,
            key_prefix="test:shared",
            window=500,
            clock=clock,
        )
        for client in redis_clients
    ]
    flags = await run_route_stream(replicas, 4000, clock)
    # Shared state reaches each replica in the background (batched writes, re-solves), so on a
    # busy machine λ lags the stream by a few requests more than one process alone: ±3 points.
    assert abs(share(flags[700:2000]) - 0.3) <= 0.03
    assert abs(share(flags[2700:]) - 0.3) <= 0.03
    lambdas = [await replica.refresh() for replica in replicas]
    assert lambdas[0] == lambdas[1] > 0
    snapshots = [await replica.snapshot() for replica in replicas]
    assert all(s["shared"] and s["window"] == 500 for s in snapshots)
    assert snapshots[0]["realised"] == snapshots[1]["realised"]


async def test_redis_killed_mid_stream_keeps_deciding(
    redis_server: RedisServer,
    redis_clients: list[aioredis.Redis],
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    controller = BudgetController(
        "fraction_expensive",
        0.3,
        redis=redis_clients[0],
        key_prefix="test:kill",
        window=500,
        clock=clock,
        redis_retry_s=0.0,
    )
    await run_route_stream([controller], 1000, clock, drift=False)
    redis_server.kill()
    with caplog.at_level(logging.WARNING, logger="proxy.policies.budget.controller"):
        flags = await run_route_stream([controller], 1500, clock, seed=5, drift=False)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Redis unavailable" in warnings[0].getMessage()
    assert (await controller.snapshot())["shared"] is False
    # Decisions continued from the local mirror and still meet the budget.
    assert abs(share(flags) - 0.3) <= 0.03
    redis_server.restart()
    await run_route_stream([controller], 100, clock, seed=6)
    await controller.refresh()  # re-solves run in the background; take the latest state now
    snapshot = await controller.snapshot()
    assert snapshot["shared"] is True
    assert snapshot["window"] >= 64  # the fresh Redis holds the requests since the restart


async def test_realised_gap_is_corrected() -> None:
    """A quarter of expensive calls fall back to the cheap model; the budget still holds."""
    clock = FakeClock()
    controller = BudgetController(
        "fraction_expensive", 0.3, window=800, clock=clock, max_correction=0.5
    )
    rng = random.Random(7)
    realised: list[bool] = []
    for problem in drifting_stream(5000, seed=7, drift=False):
        arm = problem.choose(await controller.current_lambda())
        served_expensive = problem.expensive[arm] and rng.random() >= 0.25
        await controller.observe(
            problem, arm, cost_usd=problem.costs[arm], n_samples=1, expensive=served_expensive
        )
        realised.append(served_expensive)
        clock.now += 1.0
    assert abs(share(realised[2000:]) - 0.3) <= 0.02
    assert (await controller.snapshot())["correction"] < -0.2


async def test_stale_pooled_connection_after_a_redis_restart_is_not_an_outage(
    redis_server: RedisServer,
    redis_clients: list[aioredis.Redis],
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    # The client itself never retries: recovering from the stale connection is the
    # controller's job.
    controller = BudgetController(
        "fraction_expensive",
        0.3,
        redis=redis_clients[0],
        key_prefix="test:stale",
        window=500,
        clock=clock,
    )
    await run_route_stream([controller], 100, clock, drift=False)
    redis_server.restart()  # every pooled connection is now stale; Redis is up
    with caplog.at_level(logging.INFO, logger="proxy.policies.budget.controller"):
        await run_route_stream([controller], 100, clock, seed=7, drift=False)
    assert not [r for r in caplog.records if "Redis" in r.getMessage()]
    assert (await controller.snapshot())["shared"] is True
    # Every request since the restart reached Redis.
    assert await redis_clients[1].llen("{test:stale}:window") == 100


async def test_two_outages_two_warnings(
    redis_server: RedisServer,
    redis_clients: list[aioredis.Redis],
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    controller = BudgetController(
        "fraction_expensive",
        0.3,
        redis=redis_clients[0],
        key_prefix="test:two",
        window=500,
        clock=clock,
        redis_retry_s=0.0,
    )
    with caplog.at_level(logging.WARNING, logger="proxy.policies.budget.controller"):
        for seed in (1, 2):
            await run_route_stream([controller], 50, clock, seed=seed, drift=False)
            redis_server.kill()
            await run_route_stream([controller], 50, clock, seed=seed + 10, drift=False)
            redis_server.restart()
            await run_route_stream([controller], 50, clock, seed=seed + 20, drift=False)
            assert (await controller.snapshot())["shared"] is True
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
