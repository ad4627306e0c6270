"""A call's recording on a real event loop: final audio written from threads into a WAV the
``wave`` module reads; its place under the data directory; failures logged, never raised."""

from __future__ import annotations

import asyncio
import logging
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

from gateway.audio import ulaw_to_pcm16
from gateway.bridge.actions import SendClear, SendMedia
from gateway.bridge.logs import CallLog
from gateway.recording import CallRecording, Chunk, WavSpool, recording_path, stored_recording

T0 = 50.0
SID = "CA" + "ab12" * 8
STARTED = 1_767_225_599.5  # 2025-12-31 23:59:59.5 UTC
LOG = CallLog(logging.getLogger("gateway.call"), {"call_sid": SID, "stream_sid": "MZ1"})


def read_wav(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, 8000, 2)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    return frames[0::2], frames[1::2]


def pcm(ulaw: bytes) -> np.ndarray:
    return np.frombuffer(ulaw_to_pcm16(ulaw), "<i2")


def test_the_path_is_the_utc_day_the_call_started_and_the_sid() -> None:
    assert str(recording_path(SID, STARTED)) == f"recordings/2025/12/31/{SID}.wav"
    # A SID is letters and digits: anything else cannot lead out of the folder.
    assert str(recording_path("../../etc/passwd", STARTED)) == "recordings/2025/12/31/______etc_passwd.wav"
    assert str(recording_path("", STARTED)) == "recordings/2025/12/31/call.wav"


def test_pieces_written_out_of_order_from_threads_make_one_wav(tmp_path: Path) -> None:
    spool = WavSpool(tmp_path / "x" / "call.wav", LOG)
    rng = np.random.default_rng(1)
    caller, agent = rng.integers(0, 256, 8000, np.uint8).tobytes(), rng.integers(0, 256, 8000, np.uint8).tobytes()
    chunks = [Chunk(i, caller[i : i + 1000], agent[i : i + 1000]) for i in range(0, 8000, 1000)]
    threads = [threading.Thread(target=spool.write, args=(c,)) for c in reversed(chunks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not (tmp_path / "x" / "call.wav").exists()  # a .part until complete
    assert spool.close() == tmp_path / "x" / "call.wav"
    assert not spool.part.exists()
    left, right = read_wav(tmp_path / "x" / "call.wav")
    assert np.array_equal(left, pcm(caller)) and np.array_equal(right, pcm(agent))


async def test_a_recording_goes_to_disk_as_the_call_goes_on_and_is_complete_at_the_end(tmp_path: Path) -> None:
    recording = CallRecording(tmp_path, SID, STARTED, T0, LOG, flush_every_s=1.0)
    loop_thread = threading.get_ident()
    writers: set[int] = set()
    write = recording.spool.write
    recording.spool.write = lambda chunk: (writers.add(threading.get_ident()), write(chunk))[1]
    speech = bytes(range(0, 160))
    for k in range(400):  # 8 s: the caller speaks; the agent says 1 s at 2 s, cut at 2.5 s
        now = T0 + 0.02 * (k + 1)
        recording.caller(20 * k, speech, now)
        if k == 99:
            for _ in range(50):
                recording.sent(SendMedia(b"\x20" * 160), now)
        if k == 124:
            recording.sent(SendClear(), now)
        await asyncio.sleep(0)
    for _ in range(300):  # the writer's thread looks every 0.5 s: wait for it, at most 3 s
        if recording.spool.frames >= 4 * 8000:
            break
        await asyncio.sleep(0.01)
    assert recording.spool.part.exists() and recording.spool.frames >= 4 * 8000  # written as it went
    assert writers and loop_thread not in writers  # from the writer's thread, never the event loop
    path = await recording.finish(T0 + 8.0)
    assert path == f"recordings/2025/12/31/{SID}.wav"
    left, right = read_wav(tmp_path / path)
    assert len(left) == 8 * 8000
    assert np.array_equal(left, np.tile(pcm(speech), 400))
    agent = np.flatnonzero(right)
    assert agent[0] == 2 * 8000 and agent[-1] == 2.5 * 8000 - 1  # from 2 s to the clear at 2.5 s
    assert sorted(p.name for p in (tmp_path / path).parent.iterdir()) == [f"{SID}.wav"]


async def test_a_second_stream_of_the_same_call_does_not_replace_the_first(tmp_path: Path) -> None:
    """A call can stream twice (TwiML that <Connect>s again after a <Redirect>); both at once,
    even: each writes its own .part and keeps its own recording."""
    first = CallRecording(tmp_path, SID, STARTED, T0, LOG)
    second = CallRecording(tmp_path, SID, STARTED, T0, LOG)
    for k in range(50):
        first.caller(20 * k, b"\x10" * 160, T0 + 0.02 * (k + 1))
        second.caller(20 * k, b"\x20" * 160, T0 + 0.02 * (k + 1))
    assert await first.finish(T0 + 1.0) == f"recordings/2025/12/31/{SID}.wav"
    assert await second.finish(T0 + 1.0) == f"recordings/2025/12/31/{SID}-2.wav"
    assert np.all(read_wav(tmp_path / f"recordings/2025/12/31/{SID}.wav")[0] == pcm(b"\x10")[0])
    assert np.all(read_wav(tmp_path / f"recordings/2025/12/31/{SID}-2.wav")[0] == pcm(b"\x20")[0])


async def test_a_recording_that_cannot_be_written_is_logged_with_the_call_and_nothing_is_raised(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "data"
    blocked.write_text("a file where the data folder should be")
    recording = CallRecording(blocked, SID, STARTED, T0, LOG, flush_every_s=0.5)
    for k in range(100):
        recording.caller(20 * k, b"\x10" * 160, T0 + 0.02 * (k + 1))
        recording.sent(SendMedia(b"\x20" * 160), T0 + 0.02 * (k + 1))
    with caplog.at_level(logging.ERROR, "gateway.call"):
        assert await recording.finish(T0 + 2.0) is None
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]  # once, not once a piece
    assert SID in errors[0].getMessage() and "could not be written" in errors[0].getMessage()
    assert errors[0].call_sid == SID


async def test_a_recorder_bug_costs_the_recording_not_the_call(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recording = CallRecording(tmp_path, SID, STARTED, T0, LOG, flush_every_s=0.5)
    recording.caller(0, b"\x10" * 160, T0 + 0.02)
    with caplog.at_level(logging.ERROR, "gateway.call"):
        recording.caller(20, None, T0 + 0.04)  # type: ignore[arg-type]  # what a bug would pass
        recording.caller(40, b"\x10" * 160, T0 + 0.06)  # nothing more is recorded, nothing raised
        assert await recording.finish(T0 + 1.0) is None
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        f"[call={SID} stream=MZ1] recording {recording.spool.path} given up: the recorder failed"]
    assert not list(tmp_path.rglob("*.wav*"))


def test_a_stored_recording_is_under_the_data_directory_and_nowhere_else(tmp_path) -> None:
    data = tmp_path / "data"
    (data / "recordings").mkdir(parents=True)
    assert stored_recording(data, "recordings/2026/11/30/CA1.wav") == data.resolve() / "recordings/2026/11/30/CA1.wav"
    (data / "recordings" / "out").symlink_to(tmp_path)
    for name in (None, 5, "", "/etc/passwd.wav", "../calls.wav", "recordings/../../x.wav", "recordings/out/x.wav",
                 "a\x00.wav", "recordings/CA1.mp3"):
        assert stored_recording(data, name) is None, name
