"""Event-loop stalls: how long the proxy stops answering while it handles large or first requests.

A probe thread sends ``GET /health/liveness`` every :data:`PROBE_INTERVAL_S` over its own
keep-alive connection and records each round trip. The proxy answers liveness on its event loop,
so a probe sent while the loop is busy waits until the loop is free: the longest round trip that
overlaps a scenario is that scenario's *loop stall* (up to one probe interval shorter than the
real one). Scenarios, in order, on a freshly started proxy serving a route policy:

- ``first request``: the first chat request after readiness turned 200 (cold paths);
- ``1 MB content``: one message of ``"a" * 1_000_000``;
- ``10k tokens`` / ``100k tokens``: a retrieval-augmented prompt (documents of this repository,
  then a question) of that many cl100k tokens;
- ``allocate 10k``: one ``/v1/adaptive/allocate`` of 10,000 short prompts.

Each chat scenario is a decision-cache miss; its decision latency is the proxy's own
``x-adaptive-decision-ms`` header.
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from bench.latency.config import POLICY, REPO_ROOT, proxy_config
from bench.latency.procs import Child, Children, free_port

PROBE_INTERVAL_S = 0.01
# No request may keep the proxy's loop from answering for longer than this.
TARGET_STALL_MS = 50.0
ALLOCATE_PROMPTS = 10_000
# The documents a retrieval-augmented prompt is built from: prose, tables and code.
_DOCUMENT_GLOBS = ("README.md", "docs/*.md", "proxy/*.py", "predictor_onnx/*.py", "bench/*.py")


@dataclass
class Probe:
    """Liveness round trips ``(sent_at, seconds)`` on a ``perf_counter`` clock, from a thread."""

    host: str
    port: int
    interval_s: float = PROBE_INTERVAL_S
    samples: list[tuple[float, float]] = field(default_factory=list)
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            while not self._stop.is_set():
                sent = time.perf_counter()
                try:
                    conn.request("GET", "/health/liveness")
                    with conn.getresponse() as resp:
                        resp.read()
                        ok = resp.status == 200
                except (OSError, http.client.HTTPException):
                    ok = False
                    conn.close()
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if ok:
                    self.samples.append((sent, time.perf_counter() - sent))
                else:
                    self.failures += 1
                self._stop.wait(self.interval_s)
        finally:
            conn.close()

    def __enter__(self) -> Probe:
        self._thread = threading.Thread(target=self._run, name="liveness-probe", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=35)

    def longest_ms(self, start: float, end: float) -> float | None:
        """The longest round trip overlapping ``[start, end]``, in milliseconds.

        A request shorter than the probe interval can fall between two probes; it is then
        judged by the probes sent within one interval of it (None only if there were none).
        """
        samples = list(self.samples)
        overlapping = [rtt for sent, rtt in samples if sent <= end and sent + rtt >= start]
        if not overlapping:
            slack = PROBE_INTERVAL_S * 2
            overlapping = [rtt for sent, rtt in samples if start - slack <= sent <= end + slack]
        return max(overlapping) * 1000 if overlapping else None


def _documents() -> Iterator[str]:
    for pattern in _DOCUMENT_GLOBS:
        for path in sorted(REPO_ROOT.glob(pattern)):
            yield f"Document {path.relative_to(REPO_ROOT)}:\n{path.read_text(errors='replace')}"


def rag_prompt(tokens: int, count: Callable[[str], int], tag: str) -> str:
    """Documents of this repository, then a question: about ``tokens`` cl100k tokens in all."""
    question = (
        f"\n\nQuestion ({tag}): using the documents above, what does the proxy do when its "
        "predictor times out?"
    )
    documents = list(_documents())
    if not documents:
        raise RuntimeError(f"no documents to build a prompt from under {REPO_ROOT}")
    parts: list[str] = []
    have = count(question)
    for doc in itertools.cycle(documents):
        if have >= tokens:
            break
        need = tokens - have
        cost = count(doc)
        if cost > need:
            # A prefix of about the right size (cl100k averages ~4 characters per token here).
            doc = doc[: max(1, len(doc) * need // cost)]
            cost = count(doc)
        parts.append(doc)
        have += cost
    return "\n\n".join(parts) + question


@dataclass(frozen=True)
class Scenario:
    """One request (or batch) of the stall run: its path and serialised body."""

    name: str
    path: str
    body: bytes


def scenarios(model: str, count: Callable[[str], int]) -> list[Scenario]:
    """The scenarios of the stall run, in the order they are sent."""

    def chat(content: str) -> bytes:
        return orjson.dumps(
            {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 16}
        )

    allocate = orjson.dumps(
        {
            "model": model,
            "budget": ALLOCATE_PROMPTS // 4,
            "requests": [
                {
                    "messages": [
                        {"role": "user", "content": f"Question {i}: what is {i} + {i % 97}?"}
                    ]
                }
                for i in range(ALLOCATE_PROMPTS)
            ],
        }
    )
    return [
        Scenario("first request", "/v1/chat/completions", chat("What is 17 * 23? Answer briefly.")),
        Scenario("1 MB content", "/v1/chat/completions", chat("a" * 1_000_000)),
        Scenario("10k tokens", "/v1/chat/completions", chat(rag_prompt(10_000, count, "10k"))),
        Scenario("100k tokens", "/v1/chat/completions", chat(rag_prompt(100_000, count, "100k"))),
        Scenario("allocate 10k", "/v1/adaptive/allocate", allocate),
    ]


async def measure(base_url: str, port: int, model: str) -> dict[str, dict[str, Any]]:
    """Send every scenario once, in order, while probing liveness; figures per scenario."""
    from proxy.wire.tokens import count_tokens

    todo = await asyncio.to_thread(scenarios, model, count_tokens)  # ~1 s of tokenising
    out: dict[str, dict[str, Any]] = {}
    timeout = aiohttp.ClientTimeout(total=600)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(timeout=timeout) as session:
        with Probe("127.0.0.1", port) as probe:
            await asyncio.sleep(0.2)  # a few probes of the idle proxy first: the baseline
            out["idle"] = {"loop_stall_ms": probe.longest_ms(0.0, time.perf_counter())}
            for item in todo:
                started = time.perf_counter()
                async with session.post(base_url + item.path, data=item.body, headers=headers) as r:
                    await r.read()
                    status, decision_ms = r.status, r.headers.get("x-adaptive-decision-ms")
                ended = time.perf_counter()
                await asyncio.sleep(2 * PROBE_INTERVAL_S)  # a probe in flight at the end returns
                out[item.name] = {
                    "status": status,
                    "request_ms": (ended - started) * 1000,
                    "decision_ms": float(decision_ms) if decision_ms else None,
                    "loop_stall_ms": probe.longest_ms(started, ended),
                    "body_bytes": len(item.body),
                }
            failures = probe.failures
    if failures:
        raise RuntimeError(f"{failures} liveness probe(s) failed during the stall run")
    return out


async def run_stalls(
    children: Children,
    upstream_url: str,
    workdir: Path,
    core: int,
    onnx_model: Path | None,
    wait_ready: Callable[[str, Child, float], Awaitable[float]],
    ready_timeout_s: float,
) -> dict[str, Any]:
    """Start a fresh proxy (the ONNX predictor in ``onnx_model``, else the hash predictor), run
    the scenarios, stop it; the report's section."""
    predictor: dict[str, Any] = (
        {"type": "onnx", "path": str(onnx_model), "threads": 1} if onnx_model else {"type": "hash"}
    )
    config = proxy_config(upstream_url, predictor)
    # The run measures stalls, not the allocation deadline: 10,000 ONNX predictions on a slow
    # core may take longer than the default 60 s.
    config["server"]["allocate_timeout_s"] = 600
    path = workdir / "proxy-stalls.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    child = children.spawn(
        "proxy (stalls)",
        ["-m", "proxy.cli", "serve", "--config", str(path), "--port", str(port)],
        core=core,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        ready_s = await wait_ready(f"{base}/health/readiness", child, ready_timeout_s)
        figures = await measure(base, port, POLICY)
        child.check_alive()
    finally:
        children.stop(child)
    return {"predictor": predictor["type"], "ready_s": ready_s, "scenarios": figures}


def format_stalls(stalls: dict[str, Any]) -> list[str]:
    """Printed lines of the stall run."""
    if "skipped" in stalls:
        return ["", "== loop stalls ==", f"skipped: {stalls['skipped']}"]

    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:,.1f}"

    lines = [
        "",
        f"== loop stalls [3]: {stalls['predictor']} predictor, a fresh proxy (ready after "
        f"{stalls['ready_s']:.2f} s); every request a decision-cache miss ==",
        f"{'scenario':<18}{'status':>7}{'request ms':>12}{'decision ms':>13}{'loop stall ms':>15}"
        f"  {'target':<10}",
    ]
    for name, row in stalls["scenarios"].items():
        stall = row.get("loop_stall_ms")
        verdict = "" if stall is None else ("PASS" if stall <= TARGET_STALL_MS else "MISS")
        lines.append(
            f"{name:<18}{row.get('status', ''):>7}{num(row.get('request_ms')):>12}"
            f"{num(row.get('decision_ms')):>13}{num(stall):>15}  "
            f"{f'<= {TARGET_STALL_MS:g} ms':<10}{verdict:>5}"
        )
    return lines
