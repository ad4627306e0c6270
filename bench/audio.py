"""Resampler benchmark: our polyphase FIR vs ``audioop.ratecv`` vs ``soxr`` (if installed).

Prints, side by side from one run: alias rejection when downsampling 24 kHz -> 8 kHz and image
rejection when upsampling 8 kHz -> 24 kHz, at 4.6/5/6/8/10 kHz; passband (300-3400 Hz) gain
range in each direction; latency; microseconds per 20 ms chunk in each direction, and per
call-second of a PCM16 call's resampling with 150 calls taking turns (their state cold in the
caches, as under load); and the whole per-frame transcode, codec included, for the gateway.

    python bench/audio.py            # soxr column appears when `pip install soxr` (extra: bench)

Quality figures are deterministic; timings are the best of several repeats on this machine.
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.audio import AudioMode, InboundTranscoder, OutboundTranscoder  # noqa: E402
from gateway.audio.measure import (  # noqa: E402
    amplitude_at,
    bandlimited_click,
    db,
    from_pcm16,
    peak_time,
    to_pcm16,
    tone,
)
from gateway.audio.resample import Resampler  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

try:
    import soxr
except ImportError:  # optional comparison
    soxr = None

LOW, HIGH = 8000, 24000
FREQS = (4600, 5000, 6000, 8000, 10000)
AMPLITUDE = 16000.0


class Stream:
    """The engines behind one interface: PCM16 bytes in, PCM16 bytes out, flush at the end."""

    def __init__(self, process: Callable[[bytes], bytes], flush: Callable[[], bytes]):
        self.process, self.flush = process, flush


def ours(in_rate: int, out_rate: int) -> Stream:
    r = Resampler(in_rate, out_rate)
    return Stream(r.process, r.flush)


def ratecv(in_rate: int, out_rate: int) -> Stream:
    state = None

    def process(data: bytes) -> bytes:
        nonlocal state
        out, state = audioop.ratecv(data, 2, 1, in_rate, out_rate, state)
        return out

    return Stream(process, lambda: b"")


def soxr_hq(in_rate: int, out_rate: int) -> Stream:
    s = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ")

    def process(data: bytes) -> bytes:
        return s.resample_chunk(np.frombuffer(data, dtype="<i2"), last=False).tobytes()

    return Stream(process, lambda: s.resample_chunk(np.zeros(0, dtype="<i2"), last=True).tobytes())


ENGINES: dict[str, Callable[[int, int], Stream]] = {"ours": ours, "audioop.ratecv": ratecv}
if soxr is not None:
    ENGINES["soxr HQ"] = soxr_hq


def through(make: Callable[[int, int], Stream], in_rate: int, out_rate: int, x: np.ndarray) -> np.ndarray:
    s = make(in_rate, out_rate)
    data = to_pcm16(x)
    step = in_rate // 50 * 2  # 20 ms chunks, as on a call
    out = b"".join(s.process(data[i : i + step]) for i in range(0, len(data), step))
    return from_pcm16(out + s.flush())


def folded(freq: int, rate: int) -> int:
    f = freq % rate
    return min(f, rate - f)


def alias_rejection(make, freq: int) -> float:
    """Downsampling: level (dB re the input tone) at which ``freq`` folds into 0-4 kHz."""
    y = through(make, HIGH, LOW, tone(freq, HIGH, 3, AMPLITUDE))
    return db(amplitude_at(y, LOW, folded(freq, LOW)) / AMPLITUDE)


def image_rejection(make, freq: int) -> float:
    """Upsampling: level (dB re the input tone) of the image at ``freq`` of the 0-4 kHz tone
    that images there."""
    y = through(make, LOW, HIGH, tone(folded(freq, LOW), LOW, 3, AMPLITUDE))
    return db(amplitude_at(y, HIGH, freq) / AMPLITUDE)


def passband(make, in_rate: int, out_rate: int) -> tuple[float, float]:
    gains = [
        db(amplitude_at(through(make, in_rate, out_rate, tone(f, in_rate, 2, AMPLITUDE)), out_rate, f) / AMPLITUDE)
        for f in range(300, 3401, 100)
    ]
    return min(gains), max(gains)


def latency_ms(make, in_rate: int, out_rate: int) -> float:
    """Held back by the stream, plus how late a band-limited click comes out (no flush)."""
    s = make(in_rate, out_rate)
    data = to_pcm16(bandlimited_click(in_rate, 1.0, at=0.5))
    step = in_rate // 50 * 2
    y = from_pcm16(b"".join(s.process(data[i : i + step]) for i in range(0, len(data), step)))
    return 1000 * ((1.0 - y.size / out_rate) + (peak_time(y, out_rate) - 0.5))


def level(value: float) -> str:
    # A rejected component can round to exact digital silence in int16 output; far below the
    # int16 floor, exactly periodic test signals leave only float residue: no real precision.
    if value == float("-inf"):
        return "silent"
    return "< -120" if value < -120 else f"{value:.1f}"


def us_per_chunk(fn: Callable[[bytes], bytes], chunk: bytes, number: int = 2000) -> float:
    best = min(timeit.repeat(lambda: fn(chunk), number=number, repeat=5))
    return 1e6 * best / number


def us_per_call_second(make: Callable[[int, int], Stream], calls: int = 150, rounds: int = 10) -> float:
    """A call-second of one PCM16 call's resampling (50 chunks of 20 ms up, 10 of 100 ms
    down), taken by ``calls`` calls in turn: each call's state is cold in the caches when its
    turn comes, as beside other calls on a loaded gateway (the per-chunk rows time one
    stream, hot)."""
    up = to_pcm16(tone(440, LOW, 0.02, 8000))
    down = to_pcm16(tone(440, HIGH, 0.1, 8000))
    streams = [(make(LOW, HIGH).process, make(HIGH, LOW).process) for _ in range(calls)]
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(rounds):  # a round: 100 ms of every call
            for to_model, to_caller in streams:
                for _ in range(5):
                    to_model(up)
                to_caller(down)
        best = min(best, time.process_time() - start)
    return 1e6 * best / (calls * rounds / 10)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    names = list(ENGINES)
    width = 16
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, cells: list[str]) -> None:
        rows.append((label, cells))

    for f in FREQS:
        row(f"alias @ {f / 1000:g} kHz, 24k->8k (dB)", [level(alias_rejection(ENGINES[n], f)) for n in names])
    for f in FREQS:
        row(f"image @ {f / 1000:g} kHz, 8k->24k (dB)", [level(image_rejection(ENGINES[n], f)) for n in names])
    for a, b in ((HIGH, LOW), (LOW, HIGH)):
        cells = []
        for n in names:
            lo, hi = passband(ENGINES[n], a, b)
            cells.append(f"{lo:+.2f}..{hi:+.2f}")
        row(f"passband 0.3-3.4 kHz, {a // 1000}k->{b // 1000}k (dB)", cells)
    for a, b in ((HIGH, LOW), (LOW, HIGH)):
        row(f"latency {a // 1000}k->{b // 1000}k (ms)", [f"{latency_ms(ENGINES[n], a, b):.3f}" for n in names])

    chunk_hi = to_pcm16(tone(440, HIGH, 0.02, 8000))
    chunk_lo = to_pcm16(tone(440, LOW, 0.02, 8000))
    row("us per 20 ms chunk, 24k->8k", [f"{us_per_chunk(ENGINES[n](HIGH, LOW).process, chunk_hi):.1f}" for n in names])
    row("us per 20 ms chunk, 8k->24k", [f"{us_per_chunk(ENGINES[n](LOW, HIGH).process, chunk_lo):.1f}" for n in names])
    row("us per call-second, 150 calls in turn", [f"{us_per_call_second(ENGINES[n]):.0f}" for n in names])

    label_width = max(len(label) for label, _ in rows) + 2
    print(f"{'':<{label_width}}" + "".join(f"{n:>{width}}" for n in names))
    for label, cells in rows:
        print(f"{label:<{label_width}}" + "".join(f"{c:>{width}}" for c in cells))
    print(
        "\nsilent: the component rounds to zero in every int16 output sample, i.e. it is below"
        f" half an LSB ({db(0.5 / AMPLITUDE):.1f} dB re the {AMPLITUDE:.0f}-amplitude test tone)."
    )
    if soxr is None:
        print("\n(soxr not installed: pip install soxr, or the project's [bench] extra, for its column)")

    # The whole per-frame cost the gateway pays, codec included.
    ulaw = b"\xff" * 160
    model_chunk = to_pcm16(tone(440, HIGH, 0.02, 8000))
    print("\nper 20 ms frame, whole transcode (codec + resampling):")
    for mode in AudioMode:
        inbound, outbound = InboundTranscoder(mode), OutboundTranscoder(mode)
        model_frame = model_chunk if mode is AudioMode.PCM16 else ulaw
        print(
            f"  {mode.value:<10} caller->model {us_per_chunk(inbound.convert, ulaw):6.1f} us"
            f"   model->caller {us_per_chunk(outbound.convert, model_frame):6.1f} us"
        )


if __name__ == "__main__":
    main()
