"""A real ``redis-server`` on a free loopback port, without persistence: the benchmark's
(``python -m bench.latency --redis``) and the tests' (``tests/redis_server.py``).

Usage::

    with RedisServer() as server:
        client = redis.asyncio.Redis.from_url(server.url)
        ...
        server.kill()      # simulate a crash
        server.restart()   # same port, empty data set
        server.pause()     # SIGSTOP: a hung server; resume() continues it

The binary comes from ``shutil.which("redis-server")`` (``find_binary``, which the tests override
to skip or fail instead of raising); ``core`` pins the process to one CPU with ``taskset``.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from bench.latency.procs import free_port

READY_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process without persistence, in its own temporary directory."""

    def __init__(self, *, binary: str | None = None, core: int | None = None) -> None:
        self._binary = binary
        self._core = core
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def find_binary(self) -> str:
        """The ``redis-server`` executable on PATH; ``RuntimeError`` saying how to install it."""
        path = shutil.which("redis-server")
        if path is None:
            raise RuntimeError("redis-server not found on PATH (apt-get install redis-server)")
        return path

    @property
    def port(self) -> int:
        """The TCP port; fixed by the first ``start()`` and kept across restarts."""
        if self._port is None:
            raise RuntimeError("RedisServer not started")
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the server and wait (bounded) until it answers PING."""
        if self.running:
            return
        if self._binary is None:
            self._binary = self.find_binary()
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="redis-server-")
        # A port chosen by bind(0) can be taken before redis binds it; retry with a fresh one,
        # but only while the port is not yet fixed (restart() must keep it).
        attempts = 3 if self._port is None else 1
        last_error = ""
        for _ in range(attempts):
            port = self._port if self._port is not None else free_port()
            last_error = self._spawn(port)
            if not last_error:
                self._port = port
                return
        raise RuntimeError(f"redis-server did not start: {last_error}")

    def _spawn(self, port: int) -> str:
        assert self._tmp is not None and self._binary is not None
        workdir = Path(self._tmp.name)
        log_path = workdir / "redis.log"
        args = [
            self._binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--logfile",
            str(log_path),
            "--daemonize",
            "no",
        ]
        if self._core is not None and shutil.which("taskset"):
            args = ["taskset", "-c", str(self._core), *args]
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if _answers_ping(port):
                self._proc = proc
                return ""
            time.sleep(0.02)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        tail = log_path.read_text(errors="replace")[-500:] if log_path.exists() else ""
        return f"port {port}, exit {proc.returncode}: {tail.strip()}"

    def _wait(self, sig: signal.Signals) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None:
            proc.send_signal(sig)
            # A paused (SIGSTOP) server only acts on SIGTERM once continued.
            proc.send_signal(signal.SIGCONT)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        """Stop gracefully (SIGTERM) and wait for the process to exit."""
        self._wait(signal.SIGTERM)

    def kill(self) -> None:
        """Kill (SIGKILL) to simulate a crash; the port stays reserved for ``restart()``."""
        self._wait(signal.SIGKILL)

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections hang, simulating a slow server."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Continue a paused process (SIGCONT)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Stop if running, then start again on the same port (with an empty data set)."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its temporary directory."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
