"""A private PostgreSQL server for the tests, from the Debian packages' binaries.

Each test session gets its own cluster in a temporary directory, listening only on a Unix
socket there (no TCP port at all), so nothing outside the machine or another run can reach it,
and a test may stop and start it (a database outage mid-call). Each test gets a database of its
own (``new_database``).

PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` user the Debian
package creates. Without the binaries the PostgreSQL tests skip, unless
``GATEWAY_TEST_REQUIRE_POSTGRES=1`` (``.ci/run`` sets it), where they fail instead.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["PgServer", "find_bin", "required"]


def required() -> bool:
    return os.environ.get("GATEWAY_TEST_REQUIRE_POSTGRES") == "1"


def find_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with initdb (Debian), or initdb on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


class PgServer:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.base = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
        self.data, self.sockets = self.base / "data", self.base / "sockets"
        self.sockets.mkdir()
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            for path in (self.base, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._names = itertools.count(1)

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self._as, str(self.bindir / tool), *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")

    def init(self) -> PgServer:
        self._run("initdb", "-D", str(self.data), "-U", "gateway", "--auth=trust", "-E", "UTF8", "--no-sync")
        return self.start()

    def start(self) -> PgServer:
        options = f"-c listen_addresses='' -k {self.sockets} -c fsync=off -c synchronous_commit=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.base / "server.log"), "-w", "start")
        return self

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://gateway@/{dbname}?host={self.sockets}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        try:
            self.stop()
        except RuntimeError:
            pass  # already stopped
        shutil.rmtree(self.base, ignore_errors=True)
