"""Child processes of the latency benchmark: spawn pinned to a core, read /proc, always clean up.

Children run in their own session (Ctrl-C in a terminal reaches only the benchmark, which then
stops them) and get ``PR_SET_PDEATHSIG`` so that they die even if the benchmark is killed hard.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.latency.config import BENCH_MASTER_ENV, REPO_ROOT

_PR_SET_PDEATHSIG = 1
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cores() -> tuple[int, int]:
    """(proxy core, load core): two distinct cores when this process may use two or more."""
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[0], allowed[-1]


def _child_setup(core: int | None) -> Callable[[], None]:
    def setup() -> None:
        if core is not None:
            os.sched_setaffinity(0, {core})
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return setup


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    """A spawned process, its stderr log file and its name (for messages)."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    started_s: float = field(default_factory=time.perf_counter)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the child wrote to stderr."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise with the child's stderr tail when it has exited."""
        code = self.proc.poll()
        if code is not None:
            raise RuntimeError(f"{self.name} exited with status {code}:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; idempotent."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout_s)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        with contextlib.suppress(OSError):
            self.log_path.unlink()


def spawn(
    name: str,
    args: Sequence[str],
    *,
    core: int | None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Child:
    """Start ``python args…`` pinned to ``core``; stdout is a pipe, stderr goes to a temp file."""
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    fd, log_name = tempfile.mkstemp(prefix=f"bench-latency-{label}-", suffix=".log")
    try:
        proc = subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=fd,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_child_setup(core),
        )
    finally:
        os.close(fd)
    return Child(name, proc, Path(log_name))


def read_port_line(child: Child, timeout_s: float) -> int:
    """Wait for the child's ``PORT <n>`` line on stdout."""
    assert child.proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    os.set_blocking(child.proc.stdout.fileno(), True)
    while time.monotonic() < deadline:
        line = child.proc.stdout.readline()
        if line.startswith(b"PORT "):
            return int(line.split()[1])
        if not line:
            child.check_alive()
            time.sleep(0.01)
    raise TimeoutError(f"{child.name} did not report its port within {timeout_s:g} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (``/proc/<pid>/stat`` utime + stime)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces; fields after the closing parenthesis are fixed.
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of ``pid`` (``VmHWM``) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


class Children:
    """Every child of one benchmark run; ``close()`` stops them all (use in ``finally``)."""

    def __init__(self) -> None:
        self._children: list[Child] = []

    def spawn(
        self,
        name: str,
        args: Sequence[str],
        *,
        core: int | None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Child:
        """Spawn and remember a child."""
        child = spawn(name, args, core=core, env=env, cwd=cwd)
        self._children.append(child)
        return child

    def spawn_proxy(self, mode: str, args: Sequence[str], *, core: int | None) -> Child:
        """Spawn ``proxy (mode)`` from the repository root, unbuffered, with a fresh master key."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1", BENCH_MASTER_ENV: uuid.uuid4().hex}
        return self.spawn(f"proxy ({mode})", args, core=core, cwd=REPO_ROOT, env=env)

    def stop(self, child: Child) -> None:
        """Stop one child now."""
        child.stop()
        self._children.remove(child)

    def close(self) -> None:
        """Stop every remaining child (newest first)."""
        while self._children:
            self._children.pop().stop()


def machine_description() -> dict[str, object]:
    """What the figures were measured on: CPU model, cores, load, and the software stack."""
    import platform
    from importlib import metadata

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {"python": platform.python_version()}
    for package in ("aiohttp", "uvloop", "orjson", "pydantic", "onnxruntime"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cores_allowed": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "load_average_start": list(os.getloadavg()),
        "software": versions,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
