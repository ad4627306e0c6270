"""``gateway demo``: one whole offline call, its summary and its four artifacts."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from gateway.bridge.ending import EndReason
from gateway.demo import clips
from gateway.demo.run import ORDER_KEYS, run_demo

SPEED = 8.0  # the call's timing is not what these tests check


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    stream = io.StringIO()
    result = await run_demo(out, speed=SPEED, stream=stream)
    return result, stream.getvalue()


on_the_demo_loop = pytest.mark.asyncio(loop_scope="module")  # the loop the demo ran on


@on_the_demo_loop
async def test_the_call_runs_from_greeting_to_the_agent_hanging_up(demo) -> None:
    result, printed = demo
    call = result.call
    assert call.end_reason is EndReason.AGENT_HUNG_UP
    assert [u.name for u in call.tool_calls] == ["collect_digits", "lookup_order", "hang_up"]
    assert call.tool_calls[0].output == "The caller entered 4271 (ended by terminator)."
    assert call.tool_calls[1].arguments == {"order_number": "4271"}
    assert "shipped yesterday" in call.tool_calls[1].output
    assert [d for _, d in call.caller.keypresses] == list(ORDER_KEYS)
    assert len(call.caller.clears) == 1  # one barge-in, and no clear when nothing played
    said = [text for role, text in call.transcript if role == "user"]
    assert said == [clips.load(n).text for n in ("caller_order_late", "caller_barge_in", "caller_thanks")]
    # The live view told the story as it happened, then the summary and the artifacts.
    for expected in ("[1/8] the agent greets the caller", 'says "Sorry to interrupt.', "barge-in",
                     "caller presses 4 2 7 1 #", "lookup_order", "Summary", "timeline.png"):
        assert expected in printed
    assert "\x1b[" not in printed  # not a terminal: no colours, no status line


@on_the_demo_loop
async def test_the_summary_reports_the_figures_that_matter(demo) -> None:
    result, _ = demo
    text = "\n".join(result.summary)
    for figure in ("Time to first audio:", "Barge-in reaction:", "Truncation error:", "Audio frames lost:"):
        assert figure in text
    assert "caller to model 0 of" in text and "model to caller 0 " in text  # nothing lost


@on_the_demo_loop
async def test_call_wav_has_the_caller_left_and_the_agent_as_heard_right(demo) -> None:
    result, _ = demo
    call = result.call
    with wave.open(str(result.out / "call.wav")) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
    assert len(stereo) == pytest.approx(call.caller.closed_at * 8000, abs=2)
    left, right = stereo[:, 0].astype(float), stereo[:, 1].astype(float)

    def rms(x, a, b):
        return float(np.sqrt(np.mean(x[int(a * 8000): int(b * 8000)] ** 2)))

    first = call.caller.utterances[0]
    assert rms(left, first.start, first.end) > 1000  # the caller's words, where they said them
    assert rms(left, 0, first.start) == 0  # silence before
    assert rms(right, 0, first.start) > 500  # the greeting, before the caller spoke
    # The cut at the barge-in is audible: the agent's channel goes silent at the clear.
    clear = call.caller.clears[0]
    assert rms(right, clear - 0.5, clear) > 500
    # (call.wav places each piece of audio at the sample nearest its start, so the cut can land
    # one sample after int(clear * 8000): the silence is checked from 1 ms on.)
    assert rms(right, clear + 0.001, clear + 0.3) == 0


@on_the_demo_loop
async def test_transcript_and_events_are_complete_and_in_order(demo) -> None:
    result, _ = demo
    transcript = json.loads((result.out / "transcript.json").read_text())
    assert transcript["end_reason"] == EndReason.AGENT_HUNG_UP.value
    roles = [i["role"] for i in transcript["history"] if i["type"] == "message"]
    assert roles[:2] == ["assistant", "user"] and roles.count("user") == 3
    lines = (result.out / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    times = [e["t"] for e in events]
    assert times == sorted(times)
    session = {e["event"] for e in events if e["source"] == "session"}
    assert {"agent_start", "agent_end", "audio", "audio_end", "audio_interrupted", "tool_start",
            "tool_end", "history_added", "history_updated", "raw_model_event"} <= session
    twilio = [(e.get("dir"), e["event"]) for e in events if e["source"] == "twilio"]
    for expected in [("to_gateway", "start"), ("to_gateway", "media"), ("to_gateway", "dtmf"),
                     ("to_gateway", "mark"), ("from_gateway", "media"), ("from_gateway", "mark"),
                     ("from_gateway", "clear")]:
        assert expected in twilio
    media_in = sum(1 for d, e in twilio if (d, e) == ("to_gateway", "media"))
    assert media_in == result.call.caller.frames_sent


@on_the_demo_loop
async def test_timeline_png_is_a_picture_of_the_call(demo) -> None:
    result, _ = demo
    png = (result.out / "timeline.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width == 1600 and 300 < height < 1200


def test_gateway_demo_runs_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "call"
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--out", str(out), "--speed", "16"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "Summary" in done.stdout and "Barge-in reaction:" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "call.wav", "events.jsonl", "gateway.log", "timeline.png", "transcript.json"]
    assert "call ended: agent hung up" in (out / "gateway.log").read_text()


async def test_real_mode_sends_the_key_and_judges_turns_from_the_gateway_alone(tmp_path: Path) -> None:
    """``--real`` without the network: the same path (no local server in the phone system, the
    API key sent, turns judged from the gateway's side only) against a key-checking server."""
    from gateway.demo.agent import demo_script, on_turn
    from gateway.testing.realtime import RealtimeServer

    async with RealtimeServer(demo_script(), on_turn=on_turn, api_key="sk-demo-test") as model:
        result = await run_demo(tmp_path, real=True, speed=SPEED, stream=io.StringIO(),
                                api_key="sk-demo-test", realtime_url=model.url)
        [conn] = model.connections
    headers = {k.lower(): v for k, v in conn.headers.items()}
    assert headers["authorization"] == "Bearer sk-demo-test"  # (the server refuses without it)
    assert result.call.model is None and result.phone.realtime is None
    assert result.call.end_reason is EndReason.AGENT_HUNG_UP
    assert [u.name for u in result.call.tool_calls] == ["collect_digits", "lookup_order", "hang_up"]
    assert "Truncation error:" in "\n".join(result.summary)
    assert (tmp_path / "timeline.png").read_bytes()[:4] == b"\x89PNG"
