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
  small matrix product per chunk, block by block (``BLOCK``): each row of the product is one
  short stretch of input, overlapping the next by the filter's length, times a fixed banded
  matrix that holds every output's taps for one block (``_block_matrix``). The stretches a
  chunk needs are few (a 100 ms chunk down from 24 kHz: 100 rows of 112 samples, 90 kB),
  where one row per output sample would be 800 rows of 91 (580 kB): BLAS copies the rows it
  is given, and under load that copy, not the arithmetic, is what costs (``bench/audio.py``).
- Sample-exact streaming: taps are quantised to multiples of 2**-20 (Q20) and samples are
  int16, so every product and every partial sum is a multiple of 2**-20 well below 2**33:
  float64 holds each exactly, and the arithmetic is exact whatever the summation order. Each output sample is therefore bit-identical however
  the input is chunked (20 ms frames, odd sizes, or all at once).
- Time alignment: the first ``delay`` output samples (the filter filling up) are dropped, and
  ``flush()`` pushes the held-back tail out. Output sample ``i`` thus corresponds to input time
  ``i / out_rate`` exactly, and a whole utterance of ``n`` input samples becomes exactly
  ``n * L`` (up) or ``ceil(n / M)`` (down) output samples. Durations survive the round trip,
  which the bridge relies on to tell the model how much of its audio the caller heard.
"""

from __future__ import annotations

import functools

import numpy as np

TELEPHONE_RATE = 8000
SUPPORTED_RATES = (16000, 24000)

#: Delay of every resampler, in 8 kHz samples (1.875 ms).
DELAY_SAMPLES_8K = 15
#: Kaiser-windowed sinc parameters, chosen by a sweep (see module docstring).
CUTOFF_HZ = 3875.0
KAISER_BETA = 8.5
#: Taps are multiples of 2**-TAP_BITS (see "Sample-exact streaming").
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
    # Dividing by a power of two is exact: the taps stay exact multiples of 2**-TAP_BITS.
    return np.rint(h * _TAP_SCALE) / _TAP_SCALE


#: Outputs per block when downsampling, input samples per block when upsampling: of 4, 8
#: and 16, the cheapest with 150 calls taking turns (``bench/audio.py``'s call-second).
BLOCK = 8


@functools.cache
def _taps(up: bool, ratio: int) -> np.ndarray:
    """The taps, designed once per direction and ratio (the design takes about a millisecond:
    too much for every call's set-up). Upsampling: one row per output phase, each meeting a
    window of inputs oldest first; downsampling: one row, reversed likewise."""
    if up:
        # Zero-stuffing by r divides the level by r, so the taps are scaled by r. Output
        # phase p of input step m is sum_j h[r*j + p] * x[m - j]: row p holds h[p], h[r + p],
        # ... reversed, to meet a window of inputs oldest first.
        width = 2 * DELAY_SAMPLES_8K + 1
        padded = np.zeros(width * ratio)
        padded[: width * ratio - ratio + 1] = _quantize(design_lowpass(ratio) * ratio)
        taps = np.ascontiguousarray(padded.reshape(width, ratio)[::-1].T)
    else:
        taps = _quantize(design_lowpass(ratio))[::-1].copy()
    taps.flags.writeable = False  # cached: shared by every resampler
    return taps


@functools.cache
def _block_matrix(up: bool, ratio: int) -> np.ndarray:
    """What ``_run`` multiplies a block's stretch of input by, to get the block's outputs.

    Upsampling: a stretch is ``BLOCK + width - 1`` inputs (the window of the block's first
    step, then one more input per step); column ``m * ratio + p`` is output phase ``p`` of step
    ``m``, so a row of the product is the block's outputs in time order. Downsampling: a
    stretch is ``ratio * (BLOCK - 1) + width`` inputs; column ``k`` is output ``k``, its taps
    ``ratio * k`` inputs in. The zeros add nothing, exactly. Read-only: shared by every
    resampler."""
    taps = _taps(up, ratio)
    if up:
        width = taps.shape[1]
        matrix = np.zeros((BLOCK + width - 1, ratio * BLOCK))
        for m in range(BLOCK):
            matrix[m : m + width, m * ratio : (m + 1) * ratio] = taps.T
    else:
        width = taps.size
        matrix = np.zeros((ratio * (BLOCK - 1) + width, BLOCK))
        for k in range(BLOCK):
            matrix[ratio * k : ratio * k + width, k] = taps
    matrix.flags.writeable = False
    return matrix


class Resampler:
    """A streaming resampler for one direction of one call: 8 kHz <-> 16 or 24 kHz, PCM16.

    ``process`` takes little-endian PCM16 bytes of any length (an odd trailing byte is kept
    for the next call) and returns the resampled PCM16 bytes available so far. ``flush`` ends
    an utterance: it returns the held-back tail and starts afresh. ``reset`` drops everything
    held (barge-in: the rest of the utterance will never be played).

    Hot-path notes (``bench/audio.py`` measures them): samples live in one persistent float64
    buffer ``[history | new input | slack]``; the filter reads it through a strided view of
    its blocks' stretches, built once per chunk size and reused (numpy's own
    ``sliding_window_view`` costs more than the arithmetic); the arithmetic is one BLAS
    product per chunk. The last block may run past the input into the slack: its outputs
    from there are computed and dropped.
    """

    __slots__ = (
        "in_rate", "out_rate", "_up", "_ratio", "_matrix", "_hist_len", "_buf", "_views",
        "_phase", "_skip", "_carry", "_delay_out", "_delay_in",
    )

    #: Window views kept per resampler (one per distinct chunk size and phase seen).
    _MAX_VIEWS = 16

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
        self._matrix = _block_matrix(self._up, r)
        if self._up:
            self._delay_out = DELAY_SAMPLES_8K * r  # in output samples
            self._delay_in = DELAY_SAMPLES_8K
            self._hist_len = 2 * DELAY_SAMPLES_8K
        else:
            self._delay_out = DELAY_SAMPLES_8K
            self._delay_in = DELAY_SAMPLES_8K * r
            self._hist_len = 2 * DELAY_SAMPLES_8K * r
        self._buf = np.zeros(self._hist_len + 960 + r * BLOCK)
        self._views: dict[tuple[int, int], np.ndarray] = {}
        self.reset()

    @property
    def delay_ms(self) -> float:
        """Algorithmic latency: how far the output lags the input in real time."""
        return 1000.0 * DELAY_SAMPLES_8K / TELEPHONE_RATE

    def reset(self) -> None:
        """Forget all history and any held-back tail: the next sample starts a new stream."""
        self._buf[: self._hist_len] = 0.0
        self._phase = 0  # downsampling: where in the next input the next output falls
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
        return self._run(np.frombuffer(pcm16, dtype="<i2"))

    def flush(self) -> bytes:
        """End of utterance: return the held-back tail (1.875 ms of audio), then reset.

        Pushing ``delay`` worth of zeros completes exactly the outputs still owed for real
        input (the padding is a whole number of periods in both directions), so nothing of
        the padding itself comes out. A dangling odd byte cannot be a sample and is dropped.
        """
        tail = self._run(np.zeros(self._delay_in))
        self.reset()
        return tail

    def _window(self, blocks: int, phase: int) -> np.ndarray:
        """A view of the buffer: one row per block, the stretch of input its outputs need."""
        key = (blocks, phase)
        view = self._views.get(key)
        if view is None:
            buf, step = self._buf, self._buf.itemsize
            advance = BLOCK if self._up else self._ratio * BLOCK  # inputs from block to block
            view = np.ndarray((blocks, self._matrix.shape[0]), buf.dtype, buf, phase * step,
                              (advance * step, step))
            if len(self._views) >= self._MAX_VIEWS:
                self._views.clear()
            self._views[key] = view
        return view

    def _run(self, x: np.ndarray) -> bytes:
        n, hist, r = x.size, self._hist_len, self._ratio
        if self._up:
            count = n * r
            blocks = -(-n // BLOCK)
        else:
            # Outputs fall every r inputs, the next ``phase`` inputs into this chunk.
            count = (n - self._phase + r - 1) // r if n > self._phase else 0
            blocks = -(-count // BLOCK)
        # The last block's stretch may reach past the input (at most r * BLOCK samples).
        if hist + n + r * BLOCK > self._buf.size:
            grown = np.zeros(hist + r * BLOCK + max(n, 2 * (self._buf.size - hist)))
            grown[:hist] = self._buf[:hist]
            self._buf = grown
            self._views.clear()
        buf = self._buf
        np.copyto(buf[hist : hist + n], x)
        # One contiguous row of outputs per block, in time order: ravel is a view. np.dot, not
        # @: on overlapping strided views matmul takes a slow non-BLAS loop, while dot copies
        # the rows into one contiguous block and calls BLAS.
        acc = np.dot(self._window(blocks, self._phase), self._matrix).ravel()[:count]
        if not self._up:
            self._phase += r * count - n
        buf[:hist] = buf[n : n + hist]
        if self._skip:
            dropped = min(self._skip, count)
            acc = acc[dropped:]
            self._skip -= dropped
        # Exact sums -> int16: round, saturate.
        np.rint(acc, out=acc)
        np.minimum(acc, 32767.0, out=acc)
        np.maximum(acc, -32768.0, out=acc)
        return acc.astype("<i2").tobytes()
