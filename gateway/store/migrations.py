"""The store's schema, as versioned migrations, for SQLite and PostgreSQL.

Each migration is a version number and its SQL for each dialect. A store applies the ones its
database has not had, in order, each in one transaction with the version it reaches
(``schema_version``). Add a migration by appending to ``MIGRATIONS``; never edit one that has
shipped.

The common fields of a call are columns (to list and filter without parsing); the whole stored
call (``gateway.store.stored``) is one JSON document beside them, JSONB on PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIGRATIONS", "Migration", "latest"]


@dataclass(frozen=True)
class Migration:
    version: int
    what: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "calls: one row per finished call",
        sqlite=(
            """CREATE TABLE calls (
                call_sid TEXT PRIMARY KEY,
                stream_sid TEXT NOT NULL,
                from_number TEXT NOT NULL,
                to_number TEXT NOT NULL,
                direction TEXT NOT NULL,
                agent TEXT NOT NULL,
                started_at REAL NOT NULL,
                ended_at REAL,
                end_reason TEXT,
                recording TEXT,
                data TEXT NOT NULL
            )""",
            "CREATE INDEX calls_started_at ON calls (started_at)",
        ),
        postgresql=(
            """CREATE TABLE calls (
                call_sid TEXT PRIMARY KEY,
                stream_sid TEXT NOT NULL,
                from_number TEXT NOT NULL,
                to_number TEXT NOT NULL,
                direction TEXT NOT NULL,
                agent TEXT NOT NULL,
                started_at DOUBLE PRECISION NOT NULL,
                ended_at DOUBLE PRECISION,
                end_reason TEXT,
                recording TEXT,
                data JSONB NOT NULL
            )""",
            "CREATE INDEX calls_started_at ON calls (started_at)",
        ),
    ),
    Migration(
        2,
        "instances: the gateway instances sharing the store, and when each was last seen",
        sqlite=("CREATE TABLE instances (url TEXT PRIMARY KEY, seen_at REAL NOT NULL)",),
        postgresql=("CREATE TABLE instances (url TEXT PRIMARY KEY, seen_at DOUBLE PRECISION NOT NULL)",),
    ),
)


def latest() -> int:
    """The version the current code expects."""
    return MIGRATIONS[-1].version


def pending(version: int) -> list[Migration]:
    """The migrations a database at ``version`` has not had, in order."""
    return [m for m in MIGRATIONS if m.version > version]
