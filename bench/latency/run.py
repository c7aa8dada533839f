"""Latency/throughput benchmark: the same requests sent directly to an upstream and via the proxy.

``python -m bench.latency [--quick] [--json FILE]`` starts a tiny upstream
(:mod:`bench.latency.upstream`) and the proxy (``python -m proxy.cli serve``) as separate
processes, the proxy pinned to the first allowed core, the upstream and this load generator to the
last. A minimal aiohttp passthrough (the floor any Python proxy on this stack pays) is measured
first on the proxy's core, as a same-machine reference. The proxy serves a ``route`` policy on
the hash predictor (and, when the shipped model exists, on the ONNX predictor); each distinct
prompt is sent once first, so the measured path is the cache-hit routed path. It prints added
latency p50/p99, streaming time to first byte, throughput at concurrency 1/32/128, proxy CPU per
request and peak RSS, as ratios to direct, with the targets. Last, a fresh proxy measures event-loop
stalls and decision latency on large and first requests (:mod:`bench.latency.stall`).
Everything runs on loopback, bounded in requests and time; child processes are always stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.latency import load as load
from bench.latency.config import (
    PASSTHROUGH_MODEL,
    POLICY,
    REPO_ROOT,
    default_onnx_model,
    prompts,
    proxy_args,
)
from bench.latency.procs import (
    Child,
    Children,
    cores,
    cpu_seconds,
    free_port,
    machine_description,
    peak_rss_mb,
    read_port_line,
)
from bench.latency.report import evaluate_targets, floor_relative, format_report
from bench.latency.stall import run_stalls
from bench.redis_server import RedisServer

CONCURRENCIES = (1, 32, 128)


@dataclass(frozen=True)
class Options:
    """What to run: request counts, bounds, modes."""

    latency_requests: int = 2000
    ttfb_requests: int = 500
    throughput_requests: int = 3000
    prompts: int = 128
    max_run_s: float = 60.0
    ready_timeout_s: float = 60.0
    onnx_model: Path | None = None
    with_onnx: bool = True
    with_floor: bool = True
    # Also measure the hash mode with server.auth on (a metered client key, in-process counters).
    with_auth: bool = False
    quick: bool = False
    redis: bool = False
    with_budget: bool = False
    with_stalls: bool = True


def quick_options(**overrides: Any) -> Options:
    """The ``--quick`` preset (tiny counts, short bounds)."""
    base: dict[str, Any] = dict(
        latency_requests=200,
        ttfb_requests=50,
        throughput_requests=300,
        prompts=32,
        max_run_s=15.0,
        quick=True,
    )
    base.update(overrides)
    return Options(**base)


async def _wait_ready(url: str, child: Child, timeout_s: float) -> float:
    """Seconds from the child's spawn until ``url`` answers 200."""
    deadline = time.perf_counter() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.perf_counter() < deadline:
            child.check_alive()
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - child.started_s
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.01)
    raise TimeoutError(f"{child.name} not ready within {timeout_s:g} s:\n{child.log_tail()}")


async def _measure(
    url: str,
    texts: list[str],
    model: str,
    opts: Options,
    pid: int,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Latency, TTFB, throughput and CPU/RSS of ``pid`` for one target (direct or proxy)."""
    plain = load.chat_bodies(model, texts)
    streamed = load.chat_bodies(model, texts, stream=True)
    # Warm-up: connections, and the proxy's cache.
    errors = await load.send_each(url, plain, headers=headers)
    lat = await load.latency(url, plain, opts.latency_requests, opts.max_run_s, headers)
    first = await load.ttfb(url, streamed, opts.ttfb_requests, opts.max_run_s, headers)
    rps: dict[str, float] = {}
    cpu_us: float | None = None
    errors += lat.errors + first.errors
    for c in CONCURRENCIES:
        run = await load.throughput(
            url,
            plain,
            count=opts.throughput_requests,
            concurrency=c,
            max_s=opts.max_run_s,
            cpu_of=lambda: cpu_seconds(pid),
            headers=headers,
        )
        rps[str(c)] = round(run.rps, 1)
        errors += run.errors
        if c == 32:
            cpu_us = run.cpu_us_per_request
    return {
        "p50_ms": lat.p50_ms if lat.seconds else None,
        "p99_ms": lat.p99_ms if lat.seconds else None,
        "ttfb_p50_ms": first.p50_ms if first.seconds else None,
        "rps": rps,
        "cpu_us_per_request": cpu_us,
        "peak_rss_mb": peak_rss_mb(pid),
        "errors": errors,
    }


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


async def _mode(
    mode: str,
    args: list[str],
    direct: dict[str, Any],
    children: Children,
    opts: Options,
    core: int,
    port: int,
    client_key: str | None = None,
    model: str = POLICY,
) -> dict[str, Any]:
    """Spawn one proxy-like server (``python args…`` listening on ``port``) and measure it,
    sending ``model`` (a policy, or an upstream model for the passthrough path)."""
    child = children.spawn_proxy(mode, args, core=core)
    headers = {"Authorization": f"Bearer {client_key}"} if client_key else None
    base = f"http://127.0.0.1:{port}"
    try:
        ready_s = await _wait_ready(f"{base}/health/readiness", child, opts.ready_timeout_s)
        figures = await _measure(
            f"{base}/v1/chat/completions", prompts(opts.prompts), model, opts, child.pid, headers
        )
        child.check_alive()
    finally:
        children.stop(child)
    figures["ready_s"] = ready_s
    figures["added_p50_ms"] = _diff(figures["p50_ms"], direct["p50_ms"])
    figures["added_p99_ms"] = _diff(figures["p99_ms"], direct["p99_ms"])
    figures["ttfb_overhead_ms"] = _diff(figures["ttfb_p50_ms"], direct["ttfb_p50_ms"])
    return figures


async def run_benchmark(opts: Options) -> dict[str, Any]:
    """Run every measurement; returns the report (``direct``, ``modes``, run facts)."""
    proxy_core, load_core = cores()
    machine = machine_description()
    # This process is the load generator: keep it off the proxy's core.
    os.sched_setaffinity(0, {load_core})
    children = Children()
    try:
        upstream = children.spawn(
            "upstream",
            ["-m", "bench.latency.upstream", "--port", "0"],
            core=load_core,
            cwd=REPO_ROOT,
        )
        port = await asyncio.get_running_loop().run_in_executor(
            None, read_port_line, upstream, opts.ready_timeout_s
        )
        upstream_url = f"http://127.0.0.1:{port}/v1"
        direct = await _measure(
            f"{upstream_url}/chat/completions",
            prompts(opts.prompts),
            "bench-cheap",
            opts,
            upstream.pid,
        )
        modes: dict[str, dict[str, Any]] = {}
        if opts.with_floor:
            port = free_port()
            floor_args = [
                "-m",
                "bench.latency.upstream",
                "--port",
                str(port),
                "--forward",
                upstream_url,
            ]
            modes["floor"] = await _mode(
                "floor", floor_args, direct, children, opts, proxy_core, port
            )
        with (
            tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp,
            contextlib.ExitStack() as resources,
        ):
            redis_url = (
                resources.enter_context(RedisServer(core=load_core)).url if opts.redis else None
            )
            port = free_port()
            args = proxy_args(
                "hash", {"type": "hash"}, upstream_url, Path(tmp), port, redis_url=redis_url
            )
            modes["hash"] = await _mode("hash", args, direct, children, opts, proxy_core, port)
            # The same proxy, the client naming an upstream model: no policy, no decision.
            port = free_port()
            args = proxy_args(
                "passthrough", {"type": "hash"}, upstream_url, Path(tmp), port, redis_url=redis_url
            )
            modes["passthrough"] = await _mode(
                "passthrough", args, direct, children, opts, proxy_core, port,
                model=PASSTHROUGH_MODEL,
            )  # fmt: skip
            if opts.with_budget:
                port = free_port()
                args = proxy_args(
                    "hash-budget",
                    {"type": "hash"},
                    upstream_url,
                    Path(tmp),
                    port,
                    redis_url=redis_url,
                    budget=True,
                )
                modes["hash-budget"] = await _mode(
                    "hash-budget", args, direct, children, opts, proxy_core, port
                )
            if opts.with_auth:
                key = "sk-bench-" + uuid.uuid4().hex
                port = free_port()
                args = proxy_args(
                    "hash+auth",
                    {"type": "hash"},
                    upstream_url,
                    Path(tmp),
                    port,
                    redis_url=redis_url,
                    client_key=key,
                )
                modes["hash+auth"] = await _mode(
                    "hash+auth", args, direct, children, opts, proxy_core, port, key
                )
            model_dir = opts.onnx_model or default_onnx_model()
            if not opts.with_onnx:
                modes["onnx"] = {"skipped": "disabled with --no-onnx"}
            elif not (model_dir / "manifest.json").is_file():
                modes["onnx"] = {
                    "skipped": f"no ONNX predictor at {model_dir} (build it with "
                    "`adaptive-proxy predictor train`, or pass --onnx-model DIR)"
                }
            else:
                predictor = {"type": "onnx", "path": str(model_dir), "threads": 1}
                port = free_port()
                args = proxy_args(
                    "onnx", predictor, upstream_url, Path(tmp), port, redis_url=redis_url
                )
                modes["onnx"] = await _mode("onnx", args, direct, children, opts, proxy_core, port)
            stalls: dict[str, Any] = {"skipped": "disabled with --no-stalls"}
            if opts.with_stalls:  # on the ONNX predictor when measured, else on the hash one
                onnx = opts.with_onnx and (model_dir / "manifest.json").is_file()
                stalls = await run_stalls(
                    children, upstream_url, Path(tmp), proxy_core, model_dir if onnx else None,
                    _wait_ready, opts.ready_timeout_s,
                )  # fmt: skip
    finally:
        children.close()
    floor = modes.get("floor")
    for mode, figures in modes.items():
        if "skipped" in figures:
            continue
        if floor is not None and mode != "floor":
            figures["vs_floor"] = floor_relative(figures, floor)
        figures["targets"] = evaluate_targets(mode, figures)
    machine["load_average_end"] = list(os.getloadavg())
    return {
        "machine": machine,
        "quick": opts.quick,
        "redis": opts.redis,
        "cores": {"proxy": proxy_core, "load": load_core},
        "counts": {
            "latency": opts.latency_requests,
            "ttfb": opts.ttfb_requests,
            "throughput": opts.throughput_requests,
            "prompts": opts.prompts,
        },
        "concurrencies": list(CONCURRENCIES),
        "direct": direct,
        "modes": modes,
        "stalls": stalls,
    }


def build_parser(prog: str = "python -m bench.latency") -> argparse.ArgumentParser:
    """The benchmark's options (``prog``: how the user invoked it, for ``--help``)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short run (small counts)")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    parser.add_argument("--requests", type=int, help="requests per throughput run (default 3000)")
    parser.add_argument("--latency-requests", type=int, help="sequential requests (default 2000)")
    parser.add_argument("--ttfb-requests", type=int, help="streamed requests (default 500)")
    parser.add_argument("--prompts", type=int, help="distinct prompts (default 128)")
    parser.add_argument("--max-run-s", type=float, help="wall-clock cap of each run (default 60)")
    parser.add_argument("--onnx-model", help="ONNX predictor folder (default: the shipped one)")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX predictor mode")
    parser.add_argument(
        "--auth",
        action="store_true",
        help="also measure the hash mode with server.auth on (a metered client key)",
    )
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the minimal-passthrough reference (floor)"
    )
    parser.add_argument(
        "--redis",
        action="store_true",
        help="start a redis-server on a free port and put the proxy's cache (and budget) in it",
    )
    parser.add_argument(
        "--no-stalls",
        action="store_true",
        help="skip the event-loop stall run (large prompts, a 10,000-prompt allocation)",
    )
    parser.add_argument(
        "--budget",
        action="store_true",
        help="also measure a budgeted route policy (the online controller on every request)",
    )
    return parser


def options_from(args: argparse.Namespace) -> Options:
    """Options from parsed arguments (explicit counts override the preset)."""
    overrides: dict[str, Any] = {
        key: value
        for key, value in (
            ("throughput_requests", args.requests),
            ("latency_requests", args.latency_requests),
            ("ttfb_requests", args.ttfb_requests),
            ("prompts", args.prompts),
            ("max_run_s", args.max_run_s),
        )
        if value is not None
    }
    if args.onnx_model:
        overrides["onnx_model"] = Path(args.onnx_model)
    overrides["with_onnx"] = not args.no_onnx
    overrides["with_floor"] = not args.no_floor
    overrides["with_auth"] = args.auth
    overrides["redis"] = args.redis
    overrides["with_budget"] = args.budget
    overrides["with_stalls"] = not args.no_stalls
    return quick_options(**overrides) if args.quick else Options(**overrides)


async def _run_until_signalled(opts: Options) -> dict[str, Any]:
    # SIGTERM cancels the run like Ctrl-C does, so ``finally`` stops the children either way.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run_benchmark(opts)


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m bench.latency") -> int:
    """``python -m bench.latency`` (``adaptive-proxy bench latency`` passes its own ``prog``)."""
    args = build_parser(prog).parse_args(argv)
    opts = options_from(args)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    try:
        report = asyncio.run(_run_until_signalled(opts))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; child processes stopped", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError) as exc:
        print(f"bench.latency: {exc}", file=sys.stderr)
        return 1
    print(format_report(report))
    if args.json:
        Path(args.json).write_bytes(
            orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
