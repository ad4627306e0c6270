"""``store``: each test of the store suite runs once on SQLite, once on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store.pgserver import PgServer, find_bin, required


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir = find_bin()
    if bindir is None:
        message = "PostgreSQL's server binaries are not installed (apt-get install postgresql)"
        if required():
            pytest.fail(message + ", and GATEWAY_TEST_REQUIRE_POSTGRES=1")
        pytest.skip(message)
    server = PgServer(bindir).init()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh database on the private server."""
    return pg_server.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        from gateway.store.sqlite import SqliteStore

        made = SqliteStore(tmp_path / "calls.sqlite3")
    else:
        from gateway.store.postgres import PostgresStore

        made = PostgresStore(request.getfixturevalue("pg_url"))
    try:
        yield made
    finally:
        made.close()
