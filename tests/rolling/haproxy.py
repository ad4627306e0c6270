"""HAProxy from Debian's package (``apt-get install haproxy``), run by the test as a child
process with a configuration of its own in a temporary directory: not the system service.

The configuration is what a deployment in front of the gateway needs
(https://docs.haproxy.org/2.6/configuration.html):

- ``mode http``: the voice webhook, ``POST /calls`` and the callbacks are HTTP requests; a Media
  Stream is an HTTP request upgraded to a WebSocket, after which ``timeout tunnel`` applies
  (longer than any call). ``/internal/`` is refused at the front: instances reach each other
  directly, on their own addresses (docs/deploy.md).
- **Health checks on ``/readyz``** every 250 ms, one failure to go down and one success to come
  up: a draining instance (503) gets no new connections within a check or two, while its
  established connections, the calls in progress, go on (HAProxy closes nothing when a server
  goes down unless told to: ``on-marked-down``).
- **Retries on another server** (``retry-on conn-failure empty-response 503``, ``option
  redispatch 1``, ``option http-buffer-request``): a request that reaches an instance in the
  moment between its SIGTERM and the next check is answered 503 (``POST /calls`` while
  draining) and is sent to another instance; so is one that finds an instance's port closed.
  A draining instance turns an incoming call's webhook away with a ``<Redirect>`` to the
  balancer instead, which the caller follows, as Twilio does.
- **Blue/green slots**: each instance has two ports, one server each. During a roll the new
  instance starts on the port its slot is not using while the old one drains on the other; the
  checks say which of the two is up.

The admin socket (``show stat``) says what HAProxy sees: each server's status, its current
connections, and the backend's retries and redispatches.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
import subprocess
import time
from pathlib import Path

__all__ = ["HAProxy", "find_haproxy"]

#: Health checks (ms): every instance, every 250 ms; one answer changes its state.
CHECK_INTER_MS = 250


def find_haproxy() -> str | None:
    """The ``haproxy`` binary: on PATH, or where Debian puts it (/usr/sbin, not always on a
    user's PATH)."""
    found = shutil.which("haproxy")
    if found:
        return found
    return "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None


def config(port: int, servers: dict[str, int], socket_path: Path) -> str:
    """The configuration: a frontend on 127.0.0.1:``port``, a backend of ``servers`` (name ->
    port on 127.0.0.1), health-checked on ``/readyz``."""
    lines = [
        "global",
        "    log stdout format raw local0 info",
        f"    stats socket {socket_path} mode 600 level admin",
        "    maxconn 2000",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    option dontlognull",
        "    timeout connect 2s",
        "    timeout client 60s",  # longer than any call (10-20 s) ...
        "    timeout server 60s",
        "    timeout tunnel 10m",  # ... and an upgraded stream's, much longer
        "    timeout http-request 10s",
        "    timeout check 2s",
        "    retries 3",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response 503",
        # A request can be replayed only if HAProxy holds all of it: without this, a POST whose
        # body comes after its headers goes out at once and its 503 is not retried (tried: a
        # 503 to urllib's POSTs was retried one time in three; with it, every time).
        "    option http-buffer-request",
        "",
        "frontend public",
        f"    bind 127.0.0.1:{port}",
        "    http-request deny deny_status 404 if { path_beg /internal/ }",
        "    default_backend gateways",
        "",
        "backend gateways",
        "    balance roundrobin",
        "    option httpchk GET /readyz",
        "    http-check expect status 200",
        f"    default-server check inter {CHECK_INTER_MS}ms fastinter {CHECK_INTER_MS}ms "
        f"downinter {CHECK_INTER_MS}ms fall 1 rise 1",
        *(f"    server {name} 127.0.0.1:{server_port}" for name, server_port in servers.items()),
        "",
    ]
    return "\n".join(lines)


class HAProxy:
    """``haproxy -db -f <config>`` in ``workdir``; its log (every request, with the server it
    went to and its retries) in ``haproxy.log`` there."""

    def __init__(self, binary: str, workdir: Path, port: int, servers: dict[str, int]) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.servers = dict(servers)
        self.socket_path = workdir / "haproxy.sock"
        self.config_path = workdir / "haproxy.cfg"
        self.log_path = workdir / "haproxy.log"
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self, timeout: float = 10.0) -> None:
        self.config_path.write_text(config(self.port, self.servers, self.socket_path))
        check = subprocess.run([self.binary, "-c", "-f", str(self.config_path)], capture_output=True, text=True)
        assert check.returncode == 0, f"haproxy refused its configuration:\n{check.stdout}{check.stderr}"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([self.binary, "-db", "-f", str(self.config_path)],
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.stat()
                return
            except OSError:
                pass
            assert self.process.poll() is None, f"haproxy exited ({self.process.returncode}): {self.log()}"
            assert time.monotonic() < deadline, f"haproxy's admin socket did not answer: {self.log()}"
            await asyncio.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def command(self, text: str) -> str:
        """One command on the admin socket; its answer."""
        reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
        try:
            writer.write(text.encode() + b"\n")
            await writer.drain()
            return (await asyncio.wait_for(reader.read(), 5)).decode()
        finally:
            writer.close()

    async def stat(self) -> dict[str, dict[str, str]]:
        """``show stat``: a row per proxy and server, keyed by server name (the backend's own
        row is ``BACKEND``)."""
        text = await self.command("show stat")
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {row["svname"]: row for row in rows if row.get("pxname") == "gateways"}

    async def status(self) -> dict[str, str]:
        """Each server's status: ``UP``, ``DOWN``, or on its way (``UP 1/2`` ...)."""
        return {name: row["status"] for name, row in (await self.stat()).items() if name in self.servers}

    async def wait_status(self, name: str, status: str, timeout: float) -> float:
        """Until server ``name`` is ``status``; how long that took."""
        began = time.monotonic()
        while (now := (await self.status()).get(name)) != status:
            assert time.monotonic() - began < timeout, f"haproxy: {name} is {now}, not {status}, after {timeout} s"
            await asyncio.sleep(0.02)
        return time.monotonic() - began
