"""Recording benchmark: what ``GATEWAY_RECORD`` costs per 20 ms frame, beside a plain loop.

On the event loop, per frame, the recorder does what the runner asks of it on a recorded call
(``gateway.recording.CallRecording``): a caller frame placed by its timestamp (``caller``, the
hook ``Call.on_caller_audio`` calls), an agent frame placed as Twilio plays it (``sent``), and
every 5 s the final audio taken for the writer thread (``take``). (A keypad collection's start
and end, ``Call.on_collecting``, are two calls a collection, not per frame.) The baselines, in the same run: the same loop with no
work (the loop's own cost), and with one ``bytearray`` append per frame (the least any recorder
can do). Off the loop, in the writer thread: decoding, interleaving and writing 5 s of both
channels, per frame.

    python bench/recording.py               # 10 simulated minutes of a call, best of 5
    python bench/recording.py --minutes 60

Timings are the best of several repeats on this machine: for the loop figures, the CPU time
of the loop's thread; for the writer, wall time (the page-cache write included).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.bridge.actions import SendMedia  # noqa: E402
from gateway.recording import CallRecording, Recorder, WavSpool  # noqa: E402

FRAME = b"\x55" * 160
MEDIA = SendMedia(FRAME)
T0 = 1000.0
FLUSH_EVERY = 250  # frames: 5 s


class _Log:
    """A benchmark that logs has failed: say so loudly."""

    def error(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError(args)

    warning = exception = error

    def info(self, *args: object, **kwargs: object) -> None:
        pass


def plain_loop(frames: int) -> None:
    for k in range(frames):
        now = T0 + 0.02 * (k + 1)
        _ = (20 * k, FRAME, now)


def bytearray_append(frames: int) -> None:
    caller, agent = bytearray(), bytearray()
    for k in range(frames):
        now = T0 + 0.02 * (k + 1)
        caller += FRAME
        agent += FRAME
        if k % FLUSH_EVERY == 0:
            del caller[:], agent[:]


def recorder(frames: int) -> None:
    """Both directions of a call, as the call and the runner drive its ``CallRecording`` (on a
    running event loop: every 5 s the final audio goes to a writer thread, not timed here)."""

    async def call() -> None:
        with tempfile.TemporaryDirectory() as data_dir:
            recording = CallRecording(Path(data_dir), "CAbench", time.time(), T0, _Log())  # type: ignore[arg-type]
            caller, sent = recording.caller, recording.sent
            began = time.thread_time()
            for k in range(frames):
                now = T0 + 0.02 * (k + 1)
                caller(20 * k, FRAME, now)  # Call.on_caller_audio
                sent(MEDIA, now)  # the agent's frame, as the runner sends it
            _timed.append(time.thread_time() - began)
            await recording.finish(T0 + 0.02 * frames)

    asyncio.run(call())


_timed: list[float] = []


def best(work: Callable[[int], None], frames: int, repeats: int) -> float:
    """Best time per frame, in microseconds (CPU time of this thread only: the writer threads'
    work is measured apart, by ``writer_thread``)."""
    times = []
    for _ in range(repeats):
        _timed.clear()
        began = time.thread_time()
        work(frames)
        times.append(_timed[0] if _timed else time.thread_time() - began)
    return min(times) / frames * 1e6


def writer_thread(frames: int, repeats: int) -> float:
    """The writer thread's work per frame: 5 s chunks decoded, interleaved, written."""
    rec = Recorder(T0)
    chunks = []
    for k in range(frames):
        now = T0 + 0.02 * (k + 1)
        rec.caller(20 * k, FRAME, now)
        rec.agent(FRAME, now)
        if k % FLUSH_EVERY == 0:
            chunk = rec.take(now)
            if chunk is not None:
                chunks.append(chunk)
    times = []
    with tempfile.TemporaryDirectory() as out:
        for i in range(repeats):
            spool = WavSpool(Path(out) / f"call{i}.wav", _Log())  # type: ignore[arg-type]
            began = time.perf_counter()
            for chunk in chunks:
                spool.write(chunk)
            spool.close()
            times.append(time.perf_counter() - began)
    return min(times) / frames * 1e6


def measure(frames: int, repeats: int) -> dict[str, float]:
    """Microseconds per frame: ``loop``, ``append``, ``recorder`` (on the loop), ``writer`` (thread)."""
    return {
        "loop": best(plain_loop, frames, repeats),
        "append": best(bytearray_append, frames, repeats),
        "recorder": best(recorder, frames, repeats),
        "writer": writer_thread(frames, repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="simulated call length")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    frames = int(args.minutes * 60 * 50)
    us = measure(frames, args.repeats)
    loop, append, ours = us["loop"], us["append"], us["recorder"]
    print(f"{frames:,} frames each way ({args.minutes:g} min of call), best of {args.repeats}; us per 20 ms frame:")
    print(f"  plain loop (baseline)                      {loop:6.3f}")
    print(f"  + two bytearray appends (the floor)         {append:6.3f}   (+{append - loop:.3f})")
    print(f"  + recorder, both directions (on the loop)   {ours:6.3f}   (+{ours - loop:.3f})")
    print(f"  writer thread, off the loop (both channels) {us['writer']:6.3f}")
    print(f"on the loop the recorder adds {ours - loop:.2f} us a frame pair: "
          f"{(ours - loop) * 50 / 1e4:.4f} % of a core per call (50 frame pairs a second)")


if __name__ == "__main__":
    main()
