"""The store suite: every test runs on SQLite and on a real PostgreSQL (``store`` fixture)."""

from __future__ import annotations

import json
import threading

import pytest

from gateway.bridge.ending import EndReason
from gateway.bridge.events import (
    AgentChosen,
    BargeIn,
    CallEnded,
    CallStarted,
    DigitPressed,
    FirstAudio,
    ModelConnected,
    ToolCalled,
    ToolReturned,
)
from gateway.bridge.record import CallRecord
from gateway.store import open_store, stored_call
from gateway.store.migrations import latest
from gateway.settings import Settings


def finished_call(call_sid: str = "CA1", started_at: float = 1_800_000_000.0, pin: str = "4321") -> CallRecord:
    """A finished call's record, built from its events as the call builds it."""
    record = CallRecord(started_at=started_at)
    for event in (
        CallStarted(t=0.0, call_sid=call_sid, stream_sid="MZ" + call_sid[2:], from_="+15550001111",
                    to="+15550002222", direction="inbound"),
        AgentChosen(t=0.0, agent="Ava"),
        ModelConnected(t=0.2, seconds=0.2),
        FirstAudio(t=0.9, seconds=0.9),
        BargeIn(t=3.2, item_id="item_a", heard_ms=1840, clear_ms=1.2),
        DigitPressed(t=5.0, digit="1", collected=False),
        ToolCalled(t=6.0, tool="collect_digits", arguments='{"count": 4}'),
        *(DigitPressed(t=6.5 + i / 10, digit=d, collected=True) for i, d in enumerate(pin)),
        ToolReturned(t=7.0, tool="collect_digits", output=f"The caller entered {pin} (ended by count)."),
        ToolCalled(t=8.0, tool="lookup_order", arguments='{"order_number": "A1"}'),
        ToolReturned(t=8.1, tool="lookup_order", output="shipped"),
        CallEnded(t=12.5, reason=EndReason.CALLER_HUNG_UP),
    ):
        record.add(event)
    record.transcript.insert(0, {"item_id": "u1", "type": "message", "role": "user", "status": "completed",
                                 "text": "Where is my order? ünïcode ✓"})
    record.transcript.insert(1, {"item_id": "f1", "type": "function_call", "role": None, "status": "completed",
                                 "name": "collect_digits", "arguments": '{"count": 4}',
                                 "output": f"The caller entered {pin} (ended by count)."})
    record.frames_in, record.frames_out = 625, 400
    return record


def test_a_stored_call_comes_back_whole(store) -> None:
    call = stored_call(finished_call())
    store.save(call)
    assert store.get("CA1") == json.loads(json.dumps(call))  # everything, as JSON gives it back
    assert store.get("CA404") is None


def test_a_stored_call_has_what_an_operator_asks_for() -> None:
    call = stored_call(finished_call())
    assert (call["call_sid"], call["stream_sid"], call["from"], call["to"], call["direction"], call["agent"]) == (
        "CA1", "MZ1", "+15550001111", "+15550002222", "inbound", "Ava")
    assert call["started_at"] == 1_800_000_000.0 and call["ended_at"] == 1_800_000_012.5
    assert call["duration_s"] == 12.5 and call["end_reason"] == "caller_hung_up"
    assert call["figures"]["first_audio_s"] == 0.9 and call["figures"]["model_connect_s"] == 0.2
    assert call["figures"]["barge_ins"] == call["figures"]["truncations"] == 1
    assert call["barge_ins"] == [{"t": 3.2, "item_id": "item_a", "heard_ms": 1840, "clear_ms": 1.2}]
    assert [(c["tool"], c["output"]) for c in call["tool_calls"]] == [
        ("collect_digits", "The caller entered **** (ended by count)."), ("lookup_order", "shipped")]
    assert call["tool_calls"][1]["arguments"] == '{"order_number": "A1"}'
    assert [(k["digit"], k["collected"]) for k in call["keypresses"]] == [("1", False)] + [("*", True)] * 4
    assert [e["event"] for e in call["events"]][:2] == ["call_started", "agent_chosen"]


def test_collected_digits_are_redacted_everywhere_by_default() -> None:
    text = json.dumps(stored_call(finished_call(pin="9876")))
    assert "9876" not in text and "9 8 7 6" not in text
    assert '"digit": "*"' in text
    kept = stored_call(finished_call(pin="9876"), redact=False)
    assert [k["digit"] for k in kept["keypresses"] if k["collected"]] == list("9876")
    assert kept["transcript"][1]["output"] == "The caller entered 9876 (ended by count)."


def test_history_lists_the_newest_first_and_filters_by_start(store) -> None:
    for n in range(5):
        store.save(stored_call(finished_call(f"CA{n}", started_at=1_800_000_000.0 + 60 * n)))
    assert [c["call_sid"] for c in store.history()] == ["CA4", "CA3", "CA2", "CA1", "CA0"]
    assert [c["call_sid"] for c in store.history(since=1_800_000_120.0)] == ["CA4", "CA3", "CA2"]
    assert [c["call_sid"] for c in store.history(limit=2)] == ["CA4", "CA3"]
    (first,) = store.history(limit=1)
    assert "events" not in first and "transcript" not in first  # the list, not the whole calls
    assert first["end_reason"] == "caller_hung_up" and first["figures"]["barge_ins"] == 1


def test_saving_a_call_again_replaces_it(store) -> None:
    store.save(stored_call(finished_call()))
    call = stored_call(finished_call())
    call["recording"] = "recordings/2027/01/15/CA1.wav"
    store.save(call)
    assert store.get("CA1")["recording"] == "recordings/2027/01/15/CA1.wav"
    assert len(store.history()) == 1


def test_the_schema_is_at_the_latest_migration_and_opening_again_changes_nothing(store) -> None:
    assert store.schema_version() == latest()
    store.save(stored_call(finished_call()))
    store.close()  # the next method opens it again and finds the schema up to date
    assert store.schema_version() == latest() and store.get("CA1") is not None


def test_writes_from_many_threads_all_land(store) -> None:
    def write(n: int) -> None:
        for k in range(10):
            store.save(stored_call(finished_call(f"CA{n}x{k}")))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.history(limit=1000)) == 40


def test_with_no_settings_the_store_is_sqlite_under_the_data_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_mapping({"PUBLIC_URL": "https://gw.example.com", "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
                                      "TWILIO_AUTH_TOKEN": "t", "OPENAI_API_KEY": "sk-test"})
    store = open_store(settings)
    try:
        assert store.kind == "sqlite"
        store.save(stored_call(finished_call()))
        assert (tmp_path / "gateway-data" / "calls.sqlite3").is_file()
        assert store.get("CA1")["agent"] == "Ava"
    finally:
        store.close()


def test_a_database_url_names_postgresql_and_its_password_is_never_shown(pg_url: str) -> None:
    settings = Settings.from_mapping({"PUBLIC_URL": "https://gw.example.com", "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
                                      "TWILIO_AUTH_TOKEN": "t", "OPENAI_API_KEY": "sk-test",
                                      "GATEWAY_DATABASE_URL": "postgresql://gw:s3cret@db.example.com:5433/calls"})
    store = open_store(settings)
    assert store.kind == "postgresql" and "s3cret" not in repr(store) and "s3cret" not in repr(settings)
    assert store.where == "postgresql://db.example.com:5433/calls"


@pytest.mark.parametrize("url", ["mysql://x@y/z", "https://db.example.com/calls", "postgresql:"])
def test_a_database_url_that_is_not_postgresql_is_refused_at_start(url: str) -> None:
    from gateway.settings import SettingsError

    with pytest.raises(SettingsError, match="GATEWAY_DATABASE_URL: must be a postgresql://"):
        Settings.from_mapping({"PUBLIC_URL": "https://gw.example.com", "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
                               "TWILIO_AUTH_TOKEN": "t", "OPENAI_API_KEY": "sk-test", "GATEWAY_DATABASE_URL": url})


def test_a_new_migration_is_applied_once_to_a_database_that_has_the_older_ones(store, monkeypatch) -> None:
    """A database at the latest version with calls in it meets code with one more migration:
    opening the store applies it (only), the calls stay, and opening it again applies nothing."""
    from gateway.store import migrations

    store.save(stored_call(finished_call()))
    store.close()
    next_version = migrations.latest() + 1
    added = migrations.Migration(
        next_version, "calls: a column for a later feature",
        sqlite=("ALTER TABLE calls ADD COLUMN region TEXT",),
        postgresql=("ALTER TABLE calls ADD COLUMN region TEXT",),
    )
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, added))
    assert store.schema_version() == next_version  # applied on connecting
    assert store.get("CA1")["agent"] == "Ava"
    store.close()
    assert store.schema_version() == next_version  # ALTER TABLE again would have failed


def test_instances_announce_themselves_and_the_stale_ones_are_left_out(store) -> None:
    store.announce("http://10.0.0.5:8081", now=1000.0)
    store.announce("http://10.0.0.6:8081", now=1000.0)
    store.announce("http://10.0.0.5:8081", now=1060.0)  # seen again
    assert store.instances(since=1000.0) == ["http://10.0.0.5:8081", "http://10.0.0.6:8081"]
    assert store.instances(since=1030.0) == ["http://10.0.0.5:8081"]
    store.withdraw("http://10.0.0.5:8081")
    assert store.instances(since=0.0) == ["http://10.0.0.6:8081"]
