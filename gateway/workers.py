"""``gateway serve --workers N``: N processes serve one port, and drain together.

One asyncio process uses one core. With ``--workers N`` a supervisor binds the port once and
starts N worker processes that all accept on it (the kernel hands each new connection to one of
them), each a complete gateway: calls, webhooks, the console, ``/healthz``.

- **Each worker has an internal address** as well, where the others reach it: the port of
  ``GATEWAY_INSTANCE_URL`` plus its index, or a loopback port of its own when that is unset.
  Twilio's callbacks for a call that another worker holds are forwarded there
  (``gateway.web.routing``), and ``GET /metrics`` on any worker gathers everyone's from there.
- **SIGTERM (or Ctrl-C) to the supervisor drains every worker**: each gets SIGTERM, turns
  ``/readyz`` to 503, lets its calls finish (``gateway.serving.DrainingServer``) and exits; the
  supervisor exits once all have, 0 if all did. A second signal is passed on too: the workers
  then stop at once. Workers run in a process group of their own, so a terminal's Ctrl-C
  reaches them once, through the supervisor, and they get SIGTERM if the supervisor dies.
- **A worker that dies is replaced** (logged at ERROR with its exit status), unless workers keep
  dying within ``FLAP_S`` of starting: after ``MAX_FLAPS`` in a row the supervisor stops them
  all and exits 1, rather than restart a broken deployment forever.

``WORKER_ENV`` carries a worker's part (its index, inherited sockets, its own and its siblings'
internal URLs) from the supervisor to ``gateway serve`` in the worker; it is not a setting.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

__all__ = ["WORKER_ENV", "Supervisor", "WorkerPart", "default_workers", "listen", "worker_part"]

log = logging.getLogger("gateway.workers")

WORKER_ENV = "_GATEWAY_WORKER"
#: A worker that exits this soon after it started "flapped"; ...
FLAP_S = 10.0
#: ... this many flaps in a row, and the supervisor gives up.
MAX_FLAPS = 5
_PR_SET_PDEATHSIG = 1


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class WorkerPart:
    """What one worker is told: its index, its sockets (file descriptors: the public listener,
    then its internal one if any), its internal URL and its siblings'."""

    index: int
    fds: tuple[int, ...]
    instance_url: str | None
    siblings: tuple[str, ...]

    def to_env(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_env(cls, text: str) -> WorkerPart:
        data = json.loads(text)
        return cls(int(data["index"]), tuple(int(fd) for fd in data["fds"]), data["instance_url"],
                   tuple(data["siblings"]))


def worker_part() -> WorkerPart | None:
    """This process's part, if a supervisor started it."""
    text = os.environ.get(WORKER_ENV)
    return WorkerPart.from_env(text) if text else None


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6, as ``host`` resolves)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if not host.replace(".", "").isdigit() and ":" not in host:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.create_server((host, port), family=family, backlog=backlog)
    sock.set_inheritable(True)
    return sock


def internal_urls(host: str, n: int, instance_url: str | None) -> tuple[list[socket.socket], list[str]]:
    """Each worker's internal listener (on ``host``) and the URL the others reach it at: the
    port of ``instance_url`` plus the worker's index, or any free loopback port without one."""
    sockets, urls = [], []
    for i in range(n):
        if instance_url is None:
            sock = listen("127.0.0.1", 0)
            urls.append(f"http://127.0.0.1:{sock.getsockname()[1]}")
        else:
            parts = urlsplit(instance_url)
            port = (parts.port or 0) + i
            sock = listen(host, port)
            netloc = f"{parts.hostname}:{port}" if ":" not in (parts.hostname or "") else f"[{parts.hostname}]:{port}"
            urls.append(urlunsplit((parts.scheme, netloc, "", "", "")))
        sockets.append(sock)
    return sockets, urls


def _die_with_parent() -> None:
    """In the worker, before exec: SIGTERM (a drain) if the supervisor dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the worker outlives a killed supervisor
        pass


class Supervisor:
    """Starts, watches and stops the workers. ``argv``: ``gateway serve``'s arguments for a
    worker (the supervisor adds nothing to them; the part travels in ``WORKER_ENV``)."""

    def __init__(self, argv: Sequence[str], n: int, host: str, port: int, instance_url: str | None) -> None:
        self.argv = list(argv)
        self.n = n
        self.public = listen(host, port)
        self.port = self.public.getsockname()[1]
        self.internal, self.urls = internal_urls(host, n, instance_url)
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n
        self.started_at = [0.0] * n
        self.flaps = 0
        self.signals = 0
        self.failed = False

    def part(self, i: int) -> WorkerPart:
        return WorkerPart(i, (self.public.fileno(), self.internal[i].fileno()), self.urls[i],
                          tuple(u for j, u in enumerate(self.urls) if j != i))

    def start(self, i: int) -> None:
        part = self.part(i)
        self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", *self.argv], pass_fds=part.fds,
            env={**os.environ, WORKER_ENV: part.to_env()}, process_group=0, preexec_fn=_die_with_parent,
        )
        self.started_at[i] = time.monotonic()
        log.info("worker %d started (pid %d), internal address %s", i, self.procs[i].pid, self.urls[i])

    def run(self) -> int:
        """Until every worker has exited after a signal (or the workers keep dying): the exit
        status, 0 when every worker exited 0."""
        previous = {sig: signal.signal(sig, self._signalled) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            log.info("%d workers serving port %d", self.n, self.port)
            for i in range(self.n):
                self.start(i)
            statuses: dict[int, int] = {}
            while len(statuses) < self.n:
                for i, proc in enumerate(self.procs):
                    if i in statuses or proc is None or (status := proc.poll()) is None:
                        continue
                    if self.signals:
                        statuses[i] = status
                        log.info("worker %d exited (status %d)", i, status)
                    elif not self._replace(i, status):
                        statuses[i] = status
                time.sleep(0.05)
            return 1 if self.failed or any(statuses.values()) else 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for sock in (self.public, *self.internal):
                sock.close()

    def _replace(self, i: int, status: int) -> bool:
        """A worker died on its own: start another, unless they keep dying (then stop them all
        and say False)."""
        lived = time.monotonic() - self.started_at[i]
        log.error("worker %d exited unexpectedly (status %d) after %.1f s: starting another", i, status, lived)
        self.flaps = self.flaps + 1 if lived < FLAP_S else 0
        if self.flaps >= MAX_FLAPS:
            log.error("workers keep dying within %.0f s of starting (%d in a row): stopping", FLAP_S, self.flaps)
            self.failed = True
            self._signalled(signal.SIGTERM, None)
            return False
        self.start(i)
        return True

    def _signalled(self, sig: int, frame: FrameType | None) -> None:
        self.signals += 1
        if self.signals == 1:
            log.warning("%s: draining every worker", signal.Signals(sig).name)
        else:
            log.warning("%s again: the workers stop now", signal.Signals(sig).name)
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
