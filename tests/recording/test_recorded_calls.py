"""Recorded phone calls end to end (GATEWAY_RECORD=true): the caller simulator rings a real
uvicorn gateway, which talks to the local Realtime server through the real Agents SDK; then
the WAV is read back and held against what the caller said and what the caller heard.

Real time (speed 1): the recording is timed by the gateway's clock, the caller's record by the
caller's, and both must tell the same story."""

from __future__ import annotations

import datetime
import wave
from pathlib import Path

import numpy as np
from agents.realtime import RealtimeAgent

from gateway.audio import ulaw_to_pcm16
from gateway.testing.caller.playout import timeline
from gateway.testing.realtime import Reply, ToolCall
from gateway.tools import collect_digits
from tests.callflow.conftest import finished, gateway_of, place_call, start_gateway, ulaw_tone  # noqa: F401

RATE = 8000
FRAME = 160  # samples in 20 ms
SLACK = 2 * FRAME  # "to within a frame or two": two clocks, two ends of a loopback socket


def read_recording(data_dir: Path, record) -> tuple[np.ndarray, np.ndarray]:
    day = datetime.datetime.fromtimestamp(record.started_at, datetime.timezone.utc)
    assert record.recording == f"recordings/{day:%Y/%m/%d}/{record.call_sid}.wav"
    with wave.open(str(data_dir / record.recording), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, RATE, 2)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    return frames[0::2], frames[1::2]


def pcm(ulaw: bytes) -> np.ndarray:
    return np.frombuffer(ulaw_to_pcm16(ulaw), "<i2")


def said(caller, samples: int) -> np.ndarray:
    """What the caller said, at its place on the caller's clock (Twilio's media timestamps)."""
    spoken = [u for u in caller.utterances if u.start is not None]  # each has .start and .audio
    return pcm(timeline(spoken, until=samples / RATE))


def find(haystack: np.ndarray, needle: np.ndarray, near: int) -> int:
    """Where ``needle`` (a frame or more) starts in ``haystack``, within SLACK of ``near``."""
    for at in sorted(range(max(0, near - SLACK), near + SLACK + 1), key=lambda a: abs(a - near)):
        if np.array_equal(haystack[at : at + len(needle)], needle):
            return at
    raise AssertionError(f"not found within {SLACK} samples of {near}")


def assert_right_is_what_was_heard(right: np.ndarray, caller) -> list[tuple[int, int]]:
    """Each run the caller heard is in the right channel, where it was heard (within a frame
    or two), and to its end (within a frame or two: where a clear cut it); silence elsewhere.
    Returns the runs' (start, end) in the recording."""
    runs, expected = [], np.zeros_like(right)
    for segment in caller.heard_segments():
        heard = pcm(segment.audio)
        at = find(right, heard[:FRAME], round(segment.start * RATE))
        kept = right[at : at + len(heard)]
        same = int(np.argmin(kept == heard[: len(kept)])) if not np.array_equal(kept, heard[: len(kept)]) else len(kept)
        # Identical up to where one of the two was cut: that instant differs by the clocks only.
        assert abs(len(heard) - same) <= SLACK, (len(heard), same)
        expected[at : at + same] = heard[:same]
        runs.append((at, at + same))
    outside = np.ones(len(right), bool)
    for start, end in runs:
        outside[start : end + SLACK] = False
    assert not np.any(right[outside]), "the right channel holds nothing the caller did not hear"
    return runs


async def test_a_barge_in_call_is_recorded_as_the_caller_lived_it(start_gateway, tmp_path: Path) -> None:
    """The agent starts a 4 s answer; after 1 s the caller talks over it; the agent answers again."""
    script = [Reply("a long answer", duration_ms=4000, tone_hz=440), Reply("yes?", duration_ms=1200, tone_hz=880)]
    told: list[tuple[str | None, bool]] = []

    def on_call_end(record) -> None:  # the recording is complete before anyone hears of the call's end
        told.append((record.recording, record.recording is not None and (tmp_path / record.recording).is_file()))

    async with start_gateway(script, on_call_end=on_call_end, GATEWAY_RECORD="true",
                             GATEWAY_DATA_DIR=str(tmp_path)) as (gateway, realtime):
        caller = await place_call(gateway, speed=1)
        await caller.wait_heard(1000, timeout=10)
        caller.say(ulaw_tone(1000, 0.6, 12000))  # "wait, wait"
        clear = await caller.wait_for_message("clear", timeout=5)
        await caller.wait_heard(caller.heard_ms + 1200, timeout=10)  # the second answer
        caller.pause(300)
        caller.say(ulaw_tone(600, 0.3, 8000))  # "thanks"
        await caller.wait_said(timeout=10)
        await caller.hang_up()
        record = await finished(gateway)
    left, right = read_recording(tmp_path, record)
    assert told == [(record.recording, True)]
    assert not list(tmp_path.rglob("*.part"))

    # Left: the caller, exactly as sent, where Twilio's timestamps put it.
    n = min(len(left), caller.frames_sent * FRAME)
    assert len(left) >= caller.frames_sent * FRAME - 2 * FRAME  # the whole call
    assert np.array_equal(left[:n], said(caller, n)), "the caller's channel is what the caller said"
    assert np.count_nonzero(left) > 0.5 * RATE  # 0.9 s of tones in it (sampled zero crossings aside)

    # Right: what the caller heard, where it was heard: the first answer cut at the clear.
    first, second = assert_right_is_what_was_heard(right, caller)
    assert abs(first[1] - round(clear.time * RATE)) <= SLACK, "cut where the clear reached the caller"
    assert 1.0 * RATE <= first[1] - first[0] < 4.0 * RATE
    assert abs(second[1] - second[0] - 1.2 * RATE) <= SLACK
    assert caller.invalid_count == 0 and caller.errors == []


async def test_the_recording_is_silent_while_a_pin_is_collected(start_gateway, tmp_path: Path) -> None:
    agent = RealtimeAgent(name="Bank", instructions="Ask for the PIN.", tools=[collect_digits])
    script = [
        Reply("Hello.", duration_ms=300, tone_hz=440),
        # The prompt and the tool call in one response: the SDK runs the tool once the prompt's
        # audio is sent, so keys are collected while the prompt still plays.
        (Reply("Please key in your PIN.", duration_ms=1500, tone_hz=550),
         ToolCall("collect_digits", {"count": 4, "timeout_s": 10})),
        Reply("Thank you.", duration_ms=600, tone_hz=660),
    ]
    async with start_gateway(script, agent=agent, GATEWAY_RECORD="true", GATEWAY_DATA_DIR=str(tmp_path),
                             GATEWAY_AUDIO_MODE="g711_ulaw") as (gateway, realtime):
        caller = await place_call(gateway, speed=1)
        await caller.wait_heard(300, timeout=10)
        asked = caller.say(ulaw_tone(1000, 0.4))  # "I'd like my balance"
        (call,) = gateway_of(gateway).calls.values()
        await caller.wait_until(lambda: call.control.collecting, timeout=10)
        # The keypad's tones in the caller's audio (quiet: under the local model's VAD, so that
        # they do not talk over the prompt: what is checked is only that none of it is kept).
        keys = caller.say(ulaw_tone(941, 0.8, 150))
        await caller.wait_said(timeout=10)
        for digit in "1234":
            await caller.press(digit)
        conn = realtime.connections[0]
        await conn.wait_until(lambda: conn.function_call_outputs, timeout=10)
        await caller.wait_heard(300 + 1500 + 600, timeout=10)  # hello, the prompt, thank you
        await caller.wait_agent_silent(quiet_ms=300, timeout=10)
        after = caller.say(ulaw_tone(700, 0.4))  # "thanks"
        await caller.wait_said(timeout=10)
        await caller.hang_up()
        record = await finished(gateway)
    left, right = read_recording(tmp_path, record)
    assert conn.function_call_outputs[0].output.startswith("The caller entered 1234")

    # Left: the caller's words are there; the keypad's tones are not.
    def stretch(u) -> slice:
        return slice(round(u.start * RATE), round(u.end * RATE))

    assert np.array_equal(left[stretch(asked)], pcm(asked.audio))
    assert np.count_nonzero(pcm(keys.audio)) > 0.5 * len(keys.audio)
    assert not np.any(left[stretch(keys)]), "nothing of the keys' tones is kept"
    assert np.array_equal(left[stretch(after)], pcm(after.audio))

    # Right: the agent as heard, all of it: the prompt plays on while the keys are collected.
    assert_right_is_what_was_heard(right, caller)


async def test_without_gateway_record_nothing_is_recorded(start_gateway, tmp_path: Path) -> None:
    async with start_gateway([Reply("Hello.", duration_ms=300)], GATEWAY_DATA_DIR=str(tmp_path)) as (gateway, _):
        caller = await place_call(gateway, speed=4)
        await caller.wait_heard(300, timeout=10)
        await caller.hang_up()
        record = await finished(gateway)
    assert record.recording is None
    assert not (tmp_path / "recordings").exists()
