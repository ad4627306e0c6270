"""Signal measurements for audio tests, benchmarks and call-flow checks.

Tones use whole-hertz frequencies and are measured over windows of exactly one second, so
every tone has a whole number of cycles in the window and a single DFT bin measures it with
no leakage from its neighbours (coherent sampling). That is what lets a test see an alias
85 dB below a full-level tone 1.2 kHz away.
"""

from __future__ import annotations

import math

import numpy as np


def tone(freq: float, rate: int, seconds: float, amplitude: float = 16000.0) -> np.ndarray:
    """A sine (or a constant, at 0 Hz) as float64 samples."""
    t = np.arange(int(round(seconds * rate))) / rate
    if freq == 0:
        return np.full(t.size, float(amplitude))
    return amplitude * np.sin(2 * np.pi * freq * t)


def to_pcm16(samples: np.ndarray) -> bytes:
    return np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()


def from_pcm16(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float64)


def amplitude_at(samples: np.ndarray, rate: int, freq: float, start: int | None = None) -> float:
    """Amplitude of the ``freq`` component over one second of ``samples`` from ``start``
    (default: the middle second). ``freq`` must be a whole number of hertz."""
    if freq != int(freq):
        raise ValueError("coherent measurement needs a whole-hertz frequency")
    if samples.size < rate:
        raise ValueError("need at least one second of samples")
    if start is None:
        start = (samples.size - rate) // 2
    window = samples[start : start + rate]
    if freq == 0:
        return abs(float(window.mean()))
    phase = np.exp(-2j * np.pi * freq * np.arange(rate) / rate)
    return 2.0 * abs(complex(window @ phase)) / rate


def db(ratio: float) -> float:
    return 20.0 * math.log10(ratio) if ratio > 0 else float("-inf")


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-noise ratio of ``test`` against ``reference`` (same length, aligned)."""
    noise = np.sum((test - reference) ** 2)
    signal = np.sum(reference**2)
    return float("inf") if noise == 0 else 10.0 * math.log10(signal / noise)


def bandlimited_noise(
    rate: int, seconds: float, low: float, high: float, rms: float = 4000.0, seed: int = 0
) -> np.ndarray:
    """White noise with every component outside [low, high] Hz removed (by FFT masking)."""
    n = int(round(seconds * rate))
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    spectrum[(freqs < low) | (freqs > high)] = 0
    x = np.fft.irfft(spectrum, n)
    return x * (rms / np.sqrt(np.mean(x**2)))


def bandlimited_click(rate: int, seconds: float, at: float, cutoff: float = 3000.0,
                      amplitude: float = 16000.0) -> np.ndarray:
    """Silence with one Hann-windowed sinc pulse (band-limited to ``cutoff``) centred at ``at`` s."""
    n = np.arange(int(round(seconds * rate)))
    t = (n - at * rate) / rate
    width = 4.0 / cutoff
    pulse = np.sinc(2 * cutoff * t) * np.where(np.abs(t) < width, 0.5 + 0.5 * np.cos(np.pi * t / width), 0.0)
    return amplitude * pulse


def peak_time(samples: np.ndarray, rate: int) -> float:
    """Time in seconds of the largest absolute sample, refined by parabolic interpolation."""
    i = int(np.argmax(np.abs(samples)))
    if 0 < i < samples.size - 1:
        a, b, c = np.abs(samples[i - 1 : i + 2])
        denom = a - 2 * b + c
        if denom:
            i += 0.5 * (a - c) / denom
    return i / rate


def longest_quiet(ulaw: bytes, threshold_dbfs: float = -45.0, frame_ms: int = 20) -> float:
    """The longest stretch of ``ulaw`` (8 kHz G.711 mu-law: what a caller heard, on its clock)
    quieter than ``threshold_dbfs`` in every ``frame_ms`` frame, in seconds: the longest
    silence the caller sat through."""
    from gateway.audio.g711 import ulaw_to_pcm16

    samples = from_pcm16(ulaw_to_pcm16(ulaw))
    size = 8 * frame_ms
    frames = samples[: samples.size // size * size].reshape(-1, size)
    if frames.size == 0:
        return 0.0
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    quiet = rms < 32768 * 10 ** (threshold_dbfs / 20)
    longest = run = 0
    for is_quiet in quiet:
        run = run + 1 if is_quiet else 0
        longest = max(longest, run)
    return longest * frame_ms / 1000
