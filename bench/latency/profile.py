"""Where the proxy's CPU goes under load: ``python -m bench.latency.profile``.

It starts the benchmark's fast upstream and the proxy (the same configuration as
:mod:`bench.latency`, the proxy pinned to the first allowed core), attaches ``py-spy record``
to the proxy, sends ``--requests`` chat requests at concurrency 32 on one path, and prints the
functions that took the most CPU: *self* (the function itself at the top of the stack) and
*inclusive* (anywhere on the stack), each as a share of the samples in which the proxy was on
CPU (py-spy drops idle samples), and the self shares summed per package. Paths: ``floor`` (the
minimal aiohttp passthrough :mod:`bench.latency` compares against), ``passthrough`` (the
client names an upstream model), ``hash`` (a route policy on the hash predictor) and ``onnx``
(on the shipped ONNX predictor); every prompt is sent once first, so the routed paths are
decision-cache hits.

py-spy is not a dependency of the project: install it (``pip install py-spy``) or pass
``--py-spy PATH``. Sampling costs the proxy some CPU itself; read shares, not speeds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.latency import load
from bench.latency.config import (
    POLICY,
    REPO_ROOT,
    default_onnx_model,
    prompts,
    proxy_args,
)
from bench.latency.procs import Children, cores, free_port, read_port_line

PATHS = ("floor", "passthrough", "hash", "onnx")
# py-spy's raw frames read "function (path/to/file.py:line)"; the line is dropped to merge
# the samples of one function.
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


@dataclass(frozen=True)
class Profile:
    """Sample counts of one path: on-CPU samples, and per function self and inclusive counts."""

    samples: int
    self_counts: Counter[str]
    inclusive_counts: Counter[str]

    def by_package(self) -> list[tuple[str, float]]:
        """Self shares summed per package (``proxy``, ``aiohttp``, ``asyncio``, ...), in %."""
        packages: Counter[str] = Counter()
        for name, count in self.self_counts.items():
            where = name.rpartition(" (")[2].rstrip(")")
            top = where.split("/", 1)[0] if "/" in where else where
            packages[top.removesuffix(".py")] += count
        total = max(self.samples, 1)
        return [(name, 100.0 * c / total) for name, c in packages.most_common()]

    def top(self, n: int, *, inclusive: bool = False) -> list[tuple[str, float]]:
        """The ``n`` functions with the most samples, with their share of all samples in %."""
        counts = self.inclusive_counts if inclusive else self.self_counts
        total = max(self.samples, 1)
        return [(name, 100.0 * c / total) for name, c in counts.most_common(n)]


def _short(frame: str) -> str:
    """``func (file:line)`` as ``func (module-relative file)``."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = os.path.relpath(path, REPO_ROOT) if path.startswith("/") else path
    return f"{match['func']} ({path})"


def parse_raw(text: str) -> Profile:
    """A py-spy ``--format raw`` file (folded stacks, ``a;b;c count``) as sample counts."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread (")]
        if not frames:
            continue
        samples += count
        self_counts[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    return Profile(samples, self_counts, inclusive)


async def _warm(url: str, bodies: list[bytes]) -> None:
    await load.send_each(url, bodies)  # connections, and the decision cache


async def _load(url: str, bodies: list[bytes], requests: int) -> None:
    await load.throughput(url, bodies, count=requests, concurrency=32, max_s=120.0)


def profile_path(path: str, py_spy: str, requests: int, rate_hz: int, workdir: Path) -> Profile:
    """Serve ``path``, load it while py-spy samples the proxy, and return the profile."""
    proxy_core, load_core = cores()
    os.sched_setaffinity(0, {load_core})
    children = Children()
    try:
        upstream = children.spawn(
            "upstream", ["-m", "bench.latency.upstream", "--port", "0"], core=load_core
        )
        upstream_url = f"http://127.0.0.1:{read_port_line(upstream, 30)}/v1"
        predictor = (
            {"type": "onnx", "path": str(default_onnx_model()), "threads": 1}
            if path == "onnx"
            else {"type": "hash"}
        )
        port = free_port()
        args = proxy_args(path, predictor, upstream_url, workdir, port)
        if path == "floor":
            args = ["-m", "bench.latency.upstream", "--port", str(port), "--forward", upstream_url]
        proxy = children.spawn_proxy(path, args, core=proxy_core)
        base = f"http://127.0.0.1:{port}"
        asyncio.run(_wait(base, proxy))
        model = POLICY if path in ("hash", "onnx") else "bench-cheap"
        url = f"{base}/v1/chat/completions"
        bodies = load.chat_bodies(model, prompts(128))
        asyncio.run(_warm(url, bodies))
        raw = workdir / f"{path}.txt"
        spy = subprocess.Popen(
            [
                *(py_spy, "record", "--pid", str(proxy.pid), "--rate", str(rate_hz)),
                *("--format", "raw", "--output", str(raw), "--nonblocking"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            asyncio.run(_load(url, bodies, requests))
        finally:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)
        return parse_raw(raw.read_text())
    finally:
        children.close()


async def _wait(base: str, proxy: object) -> None:
    from bench.latency.run import _wait_ready

    await _wait_ready(f"{base}/health/readiness", proxy, 60.0)  # type: ignore[arg-type]


def format_profile(path: str, profile: Profile, n: int, requests: int, rate_hz: int) -> list[str]:
    """The printed lines of one path's profile."""
    per_request_us = profile.samples / rate_hz / max(requests, 1) * 1e6
    lines = [
        f"== {path}: {profile.samples} on-CPU samples, ~{per_request_us:.0f} us sampled per "
        "request ==",
        "self %  function",
    ]
    lines += [f"{share:6.1f}  {name}" for name, share in profile.top(n)]
    lines += ["self % by package: " + ", ".join(f"{n} {v:.1f}" for n, v in profile.by_package())]
    lines += ["inclusive %  function"]
    lines += [f"{share:6.1f}  {name}" for name, share in profile.top(n, inclusive=True)]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.latency.profile``."""
    parser = argparse.ArgumentParser(prog="python -m bench.latency.profile", description=__doc__)
    parser.add_argument("--path", choices=PATHS, action="append", help="default: all three")
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--raw-dir", help="keep py-spy's raw (folded) output here")
    parser.add_argument("--py-spy", default=shutil.which("py-spy"), help="the py-spy binary")
    args = parser.parse_args(argv)
    if not args.py_spy:
        print("error: py-spy not found (pip install py-spy, or --py-spy PATH)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        for path in args.path or PATHS:
            workdir = Path(args.raw_dir) if args.raw_dir else Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            profile = profile_path(path, args.py_spy, args.requests, args.rate, workdir)
            print(
                "\n".join(format_profile(path, profile, args.top, args.requests, args.rate)) + "\n"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
