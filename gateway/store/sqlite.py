"""The embedded call store: one SQLite file (``GATEWAY_DATA_DIR/calls.sqlite3``), no set-up.

WAL journal mode, so the console and ``gateway calls`` read while the gateway writes. One
connection per store, used under a lock (the writer's thread and the readers' threads share it).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from gateway.store.migrations import pending
from gateway.store.stored import summary

__all__ = ["SqliteStore"]


class SqliteStore:
    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    @property
    def where(self) -> str:
        """Where the records are, for logs and messages."""
        return str(self.path)

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                self._migrate(db)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")  # one migrating process at a time
        try:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at REAL NOT NULL)")
            (version,) = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
            for migration in pending(version):
                for statement in migration.sqlite:
                    db.execute(statement)
                db.execute("INSERT INTO schema_version VALUES (?, strftime('%s','now'))", (migration.version,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def save(self, call: dict[str, Any]) -> None:
        row = (call["call_sid"], call["stream_sid"], call["from"], call["to"], call["direction"], call["agent"],
               call["started_at"], call["ended_at"], call["end_reason"], call["recording"],
               json.dumps(call, ensure_ascii=False, separators=(",", ":")))
        with self._lock:
            self._connect().execute(
                "INSERT OR REPLACE INTO calls (call_sid, stream_sid, from_number, to_number, direction, agent, "
                "started_at, ended_at, end_reason, recording, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    def get(self, call_sid: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._connect().execute("SELECT data FROM calls WHERE call_sid = ?", (call_sid,)).fetchone()
        return json.loads(row[0]) if row else None

    def history(self, since: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._connect().execute(
                "SELECT data FROM calls WHERE started_at >= ? ORDER BY started_at DESC LIMIT ?",
                (since if since is not None else float("-inf"), limit)).fetchall()
        return [summary(json.loads(data)) for (data,) in rows]

    def schema_version(self) -> int:
        with self._lock:
            (version,) = self._connect().execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(version)

    def announce(self, url: str, now: float) -> None:
        with self._lock:
            self._connect().execute("INSERT OR REPLACE INTO instances (url, seen_at) VALUES (?, ?)", (url, now))

    def instances(self, since: float) -> list[str]:
        with self._lock:
            rows = self._connect().execute("SELECT url FROM instances WHERE seen_at >= ? ORDER BY url", (since,)).fetchall()
        return [url for (url,) in rows]

    def withdraw(self, url: str) -> None:
        with self._lock:
            self._connect().execute("DELETE FROM instances WHERE url = ?", (url,))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
