"""The latency benchmark's load generator: an aiohttp client with bounded counts and durations.

Every run uses its own ``ClientSession`` with a pool sized to its concurrency (keep-alive
connections, as a real client would hold), pre-serialised bodies, and a wall-clock cap: a run
that hits the cap reports what it completed.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp
import orjson

_HEADERS = {"Content-Type": "application/json"}


def chat_bodies(model: str, prompts: Sequence[str], *, stream: bool = False) -> list[bytes]:
    """One serialised chat request per prompt."""
    return [
        orjson.dumps(
            {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 16,
                "stream": stream,
            }
        )
        for prompt in prompts
    ]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Sample:
    """Per-request timings (seconds) of one run, and how many requests failed."""

    seconds: list[float]
    errors: int

    @property
    def p50_ms(self) -> float:
        """Median in milliseconds."""
        return percentile(self.seconds, 50) * 1000

    @property
    def p99_ms(self) -> float:
        """99th percentile in milliseconds."""
        return percentile(self.seconds, 99) * 1000


@dataclass(frozen=True)
class Throughput:
    """One throughput run: completed requests, failures, elapsed time, CPU of the watched pid."""

    concurrency: int
    requests: int
    errors: int
    elapsed_s: float
    cpu_s: float | None

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def cpu_us_per_request(self) -> float | None:
        """CPU time of the watched process per completed request, in microseconds."""
        if self.cpu_s is None or self.requests == 0:
            return None
        return self.cpu_s / self.requests * 1e6


def _session(concurrency: int, headers: Mapping[str, str] | None) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=30),
        auto_decompress=False,
        headers=headers,
    )


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> bool:
    async with session.post(url, data=body, headers=_HEADERS) as resp:
        await resp.read()
        return resp.status == 200


async def send_each(
    url: str,
    bodies: Sequence[bytes],
    *,
    concurrency: int = 8,
    headers: Mapping[str, str] | None = None,
) -> int:
    """Send every body once (cache warm-up); returns the number of failures."""
    async with _session(concurrency, headers) as session:
        results = await _gather_bounded(session, url, bodies, concurrency)
    return sum(1 for ok in results if not ok)


async def _gather_bounded(
    session: aiohttp.ClientSession, url: str, bodies: Sequence[bytes], concurrency: int
) -> list[bool]:
    gate = asyncio.Semaphore(concurrency)

    async def one(body: bytes) -> bool:
        async with gate:
            try:
                return await _post(session, url, body)
            except (aiohttp.ClientError, TimeoutError):
                return False

    return list(await asyncio.gather(*(one(b) for b in bodies)))


async def latency(
    url: str,
    bodies: Sequence[bytes],
    count: int,
    max_s: float,
    headers: Mapping[str, str] | None = None,
) -> Sample:
    """``count`` sequential requests (concurrency 1), cycling through ``bodies``."""
    seconds: list[float] = []
    errors = 0
    deadline = time.perf_counter() + max_s
    async with _session(1, headers) as session:
        for body in itertools.islice(itertools.cycle(bodies), count):
            started = time.perf_counter()
            try:
                ok = await _post(session, url, body)
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                seconds.append(time.perf_counter() - started)
            else:
                errors += 1
            if started > deadline:
                break
    return Sample(seconds, errors)


async def ttfb(
    url: str,
    bodies: Sequence[bytes],
    count: int,
    max_s: float,
    headers: Mapping[str, str] | None = None,
) -> Sample:
    """Streaming time to first byte: ``count`` sequential streamed requests, body drained."""
    seconds: list[float] = []
    errors = 0
    deadline = time.perf_counter() + max_s
    async with _session(1, headers) as session:
        for body in itertools.islice(itertools.cycle(bodies), count):
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=_HEADERS) as resp:
                    first = await resp.content.readany()
                    elapsed = time.perf_counter() - started
                    await resp.read()
                    ok = resp.status == 200 and first.startswith(b"data:")
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                seconds.append(elapsed)
            else:
                errors += 1
            if started > deadline:
                break
    return Sample(seconds, errors)


async def throughput(
    url: str,
    bodies: Sequence[bytes],
    *,
    count: int,
    concurrency: int,
    max_s: float,
    cpu_of: Callable[[], float] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Throughput:
    """``count`` requests by ``concurrency`` workers; ``cpu_of`` reads the watched process's CPU."""
    stream = itertools.islice(itertools.cycle(bodies), count)
    done = errors = 0
    async with _session(concurrency, headers) as session:
        deadline = time.perf_counter() + max_s

        async def worker() -> None:
            nonlocal done, errors
            for body in stream:  # a shared iterator: each body is taken by exactly one worker
                try:
                    ok = await _post(session, url, body)
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if ok:
                    done += 1
                else:
                    errors += 1
                if time.perf_counter() > deadline:
                    return

        cpu_before = cpu_of() if cpu_of else None
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu_s = cpu_of() - cpu_before if cpu_of and cpu_before is not None else None
    return Throughput(concurrency, done, errors, elapsed, cpu_s)
