"""``serve --workers N``: N proxy processes on one port (``SO_REUSEPORT``), one event loop each.

The parent reserves the port (binding a ``SO_REUSEPORT`` socket it never listens on, so port 0
becomes one concrete port for every worker), starts each worker as ``adaptive-proxy serve
--worker-index I`` on that port, and forwards SIGTERM/SIGINT (graceful drain: each worker stops
accepting, finishes its requests in flight, then exits) and SIGHUP (reload). The kernel spreads
new connections over the workers; shared state (decision cache, budgets, client limits) lives in
Redis, so the workers act as one proxy; without Redis the parent warns once that each worker
keeps its own. Each worker's log lines carry its pid (``adaptive_proxy.reload[1234]: …``), so a
reload shows one line per worker. If a worker dies on its own, the others are stopped and the
parent exits 1, for the supervisor (systemd, Kubernetes) to restart the whole set.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from proxy.config.schema import Config

log = logging.getLogger("adaptive_proxy.workers")

_POLL_S = 0.2


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """A bound, never-listening ``SO_REUSEPORT`` socket holding ``host:port``; the real port."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock, int(sock.getsockname()[1])


def per_process_state(config: Config) -> list[str]:
    """What each worker keeps to itself under ``config``: the state Redis would share."""
    kept: list[str] = []
    if not config.cache.redis_url:
        kept += ["decision cache", "budget controllers"]
    auth = config.server.auth
    if auth is not None and not (auth.redis_url or config.cache.redis_url):
        kept += ["client limits", "run-time keys"]
    return kept


def run_workers(
    n_workers: int,
    *,
    config: Config,
    config_path: str | None,
    host: str,
    port: int,
    python: str = sys.executable,
) -> int:
    """Run ``n_workers`` workers until SIGTERM/SIGINT; the exit status of the set."""
    kept = per_process_state(config)
    if kept:
        # Said once, here: each worker alone cannot know it has siblings.
        log.warning(
            "serve --workers %d without Redis: each worker keeps its own %s (each one meets a "
            "budget or a limit on its share of the traffic alone); set cache.redis_url to "
            "share them",
            n_workers,
            " and ".join([", ".join(kept[:-1]), kept[-1]] if len(kept) > 1 else kept),
        )
    reserved, port = reserve_port(host, port)
    config_args: Sequence[str] = ("--config", config_path) if config_path else ()
    stopping = False
    workers: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
            signum = signal.SIGTERM
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        for index in range(n_workers):
            command = [python, "-m", "proxy.cli", "serve", *config_args]
            command += ["--host", host, "--port", str(port), "--worker-index", str(index)]
            workers.append(subprocess.Popen(command))
        log.info(
            "adaptive-proxy: %d workers (pids %s) on http://%s:%d/v1",
            n_workers,
            ", ".join(str(w.pid) for w in workers),
            host,
            port,
        )
        while not stopping:
            died = [w for w in workers if w.poll() is not None]
            if died:
                log.error(
                    "worker pid %d exited with status %s; stopping the others",
                    died[0].pid,
                    died[0].returncode,
                )
                forward(signal.SIGTERM, None)
                break
            time.sleep(_POLL_S)
        codes = [w.wait() for w in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        reserved.close()
    if not stopping or any(codes):
        return 1
    log.info("all %d workers drained and stopped", n_workers)
    return 0
