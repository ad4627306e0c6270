"""The resampler's quality targets (foundation issue): alias and image rejection >= 60 dB from
4.6 kHz up, passband 300-3400 Hz within +-0.5 dB, round trip SNR >= 40 dB, latency <= 2 ms,
and sample-exact streaming whatever the chunking."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audio.measure import (
    amplitude_at,
    bandlimited_click,
    bandlimited_noise,
    db,
    from_pcm16,
    peak_time,
    snr_db,
    to_pcm16,
    tone,
)
from gateway.audio.resample import DELAY_SAMPLES_8K, TAP_BITS, Resampler, design_lowpass

DIRECTIONS = [(8000, 24000), (24000, 8000), (8000, 16000), (16000, 8000)]
AMPLITUDE = 16000.0


def run(resampler: Resampler, samples: np.ndarray, chunk: int | None = None) -> np.ndarray:
    data = to_pcm16(samples)
    if chunk is None:
        out = resampler.process(data)
    else:
        step = 2 * chunk
        out = b"".join(resampler.process(data[i : i + step]) for i in range(0, len(data), step))
    return from_pcm16(out + resampler.flush())


def alias_of(freq: int, rate: int) -> int:
    """Where ``freq`` lands after sampling at ``rate``."""
    folded = freq % rate
    return min(folded, rate - folded)


@pytest.mark.parametrize(
    ("high", "freq"),
    [(high, f) for high in (24000, 16000) for f in (4600, 5000, 6000, 7000, 8000, 10000)
     if f < high // 2],
)
def test_downsampling_rejects_aliases_by_60_db(high: int, freq: int) -> None:
    out = run(Resampler(high, 8000), tone(freq, high, 3, AMPLITUDE))
    alias = alias_of(freq, 8000)
    level = db(amplitude_at(out, 8000, alias) / AMPLITUDE)
    assert level <= -60.0, f"{freq} Hz folded to {alias} Hz at {level:.1f} dB"


@pytest.mark.parametrize("high", [24000, 16000])
@pytest.mark.parametrize("freq", [0, 400, 1000, 2000, 3000, 3400])
def test_upsampling_rejects_images_by_60_db(high: int, freq: int) -> None:
    out = run(Resampler(8000, high), tone(freq, 8000, 3, AMPLITUDE))
    wanted = amplitude_at(out, high, freq)
    assert abs(db(wanted / AMPLITUDE)) < 0.5
    images = sorted(
        {f for k in range(1, high // 8000 + 1) for f in (8000 * k - freq, 8000 * k + freq)
         if 4600 <= f <= high // 2}
    )
    assert images, "every tone has at least one image below the output's Nyquist frequency"
    for image in images:
        level = db(amplitude_at(out, high, image) / AMPLITUDE)
        assert level <= -60.0, f"{freq} Hz imaged at {image} Hz at {level:.1f} dB"


@pytest.mark.parametrize(("in_rate", "out_rate"), DIRECTIONS)
def test_passband_is_flat_within_half_a_db(in_rate: int, out_rate: int) -> None:
    gains = []
    for freq in range(300, 3401, 100):
        out = run(Resampler(in_rate, out_rate), tone(freq, in_rate, 2, AMPLITUDE))
        gains.append(db(amplitude_at(out, out_rate, freq) / AMPLITUDE))
    assert max(gains) <= 0.5 and min(gains) >= -0.5, (min(gains), max(gains))


@pytest.mark.parametrize("high", [24000, 16000])
@pytest.mark.parametrize(
    "signal",
    [
        lambda: bandlimited_noise(8000, 3, 300, 3400, seed=1),
        lambda: tone(440, 8000, 3, 9000) + tone(1700, 8000, 3, 6000) + tone(3100, 8000, 3, 3000),
    ],
    ids=["speech-band noise", "three tones"],
)
def test_round_trip_snr_at_least_40_db(high: int, signal) -> None:
    x = from_pcm16(to_pcm16(signal()))
    upsampler = Resampler(8000, high)
    up = upsampler.process(to_pcm16(x)) + upsampler.flush()
    down = Resampler(high, 8000)
    y = from_pcm16(down.process(up) + down.flush())
    assert y.size == x.size
    # The edges hold the filters' fill-up and tail; the middle is steady state.
    inner = slice(400, -400)
    assert snr_db(x[inner], y[inner]) >= 40.0


@pytest.mark.parametrize(("in_rate", "out_rate"), DIRECTIONS)
def test_latency_at_most_2_ms(in_rate: int, out_rate: int) -> None:
    """Latency as a caller would feel it: audio held back by the stream, plus how late the
    pulse shows up in what was emitted. Fed in 20 ms chunks, never flushed."""
    resampler = Resampler(in_rate, out_rate)
    x = to_pcm16(bandlimited_click(in_rate, 1.0, at=0.5))
    chunk = in_rate // 50 * 2
    out = b"".join(resampler.process(x[i : i + chunk]) for i in range(0, len(x), chunk))
    y = from_pcm16(out)
    held_back = 1.0 - y.size / out_rate
    lag = peak_time(y, out_rate) - 0.5
    latency_ms = 1000 * (held_back + lag)
    assert abs(latency_ms - resampler.delay_ms) < 0.05
    assert latency_ms <= 2.0


@pytest.mark.parametrize(("in_rate", "out_rate"), DIRECTIONS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_streaming_is_sample_exact_for_any_chunking(in_rate, out_rate, data) -> None:
    samples = data.draw(st.integers(0, 3000), label="samples")
    x = to_pcm16(np.random.default_rng(samples).normal(0, 8000, samples))
    whole = Resampler(in_rate, out_rate)
    expected = whole.process(x) + whole.flush()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(x)), max_size=40), label="cuts"))
    chunked = Resampler(in_rate, out_rate)
    pieces, last = [], 0
    for cut in [*cuts, len(x)]:
        pieces.append(chunked.process(x[last:cut]))  # cuts may split a sample's two bytes
        last = cut
    assert b"".join(pieces) + chunked.flush() == expected


@pytest.mark.parametrize(("in_rate", "out_rate"), DIRECTIONS)
@pytest.mark.parametrize("n", [1, 7, 160, 2400, 2401])
def test_output_is_the_filter_applied_by_plain_convolution(in_rate: int, out_rate: int, n: int) -> None:
    """The block products give, bit for bit, what the filter's textbook form gives: the
    input zero-stuffed (up) or not (down), convolved with the quantized prototype, read from
    its group delay on (every r-th sample down), rounded and saturated. Both sums are exact
    in float64, so any slip in how blocks meet shows as a differing sample."""
    up = out_rate > in_rate
    r = out_rate // in_rate if up else in_rate // out_rate
    x = np.random.default_rng(n).integers(-32768, 32768, n)
    resampler = Resampler(in_rate, out_rate)
    got = np.frombuffer(resampler.process(to_pcm16(x)) + resampler.flush(), "<i2")
    h = np.rint(design_lowpass(r) * (r if up else 1) * 2.0**TAP_BITS) / 2.0**TAP_BITS
    if up:
        stuffed = np.zeros(n * r)
        stuffed[::r] = x
        full, wanted = np.convolve(stuffed, h), slice(DELAY_SAMPLES_8K * r, DELAY_SAMPLES_8K * r + n * r)
    else:
        full, wanted = np.convolve(x.astype(float), h), slice(DELAY_SAMPLES_8K * r, DELAY_SAMPLES_8K * r + n, r)
    expected = np.clip(np.rint(full[wanted]), -32768, 32767)
    assert got.size == expected.size
    assert np.array_equal(got, expected)


@pytest.mark.parametrize(("in_rate", "out_rate"), DIRECTIONS)
@pytest.mark.parametrize("n", [0, 1, 2, 3, 160, 479, 480, 481, 4001])
def test_utterance_length_is_exact(in_rate: int, out_rate: int, n: int) -> None:
    r = Resampler(in_rate, out_rate)
    out = r.process(to_pcm16(np.full(n, 1000.0))) + r.flush()
    if out_rate > in_rate:
        assert len(out) // 2 == n * out_rate // in_rate
    else:
        assert len(out) // 2 == -(-n * out_rate // in_rate)


def test_flush_starts_a_fresh_stream() -> None:
    x = to_pcm16(tone(1000, 8000, 0.1))
    r = Resampler(8000, 24000)
    r.process(x)
    r.flush()
    fresh = Resampler(8000, 24000)
    assert r.process(x) + r.flush() == fresh.process(x) + fresh.flush()


def test_reset_drops_the_held_back_tail() -> None:
    r = Resampler(24000, 8000)
    r.process(to_pcm16(tone(1000, 24000, 0.1)))
    r.reset()
    assert r.flush() == b""


def test_odd_byte_is_carried_to_the_next_chunk() -> None:
    x = to_pcm16(tone(700, 8000, 0.05))
    r1, r2 = Resampler(8000, 24000), Resampler(8000, 24000)
    assert r1.process(x[:101]) + r1.process(x[101:]) == r2.process(x)


def test_full_scale_input_clips_instead_of_wrapping() -> None:
    square = np.where(tone(300, 24000, 0.2) >= 0, 32767.0, -32768.0)
    out = run(Resampler(24000, 8000), square)
    # Gibbs overshoot must saturate, not wrap: a wrapped sample would flip sign mid-plateau.
    plateau = out[100:-100]
    inner = plateau[(np.abs(plateau) > 30000)]
    assert inner.size and np.all(np.abs(inner) <= 32768)
    assert out.max() == 32767 and out.min() == -32768


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 8000), (8000, 48000), (44100, 8000)])
def test_unsupported_rates_are_refused(in_rate: int, out_rate: int) -> None:
    with pytest.raises(ValueError, match="unsupported resampling"):
        Resampler(in_rate, out_rate)
