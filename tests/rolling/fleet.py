"""The gateway instances behind the balancer: ``gateway serve --workers 1``, each a process of
its own on its own port of 127.0.0.1, sharing one data directory (one SQLite call store, where
they also announce themselves to each other).

Three slots, each with two ports (blue/green): an instance runs on one of its slot's ports; its
replacement starts on the other while it drains.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Instance", "quiet_ports"]

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Instance:
    """One ``gateway serve`` process; the monotonic instants of its life."""

    name: str  # its HAProxy server: slot1a, slot1b, ...
    port: int
    log_path: Path
    env: dict[str, str] = field(repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    started: float | None = None  # the process was started
    ready: float | None = None  # HAProxy saw it up
    terminated: float | None = None  # SIGTERM sent
    exited: float | None = None  # it exited (seen by polling, within 50 ms)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", "1", "--env-file", os.devnull]
        env = {**os.environ, **self.env, "GATEWAY_INSTANCE_URL": self.url}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        """SIGTERM: drain (once; a second one would stop it at once)."""
        assert self.process is not None and self.terminated is None
        self.process.send_signal(signal.SIGTERM)
        self.terminated = time.monotonic()

    async def wait_exit(self, timeout: float) -> int | None:
        """Its exit status, or None if it is still running after ``timeout`` s."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)
        if self.exited is None:
            self.exited = time.monotonic()
        return self.process.returncode

    def kill(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def quiet_ports(n: int) -> list[int]:
    """``n`` ports of 127.0.0.1 that are free now and outside the kernel's ephemeral range.

    A port found by binding port 0 comes from the ephemeral range, where every outgoing
    connection also takes its local port: here, thousands of them (callers, the balancer, the
    instances between themselves). A replacement instance binds its port a minute after it was
    chosen, and by then a connection may hold it. Below (or above) the range, only a program
    that names a port can take it."""
    low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    candidates = list(range(10000, low)) + list(range(high + 1, 65536))
    random.shuffle(candidates)
    found: list[int] = []
    for port in candidates:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == n:
            return found
    raise AssertionError(f"no {n} free ports outside the ephemeral range {low}-{high}")
