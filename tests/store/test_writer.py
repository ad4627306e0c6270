"""``RecordWriter``: finished calls into the store from its own thread; a store that is away
delays records, never loses them silently."""

from __future__ import annotations

import json
import logging

import pytest

from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from gateway.store.writer import RecordWriter
from tests.store.test_store import finished_call


def test_submitted_records_are_written_by_the_thread(tmp_path) -> None:
    writer = RecordWriter(SqliteStore(tmp_path / "calls.sqlite3"))
    writer.start()
    for n in range(3):
        writer.submit(finished_call(f"CA{n}"))
    assert writer.flushed(5.0)
    assert writer.written == 3 and writer.waiting == 0
    assert writer.store.get("CA2")["agent"] == "Ava"
    assert writer.close() == 0


def test_records_wait_while_postgresql_is_down_and_are_written_when_it_is_back(pg_server, pg_url, caplog) -> None:
    writer = RecordWriter(PostgresStore(pg_url, connect_timeout_s=1), retry_s=0.05, retry_max_s=0.2)
    writer.start()
    writer.submit(finished_call("CA1"))
    assert writer.flushed(5.0)
    pg_server.stop()
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.store"):
            writer.submit(finished_call("CA2"))
            writer.submit(finished_call("CA3"))
            assert not writer.flushed(1.0)  # retried, and retried, while the server is down
            assert writer.waiting == 2 and writer.away_since is not None
    finally:
        pg_server.start()
    assert writer.flushed(10.0)
    assert writer.waiting == 0 and writer.away_since is None
    assert sorted(c["call_sid"] for c in writer.store.history()) == ["CA1", "CA2", "CA3"]
    away = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(away) == 1, away  # one line for the outage, not one per retry
    assert "postgresql://" in away[0] and "@" not in away[0]  # where, never who or the password
    writer.close()


def test_what_the_store_never_took_is_logged_in_full_at_shutdown(pg_server, pg_url, caplog) -> None:
    writer = RecordWriter(PostgresStore(pg_url, connect_timeout_s=1), retry_s=0.05, retry_max_s=0.2)
    writer.start()
    pg_server.stop()
    try:
        writer.submit(finished_call("CA7", pin="2468"))
        with caplog.at_level(logging.ERROR, logger="gateway.store"):
            assert writer.close(timeout=0.5) == 1
    finally:
        pg_server.start()
    (line,) = [r for r in caplog.records if "call record not stored" in r.getMessage()]
    assert line.call_sid == "CA7"
    logged = json.loads(line.getMessage().split(": ", 1)[1])
    assert logged["call_sid"] == "CA7" and logged["transcript"] and "2468" not in line.getMessage()


def test_beyond_the_limit_the_oldest_waiting_record_goes_to_the_log(tmp_path, caplog) -> None:
    writer = RecordWriter(SqliteStore(tmp_path / "calls.sqlite3"), max_waiting=2)  # thread not started
    with caplog.at_level(logging.ERROR, logger="gateway.store"):
        for n in range(3):
            writer.submit(finished_call(f"CA{n}"))
    assert writer.waiting == 2 and writer.logged == 1
    assert [r.call_sid for r in caplog.records if "not stored" in r.getMessage()] == ["CA0"]
    writer.start()
    assert writer.flushed(5.0) and sorted(c["call_sid"] for c in writer.store.history()) == ["CA1", "CA2"]
    writer.close()


def test_a_record_the_store_cannot_take_is_logged_and_the_next_ones_go_on(tmp_path, caplog) -> None:
    writer = RecordWriter(SqliteStore(tmp_path / "calls.sqlite3"))
    bad = finished_call("CA1")
    bad.transcript.append({"type": "message", "text": object()})  # not JSON
    writer.start()
    with caplog.at_level(logging.ERROR, logger="gateway.store"):
        writer.submit(bad)
        writer.submit(finished_call("CA2"))
        assert writer.flushed(5.0)
    assert [c["call_sid"] for c in writer.store.history()] == ["CA2"]
    assert any(r.call_sid == "CA1" and "cannot be stored" in r.getMessage() for r in caplog.records)
    writer.close()


@pytest.mark.parametrize("redact", [True, False])
def test_the_writer_stores_digits_as_the_settings_say(tmp_path, redact: bool) -> None:
    writer = RecordWriter(SqliteStore(tmp_path / "calls.sqlite3"), redact=redact)
    writer.start()
    writer.submit(finished_call("CA1", pin="1357"))
    assert writer.flushed(5.0)
    stored = writer.store.get("CA1")
    assert ("The caller entered 1357" in json.dumps(stored)) is not redact
    assert [k["digit"] for k in stored["keypresses"] if k["collected"]] == (["*"] * 4 if redact else list("1357"))
    writer.close()
