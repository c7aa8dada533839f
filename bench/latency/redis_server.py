"""A ``redis-server`` child for ``python -m bench.latency --redis``: free port, no persistence."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from bench.latency.procs import free_port

READY_TIMEOUT_S = 10.0


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisProcess:
    """``with RedisProcess(core) as url:`` runs redis-server pinned to ``core`` until exit."""

    def __init__(self, core: int | None) -> None:
        self._core = core
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("--redis needs redis-server on PATH (apt-get install redis-server)")
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-redis-")
        port = free_port()
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", self._tmp.name, "--daemonize", "no"]
        if self._core is not None:
            args = ["taskset", "-c", str(self._core), *args] if shutil.which("taskset") else args
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=Path(self._tmp.name),
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _answers_ping(port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"redis-server did not start on port {port}")
            time.sleep(0.02)
        return f"redis://127.0.0.1:{port}/0"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
