"""``gateway calls``: the calls in progress on a running gateway, and the stored calls
(``history``, ``show``, ``timeline``) read from the store a gateway wrote, with the settings an
operator has (the environment or ``.env``: GATEWAY_DATA_DIR, no Twilio or OpenAI credentials)."""

from __future__ import annotations

import asyncio
import datetime
import json
import struct
from pathlib import Path

import pytest
from agents import function_tool
from agents.realtime import RealtimeAgent

from gateway import cli
from gateway.store.sqlite import SqliteStore
from gateway.testing.phone import PhoneSystem
from gateway.testing.realtime import Reply, ToolCall
from gateway.tools import collect_digits, hang_up


@function_tool
def lookup_order(order_number: str) -> str:
    """Look up an order's status."""
    return f"Order {order_number}: shipped."


AGENT = RealtimeAgent(name="Ava", instructions="Help with orders.", tools=[collect_digits, lookup_order, hang_up])
SCRIPT = [
    Reply("Hello, Acme."),
    (Reply("Type your order number, then pound."), ToolCall("collect_digits", {"count": None, "terminator": "#"})),
    ToolCall("lookup_order", {"order_number": "42"}),
    Reply("Order 42 shipped."),
    (Reply("Goodbye!"), ToolCall("hang_up")),
]


async def run_cli(*argv: str) -> int:
    """``gateway ...`` in a thread: its requests to the gateway need this event loop free."""
    return await asyncio.to_thread(cli.main, list(argv))


@pytest.fixture
def operator(tmp_path, monkeypatch) -> Path:
    """An operator's shell: in a folder of its own (no .env), GATEWAY_DATA_DIR set, and none of
    the credentials a running gateway needs."""
    for name in ("PUBLIC_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "OPENAI_API_KEY", "OPENAI_REALTIME_URL",
                 "GATEWAY_DATABASE_URL", "GATEWAY_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    data = tmp_path / "data"
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(data))
    monkeypatch.chdir(tmp_path)
    return data


async def _two_calls(data: Path, capsys) -> list[dict]:
    """Two real calls through a gateway keeping its records and recordings in ``data``: one
    about an order (keys, tools, the agent hangs up), one the caller hangs up on. While the first is in
    progress, ``gateway calls`` and ``gateway calls live`` list it."""
    async with PhoneSystem(AGENT, SCRIPT, settings={"GATEWAY_DATA_DIR": str(data), "GATEWAY_RECORD": "true"}) as phone:
        call = await phone.call()
        await call.listen()
        with pytest.MonkeyPatch.context() as env:
            env.setenv("GATEWAY_API_KEY", phone.api_key)
            assert await run_cli("calls", "--url", phone.url) == 0
            assert await run_cli("calls", "live", "--url", phone.url) == 0
        listed = capsys.readouterr().out.splitlines()
        assert len([line for line in listed if line.startswith(call.call_sid)]) == 2
        await call.say("Where is my order?")
        await call.listen()
        await call.press("42#")
        await call.listen()
        await call.say("Thanks.")
        await call.listen()
        first = await call.ended()
        second_call = await phone.call()
        await second_call.listen()
        second = await second_call.hang_up()
    store = SqliteStore(data / "calls.sqlite3")
    try:
        stored = [store.get(record.call_sid) for record in (first, second)]
    finally:
        store.close()
    assert all(stored), "the gateway wrote its finished calls to the store"
    return stored


async def test_history_show_and_timeline_read_what_the_gateway_stored(operator: Path, capsys, tmp_path) -> None:
    first, second = await _two_calls(operator, capsys)

    # history: newest first, one line each, with how each call ended.
    assert await run_cli("calls", "history") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["STARTED", "(UTC)", "CALL", "SID"]
    assert [line.split()[2] for line in lines[1:]] == [second["call_sid"], first["call_sid"]]
    assert lines[1].split()[-2:] == ["yes", "caller_hung_up"] and lines[2].split()[-2:] == ["yes", "agent_hung_up"]

    # --json: the summaries, as the store gives them; --since and --limit filter.
    assert await run_cli("calls", "history", "--json") == 0
    summaries = json.loads(capsys.readouterr().out)
    assert [s["call_sid"] for s in summaries] == [second["call_sid"], first["call_sid"]]
    assert summaries[1]["figures"] == first["figures"] and "events" not in summaries[1]
    between = (first["started_at"] + second["started_at"]) / 2
    since = datetime.datetime.fromtimestamp(between, datetime.timezone.utc).isoformat()
    assert await run_cli("calls", "history", "--json", "--since", since) == 0
    assert [s["call_sid"] for s in json.loads(capsys.readouterr().out)] == [second["call_sid"]]
    assert await run_cli("calls", "history", "--json", "--since", "1h", "--limit", "1") == 0
    assert [s["call_sid"] for s in json.loads(capsys.readouterr().out)] == [second["call_sid"]]
    tomorrow = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)).date().isoformat()
    assert await run_cli("calls", "history", "--since", tomorrow) == 0
    assert capsys.readouterr().out == "no stored calls since then\n"

    # show: the figures, who said what, the tools, the keys (collected: stored as *), the events.
    assert await run_cli("calls", "show", first["call_sid"]) == 0
    shown = capsys.readouterr().out
    assert f"call {first['call_sid']} (inbound): +15550001111 -> +15550002222, agent Ava" in shown
    assert "ended: agent_hung_up" in shown and f"recording: {operator.resolve() / first['recording']}\n" in shown
    assert f"  barge_ins            {first['figures']['barge_ins']}" in shown
    transcript = shown.split("transcript:\n")[1].split("\n\n")[0].splitlines()
    assert transcript[:2] == ["  agent   Hello, Acme.", "  caller  Where is my order?"]
    assert "  agent   Order 42 shipped." in transcript and "  caller  Thanks." in transcript
    assert any(line.startswith("  tool    lookup_order(") and line.endswith("-> Order 42: shipped.")
               for line in transcript)
    keys = shown.split("keypresses:\n")[1].split("\n\n")[0].splitlines()
    assert [line.split()[1:] for line in keys] == [["*", "(collected)"]] * 3
    assert "tool_start         tool=collect_digits" in shown and "call_ended" in shown
    assert await run_cli("calls", "show", first["call_sid"], "--json") == 0
    assert json.loads(capsys.readouterr().out) == first

    # timeline: a PNG of the call, from its recording; without one (retention deleted it),
    # from its events.
    assert await run_cli("calls", "timeline", first["call_sid"], "--out", "call.png") == 0
    assert capsys.readouterr().out == f"wrote call.png: call {first['call_sid']}, drawn from its recording\n"
    png = (tmp_path / "call.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24])[0] == 1600
    (operator / second["recording"]).unlink()
    assert await run_cli("calls", "timeline", second["call_sid"], "--width", "800") == 0
    out, err = capsys.readouterr()
    assert out == f"wrote {second['call_sid']}.png: call {second['call_sid']}, drawn from its events\n"
    assert err.startswith(f"gateway: the recording {operator.resolve() / second['recording']} is gone")
    assert struct.unpack(">II", (tmp_path / f"{second['call_sid']}.png").read_bytes()[16:24])[0] == 800

    # An unknown call: exit 1, saying so.
    for command in ("show", "timeline"):
        assert await run_cli("calls", command, "CA" + "0" * 32) == 1
        assert capsys.readouterr().err == f"gateway: no call CA{'0' * 32} in the call store ({operator / 'calls.sqlite3'})\n"


async def test_the_store_is_found_through_the_env_file_too(operator: Path, monkeypatch, capsys, tmp_path) -> None:
    store = SqliteStore(operator / "calls.sqlite3")
    store.save({"call_sid": "CA1", "stream_sid": "MZ1", "from": "+1", "to": "+2", "direction": "inbound",
                "agent": "Ava", "started_at": 1.0, "ended_at": 2.0, "duration_s": 1.0, "end_reason": "caller_hung_up",
                "figures": {}, "barge_ins": [], "tool_calls": [], "keypresses": [], "events": [], "transcript": [],
                "recording": None})
    store.close()
    monkeypatch.delenv("GATEWAY_DATA_DIR")
    (tmp_path / "gateway.env").write_text(f"GATEWAY_DATA_DIR={operator}\n")
    assert await run_cli("calls", "history", "--json", "--env-file", "gateway.env") == 0
    assert [s["call_sid"] for s in json.loads(capsys.readouterr().out)] == ["CA1"]


def test_a_stored_call_with_nonsense_in_it_is_still_listed_shown_and_drawn(operator: Path, capsys) -> None:
    """Whoever can write to the store may have put anything in a call: the commands show it."""
    store = SqliteStore(operator / "calls.sqlite3")
    store.save({"call_sid": "CA2", "stream_sid": "MZ2", "from": "+1", "to": "5", "direction": "?", "agent": "",
                "started_at": 1e300, "ended_at": None, "duration_s": "long", "end_reason": None,
                "figures": "x", "barge_ins": [None], "tool_calls": "x", "keypresses": [{"t": "?", "digit": 5}],
                "events": [{"t": None, "event": 3}, "junk", {"t": 1e30, "event": "error"}],
                "transcript": [{"type": "message", "role": "user", "text": None}, 7], "recording": "../x.wav"})
    store.close()
    assert cli.main(["calls", "history"]) == 0
    [_, row] = capsys.readouterr().out.splitlines()
    assert row.split() == ["-", "CA2", "?", "+1", "5", "-", "-", "0", "yes", "(in", "progress)"]
    assert cli.main(["calls", "show", "CA2"]) == 0
    shown = capsys.readouterr().out
    assert "recording: '../x.wav', outside the data directory: not read" in shown
    assert "  caller  (no transcript)" in shown and "         ?   5" in shown
    assert cli.main(["calls", "timeline", "CA2", "--out", "x.png"]) == 0
    assert (operator.parent / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_store_yet_says_where_it_looked(operator: Path, capsys) -> None:
    for argv in (["history"], ["show", "CA1"], ["timeline", "CA1"]):
        assert cli.main(["calls", *argv]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"gateway: no call store at {operator.resolve() / 'calls.sqlite3'} ")
    assert not operator.exists()  # looking created nothing


def test_bad_store_settings_and_arguments_are_refused_clearly(operator: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("GATEWAY_DATABASE_URL", "mysql://db.example.com/calls")
    assert cli.main(["calls", "history"]) == 1
    assert "GATEWAY_DATABASE_URL: must be a postgresql://" in capsys.readouterr().err
    for bad in (["history", "--since", "yesterday"], ["history", "--limit", "0"], ["timeline", "CA1", "--width", "x"]):
        with pytest.raises(SystemExit) as exit:
            cli.main(["calls", *bad])
        assert exit.value.code == 2
    assert "expected a time ago (30m, 1h, 2d, 1w), a date (2026-11-30) or an ISO 8601 time" in capsys.readouterr().err


def test_since_reads_times_ago_dates_and_iso_times() -> None:
    import time

    assert abs(cli._since("90m") - (time.time() - 5400)) < 5
    assert abs(cli._since("2d") - (time.time() - 2 * 86400)) < 5
    assert cli._since("2026-11-30") == datetime.datetime(2026, 11, 30, tzinfo=datetime.timezone.utc).timestamp()
    assert cli._since("2026-11-30T14:00:00+01:00") == datetime.datetime(
        2026, 11, 30, 13, tzinfo=datetime.timezone.utc).timestamp()


async def test_calls_hangup_ends_a_call_in_progress(tmp_path, capsys) -> None:
    script = [Reply("Let me read you the whole catalogue.", duration_ms=8000)]
    async with PhoneSystem(AGENT, script, settings={"GATEWAY_DATA_DIR": str(tmp_path)}) as phone:
        call = await phone.call()
        await call.caller.wait_heard(200)  # the agent is talking
        with pytest.MonkeyPatch.context() as env:
            env.setenv("GATEWAY_API_KEY", phone.api_key)
            status = await run_cli("calls", "hangup", call.call_sid, "--url", phone.url)
            record = await call.ended()
            again = await run_cli("calls", "hangup", call.call_sid, "--url", phone.url)
    out, err = capsys.readouterr()
    assert status == 0 and f"call {call.call_sid} is ending" in out
    assert any(e["event"] == "hang_up" and e["reason"] == "operator" for e in record.events)
    assert again == 1 and "404" in err
