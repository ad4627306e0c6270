"""The instruments the quality tests rely on must themselves be right."""

import numpy as np
import pytest

from gateway.audio.measure import amplitude_at, bandlimited_click, bandlimited_noise, peak_time, snr_db, to_pcm16, tone


def test_amplitude_at_reads_a_tone_exactly_and_ignores_its_neighbours() -> None:
    x = tone(1000, 8000, 2, 1234.0) + tone(1001, 8000, 2, 20000.0)
    assert amplitude_at(x, 8000, 1000) == pytest.approx(1234.0, rel=1e-9)
    assert amplitude_at(x, 8000, 1500) < 1e-6
    assert amplitude_at(np.full(8000, -5.0), 8000, 0) == pytest.approx(5.0)


def test_amplitude_at_refuses_what_it_cannot_measure() -> None:
    with pytest.raises(ValueError):
        amplitude_at(tone(100, 8000, 2), 8000, 100.5)
    with pytest.raises(ValueError):
        amplitude_at(tone(100, 8000, 0.5), 8000, 100)


def test_bandlimited_noise_has_no_energy_outside_its_band() -> None:
    x = bandlimited_noise(8000, 1, 300, 3400, rms=1000)
    spectrum = np.abs(np.fft.rfft(x))
    freqs = np.fft.rfftfreq(x.size, 1 / 8000)
    assert spectrum[(freqs < 299) | (freqs > 3401)].max() < 1e-6 * spectrum.max()
    assert np.sqrt(np.mean(x**2)) == pytest.approx(1000)


def test_peak_time_and_snr() -> None:
    assert peak_time(bandlimited_click(8000, 1, at=0.25), 8000) == pytest.approx(0.25, abs=1e-5)
    x = tone(440, 8000, 1)
    assert snr_db(x, x) == float("inf")
    assert snr_db(x, 1.01 * x) == pytest.approx(40.0, abs=1e-9)


def test_longest_quiet_finds_the_longest_silence_between_sounds() -> None:
    from gateway.audio import pcm16_to_ulaw
    from gateway.audio.measure import longest_quiet

    beep = pcm16_to_ulaw(to_pcm16(tone(440, 8000, 0.2, amplitude=8000)))
    silence = b"\xff" * 8 * 700  # 700 ms of mu-law silence
    assert longest_quiet(silence[:8 * 300] + beep + silence + beep) == pytest.approx(0.7)
    assert longest_quiet(beep) == 0.0
    # The hold tone's quiet part is under two seconds (-24 dBFS pips every 2 s).
    from gateway.audio import hold

    assert longest_quiet(b"".join(hold.frames("tone")) * 3) == pytest.approx(1.7, abs=0.02)
