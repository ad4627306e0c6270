"""Call records that last, behind one small interface (``CallStore``).

- SQLite (``gateway.store.sqlite``) is the default: no set-up, one file,
  ``GATEWAY_DATA_DIR/calls.sqlite3``.
- PostgreSQL (``gateway.store.postgres``) when ``GATEWAY_DATABASE_URL`` names one: what several
  instances share. Needs the ``postgres`` extra (``pip install 'twilio-realtime-gateway[postgres]'``).

A store's methods block (they do I/O): the gateway calls them from threads, never on the event
loop. Finished calls reach the store through ``RecordWriter`` (``gateway.store.writer``), which
queues them and writes from a thread of its own, retrying while the database is away.

Schema changes are versioned migrations (``gateway.store.migrations``), applied when a store
opens; each instance may open it, the first one migrates.
"""

from __future__ import annotations

from typing import Any, Protocol

from gateway.settings import Settings
from gateway.store.stored import stored_call, summary

__all__ = ["CallStore", "StoreError", "open_store", "stored_call", "summary"]


class StoreError(RuntimeError):
    """The store cannot be opened as configured (a missing driver, a bad URL)."""


class CallStore(Protocol):
    """Where finished calls are kept. Each method blocks; call them from a thread.

    Every method may raise the driver's connection errors while the database is away; the next
    call tries to connect again."""

    #: ``"sqlite"`` or ``"postgresql"``.
    kind: str

    def save(self, call: dict[str, Any]) -> None:
        """Store a call (the form of ``stored_call``), replacing one with the same call SID."""

    def get(self, call_sid: str) -> dict[str, Any] | None:
        """The stored call, in full, or None."""

    def history(self, since: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The calls that started at or after ``since`` (Unix seconds), newest first, at most
        ``limit``, each as ``summary`` gives it."""

    def schema_version(self) -> int:
        """The migration the database is at."""

    def announce(self, url: str, now: float) -> None:
        """The instance at ``url`` (``GATEWAY_INSTANCE_URL``) is alive at ``now``."""

    def instances(self, since: float) -> list[str]:
        """The instances seen at or after ``since``."""

    def withdraw(self, url: str) -> None:
        """The instance at ``url`` is gone (it shut down)."""

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""


def open_store(settings: Settings) -> CallStore:
    """The store the settings name: PostgreSQL if ``GATEWAY_DATABASE_URL``, else SQLite under
    ``GATEWAY_DATA_DIR``. Nothing connects yet: the first method does."""
    if settings.database_url:
        from gateway.store.postgres import PostgresStore

        return PostgresStore(settings.database_url)
    from gateway.store.sqlite import SqliteStore

    return SqliteStore(settings.data_dir / "calls.sqlite3")
