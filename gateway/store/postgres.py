"""The shared call store: PostgreSQL (``GATEWAY_DATABASE_URL``), with psycopg 3.

Several instances write to one database; the first to connect applies the migrations, under
a transaction-scoped advisory lock so two never run them at once. One connection per store,
used under a lock, opened again after the database went away (the next method reconnects).
"""

from __future__ import annotations

import threading
from typing import Any

from gateway.store.migrations import pending
from gateway.store.stored import summary

__all__ = ["PostgresStore"]

#: ``pg_advisory_xact_lock`` key for migrations (any constant the application owns).
_MIGRATION_LOCK = 0x67617465  # "gate"


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as e:  # pragma: no cover - depends on the installation
        from gateway.store import StoreError

        raise StoreError("GATEWAY_DATABASE_URL names PostgreSQL, but psycopg is not installed: "
                         "pip install 'twilio-realtime-gateway[postgres]'") from e
    return psycopg


class PostgresStore:
    kind = "postgresql"

    def __init__(self, url: str, connect_timeout_s: float = 5.0) -> None:
        self._url = url
        self.connect_timeout_s = connect_timeout_s
        self._psycopg = _psycopg()
        self._db: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r})"

    @property
    def where(self) -> str:
        """The database, for logs and messages: host, port and name, never the password."""
        info = self._psycopg.conninfo.conninfo_to_dict(self._url)
        return f"postgresql://{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"

    def _connect(self) -> Any:
        if self._db is not None and self._db.closed:
            self._db = None
        if self._db is None:
            db = self._psycopg.connect(self._url, autocommit=True, connect_timeout=max(1, round(self.connect_timeout_s)),
                                       application_name="twilio-realtime-gateway")
            try:
                self._migrate(db)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    @staticmethod
    def _migrate(db: Any) -> None:
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            db.execute("CREATE TABLE IF NOT EXISTS schema_version "
                       "(version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            (version,) = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
            for migration in pending(version):
                for statement in migration.postgresql:
                    db.execute(statement)
                db.execute("INSERT INTO schema_version (version) VALUES (%s)", (migration.version,))

    def _run(self, work: Any) -> Any:
        """``work(connection)`` under the lock; a broken connection is dropped (the next call
        connects again) and the error raised."""
        with self._lock:
            db = self._connect()
            try:
                return work(db)
            except self._psycopg.OperationalError:
                self._drop()
                raise

    def _drop(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except Exception:  # already broken
                pass
            self._db = None

    def save(self, call: dict[str, Any]) -> None:
        jsonb = self._psycopg.types.json.Jsonb
        row = (call["call_sid"], call["stream_sid"], call["from"], call["to"], call["direction"], call["agent"],
               call["started_at"], call["ended_at"], call["end_reason"], call["recording"], jsonb(call))
        self._run(lambda db: db.execute(
            "INSERT INTO calls (call_sid, stream_sid, from_number, to_number, direction, agent, started_at, "
            "ended_at, end_reason, recording, data) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (call_sid) DO UPDATE SET stream_sid = EXCLUDED.stream_sid, "
            "from_number = EXCLUDED.from_number, to_number = EXCLUDED.to_number, direction = EXCLUDED.direction, "
            "agent = EXCLUDED.agent, started_at = EXCLUDED.started_at, ended_at = EXCLUDED.ended_at, "
            "end_reason = EXCLUDED.end_reason, recording = EXCLUDED.recording, data = EXCLUDED.data", row))

    def get(self, call_sid: str) -> dict[str, Any] | None:
        row = self._run(lambda db: db.execute("SELECT data FROM calls WHERE call_sid = %s", (call_sid,)).fetchone())
        return row[0] if row else None

    def history(self, since: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._run(lambda db: db.execute(
            "SELECT data FROM calls WHERE started_at >= %s ORDER BY started_at DESC LIMIT %s",
            (since if since is not None else float("-inf"), limit)).fetchall())
        return [summary(data) for (data,) in rows]

    def schema_version(self) -> int:
        (version,) = self._run(lambda db: db.execute("SELECT MAX(version) FROM schema_version").fetchone())
        return int(version)

    def announce(self, url: str, now: float) -> None:
        self._run(lambda db: db.execute(
            "INSERT INTO instances (url, seen_at) VALUES (%s, %s) ON CONFLICT (url) DO UPDATE SET seen_at = EXCLUDED.seen_at",
            (url, now)))

    def instances(self, since: float) -> list[str]:
        rows = self._run(lambda db: db.execute(
            "SELECT url FROM instances WHERE seen_at >= %s ORDER BY url", (since,)).fetchall())
        return [url for (url,) in rows]

    def withdraw(self, url: str) -> None:
        self._run(lambda db: db.execute("DELETE FROM instances WHERE url = %s", (url,)))

    def close(self) -> None:
        with self._lock:
            self._drop()
