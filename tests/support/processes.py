"""The one place tests start processes: free ports, the ``twin`` CLI (run to completion or kept
running), waiting on conditions, and stopping a process tree without leaving anything behind.

Every test that runs ``twin`` goes through :func:`run_twin` / :func:`start_twin`, so the command
line, environment and log handling are the same everywhere; every wait is on a condition
(:func:`wait_for`), never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout: float = 180.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def twin_command(*args: str) -> list[str]:
    """The ``twin`` CLI as a child of this interpreter (the venv's, whatever PATH says)."""
    return [sys.executable, "-m", "twin.cli", *args]


def run_twin(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``twin ARGS`` to completion with ``env`` on top of this process's environment."""
    return subprocess.run(
        twin_command(*args),
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, grandchildren...), from ``ps``."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=False).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = (int(x) for x in line.split())
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class TwinProcess:
    """A long-running ``twin`` command with its output in a log file."""

    proc: subprocess.Popen[str]
    log: Path

    def output(self, tail: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90) -> int:
        """Ask it to stop (SIGTERM or SIGINT, as a user or Kubernetes would) and wait; kill it and
        fail if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL, as a crash would: the process and everything it started."""
        for pid in [*descendants(self.proc.pid), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(30)


def start_twin(
    *args: str, env: Mapping[str, str] | None = None, workdir: Path, name: str | None = None
) -> TwinProcess:
    """Start ``twin ARGS`` in ``workdir``, output to ``workdir/<name>-<id>.log``."""
    log = workdir / f"{name or args[0]}-{uuid.uuid4().hex[:6]}.log"
    with log.open("w") as handle:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            twin_command(*args),
            env={**os.environ, **(env or {})},
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=workdir,
        )
    return TwinProcess(proc, log)
