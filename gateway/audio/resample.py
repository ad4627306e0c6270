"""Streaming polyphase FIR resampling between 8 kHz telephone audio and 16/24 kHz model audio.

Design (numbers measured by ``tests/audio/test_resample.py`` and ``bench/audio.py``):

- One linear-phase low-pass prototype per ratio: a Kaiser-windowed sinc (cutoff 3875 Hz,
  beta 8.5) of ``2 * 15 * ratio + 1`` taps at the high rate. Its group delay is 15 samples at
  8 kHz, **1.875 ms**, in either direction. At that length it rejects everything from 4.6 kHz
  up by about 85 dB (the 8 kHz side can only represent 0-4 kHz, so a 4.6 kHz component would
  fold to 3.4 kHz) while 300-3400 Hz stays within -0.2..0 dB. ``audioop.ratecv`` interpolates
  with no anti-aliasing filter at all; soxr's HQ streaming mode holds back ~21 ms.
- Upsampling by L runs L polyphase branches of ``15 * 2 + 1`` taps on the 8 kHz input;
  downsampling by M evaluates the filter only at every M-th high-rate sample. Both are one
  small matrix product per chunk.
- Sample-exact streaming: taps are quantised to integers (Q20) and samples are int16, so
  every product and every partial sum is an integer below 2**53 and float64 arithmetic is
  exact whatever the summation order. Each output sample is therefore bit-identical however
  the input is chunked (20 ms frames, odd sizes, or all at once).
- Time alignment: the first ``delay`` output samples (the filter filling up) are dropped, and
  ``flush()`` pushes the held-back tail out. Output sample ``i`` thus corresponds to input time
  ``i / out_rate`` exactly, and a whole utterance of ``n`` input samples becomes exactly
  ``n * L`` (up) or ``ceil(n / M)`` (down) output samples. Durations survive the round trip,
  which the bridge relies on to tell the model how much of its audio the caller heard.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

TELEPHONE_RATE = 8000
SUPPORTED_RATES = (16000, 24000)

#: Delay of every resampler, in 8 kHz samples (1.875 ms).
DELAY_SAMPLES_8K = 15
#: Kaiser-windowed sinc parameters, chosen by a sweep (see module docstring).
CUTOFF_HZ = 3875.0
KAISER_BETA = 8.5
#: Taps are integers scaled by 2**TAP_BITS (see "Sample-exact streaming").
TAP_BITS = 20
_TAP_SCALE = float(1 << TAP_BITS)


def design_lowpass(ratio: int) -> np.ndarray:
    """The float prototype low-pass at ``8000 * ratio`` Hz, unity DC gain."""
    rate = TELEPHONE_RATE * ratio
    taps = 2 * DELAY_SAMPLES_8K * ratio + 1
    n = np.arange(taps) - (taps - 1) / 2
    normalized = 2.0 * CUTOFF_HZ / rate
    h = normalized * np.sinc(normalized * n) * np.kaiser(taps, KAISER_BETA)
    return h / h.sum()


def _quantize(h: np.ndarray) -> np.ndarray:
    return np.rint(h * _TAP_SCALE)


class Resampler:
    """A streaming resampler for one direction of one call: 8 kHz <-> 16 or 24 kHz, PCM16.

    ``process`` takes little-endian PCM16 bytes of any length (an odd trailing byte is kept
    for the next call) and returns the resampled PCM16 bytes available so far. ``flush`` ends
    an utterance: it returns the held-back tail and starts afresh. ``reset`` drops everything
    held (barge-in: the rest of the utterance will never be played).
    """

    __slots__ = (
        "in_rate", "out_rate", "_up", "_ratio", "_matrix", "_hist", "_hist_len", "_phase",
        "_skip", "_carry", "_delay_out", "_delay_in",
    )

    def __init__(self, in_rate: int, out_rate: int) -> None:
        if in_rate == TELEPHONE_RATE and out_rate in SUPPORTED_RATES:
            self._up, self._ratio = True, out_rate // in_rate
        elif out_rate == TELEPHONE_RATE and in_rate in SUPPORTED_RATES:
            self._up, self._ratio = False, in_rate // out_rate
        else:
            raise ValueError(
                f"unsupported resampling {in_rate} Hz -> {out_rate} Hz; supported: "
                f"8000 <-> {', '.join(map(str, SUPPORTED_RATES))}"
            )
        self.in_rate, self.out_rate = in_rate, out_rate
        r = self._ratio
        if self._up:
            # Zero-stuffing by r divides the signal's level by r: branch p holds taps p, p+r, ...
            # scaled by r. Row j of a window is x[m - (K-1) + j], which meets tap h[r*(K-1-j) + p].
            branch = 2 * DELAY_SAMPLES_8K + 1
            padded = np.zeros(branch * r)
            padded[: branch * r - r + 1] = _quantize(design_lowpass(r) * r)
            self._matrix = padded.reshape(branch, r)[::-1].copy()
            self._hist_len = branch - 1
            self._delay_out = DELAY_SAMPLES_8K * r
            self._delay_in = DELAY_SAMPLES_8K
        else:
            q = _quantize(design_lowpass(r))
            self._matrix = q[::-1].copy()
            self._hist_len = q.size - 1
            self._delay_out = DELAY_SAMPLES_8K
            self._delay_in = DELAY_SAMPLES_8K * r
        self.reset()

    @property
    def delay_ms(self) -> float:
        """Algorithmic latency: how far the output lags the input in real time."""
        return 1000.0 * DELAY_SAMPLES_8K / TELEPHONE_RATE

    def reset(self) -> None:
        """Forget all history and any held-back tail: the next sample starts a new stream."""
        self._hist = np.zeros(self._hist_len)
        self._phase = 0  # downsampling: offset of the next output's newest input sample
        self._skip = self._delay_out  # leading outputs still to drop (filter fill-up)
        self._carry = b""

    def process(self, pcm16: bytes) -> bytes:
        if self._carry:
            pcm16 = self._carry + pcm16
            self._carry = b""
        if len(pcm16) & 1:
            self._carry = pcm16[-1:]
            pcm16 = pcm16[:-1]
        if not pcm16:
            return b""
        return self._run(np.frombuffer(pcm16, dtype="<i2").astype(np.float64))

    def flush(self) -> bytes:
        """End of utterance: return the held-back tail (1.875 ms of audio), then reset.

        Pushing ``delay`` worth of zeros completes exactly the outputs still owed for real
        input (the padding is a whole number of periods in both directions), so nothing of
        the padding itself comes out. A dangling odd byte cannot be a sample and is dropped.
        """
        tail = self._run(np.zeros(self._delay_in))
        self.reset()
        return tail

    def _run(self, x: np.ndarray) -> bytes:
        ext = np.concatenate((self._hist, x))
        windows = sliding_window_view(ext, self._hist_len + 1)  # one per input sample in x
        if self._up:
            acc = (windows @ self._matrix).reshape(-1)
        else:
            # Outputs fall on every M-th input; _phase is where the next one falls in x.
            acc = windows[self._phase :: self._ratio] @ self._matrix
            self._phase += self._ratio * acc.size - x.size
        self._hist = ext[ext.size - self._hist_len :]
        if self._skip:
            dropped = min(self._skip, acc.size)
            acc = acc[dropped:]
            self._skip -= dropped
        out = np.rint(acc / _TAP_SCALE)
        np.clip(out, -32768, 32767, out=out)
        return out.astype("<i2").tobytes()
